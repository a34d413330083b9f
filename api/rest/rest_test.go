package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/rest"
)

func TestConfigValidate(t *testing.T) {
	store := newFakeStore()
	tests := []struct {
		name string
		cfg  rest.Config
		want string // substring of the error; "" for valid
	}{
		{"valid", rest.Config{Role: api.RoleGlobal, Store: store}, ""},
		{"zone role", rest.Config{Role: api.RoleZone, Store: store, MaxBodyBytes: 10}, ""},
		{"no role", rest.Config{Store: store}, "Role must be set"},
		{"bad role", rest.Config{Role: "leader", Store: store}, `not "leader"`},
		{"no store", rest.Config{Role: api.RoleGlobal}, "Store must be set"},
		{"negative body limit", rest.Config{Role: api.RoleGlobal, Store: store, MaxBodyBytes: -1}, "MaxBodyBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, herr := rest.NewHandler(tt.cfg)
			if tt.want == "" {
				if err != nil || herr != nil {
					t.Fatalf("Validate = %v, NewHandler = %v; want no error", err, herr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if herr == nil {
				t.Fatal("NewHandler accepted an invalid config")
			}
		})
	}
}

func TestSharedRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := rest.NewHandler(rest.Config{Role: api.RoleGlobal, Store: newFakeStore(), Registerer: reg}); err != nil {
			t.Fatalf("handler %d: %v", i, err)
		}
	}
}

func TestPublicEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		path   string
		status int
		body   string // exact body; "" to skip
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ok"},
		{"/", 200, ""},
		{"/metrics", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := e.do("GET", tt.path, "", "Authorization", noAuth)
			expectStatus(t, r, tt.status)
			if tt.body != "" && r.text() != tt.body {
				t.Fatalf("body = %q, want %q", r.body, tt.body)
			}
		})
	}

	info, err := e.newClient("").Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := client.Info{Product: "Meshfed", Tagline: "test", Version: "1.2.3", Role: "global", InstanceID: "node-1"}
	if *info != want {
		t.Fatalf("Info = %+v, want %+v", *info, want)
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t, func(c *rest.Config) { c.Ready = func() error { return errors.New("no Raft leader yet") } })
	r := e.do("GET", "/readyz", "", "Authorization", noAuth)
	expectStatus(t, r, http.StatusServiceUnavailable)
	if r.text() != "no Raft leader yet" {
		t.Fatalf("body = %q", r.body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	t.Run("authenticated when asked", func(t *testing.T) {
		e := newEnv(t, func(c *rest.Config) { c.MetricsAuth = true })
		expectStatus(t, e.do("GET", "/metrics", "", "Authorization", noAuth), http.StatusUnauthorized)
		expectStatus(t, e.do("GET", "/metrics", ""), http.StatusOK)
	})
	t.Run("not configured", func(t *testing.T) {
		e := newEnv(t, func(c *rest.Config) { c.Metrics = nil })
		r := e.do("GET", "/metrics", "")
		expectStatus(t, r, http.StatusNotFound)
		r.errorBody(t)
	})
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	requests := []struct{ method, path string }{
		{"GET", "/_resources"},
		{"GET", "/meshes"},
		{"GET", "/meshes/default"},
		{"PUT", "/meshes/default"},
		{"DELETE", "/meshes/default"},
		{"GET", "/meshes/default/secrets"},
		{"GET", "/meshes/default/secrets/s"},
		{"GET", "/zones"},
		{"GET", "/dataplanes"},
		{"GET", "/no/such/endpoint/at/all"}, // unmatched: still 401
		{"POST", "/meshes/default"},         // wrong method: still 401
	}
	credentials := []struct {
		name, header string
		invalidToken bool
	}{
		{"none", noAuth, false},
		{"wrong token", "Bearer nope", true},
		{"wrong scheme", "Basic " + testToken, false},
		{"empty bearer", "Bearer ", false},
	}
	for _, rq := range requests {
		for _, cr := range credentials {
			t.Run(rq.method+" "+rq.path+" "+cr.name, func(t *testing.T) {
				r := e.do(rq.method, rq.path, "", "Authorization", cr.header)
				expectStatus(t, r, http.StatusUnauthorized)
				r.errorBody(t)
				challenge := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer") {
					t.Fatalf("WWW-Authenticate = %q", challenge)
				}
				if got := strings.Contains(challenge, "invalid_token"); got != cr.invalidToken {
					t.Fatalf("WWW-Authenticate = %q, invalid_token expected %v", challenge, cr.invalidToken)
				}
				if allow := r.header.Get("Allow"); allow != "" {
					t.Fatalf("401 leaks Allow: %q", allow)
				}
			})
		}
	}
	if e.store.callCount("Get")+e.store.callCount("List")+e.store.callCount("Put")+e.store.callCount("Delete") != 0 {
		t.Fatal("an unauthenticated request reached the store")
	}

	_, err := e.newClient("wrong").Get(ctx(t), api.Key{Type: api.TypeMesh, Name: "default"})
	var ue *client.UnauthorizedError
	if !errors.As(err, &ue) {
		t.Fatalf("client error = %T %v, want *client.UnauthorizedError", err, err)
	}

	t.Run("no Authenticate means no auth", func(t *testing.T) {
		e := newEnv(t, func(c *rest.Config) { c.Authenticate = nil })
		expectStatus(t, e.do("GET", "/meshes", "", "Authorization", noAuth), http.StatusOK)
	})
}

func TestResourceTypes(t *testing.T) {
	e := newEnv(t, nil)
	got, err := e.client.Types(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var want []client.ResourceType
	for _, d := range api.Types() {
		want = append(want, client.ResourceType{Name: d.Name, Path: d.Plural, Scope: d.Scope, Owner: d.Owner, FanOut: d.FanOut, Inline: d.Inline})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Types =\n%+v\nwant\n%+v", got, want)
	}
	// The raw document has the documented keys.
	r := e.do("GET", "/_resources", "")
	var raw struct {
		Resources []map[string]any `json:"resources"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw.Resources) == 0 {
		t.Fatalf("body %s: %v", r.body, err)
	}
	for _, k := range []string{"name", "path", "scope", "owner", "fanOut", "inline"} {
		if _, ok := raw.Resources[0][k]; !ok {
			t.Fatalf("entry lacks %q: %v", k, raw.Resources[0])
		}
	}
}

func TestMeshCRUD(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	key := api.Key{Type: api.TypeMesh, Name: "default"}

	stored, created, err := c.Put(cx, mesh("default", map[string]string{"team": "core"}), client.PutOptions{})
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	if stored.Revision == 0 || stored.Name != "default" || stored.Labels["team"] != "core" || stored.CreationTime.IsZero() {
		t.Fatalf("stored = %+v", stored.Meta)
	}
	rev1 := stored.Revision

	stored, created, err = c.Put(cx, mesh("default", map[string]string{"team": "edge"}), client.PutOptions{})
	if err != nil || created {
		t.Fatalf("update: created=%v err=%v", created, err)
	}
	if stored.Revision <= rev1 || stored.Labels["team"] != "edge" {
		t.Fatalf("updated = %+v", stored.Meta)
	}

	got, err := c.Get(cx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != stored.Revision || got.Labels["team"] != "edge" {
		t.Fatalf("Get = %+v, want revision %d", got.Meta, stored.Revision)
	}

	page, err := c.List(cx, api.TypeMesh, "", client.ListOptions{})
	if err != nil || page.Total != 1 || len(page.Items) != 1 || page.Items[0].Revision != stored.Revision {
		t.Fatalf("List = %+v, %v", page, err)
	}

	if err := c.Delete(cx, key, client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(cx, key); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Get after delete = %v, want ErrNotFound", err)
	}
	err = c.Delete(cx, key, client.DeleteOptions{})
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), `"default"`) {
		t.Fatalf("second delete = %v, want a not-found naming the mesh", err)
	}
}

func TestMeshScopedCRUD(t *testing.T) {
	tests := []struct {
		name     string
		resource func(t *testing.T) *api.Resource
	}{
		{"inline Secret", func(*testing.T) *api.Resource { return secret("default", "ca-cert") }},
		{"spec MeshTimeout", meshTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c, cx := e.client, ctx(t)
			r := tt.resource(t)

			if _, _, err := c.Put(cx, r, client.PutOptions{}); !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("put into a missing mesh = %v, want ErrNotFound", err)
			}
			if _, _, err := c.Put(cx, mesh("default", nil), client.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Put(cx, mesh("other", nil), client.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			stored, created, err := c.Put(cx, r, client.PutOptions{})
			if err != nil || !created || stored.Mesh != "default" || stored.Revision == 0 {
				t.Fatalf("create = %+v, %v, %v", stored, created, err)
			}
			inOther := tt.resource(t)
			inOther.Mesh = "other"
			if _, _, err := c.Put(cx, inOther, client.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, created, err := c.Put(cx, tt.resource(t), client.PutOptions{}); err != nil || created {
				t.Fatalf("update: created=%v err=%v", created, err)
			}

			got, err := c.Get(cx, r.Key())
			if err != nil || got.Type != r.Type || got.Mesh != "default" || got.Name != r.Name {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			page, err := c.List(cx, r.Type, "default", client.ListOptions{})
			if err != nil || page.Total != 1 {
				t.Fatalf("List in mesh = %+v, %v", page, err)
			}
			page, err = c.List(cx, r.Type, "", client.ListOptions{})
			if err != nil || page.Total != 2 || page.Items[0].Mesh != "default" || page.Items[1].Mesh != "other" {
				t.Fatalf("List across meshes = %+v, %v", page, err)
			}
			if _, err := c.List(cx, r.Type, "nope", client.ListOptions{}); !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("List in a missing mesh = %v, want ErrNotFound", err)
			}

			if err := c.Delete(cx, r.Key(), client.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(cx, r.Key()); !errors.Is(err, api.ErrNotFound) {
				t.Fatalf("Get after delete = %v", err)
			}
		})
	}
}

func TestGlobalScopedCRUD(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	z := zone("zone-1")
	if _, created, err := c.Put(cx, z, client.PutOptions{}); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	got, err := c.Get(cx, z.Key())
	if err != nil {
		t.Fatal(err)
	}
	if spec := got.Spec.(*api.ZoneSpec); spec.Network != "net-a" || !spec.IsEnabled() {
		t.Fatalf("zone spec = %+v", spec)
	}
	r := e.do("GET", "/zones", "")
	expectStatus(t, r, 200)
	if err := c.Delete(cx, z.Key(), client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestPutStatusAndHeaders(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"type":"Mesh","name":"default"}`
	r := e.do("PUT", "/meshes/default", body)
	expectStatus(t, r, http.StatusCreated)
	tag := r.header.Get("ETag")
	if _, err := strconv.ParseUint(strings.Trim(tag, `"`), 10, 64); err != nil || !strings.HasPrefix(tag, `"`) {
		t.Fatalf("ETag = %q", tag)
	}
	if loc := r.header.Get("Location"); loc != "/meshes/default" {
		t.Fatalf("Location = %q", loc)
	}
	res, err := api.DecodeJSON(r.body)
	if err != nil || res.Name != "default" {
		t.Fatalf("body %s: %v", r.body, err)
	}

	r = e.do("PUT", "/meshes/default", "type: Mesh\nname: default\nlabels:\n  a: b\n", "Content-Type", "application/yaml")
	expectStatus(t, r, http.StatusOK)
	if r.header.Get("ETag") == tag {
		t.Fatal("ETag did not change on update")
	}

	g := e.do("GET", "/meshes/default", "")
	expectStatus(t, g, http.StatusOK)
	if g.header.Get("ETag") != r.header.Get("ETag") {
		t.Fatalf("GET ETag %q != PUT ETag %q", g.header.Get("ETag"), r.header.Get("ETag"))
	}

	d := e.do("DELETE", "/meshes/default", "")
	expectStatus(t, d, http.StatusOK)
	if strings.TrimSpace(d.text()) != "{}" {
		t.Fatalf("DELETE body = %q, want {}", d.body)
	}
	expectStatus(t, e.do("DELETE", "/meshes/default", ""), http.StatusNotFound)
}

func TestConditionalWrites(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	first, _, err := c.Put(cx, mesh("default", nil), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := c.Put(cx, mesh("default", map[string]string{"v": "2"}), client.PutOptions{ExpectRevision: first.Revision})
	if err != nil {
		t.Fatalf("put at the current revision: %v", err)
	}
	var ce *api.ConflictError
	_, _, err = c.Put(cx, mesh("default", nil), client.PutOptions{ExpectRevision: first.Revision})
	if !errors.As(err, &ce) {
		t.Fatalf("stale put = %T %v, want *api.ConflictError", err, err)
	}
	if err := c.Delete(cx, first.Key(), client.DeleteOptions{ExpectRevision: first.Revision}); !errors.As(err, &ce) {
		t.Fatalf("stale delete = %T %v, want *api.ConflictError", err, err)
	}

	body := `{"type":"Mesh","name":"default"}`
	cur := strconv.FormatUint(second.Revision, 10)
	stale := strconv.FormatUint(first.Revision, 10)
	tests := []struct {
		name    string
		method  string
		query   string
		headers []string
		status  int
		field   string // the 400's cause field
	}{
		{"stale If-Match", "PUT", "", []string{"If-Match", `"` + stale + `"`}, 409, ""},
		{"stale ?revision", "PUT", "?revision=" + stale, nil, 409, ""},
		{"unquoted If-Match", "PUT", "", []string{"If-Match", cur}, 400, "If-Match"},
		{"star If-Match", "PUT", "", []string{"If-Match", "*"}, 400, "If-Match"},
		{"zero If-Match", "PUT", "", []string{"If-Match", `"0"`}, 400, "If-Match"},
		{"bad ?revision", "PUT", "?revision=abc", nil, 400, "revision"},
		{"disagreeing", "PUT", "?revision=" + stale, []string{"If-Match", `"` + cur + `"`}, 400, "revision"},
		{"stale delete", "DELETE", "", []string{"If-Match", `"` + stale + `"`}, 409, ""},
		{"current If-Match", "PUT", "", []string{"If-Match", `"` + cur + `"`}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if tt.method == "DELETE" {
				b = ""
			}
			r := e.do(tt.method, "/meshes/default"+tt.query, b, tt.headers...)
			expectStatus(t, r, tt.status)
			if tt.status >= 400 {
				eb := r.errorBody(t)
				if tt.field != "" && (len(eb.Causes) != 1 || eb.Causes[0].Field != tt.field) {
					t.Fatalf("causes = %+v, want one at %q", eb.Causes, tt.field)
				}
			}
		})
	}
}

func TestValidationListsEveryCause(t *testing.T) {
	e := newEnv(t, nil)
	body := `{
		"type": "Mesh",
		"name": "Bad_Name",
		"labels": {"bad key!": "ok"},
		"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "bogus"}]}
	}`
	r := e.do("PUT", "/meshes/Bad_Name", body)
	expectStatus(t, r, http.StatusBadRequest)
	eb := r.errorBody(t)
	fields := map[string]bool{}
	for _, c := range eb.Causes {
		fields[c.Field] = true
		if c.Message == "" || !strings.Contains(eb.Details, c.Message) {
			t.Errorf("cause %+v missing from details %q", c, eb.Details)
		}
	}
	for _, want := range []string{"name", `labels["bad key!"]`, "mtls.backends[0].type"} {
		if !fields[want] {
			t.Errorf("no cause at %s; causes: %+v", want, eb.Causes)
		}
	}

	// The client returns the same causes as a *api.ValidationError.
	res, err := api.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = e.client.Put(ctx(t), res, client.PutOptions{})
	var ve *api.ValidationError
	if !errors.As(err, &ve) || !slices.Equal(ve.Errors, eb.Causes) {
		t.Fatalf("client error = %v, want causes %+v", err, eb.Causes)
	}
	if e.store.callCount("Put") != 0 {
		t.Fatal("an invalid resource reached the store")
	}

	t.Run("malformed bodies", func(t *testing.T) {
		for _, b := range []string{"{", "[1,2]", "type: [", `{"type":"Nope","name":"x"}`, `{"name":"x"}`, ""} {
			r := e.do("PUT", "/meshes/x", b)
			expectStatus(t, r, http.StatusBadRequest)
			if eb := r.errorBody(t); len(eb.Causes) == 0 {
				t.Fatalf("body %q: no causes in %s", b, r.body)
			}
		}
	})
}

func TestBodyMustMatchURL(t *testing.T) {
	e := newEnv(t, nil)
	if _, _, err := e.client.Put(ctx(t), mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		fields []string
	}{
		{"name differs", "/meshes/a", `{"type":"Mesh","name":"b"}`, 400, []string{"name"}},
		{"mesh differs", "/meshes/default/secrets/s", `{"type":"Secret","mesh":"other","name":"s","data":"` + secretData + `"}`, 400, []string{"mesh"}},
		{"name and mesh differ", "/meshes/default/secrets/s", `{"type":"Secret","mesh":"other","name":"t","data":"` + secretData + `"}`, 400, []string{"name", "mesh"}},
		{"type differs", "/zones/z", `{"type":"Mesh","name":"z"}`, 400, []string{"type"}},
		{"type differs under a mesh", "/meshes/default/secrets/s", `{"type":"Zone","name":"s"}`, 400, []string{"type"}},
		{"mesh on a global type", "/zones/z", `{"type":"Zone","mesh":"default","name":"z"}`, 400, []string{"mesh"}},
		{"name and mesh from the URL", "/meshes/default/secrets/s", `{"type":"Secret","data":"` + secretData + `"}`, 201, nil},
		{"name from the URL", "/meshes/m2", `{"type":"Mesh"}`, 201, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("PUT", tt.path, tt.body)
			expectStatus(t, r, tt.status)
			if tt.status != 400 {
				return
			}
			var got []string
			for _, c := range r.errorBody(t).Causes {
				got = append(got, c.Field)
			}
			if !slices.Equal(got, tt.fields) {
				t.Fatalf("cause fields = %q, want %q", got, tt.fields)
			}
		})
	}
	if s := e.store.raw(api.Key{Type: api.TypeSecret, Mesh: "default", Name: "s"}); s == nil {
		t.Fatal("the secret written without name and mesh is not stored under the URL's")
	}
}

func TestUnknownPaths(t *testing.T) {
	e := newEnv(t, nil)
	if _, _, err := e.client.Put(ctx(t), mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		status       int
		mention      string
	}{
		{"GET", "/meshes/default/foos", 404, `"foos"`},
		{"GET", "/meshes/default/foos/x", 404, `"foos"`},
		{"PUT", "/meshes/default/foos/x", 404, `"foos"`},
		{"GET", "/meshes/default/zones", 404, "not mesh-scoped"},
		{"GET", "/meshes/default/meshes/x", 404, "not mesh-scoped"},
		{"GET", "/foos", 404, `"foos"`},
		{"DELETE", "/foos/x", 404, `"foos"`},
		{"GET", "/secrets/x", 404, "mesh-scoped"},
		{"PUT", "/dataplanes/x", 404, "mesh-scoped"},
		{"GET", "/meshes/nope/secrets", 404, `"nope"`},
		{"GET", "/meshes/default/secrets/missing", 404, `"missing"`},
		{"GET", "/a/b/c/d/e", 404, "no such endpoint"},
		{"POST", "/meshes/x", 405, "not allowed"},
		{"PATCH", "/zones/x", 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, "")
			expectStatus(t, r, tt.status)
			if eb := r.errorBody(t); !strings.Contains(eb.Details, tt.mention) {
				t.Fatalf("details %q do not mention %s", eb.Details, tt.mention)
			}
			if tt.status == 405 {
				allow := r.header.Get("Allow")
				for _, m := range []string{"GET", "PUT", "DELETE"} {
					if !strings.Contains(allow, m) {
						t.Fatalf("Allow = %q, lacks %s", allow, m)
					}
				}
			}
		})
	}
}

func TestReadOnlyTypes(t *testing.T) {
	t.Run("zone-owned type on global", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, _, err := e.client.Put(ctx(t), mesh("default", nil), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		r := e.do("PUT", "/meshes/default/dataplanes/dp-1", `{"type":"Dataplane","name":"dp-1","mesh":"default"}`)
		expectStatus(t, r, http.StatusMethodNotAllowed)
		if eb := r.errorBody(t); eb.Owner != api.RoleZone {
			t.Fatalf("owner = %q", eb.Owner)
		}
		if allow := r.header.Get("Allow"); allow != "GET, HEAD" {
			t.Fatalf("Allow = %q", allow)
		}
		dp := &api.Resource{Meta: api.Meta{Type: api.TypeDataplane, Mesh: "default", Name: "dp-1"}, Spec: &api.DataplaneSpec{}}
		_, _, err := e.client.Put(ctx(t), dp, client.PutOptions{})
		var ro *api.ReadOnlyError
		if !errors.As(err, &ro) || ro.Type != api.TypeDataplane || ro.Owner != api.RoleZone {
			t.Fatalf("client Put = %T %v, want *api.ReadOnlyError{Dataplane, zone}", err, err)
		}
		if err := e.client.Delete(ctx(t), dp.Key(), client.DeleteOptions{}); !errors.As(err, &ro) {
			t.Fatalf("client Delete = %T %v", err, err)
		}
		// Reads are fine.
		expectStatus(t, e.do("GET", "/meshes/default/dataplanes", ""), http.StatusOK)
	})
	t.Run("global-owned type on a zone", func(t *testing.T) {
		e := newEnv(t, func(c *rest.Config) { c.Role = api.RoleZone })
		_, _, err := e.client.Put(ctx(t), mesh("default", nil), client.PutOptions{})
		var ro *api.ReadOnlyError
		if !errors.As(err, &ro) || ro.Type != api.TypeMesh || ro.Owner != api.RoleGlobal {
			t.Fatalf("client Put = %T %v", err, err)
		}
		if info, err := e.client.Info(ctx(t)); err != nil || info.Role != "zone" {
			t.Fatalf("Info = %+v, %v", info, err)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *rest.Config) { c.MaxBodyBytes = 256 })
	small := `{"type":"Mesh","name":"small"}`
	big := `{"type":"Mesh","name":"big","labels":{"a":"` + strings.Repeat("x", 1000) + `"}}`
	expectStatus(t, e.do("PUT", "/meshes/small", small), http.StatusCreated)

	r := e.do("PUT", "/meshes/big", big)
	expectStatus(t, r, http.StatusRequestEntityTooLarge)
	if eb := r.errorBody(t); !strings.Contains(eb.Details, "256") {
		t.Fatalf("details = %q", eb.Details)
	}

	// A streamed body of unknown length is refused once past the limit,
	// without the server waiting for the rest: the body stalls after four
	// times the limit and is released only once the answer has arrived.
	body := &stallingBody{left: 4 * 256, release: make(chan struct{})}
	defer body.releaseOnce()
	req, _ := http.NewRequest("PUT", e.srv.URL+"/meshes/big", body)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body.releaseOnce()
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed body: status %d", resp.StatusCode)
	}
	if e.store.callCount("Put") != 1 {
		t.Fatal("an oversized body reached the store")
	}
}

// stallingBody yields left bytes of JSON-ish filler, then blocks until
// released, then ends.
type stallingBody struct {
	left    int
	release chan struct{}
	once    sync.Once
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		<-b.release
		return 0, io.EOF
	}
	n := min(len(p), b.left, 100)
	for i := range p[:n] {
		p[i] = ' '
	}
	b.left -= n
	return n, nil
}

func (b *stallingBody) releaseOnce() { b.once.Do(func() { close(b.release) }) }

func TestPagination(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	var all []string
	for i := 0; i < 7; i++ {
		name := fmt.Sprintf("m%d", i)
		team := "odd"
		if i%2 == 0 {
			team = "even"
		}
		if _, _, err := c.Put(cx, mesh(name, map[string]string{"team": team, "idx": strconv.Itoa(i)}), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		all = append(all, name)
	}

	// Follow the raw next links.
	var names []string
	path := "/meshes?size=3"
	pages := 0
	for path != "" {
		r := e.do("GET", path, "")
		expectStatus(t, r, 200)
		var body struct {
			Total int               `json:"total"`
			Items []json.RawMessage `json:"items"`
			Next  *string           `json:"next"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Total != 7 {
			t.Fatalf("total = %d", body.Total)
		}
		for _, it := range body.Items {
			res, err := api.DecodeJSON(it)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, res.Name)
		}
		pages++
		path = ""
		if body.Next != nil {
			path = *body.Next
			if !strings.HasPrefix(path, "/meshes?") {
				t.Fatalf("next = %q, want an absolute path", path)
			}
		}
	}
	if pages != 3 || !slices.Equal(names, all) {
		t.Fatalf("pages=%d names=%v", pages, names)
	}

	items, err := c.ListAll(cx, api.TypeMesh, "", client.ListOptions{Size: 2})
	if err != nil || len(items) != 7 {
		t.Fatalf("ListAll = %d items, %v", len(items), err)
	}

	tests := []struct {
		name   string
		opts   client.ListOptions
		total  int
		names  []string
		isNext bool
	}{
		{"default size", client.ListOptions{}, 7, all, false},
		{"first page", client.ListOptions{Size: 3}, 7, all[:3], true},
		{"last page", client.ListOptions{Size: 3, Offset: 6}, 7, all[6:], false},
		{"past the end", client.ListOptions{Size: 3, Offset: 10}, 7, nil, false},
		{"label", client.ListOptions{Labels: map[string]string{"team": "even"}}, 4, []string{"m0", "m2", "m4", "m6"}, false},
		{"labels AND", client.ListOptions{Labels: map[string]string{"team": "even", "idx": "2"}}, 1, []string{"m2"}, false},
		{"label paged", client.ListOptions{Labels: map[string]string{"team": "even"}, Size: 3}, 4, []string{"m0", "m2", "m4"}, true},
		{"missing label", client.ListOptions{Labels: map[string]string{"nope": "x"}}, 0, nil, false},
		{"name contains", client.ListOptions{NameContains: "5"}, 1, []string{"m5"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := c.List(cx, api.TypeMesh, "", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range page.Items {
				got = append(got, it.Name)
				if it.Revision == 0 {
					t.Errorf("%s has no revision", it.Name)
				}
			}
			if page.Total != tt.total || !slices.Equal(got, tt.names) || (page.Next != "") != tt.isNext {
				t.Fatalf("page = total %d, %v, next %q; want total %d, %v, next %v", page.Total, got, page.Next, tt.total, tt.names, tt.isNext)
			}
			if page.Next != "" {
				u, err := url.Parse(page.Next)
				if err != nil {
					t.Fatal(err)
				}
				for k := range tt.opts.Labels {
					if u.Query().Get("filter[labels."+k+"]") == "" {
						t.Fatalf("next %q lost the label filter", page.Next)
					}
				}
			}
		})
	}

	bad := []struct{ query, field string }{
		{"size=0", "size"},
		{"size=1001", "size"},
		{"size=ten", "size"},
		{"offset=-1", "offset"},
		{"offset=x", "offset"},
		{"filter[name]=x", "filter[name]"},
		{"consistent=maybe", "consistent"},
	}
	for _, b := range bad {
		t.Run(b.query, func(t *testing.T) {
			r := e.do("GET", "/meshes?"+b.query, "")
			expectStatus(t, r, 400)
			eb := r.errorBody(t)
			if len(eb.Causes) != 1 || eb.Causes[0].Field != b.field {
				t.Fatalf("causes = %+v, want one at %q", eb.Causes, b.field)
			}
		})
	}
	r := e.do("GET", "/meshes?size=0&offset=-1", "")
	expectStatus(t, r, 400)
	if eb := r.errorBody(t); len(eb.Causes) != 2 {
		t.Fatalf("both bad params should be listed: %+v", eb.Causes)
	}
	if r := e.do("GET", "/meshes?size=1000&name=m1", ""); r.status != 200 || !strings.Contains(r.text(), `"total":1`) {
		t.Fatalf("?name= filter: %d %s", r.status, r.body)
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	if _, ok := any(&api.SecretSpec{}).(api.Redactor); !ok {
		t.Fatal("api.SecretSpec does not implement api.Redactor")
	}
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	if _, _, err := c.Put(cx, mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	s := secret("default", "ca-key")
	stored, _, err := c.Put(cx, s, client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if data := stored.Spec.(*api.SecretSpec).Data; data != "" {
		t.Fatalf("PUT answered the secret data %q", data)
	}
	if raw := e.store.raw(s.Key()); raw.Spec.(*api.SecretSpec).Data != secretData {
		t.Fatal("the store does not hold the real data")
	}
	got, err := c.Get(cx, s.Key())
	if err != nil || got.Spec.(*api.SecretSpec).Data != "" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	for _, path := range []string{
		"/meshes/default/secrets/ca-key", "/meshes/default/secrets", "/secrets",
		"/meshes/default/secrets/ca-key?dryRun=true",
	} {
		for _, accept := range []string{"application/json", "application/yaml"} {
			method, body := "GET", ""
			if strings.Contains(path, "dryRun") {
				method, body = "PUT", toJSON(t, s)
			}
			r := e.do(method, path, body, "Accept", accept)
			if r.status != 200 || strings.Contains(r.text(), secretData) || strings.Contains(r.text(), "ca-key") == false {
				t.Fatalf("%s %s (%s): %d %s", method, path, accept, r.status, r.body)
			}
		}
	}
	page, err := c.List(cx, api.TypeSecret, "", client.ListOptions{})
	if err != nil || page.Total != 1 || page.Items[0].Spec.(*api.SecretSpec).Data != "" {
		t.Fatalf("List = %+v, %v", page, err)
	}
}

func TestYAML(t *testing.T) {
	e := newEnv(t, nil)
	if _, _, err := e.client.Put(ctx(t), mesh("default", map[string]string{"team": "core"}), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		accept   string
		wantYAML bool
	}{
		{"application/yaml", true},
		{"application/x-yaml", true},
		{"text/yaml", true},
		{"application/json", false},
		{"", false},
		{"*/*", false},
		{"application/json, application/yaml", false},
		{"application/yaml, application/json", true},
		{"application/json;q=0.5, application/yaml", true},
		{"application/yaml;q=0.5, application/json", false},
		{"application/yaml;q=0", false},
		{"*/*, application/yaml", true},
	}
	for _, tt := range tests {
		t.Run(tt.accept, func(t *testing.T) {
			var headers []string
			if tt.accept != "" {
				headers = []string{"Accept", tt.accept}
			}
			r := e.do("GET", "/meshes/default", "", headers...)
			expectStatus(t, r, 200)
			ct := r.header.Get("Content-Type")
			if got := ct == "application/yaml"; got != tt.wantYAML {
				t.Fatalf("Content-Type = %q, want YAML %v", ct, tt.wantYAML)
			}
			if tt.wantYAML && !strings.HasPrefix(r.text(), "type: Mesh\n") {
				t.Fatalf("YAML body does not start with the type:\n%s", r.body)
			}
			res, err := api.Decode(r.body)
			if err != nil || res.Name != "default" || res.Labels["team"] != "core" {
				t.Fatalf("decode %s: %+v %v", r.body, res, err)
			}
		})
	}
	r := e.do("GET", "/meshes", "", "Accept", "application/yaml")
	if r.status != 200 || !strings.HasPrefix(r.text(), "total: 1\n") {
		t.Fatalf("YAML list: %d\n%s", r.status, r.body)
	}
	// Errors stay JSON.
	r = e.do("GET", "/meshes/nope", "", "Accept", "application/yaml")
	expectStatus(t, r, 404)
	r.errorBody(t)
}

func TestConsistentReads(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)
	if _, _, err := c.Put(cx, mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		headers []string
		want    bool
	}{
		{"plain get", "/meshes/default", nil, false},
		{"query", "/meshes/default?consistent=true", nil, true},
		{"header", "/meshes/default", []string{"X-Meshfed-Consistent", "true"}, true},
		{"list query", "/meshes?consistent=true", nil, true},
		{"plain list", "/meshes", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectStatus(t, e.do("GET", tt.path, "", tt.headers...), 200)
			if got := e.store.lastReadOptions().Consistent; got != tt.want {
				t.Fatalf("Consistent = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := c.Get(cx, api.Key{Type: api.TypeMesh, Name: "default"}, client.GetOptions{Consistent: true}); err != nil || !e.store.lastReadOptions().Consistent {
		t.Fatalf("client consistent Get: %v", err)
	}
	r := e.do("GET", "/meshes/default", "", "X-Meshfed-Consistent", "perhaps")
	expectStatus(t, r, 400)
	if eb := r.errorBody(t); eb.Causes[0].Field != "X-Meshfed-Consistent" {
		t.Fatalf("causes = %+v", eb.Causes)
	}
}

func TestUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	cx := ctx(t)
	if _, _, err := e.client.Put(cx, mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	key := api.Key{Type: api.TypeMesh, Name: "default"}

	e.store.failUnavailable(1)
	r := e.do("GET", "/meshes/default", "")
	expectStatus(t, r, http.StatusServiceUnavailable)
	if ra := r.header.Get("Retry-After"); ra != "1" { // 300ms rounds up to 1s
		t.Fatalf("Retry-After = %q", ra)
	}
	if eb := r.errorBody(t); !strings.Contains(eb.Details, "no Raft leader") {
		t.Fatalf("details = %q", eb.Details)
	}

	t.Run("no retries", func(t *testing.T) {
		e.store.failUnavailable(1)
		c := e.newClient(testToken, client.WithRetry(client.RetryPolicy{Disabled: true}))
		_, err := c.Get(cx, key)
		var ue *api.UnavailableError
		if !errors.As(err, &ue) || ue.RetryAfter != time.Second || !strings.Contains(ue.Reason, "no Raft leader") {
			t.Fatalf("Get = %T %v, want *api.UnavailableError with RetryAfter 1s", err, err)
		}
	})
	t.Run("retries until the store recovers", func(t *testing.T) {
		e.store.failUnavailable(3)
		before := e.store.callCount("Get")
		got, err := e.client.Get(cx, key)
		if err != nil || got.Name != "default" {
			t.Fatalf("Get = %v, %v", got, err)
		}
		if n := e.store.callCount("Get") - before; n != 4 {
			t.Fatalf("store saw %d Gets, want 4", n)
		}
	})
	t.Run("honors Retry-After", func(t *testing.T) {
		e.store.failUnavailable(1)
		c := e.newClient(testToken, client.WithRetry(client.RetryPolicy{}))
		start := time.Now()
		if _, err := c.Get(cx, key); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("retried after %v, before the server's Retry-After of 1s", d)
		}
	})
	t.Run("put and delete retry too", func(t *testing.T) {
		e.store.failUnavailable(2)
		if _, created, err := e.client.Put(cx, mesh("retried", nil), client.PutOptions{}); err != nil || !created {
			t.Fatalf("Put = %v, %v", created, err)
		}
		e.store.failUnavailable(2)
		if err := e.client.Delete(cx, api.Key{Type: api.TypeMesh, Name: "retried"}, client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		e.store.failUnavailable(1 << 30)
		defer e.store.failUnavailable(0)
		c := e.newClient(testToken, client.WithRetry(client.RetryPolicy{Deadline: 300 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond}))
		start := time.Now()
		_, err := c.Get(cx, key)
		var ue *api.UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("Get = %T %v", err, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("gave up after %v", d)
		}
	})
	t.Run("4xx is not retried", func(t *testing.T) {
		before := e.hits.count()
		if _, err := e.client.Get(cx, api.Key{Type: api.TypeMesh, Name: "missing"}); !errors.Is(err, api.ErrNotFound) {
			t.Fatal(err)
		}
		_, _, err := e.client.Put(cx, mesh("Bad_Name", nil), client.PutOptions{})
		var ve *api.ValidationError
		if !errors.As(err, &ve) {
			t.Fatal(err)
		}
		if n := e.hits.count() - before; n != 2 {
			t.Fatalf("%d requests for two failing calls", n)
		}
	})
}

func TestDryRun(t *testing.T) {
	e := newEnv(t, nil)
	c, cx := e.client, ctx(t)

	res, created, err := c.Put(cx, zone("zone-1"), client.PutOptions{DryRun: true})
	if err != nil || !created {
		t.Fatalf("dry-run create: %v %v", created, err)
	}
	if spec := res.Spec.(*api.ZoneSpec); spec.Enabled == nil || !*spec.Enabled {
		t.Fatalf("dry run did not apply defaults: %+v", spec)
	}
	if res.Revision != 0 || e.store.len() != 0 || e.store.callCount("Put") != 0 {
		t.Fatalf("dry run wrote: revision %d, %d stored", res.Revision, e.store.len())
	}

	stored, _, err := c.Put(cx, zone("zone-1"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, created, err = c.Put(cx, zone("zone-1"), client.PutOptions{DryRun: true})
	if err != nil || created {
		t.Fatalf("dry-run update: %v %v", created, err)
	}
	if now := e.store.raw(stored.Key()); now.Revision != stored.Revision {
		t.Fatal("dry-run update changed the stored resource")
	}

	tests := []struct {
		name   string
		path   string
		body   string
		header []string
		status int
	}{
		{"create", "/zones/zone-2?dryRun=true", `{"type":"Zone","name":"zone-2"}`, nil, 201},
		{"update", "/zones/zone-1?dryRun=true", `{"type":"Zone","name":"zone-1"}`, nil, 200},
		{"invalid", "/zones/zone-2?dryRun=true", `{"type":"Zone","name":"zone-2","network":"Not A Label"}`, nil, 400},
		{"stale revision", "/zones/zone-1?dryRun=true", `{"type":"Zone","name":"zone-1"}`, []string{"If-Match", `"999"`}, 409},
		{"revision of a missing resource", "/zones/zone-3?dryRun=true", `{"type":"Zone","name":"zone-3"}`, []string{"If-Match", `"1"`}, 409},
		{"missing mesh (400 at mesh, as a real write answers)", "/meshes/nope/secrets/s?dryRun=true", `{"type":"Secret","data":"` + secretData + `"}`, nil, 400},
		{"bad flag", "/zones/zone-1?dryRun=perhaps", `{"type":"Zone","name":"zone-1"}`, nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("PUT", tt.path, tt.body, tt.header...)
			expectStatus(t, r, tt.status)
			if tt.status < 300 && r.header.Get("X-Meshfed-Dry-Run") != "true" {
				t.Fatal("no X-Meshfed-Dry-Run header")
			}
		})
	}
	if e.store.callCount("Put") != 1 || e.store.len() != 1 {
		t.Fatalf("dry runs wrote: %d puts, %d stored", e.store.callCount("Put"), e.store.len())
	}
}

func TestStoreErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		header string
	}{
		{"conflict", &api.ConflictError{Reason: "mesh has dataplanes"}, 409, ""},
		{"validation", &api.ValidationError{Errors: []api.FieldError{{Field: "mesh", Message: "gone"}}}, 400, ""},
		{"read-only", &api.ReadOnlyError{Type: "Mesh", Owner: api.RoleGlobal}, 405, "GET, HEAD"},
		{"unavailable", &api.UnavailableError{Reason: "election", RetryAfter: 2500 * time.Millisecond}, 503, "3"},
		{"unavailable now", &api.UnavailableError{Reason: "election"}, 503, "1"},
		{"wrapped not found", fmt.Errorf("lookup: %w", api.ErrNotFound), 404, ""},
		{"internal", errors.New("disk on fire at /var/lib/meshfed"), 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *rest.Config) { c.Store = errStore{tt.err} })
			r := e.do("GET", "/meshes/default", "")
			expectStatus(t, r, tt.status)
			eb := r.errorBody(t)
			switch tt.status {
			case 405:
				if r.header.Get("Allow") != tt.header {
					t.Fatalf("Allow = %q", r.header.Get("Allow"))
				}
			case 503:
				if r.header.Get("Retry-After") != tt.header {
					t.Fatalf("Retry-After = %q", r.header.Get("Retry-After"))
				}
			case 500:
				if strings.Contains(eb.Details, "disk on fire") {
					t.Fatal("500 leaks the internal error")
				}
				if !strings.Contains(e.logs.String(), "disk on fire") {
					t.Fatal("500 not logged")
				}
			case 400:
				if len(eb.Causes) != 1 || eb.Causes[0].Field != "mesh" {
					t.Fatalf("causes = %+v", eb.Causes)
				}
			}
		})
	}
}

// errStore fails every call with err.
type errStore struct{ err error }

func (s errStore) Get(context.Context, api.Key, rest.ReadOptions) (*api.Resource, error) {
	return nil, s.err
}
func (s errStore) List(context.Context, string, string, rest.ReadOptions) ([]*api.Resource, error) {
	return nil, s.err
}
func (s errStore) Put(context.Context, *api.Resource, rest.WriteOptions) (*api.Resource, bool, error) {
	return nil, false, s.err
}
func (s errStore) Delete(context.Context, api.Key, rest.WriteOptions) error { return s.err }

func TestMetricsAndLogs(t *testing.T) {
	e := newEnv(t, nil)
	if _, _, err := e.client.Put(ctx(t), mesh("default", nil), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/meshes/default", "")
	e.do("GET", "/meshes/missing", "")
	e.do("GET", "/x/y/z/w/v", "")

	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	histograms := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if strings.Contains(labels["route"], "default") || strings.Contains(labels["route"], "missing") {
				t.Fatalf("raw URL in a route label: %v", labels)
			}
			switch f.GetName() {
			case "meshfed_api_requests_total":
				counts[labels["method"]+" "+labels["route"]+" "+labels["code"]] += m.GetCounter().GetValue()
			case "meshfed_api_request_duration_seconds":
				histograms++
			}
		}
	}
	want := map[string]float64{
		"PUT /meshes/{name} 201": 1,
		"GET /meshes/{name} 200": 1,
		"GET /meshes/{name} 404": 1,
		"GET unmatched 404":      1,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("requests_total{%s} = %v, want %v (all: %v)", k, counts[k], n, counts)
		}
	}
	if histograms == 0 {
		t.Error("no latency histogram")
	}
	logs := e.logs.String()
	for _, s := range []string{"level=DEBUG", "route=/meshes/{name}", "status=404", "method=GET", "duration="} {
		if !strings.Contains(logs, s) {
			t.Errorf("request log lacks %q:\n%s", s, logs)
		}
	}
}
