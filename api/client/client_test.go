package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
)

// fast is a retry policy for tests: short waits, a short deadline.
var fast = client.RetryPolicy{
	Deadline: 3 * time.Second, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond,
	MaxRetryAfter: 20 * time.Millisecond,
}

// answer is one canned HTTP response.
type answer struct {
	status int
	header map[string]string
	body   string
}

// script serves its answers in order (the last one repeats) and records
// each request.
type script struct {
	mu       sync.Mutex
	answers  []answer
	requests []recorded
}

type recorded struct {
	method, path, query, body string
	header                    http.Header
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Clone()})
	a := s.answers[min(len(s.requests), len(s.answers))-1]
	s.mu.Unlock()
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *script) request(i int) recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[i]
}

func serve(t *testing.T, answers ...answer) (*script, string) {
	t.Helper()
	s := &script{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func newClient(t *testing.T, base string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(base, "tok", append([]client.Option{client.WithRetry(fast)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

const meshBody = `{"type":"Mesh","name":"default"}`

var meshKey = api.Key{Type: api.TypeMesh, Name: "default"}

func TestNew(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:5681", true},
		{"https://cp.example:5682/prefix/", true},
		{"127.0.0.1:5681", false},
		{"ftp://host", false},
		{"http://", false},
		{"http://host/?q=1", false},
		{"http://host/#frag", false},
		{"http://[::1", false},
	}
	for _, tt := range tests {
		_, err := client.New(tt.url, "")
		if (err == nil) != tt.ok {
			t.Errorf("New(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestRequestShape(t *testing.T) {
	s, base := serve(t, answer{200, map[string]string{"ETag": `"42"`}, meshBody})
	c := newClient(t, base+"/api/", client.WithUserAgent("meshctl/test"))
	res, err := c.Get(testCtx(t), meshKey, client.GetOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 42 || res.Name != "default" {
		t.Fatalf("Get = %+v", res.Meta)
	}
	r := s.request(0)
	if r.method != "GET" || r.path != "/api/meshes/default" || r.query != "consistent=true" {
		t.Fatalf("request = %s %s?%s", r.method, r.path, r.query)
	}
	for k, want := range map[string]string{"Authorization": "Bearer tok", "User-Agent": "meshctl/test", "Accept": "application/json"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// No token, no Authorization header.
	c2, _ := client.New(base, "")
	if _, err := c2.Get(testCtx(t), meshKey); err != nil {
		t.Fatal(err)
	}
	if h := s.request(1).header.Get("Authorization"); h != "" {
		t.Fatalf("Authorization = %q with no token", h)
	}
}

func TestPaths(t *testing.T) {
	s, base := serve(t, answer{200, nil, `{"total":0,"items":[],"next":null}`})
	c := newClient(t, base)
	cx := testCtx(t)
	tests := []struct {
		typ, mesh string
		opts      client.ListOptions
		path      string
		query     string
	}{
		{api.TypeMesh, "", client.ListOptions{}, "/meshes", ""},
		{api.TypeZone, "", client.ListOptions{Size: 5, Offset: 10}, "/zones", "offset=10&size=5"},
		{api.TypeSecret, "default", client.ListOptions{NameContains: "ca"}, "/meshes/default/secrets", "nameContains=ca"},
		{api.TypeDataplane, "", client.ListOptions{Labels: map[string]string{"team": "a"}}, "/dataplanes", "filter%5Blabels.team%5D=a"},
		{api.TypeTrafficTrace, "m", client.ListOptions{Consistent: true}, "/meshes/m/traffic-traces", "consistent=true"},
	}
	for i, tt := range tests {
		if _, err := c.List(cx, tt.typ, tt.mesh, tt.opts); err != nil {
			t.Fatal(err)
		}
		if r := s.request(i); r.path != tt.path || r.query != tt.query {
			t.Errorf("List(%s, %q) = %s?%s, want %s?%s", tt.typ, tt.mesh, r.path, r.query, tt.path, tt.query)
		}
	}

	bad := []struct {
		name string
		call func() error
	}{
		{"unknown type", func() error { _, err := c.Get(cx, api.Key{Type: "Nope", Name: "x"}); return err }},
		{"mesh-scoped without mesh", func() error { _, err := c.Get(cx, api.Key{Type: api.TypeSecret, Name: "x"}); return err }},
		{"global with mesh", func() error { _, err := c.Get(cx, api.Key{Type: api.TypeZone, Mesh: "m", Name: "x"}); return err }},
		{"empty name", func() error { return c.Delete(cx, api.Key{Type: api.TypeMesh}, client.DeleteOptions{}) }},
		{"dot-dot name", func() error { _, err := c.Get(cx, api.Key{Type: api.TypeMesh, Name: ".."}); return err }},
		{"list global in a mesh", func() error { _, err := c.List(cx, api.TypeZone, "m", client.ListOptions{}); return err }},
	}
	before := s.count()
	for _, b := range bad {
		if err := b.call(); err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
	if s.count() != before {
		t.Fatal("an invalid key was sent")
	}
}

func TestPut(t *testing.T) {
	s, base := serve(t,
		answer{201, map[string]string{"ETag": `"7"`}, meshBody},
		answer{200, map[string]string{"ETag": `"8"`}, meshBody},
		answer{200, nil, meshBody},
	)
	c := newClient(t, base)
	cx := testCtx(t)
	r := &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: "default", Revision: 3}, Spec: &api.MeshSpec{}}

	stored, created, err := c.Put(cx, r, client.PutOptions{})
	if err != nil || !created || stored.Revision != 7 {
		t.Fatalf("create = %+v %v %v", stored, created, err)
	}
	if rq := s.request(0); rq.method != "PUT" || rq.path != "/meshes/default" || rq.header.Get("If-Match") != "" ||
		rq.header.Get("Content-Type") != "application/json" || !strings.Contains(rq.body, `"name":"default"`) {
		t.Fatalf("request = %+v", rq)
	}

	_, created, err = c.Put(cx, r, client.PutOptions{ExpectRevision: 7})
	if err != nil || created {
		t.Fatalf("update = %v %v", created, err)
	}
	if h := s.request(1).header.Get("If-Match"); h != `"7"` {
		t.Fatalf("If-Match = %q", h)
	}

	dry, _, err := c.Put(cx, r, client.PutOptions{DryRun: true})
	if err != nil || dry.Revision != 0 || s.request(2).query != "dryRun=true" {
		t.Fatalf("dry run = %+v %v, query %q", dry, err, s.request(2).query)
	}

	if err := c.Delete(cx, meshKey, client.DeleteOptions{ExpectRevision: 9}); err != nil {
		t.Fatal(err)
	}
	if rq := s.request(3); rq.method != "DELETE" || rq.header.Get("If-Match") != `"9"` {
		t.Fatalf("delete request = %+v", rq)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name  string
		ans   answer
		check func(t *testing.T, err error)
	}{
		{"400 with causes", answer{400, nil, `{"title":"Invalid request","details":"a: x; b: y","causes":[{"field":"a","message":"x"},{"field":"b","message":"y"}]}`},
			func(t *testing.T, err error) {
				var ve *api.ValidationError
				if !errors.As(err, &ve) || len(ve.Errors) != 2 || ve.Errors[1] != (api.FieldError{Field: "b", Message: "y"}) {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"400 without causes", answer{400, nil, `{"title":"Bad","details":"broken"}`},
			func(t *testing.T, err error) {
				var ve *api.ValidationError
				if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Message != "broken" {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"401", answer{401, nil, `{"title":"Unauthorized","details":"bad token"}`},
			func(t *testing.T, err error) {
				var ue *client.UnauthorizedError
				if !errors.As(err, &ue) || ue.Message != "bad token" {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"404", answer{404, nil, `{"title":"Not found","details":"Mesh \"default\": not found"}`},
			func(t *testing.T, err error) {
				if !errors.Is(err, api.ErrNotFound) || !api.IsNotFound(err) || err.Error() != `Mesh "default": not found` {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"405 read-only", answer{405, nil, `{"title":"Read-only","details":"...","owner":"zone"}`},
			func(t *testing.T, err error) {
				var ro *api.ReadOnlyError
				if !errors.As(err, &ro) || ro.Type != api.TypeMesh || ro.Owner != api.RoleZone {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"405 method", answer{405, nil, `{"title":"Method not allowed","details":"POST is not allowed"}`},
			func(t *testing.T, err error) {
				var se *client.StatusError
				if !errors.As(err, &se) || se.StatusCode != 405 {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"409", answer{409, nil, `{"title":"Conflict","details":"stale revision"}`},
			func(t *testing.T, err error) {
				var ce *api.ConflictError
				if !errors.As(err, &ce) || ce.Reason != "stale revision" {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"413", answer{413, nil, `{"title":"Request body too large","details":"over 1048576 bytes"}`},
			func(t *testing.T, err error) {
				var se *client.StatusError
				if !errors.As(err, &se) || se.StatusCode != 413 || !strings.Contains(err.Error(), "1048576") {
					t.Fatalf("%T %v", err, err)
				}
			}},
		{"500 plain text", answer{500, map[string]string{"Content-Type": "text/plain"}, "boom\n"},
			func(t *testing.T, err error) {
				var se *client.StatusError
				if !errors.As(err, &se) || se.StatusCode != 500 || se.Details != "boom" || se.Path != "/meshes/default" {
					t.Fatalf("%T %+v", err, err)
				}
			}},
		{"2xx with a bad body", answer{200, nil, `{"type":"Nope"}`},
			func(t *testing.T, err error) {
				if err == nil {
					t.Fatal("no error")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := serve(t, tt.ans)
			_, err := newClient(t, base).Get(testCtx(t), meshKey)
			tt.check(t, err)
			if s.count() != 1 {
				t.Fatalf("%d requests: a %d was retried", s.count(), tt.ans.status)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	unavailable := answer{503, map[string]string{"Retry-After": "0"}, `{"title":"Unavailable","details":"no leader"}`}
	ok := answer{200, nil, meshBody}

	t.Run("503 then success", func(t *testing.T) {
		s, base := serve(t, unavailable, unavailable, ok)
		if _, err := newClient(t, base).Get(testCtx(t), meshKey); err != nil {
			t.Fatal(err)
		}
		if s.count() != 3 {
			t.Fatalf("%d attempts, want 3", s.count())
		}
	})
	t.Run("Retry-After is capped", func(t *testing.T) {
		long := answer{503, map[string]string{"Retry-After": "3600"}, `{"title":"Unavailable","details":"x"}`}
		s, base := serve(t, long, ok)
		start := time.Now()
		if _, err := newClient(t, base).Get(testCtx(t), meshKey); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second || s.count() != 2 {
			t.Fatalf("took %v and %d attempts", d, s.count())
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		s, base := serve(t, unavailable)
		p := fast
		p.Deadline = 200 * time.Millisecond
		p.BaseDelay, p.MaxDelay = 20*time.Millisecond, 40*time.Millisecond
		start := time.Now()
		_, err := newClient(t, base, client.WithRetry(p)).Get(testCtx(t), meshKey)
		var ue *api.UnavailableError
		if !errors.As(err, &ue) || ue.Reason != "no leader" {
			t.Fatalf("%T %v", err, err)
		}
		if d := time.Since(start); d > time.Second || s.count() < 2 {
			t.Fatalf("took %v with %d attempts", d, s.count())
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s, base := serve(t, unavailable, ok)
		_, err := newClient(t, base, client.WithRetry(client.RetryPolicy{Disabled: true})).Get(testCtx(t), meshKey)
		var ue *api.UnavailableError
		if !errors.As(err, &ue) || s.count() != 1 {
			t.Fatalf("%v after %d attempts", err, s.count())
		}
	})
	t.Run("PUT body is sent again", func(t *testing.T) {
		s, base := serve(t, unavailable, answer{201, nil, meshBody})
		r := &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: "default"}, Spec: &api.MeshSpec{}}
		if _, created, err := newClient(t, base).Put(testCtx(t), r, client.PutOptions{}); err != nil || !created {
			t.Fatalf("%v %v", created, err)
		}
		if s.count() != 2 || s.request(0).body == "" || s.request(0).body != s.request(1).body {
			t.Fatalf("bodies %q and %q", s.request(0).body, s.request(1).body)
		}
	})
	t.Run("context canceled while waiting", func(t *testing.T) {
		s, base := serve(t, answer{503, map[string]string{"Retry-After": "5"}, `{"title":"Unavailable","details":"x"}`})
		p := fast
		p.MaxRetryAfter = time.Minute
		p.Deadline = time.Minute
		cx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, err := newClient(t, base, client.WithRetry(p)).Get(cx, meshKey)
			errc <- err
		}()
		waitFor(t, "the first attempt", func() bool { return s.count() > 0 })
		// The server has the request; give the client time to read the
		// answer and start its 5 s wait (cancelling the attempt itself is
		// another case).
		time.Sleep(100 * time.Millisecond)
		cancel()
		err := <-errc
		var ue *api.UnavailableError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &ue) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("context deadline before the wait ends", func(t *testing.T) {
		s, base := serve(t, answer{503, map[string]string{"Retry-After": "5"}, `{"title":"Unavailable","details":"x"}`})
		p := fast
		p.MaxRetryAfter = time.Minute
		p.Deadline = time.Minute
		cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := newClient(t, base, client.WithRetry(p)).Get(cx, meshKey)
		var ue *api.UnavailableError
		if !errors.As(err, &ue) || s.count() != 1 || time.Since(start) > time.Second {
			t.Fatalf("%v after %d attempts and %v", err, s.count(), time.Since(start))
		}
	})
}

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// countingTransport counts round trips.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestRetryConnectionRefused(t *testing.T) {
	// Find a free port, and keep it closed until the client has failed
	// to connect a few times.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ct := &countingTransport{}
	c := newClient(t, "http://"+addr, client.WithHTTPClient(&http.Client{Transport: ct}))
	type result struct {
		info *client.Info
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := c.Info(testCtx(t))
		done <- result{info, err}
	}()

	waitFor(t, "three refused attempts", func() bool { return ct.n.Load() >= 3 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"product":"Meshfed","role":"zone"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	res := <-done
	if res.err != nil || res.info.Role != "zone" {
		t.Fatalf("Info = %+v, %v", res.info, res.err)
	}
}

func TestListAll(t *testing.T) {
	page := func(names []string, next string) answer {
		var items []string
		for _, n := range names {
			items = append(items, `{"type":"Mesh","name":"`+n+`"}`)
		}
		nx := "null"
		if next != "" {
			nx = `"` + next + `"`
		}
		return answer{200, nil, `{"total":5,"items":[` + strings.Join(items, ",") + `],"next":` + nx + `,"revisions":[1,2]}`}
	}
	s, base := serve(t,
		page([]string{"a", "b"}, "/meshes?offset=2&size=2&filter%5Blabels.x%5D=y"),
		page([]string{"c", "d"}, "/meshes?offset=4&size=2&filter%5Blabels.x%5D=y"),
		page([]string{"e"}, ""),
	)
	c := newClient(t, base+"/prefix")
	items, err := c.ListAll(testCtx(t), api.TypeMesh, "", client.ListOptions{Size: 2, Labels: map[string]string{"x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range items {
		names = append(names, it.Name)
	}
	if strings.Join(names, ",") != "a,b,c,d,e" || items[1].Revision != 2 {
		t.Fatalf("items = %v", names)
	}
	for i := 1; i < 3; i++ {
		if r := s.request(i); r.path != "/prefix/meshes" || !strings.Contains(r.query, "offset=") || !strings.Contains(r.query, "labels.x") {
			t.Fatalf("page %d request = %s?%s", i, r.path, r.query)
		}
	}

	t.Run("a server that never ends", func(t *testing.T) {
		_, base := serve(t, answer{200, nil, `{"total":1,"items":[],"next":"/meshes?offset=0"}`})
		if _, err := newClient(t, base).ListAll(testCtx(t), api.TypeMesh, "", client.ListOptions{}); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestTypesAndInfo(t *testing.T) {
	_, base := serve(t,
		answer{200, nil, `{"resources":[{"name":"Mesh","path":"meshes","scope":"global","owner":"global","fanOut":true,"inline":true}]}`},
		answer{200, nil, `{"product":"Meshfed","version":"1.0","role":"global","instanceId":"i","clusterId":"c","tagline":"t"}`},
	)
	c := newClient(t, base)
	types, err := c.Types(testCtx(t))
	want := client.ResourceType{Name: "Mesh", Path: "meshes", Scope: api.ScopeGlobal, Owner: api.RoleGlobal, FanOut: true, Inline: true}
	if err != nil || len(types) != 1 || types[0] != want {
		t.Fatalf("Types = %+v, %v", types, err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil || *info != (client.Info{Product: "Meshfed", Tagline: "t", Version: "1.0", Role: "global", InstanceID: "i", ClusterID: "c"}) {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

func TestWithRetryTimeout(t *testing.T) {
	s, base := serve(t, answer{503, map[string]string{"Retry-After": "0"}, `{"title":"Unavailable","details":"x"}`})
	c, err := client.New(base, "", client.WithRetryTimeout(150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Info(testCtx(t))
	var ue *api.UnavailableError
	if !errors.As(err, &ue) || time.Since(start) > 2*time.Second || s.count() < 2 {
		t.Fatalf("%v after %v and %d attempts", err, time.Since(start), s.count())
	}
}

func TestGlobalStatus(t *testing.T) {
	s, base := serve(t,
		answer{503, map[string]string{"Retry-After": "1"}, `{"title":"Unavailable","details":"no Raft leader (election in progress)"}`},
		answer{200, nil, `{"node":"g2","clusterId":"c-1","leader":"g1","members":[
			{"id":"g1","apiAddress":"127.0.0.1:5681","raftAddress":"127.0.0.1:5690","gossipState":"alive","inRaft":true,"voter":true,
			 "raft":{"role":"leader","term":"3","leader":"g1","appliedIndex":12,"commitIndex":12,"lastIndex":12,"revision":12}},
			{"id":"g3","gossipState":"dead","inRaft":true,"voter":true,"error":"connection refused"}]}`},
	)
	c := newClient(t, base)
	st, err := c.GlobalStatus(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.count() != 2 {
		t.Errorf("%d requests, want a retry after the 503", s.count())
	}
	if r := s.request(1); r.method != http.MethodGet || r.path != "/global/status" || r.header.Get("Authorization") != "Bearer tok" {
		t.Errorf("request %+v", r)
	}
	if st.Node != "g2" || st.ClusterID != "c-1" || st.Leader != "g1" || len(st.Members) != 2 {
		t.Fatalf("status %+v", st)
	}
	g1, g3 := st.Members[0], st.Members[1]
	if g1.Raft == nil || g1.Raft.Role != "leader" || g1.Raft.AppliedIndex != 12 || !g1.Voter || g1.APIAddr != "127.0.0.1:5681" {
		t.Errorf("g1 %+v (raft %+v)", g1, g1.Raft)
	}
	if g3.Raft != nil || g3.Error != "connection refused" || g3.GossipState != "dead" {
		t.Errorf("g3 %+v", g3)
	}

	// 401 maps to *UnauthorizedError, never retried.
	s, base = serve(t, answer{401, nil, `{"title":"Unauthorized","details":"this endpoint requires a token"}`})
	_, err = newClient(t, base).GlobalStatus(testCtx(t))
	var ue *client.UnauthorizedError
	if !errors.As(err, &ue) || s.count() != 1 {
		t.Fatalf("401: %v after %d requests", err, s.count())
	}
	// A body that is not the status is an error, not an empty status.
	_, base = serve(t, answer{200, nil, `[1,2]`})
	if _, err := newClient(t, base).GlobalStatus(testCtx(t)); err == nil || !strings.Contains(err.Error(), "/global/status") {
		t.Fatalf("malformed answer: %v", err)
	}
}

func TestZoneOverviews(t *testing.T) {
	s, base := serve(t,
		answer{200, nil, `{"total":3,"items":[{"type":"ZoneOverview","name":"zone-1","zone":{"enabled":true},"zoneInsight":{},
			"status":{"online":true,"enabled":true,"network":"zone-1","replicas":1,"ackedRevision":9,"latestRevision":9,"lagRevisions":0,"lagSeconds":0,"rejected":[]}},
			{"type":"ZoneOverview","name":"zone-2","zone":{},"zoneInsight":{},"status":{"lagRevisions":4}}],
			"next":"/zones+insights?offset=2&size=2","revisions":[3,4]}`},
		answer{200, nil, `{"total":3,"items":[{"type":"ZoneOverview","name":"zone-3","zone":{},"zoneInsight":{},"status":{}}],"next":null,"revisions":[5]}`},
	)
	c := newClient(t, base+"/prefix")
	items, err := c.ZoneOverviews(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || items[0].Name != "zone-1" || !items[0].Status.Online || items[1].Status.LagRevisions != 4 || items[2].Name != "zone-3" {
		t.Fatalf("items = %+v", items)
	}
	if r := s.request(0); r.method != http.MethodGet || r.path != "/prefix/zones+insights" || r.header.Get("Authorization") != "Bearer tok" {
		t.Errorf("first request %+v", r)
	}
	if r := s.request(1); r.path != "/prefix/zones+insights" || !strings.Contains(r.query, "offset=2") {
		t.Errorf("second request %s?%s", r.path, r.query)
	}
}

func TestZoneOverviewAndResourceStatus(t *testing.T) {
	s, base := serve(t,
		answer{200, nil, `{"type":"ZoneOverview","name":"zone-1","zone":{"enabled":false},"zoneInsight":{"ackedRevision":7},
			"status":{"enabled":false,"offlineReason":"disabled","ackedRevision":7,"rejected":[{"type":"MeshTimeout","mesh":"m","name":"t","revision":6,"reason":"bad"}]}}`},
		answer{404, nil, `{"title":"Not found","details":"zone \"nope\": not found"}`},
		answer{200, nil, `{"type":"MeshTimeout","mesh":"default","name":"t","revision":6,"summary":{"rejected":1},
			"zones":[{"zone":"zone-1","status":"rejected","online":true,"enabled":true,"ackedRevision":7,"reason":"bad"}]}`},
		answer{200, nil, `{"type":"Zone","name":"zone-1","revision":2,"summary":{"notSent":1,"appliedEverywhere":true},"zones":[]}`},
	)
	c := newClient(t, base)
	ov, err := c.ZoneOverview(testCtx(t), "zone-1")
	if err != nil {
		t.Fatal(err)
	}
	if ov.Zone.IsEnabled() || ov.Status.AckedRevision != 7 || len(ov.Status.Rejected) != 1 || ov.Status.Rejected[0].Reason != "bad" {
		t.Errorf("overview %+v", ov)
	}
	if r := s.request(0); r.path != "/zones/zone-1/_overview" {
		t.Errorf("overview path %s", r.path)
	}
	if _, err := c.ZoneOverview(testCtx(t), "nope"); !api.IsNotFound(err) {
		t.Errorf("unknown zone: %v", err)
	}
	if _, err := c.ZoneOverview(testCtx(t), ".."); err == nil {
		t.Error("a dot-dot zone name was sent")
	}

	st, err := c.ResourceStatus(testCtx(t), api.Key{Type: api.TypeMeshTimeout, Mesh: "default", Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 6 || len(st.Zones) != 1 || st.Zones[0].Status != api.ResourceRejected || st.Summary.Rejected != 1 {
		t.Errorf("status %+v", st)
	}
	if r := s.request(2); r.path != "/meshes/default/meshtimeouts/t/_status" {
		t.Errorf("status path %s", r.path)
	}
	if _, err := c.ResourceStatus(testCtx(t), api.Key{Type: api.TypeZone, Name: "zone-1"}); err != nil {
		t.Fatal(err)
	}
	if r := s.request(3); r.path != "/zones/zone-1/_status" {
		t.Errorf("status path %s", r.path)
	}
	if _, err := c.ResourceStatus(testCtx(t), api.Key{Type: api.TypeMeshTimeout, Name: "t"}); err == nil {
		t.Error("a mesh-scoped key without a mesh was sent")
	}
	if s.count() != 4 {
		t.Errorf("%d requests, want 4", s.count())
	}
}
