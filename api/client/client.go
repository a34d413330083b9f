// Package client is the Go client of Meshfed's HTTP API (package api/rest),
// shared by meshctl, the end-to-end tests and anything else that talks to a
// global or zone control plane over HTTP.
//
// Where it sits in the data flow: meshctl → Client → HTTP API (either role)
// → the role's store. It speaks the same Kuma universal format as the
// server (api.DecodeJSON for every resource it reads) and maps HTTP statuses
// back to the api package's errors, so callers branch on the same states as
// code that uses a store directly:
//
//	400 → *api.ValidationError (every cause, with its field path)
//	401 → *UnauthorizedError
//	404 → errors.Is(err, api.ErrNotFound), with the server's message
//	405 → *api.ReadOnlyError (the type is owned by the other role)
//	409 → *api.ConflictError
//	503 → *api.UnavailableError with RetryAfter
//	else → *StatusError
//
// Every call is idempotent (GET, PUT, DELETE), so the client retries on 503
// and on refused or reset connections, with jittered backoff and within a
// total deadline (RetryPolicy). It never retries a 4xx.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/api"
)

// DefaultUserAgent is sent when no WithUserAgent option is given.
const DefaultUserAgent = "meshfed-client"

// maxResponseBytes bounds a response body read into memory.
const maxResponseBytes = 256 << 20

// RetryPolicy says how a call is retried. Zero fields take their defaults.
type RetryPolicy struct {
	// Disabled turns retries off: every call makes one attempt.
	Disabled bool
	// Deadline bounds the retrying of one call: no new attempt starts, and
	// no wait is begun, that would end later than Deadline after the call
	// began. It does not cut short an attempt in flight (use the context or
	// the HTTP client's timeout for that). Default 10s.
	Deadline time.Duration
	// BaseDelay is the first backoff; each further retry doubles it up to
	// MaxDelay. The actual wait is jittered between half and all of it.
	// Defaults 100ms and 2s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter caps the wait a server asks for with Retry-After.
	// Default 5s.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is the policy of a client made without WithRetry.
var DefaultRetryPolicy = RetryPolicy{
	Deadline:      10 * time.Second,
	BaseDelay:     100 * time.Millisecond,
	MaxDelay:      2 * time.Second,
	MaxRetryAfter: 5 * time.Second,
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.Deadline <= 0 {
		p.Deadline = d.Deadline
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = d.MaxRetryAfter
	}
	return p
}

// backoff is the jittered wait before retry number n (0-based).
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.BaseDelay
	for i := 0; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (transport, TLS, timeouts). The
// default is a client with no overall timeout on http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithRetry sets the retry policy.
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p.withDefaults() } }

// WithRetryTimeout sets only the retry deadline (RetryPolicy.Deadline) and
// keeps the rest of the current policy. Zero or less keeps the default.
func WithRetryTimeout(d time.Duration) Option {
	return func(c *Client) {
		p := c.retry
		p.Deadline = d
		c.retry = p.withDefaults()
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// Client talks to one control plane's HTTP API. It is safe for concurrent
// use.
type Client struct {
	base      *url.URL
	token     string
	http      *http.Client
	retry     RetryPolicy
	userAgent string
}

// New returns a client of the API at baseURL ("http://127.0.0.1:5681", a
// path prefix is kept). token is sent as "Authorization: Bearer TOKEN"
// unless it is empty.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q must be http:// or https:// with a host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: base URL %q must not have a query or fragment", baseURL)
	}
	c := &Client{
		base:      u,
		token:     token,
		http:      &http.Client{},
		retry:     DefaultRetryPolicy,
		userAgent: DefaultUserAgent,
	}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	return c, nil
}

// request is one API call, replayable across retries.
type request struct {
	method   string
	segments []string // path segments, unescaped
	query    url.Values
	header   http.Header
	body     []byte
	typ      string // the resource type the URL names, for *api.ReadOnlyError
}

// response is a successful (2xx) answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (c *Client) url(segments []string, query url.Values) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(c.base.String(), "/"))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(segments) == 0 {
		b.WriteByte('/')
	}
	if q := query.Encode(); q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
	return b.String()
}

// do sends req, retrying as the policy allows, and returns a 2xx response
// or the mapped error.
func (c *Client) do(ctx context.Context, req request) (*response, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, req)
		if err == nil {
			return resp, nil
		}
		if c.retry.Disabled {
			return nil, err
		}
		if ctx.Err() != nil {
			if errors.Is(err, ctx.Err()) {
				return nil, err // the attempt itself was cut short
			}
			// The context ended as the attempt failed: say both.
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		}
		wait, ok := c.retryWait(err, attempt)
		if !ok || time.Since(start)+wait > c.retry.Deadline {
			return nil, err
		}
		if d, has := ctx.Deadline(); has && time.Until(d) < wait {
			return nil, err // the context would end during the wait
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// retryWait says whether err is worth another attempt and how long to wait.
func (c *Client) retryWait(err error, attempt int) (time.Duration, bool) {
	var ue *api.UnavailableError
	if errors.As(err, &ue) {
		if ue.RetryAfter > 0 {
			return min(ue.RetryAfter, c.retry.MaxRetryAfter), true
		}
		return c.retry.backoff(attempt), true
	}
	var te *transportError
	if errors.As(err, &te) && retryableTransport(te.err) {
		return c.retry.backoff(attempt), true
	}
	return 0, false
}

// retryableTransport: the request did not reach a handler, or the
// connection broke; both are safe to repeat for idempotent calls.
func retryableTransport(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// transportError marks an error from the HTTP round trip (no status).
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// once makes one attempt.
func (c *Client) once(ctx context.Context, req request) (*response, error) {
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.url(req.segments, req.query), body)
	if err != nil {
		return nil, err
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if hr.Header.Get("Accept") == "" {
		hr.Header.Set("Accept", "application/json")
	}
	if req.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	hr.Header.Set("User-Agent", c.userAgent)
	hresp, err := c.http.Do(hr)
	if err != nil {
		return nil, &transportError{err: err}
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, &transportError{err: fmt.Errorf("%s %s: reading the response: %w", req.method, hr.URL.Path, err)}
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("%s %s: response larger than %d bytes", req.method, hr.URL.Path, maxResponseBytes)
	}
	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		return nil, statusError(req, hresp, data)
	}
	return &response{status: hresp.StatusCode, header: hresp.Header, body: data}, nil
}

// parseRetryAfter reads Retry-After: delay seconds or an HTTP date.
func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
