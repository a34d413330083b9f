package rest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/rest"
)

const testToken = "s3cret-token"

// env is one API server over a fake store, with a client.
type env struct {
	t      *testing.T
	store  *fakeStore
	srv    *httptest.Server
	client *client.Client
	reg    *prometheus.Registry
	logs   *syncBuffer
	hits   *hitCounter
}

// newEnv starts a global-role API with authentication, metrics and a
// Debug logger; mutate adjusts the config first.
func newEnv(t *testing.T, mutate func(*rest.Config)) *env {
	t.Helper()
	e := &env{t: t, store: newFakeStore(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}, hits: &hitCounter{}}
	cfg := rest.Config{
		Role:         api.RoleGlobal,
		Store:        e.store,
		Info:         func() rest.Info { return rest.Info{Tagline: "test", Version: "1.2.3", InstanceID: "node-1"} },
		Authenticate: func(tok string) bool { return tok == testToken },
		Metrics:      promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}),
		Registerer:   e.reg,
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := rest.NewHandler(cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	e.srv = httptest.NewServer(e.hits.wrap(h))
	t.Cleanup(e.srv.Close)
	e.client = e.newClient(testToken)
	return e
}

// newClient returns a client of e's server with fast retries.
func (e *env) newClient(token string, opts ...client.Option) *client.Client {
	e.t.Helper()
	opts = append([]client.Option{client.WithRetry(client.RetryPolicy{
		Deadline: 5 * time.Second, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		MaxRetryAfter: 50 * time.Millisecond,
	})}, opts...)
	c, err := client.New(e.srv.URL, token, opts...)
	if err != nil {
		e.t.Fatalf("client.New: %v", err)
	}
	return c
}

// reply is a raw HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) text() string { return string(r.body) }

// errorBody decodes the API's error shape.
func (r reply) errorBody(t *testing.T) rest.ErrorBody {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json (body %s)", ct, r.body)
	}
	var b rest.ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if b.Title == "" || b.Details == "" {
		t.Fatalf("error body lacks title or details: %s", r.body)
	}
	return b
}

// noAuth as the Authorization header value sends none.
const noAuth = "-"

// do sends a raw request; headers are name, value pairs. The test token is
// sent unless an Authorization header is given (noAuth sends none).
func (e *env) do(method, path, body string, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Authorization" && headers[i+1] == noAuth {
			req.Header.Del("Authorization")
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// expectStatus fails unless r has the status.
func expectStatus(t *testing.T, r reply, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body: %s", r.status, want, r.body)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// Fixtures. Each builder returns a fresh resource.

func mesh(name string, labels map[string]string) *api.Resource {
	return &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: name, Labels: labels}, Spec: &api.MeshSpec{}}
}

func zone(name string) *api.Resource {
	return &api.Resource{Meta: api.Meta{Type: api.TypeZone, Name: name}, Spec: &api.ZoneSpec{Network: "net-a"}}
}

const secretValue = "the-secret-value-1234"

var secretData = base64.StdEncoding.EncodeToString([]byte(secretValue))

func secret(meshName, name string) *api.Resource {
	return &api.Resource{Meta: api.Meta{Type: api.TypeSecret, Mesh: meshName, Name: name},
		Spec: &api.SecretSpec{Data: secretData}}
}

// meshTimeoutYAML is a policy with its fields under "spec".
const meshTimeoutYAML = `
type: MeshTimeout
name: timeouts
mesh: default
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
`

func meshTimeout(t *testing.T) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(meshTimeoutYAML))
	if err != nil {
		t.Fatalf("fixture MeshTimeout no longer decodes (update it to the schema): %v", err)
	}
	check := *r
	if err := api.Prepare(&check); err != nil {
		t.Fatalf("fixture MeshTimeout no longer validates (update it to the schema): %v", err)
	}
	return r
}

func toJSON(t *testing.T, r *api.Resource) string {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hitCounter counts the requests that reach the server.
type hitCounter struct {
	mu sync.Mutex
	n  int
}

func (h *hitCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (h *hitCounter) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
