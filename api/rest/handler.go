package rest

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// Routes (Kuma's universal paths; {plural} is a type's REST path segment,
// see GET /_resources):
//
//	GET    /                                   Info (no auth)
//	GET    /healthz                            200 "ok" (no auth)
//	GET    /readyz                             200 "ok" or 503 with the reason (no auth)
//	GET    /metrics                            Config.Metrics (no auth unless Config.MetricsAuth)
//	GET    /_resources                         the type registry
//	GET    /meshes                             list Meshes
//	GET    /meshes/{name}                      get / put / delete a Mesh
//	PUT    /meshes/{name}
//	DELETE /meshes/{name}
//	GET    /meshes/{mesh}/{plural}             list a mesh-scoped type in one mesh
//	GET    /meshes/{mesh}/{plural}/{name}      get / put / delete a mesh-scoped resource
//	PUT    /meshes/{mesh}/{plural}/{name}
//	DELETE /meshes/{mesh}/{plural}/{name}
//	GET    /{plural}                           list a global-scoped type, or a mesh-scoped type across meshes
//	GET    /{plural}/{name}                    get / put / delete a global-scoped resource (zones, zoneingresses)
//	PUT    /{plural}/{name}
//	DELETE /{plural}/{name}
//	...                                        Config.Routes: a role's own views (global: zone
//	                                           overviews, per-resource status across zones)
//
// Request parameters:
//
//	GET one:   ?consistent=true or X-Meshfed-Consistent: true (linearizable read);
//	           Accept: application/yaml for YAML; the answer carries ETag: "<revision>".
//	GET list:  size (1..1000, default 100), offset (0-based index), nameContains (or name),
//	           filter[labels.KEY]=VALUE (repeatable, all must match), consistent.
//	           Answer: {"total": N, "items": [...], "next": "/path?offset=..." or null,
//	           "revisions": [...]} where revisions[i] is items[i]'s revision (a Meshfed
//	           extension; Kuma clients ignore it) and total counts the filtered items.
//	PUT:       body in YAML or JSON; its type must be the URL's, its name and mesh must
//	           match the URL's (filled in from the URL when absent). If-Match: "<revision>"
//	           or ?revision=N makes the write conditional (409 when stale). ?dryRun=true
//	           validates and answers what would happen (201 or 200, the resource with
//	           defaults) without writing. 201 on create, 200 on update, with the stored
//	           resource and its ETag.
//	DELETE:    If-Match / ?revision as for PUT; answers 200 with {}.
//
// Every body the API returns is redacted (api.Redact): Secret data is never
// sent back. Errors are answered as described in errors.go.

const (
	publicRoute = false
	authedRoute = true
)

// server is the http.Handler NewHandler returns.
type server struct {
	cfg     Config
	log     *slog.Logger
	metrics *apiMetrics
	mux     *http.ServeMux
}

// NewHandler validates cfg and returns the API handler. It starts nothing;
// the caller serves it (http.Server) and owns its lifetime.
func NewHandler(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m, err := newAPIMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, log: cfg.Logger, metrics: m, mux: http.NewServeMux()}

	s.handle("GET /{$}", publicRoute, s.info)
	s.handle("GET /healthz", publicRoute, s.healthz)
	s.handle("GET /readyz", publicRoute, s.readyz)
	s.handle("GET /metrics", cfg.MetricsAuth, s.serveMetrics)
	s.handle("GET /_resources", authedRoute, s.resourceTypes)

	for _, prefix := range []string{"/meshes", "/meshes/{mesh}/{plural}", "/{plural}"} {
		s.handle("GET "+prefix, authedRoute, s.list)
		s.handle("GET "+prefix+"/{name}", authedRoute, s.get)
		s.handle("PUT "+prefix+"/{name}", authedRoute, s.put)
		s.handle("DELETE "+prefix+"/{name}", authedRoute, s.delete)
	}
	s.handleInsights()
	for _, rt := range cfg.Routes {
		if err := s.handleSafely(rt); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// handleSafely registers an extra route, turning ServeMux's panic on a
// conflicting pattern into an error.
func (s *server) handleSafely(rt Route) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rest: route %q: %v", rt.Pattern, p)
		}
	}()
	s.handle(rt.Pattern, !rt.Public, rt.Handler)
	return nil
}

// handle registers h under pattern. h answers errors by returning them.
func (s *server) handle(pattern string, auth bool, h func(http.ResponseWriter, *http.Request) error) {
	route := pattern[strings.IndexByte(pattern, ' ')+1:]
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route = route
		}
		if auth {
			if err := s.authenticate(r); err != nil {
				WriteError(w, r, s.log, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			WriteError(w, r, s.log, err)
		}
	})
}

// ServeHTTP routes the request and records its log line and metrics.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, s: s, r: r}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			s.log.ErrorContext(r.Context(), "API handler panicked", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rec.wroteHeader {
				WriteError(rec, r, nil, errors.New("panic"))
			}
		}
		route := rec.route
		if route == "" {
			route = "unmatched"
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.observe(route, r.Method, status, d)
		s.log.DebugContext(r.Context(), "API request", "method", r.Method, "route", route, "path", r.URL.Path,
			"status", status, "duration", d)
		if p == http.ErrAbortHandler {
			panic(p)
		}
	}()
	s.mux.ServeHTTP(rec, r)
}

// authenticate checks the bearer token when authentication is configured.
func (s *server) authenticate(r *http.Request) error {
	if s.cfg.Authenticate == nil {
		return nil
	}
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return errUnauthorized(false)
	}
	if !s.cfg.Authenticate(token) {
		return errUnauthorized(true)
	}
	return nil
}

// recorder remembers the status and the matched route, and turns
// ServeMux's own plain-text 404 and 405 answers (no route matched) into the
// API's JSON error shape. Unauthenticated callers get 401 there instead, so
// they learn nothing about which paths exist.
type recorder struct {
	http.ResponseWriter
	s           *server
	r           *http.Request
	route       string // set by the matched route's handler
	status      int
	wroteHeader bool
	swallow     bool // the mux's own body is being replaced
}

func (rec *recorder) WriteHeader(code int) {
	if rec.wroteHeader {
		return
	}
	rec.wroteHeader = true
	if rec.route == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		rec.swallow = true
		allow := rec.Header().Get("Allow")
		rec.Header().Del("Allow")
		err := rec.s.authenticate(rec.r)
		if err == nil {
			if code == http.StatusNotFound {
				err = notFoundf("no such endpoint: %s %s", rec.r.Method, rec.r.URL.Path)
			} else {
				err = &httpError{
					status:  http.StatusMethodNotAllowed,
					title:   "Method not allowed",
					details: fmt.Sprintf("%s is not allowed on %s; allowed: %s", rec.r.Method, rec.r.URL.Path, allow),
					header:  http.Header{"Allow": {allow}},
				}
			}
		}
		status, body, h := errorResponse(err)
		rec.status = status
		writeErrorBody(rec.ResponseWriter, status, body, h)
		return
	}
	rec.status = code
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.swallow {
		return len(p), nil
	}
	return rec.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (s *server) info(w http.ResponseWriter, r *http.Request) error {
	var info Info
	if s.cfg.Info != nil {
		info = s.cfg.Info()
	}
	if info.Product == "" {
		info.Product = "Meshfed"
	}
	if info.Role == "" {
		info.Role = string(s.cfg.Role)
	}
	return writeValue(w, r, http.StatusOK, info)
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeText(w, http.StatusOK, "ok")
	return nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, err.Error())
			return nil
		}
	}
	writeText(w, http.StatusOK, "ok")
	return nil
}

// writeText answers the health endpoints: plain text, never cached. They
// are the one exception to the JSON error shape, as probes read only the
// status and people read the text.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Metrics == nil {
		return notFoundf("metrics are not served by this API")
	}
	s.cfg.Metrics.ServeHTTP(w, r)
	return nil
}
