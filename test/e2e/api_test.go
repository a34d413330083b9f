package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/test/harness"
)

var apiTests = []namedTest{
	{"InfoHealthMetrics", testInfoHealthMetrics},
	{"Unauthorized", testUnauthorized},
	{"DefaultMeshAndTypes", testDefaultMeshAndTypes},
	{"MeshCRUD", testMeshCRUD},
	{"PolicyCRUD", testPolicyCRUD},
	{"ValidationListsEveryCause", testValidationListsEveryCause},
	{"BodyMustMatchURL", testBodyMustMatchURL},
	{"MissingMesh", testMissingMesh},
	{"NotFound", testNotFound},
	{"StaleRevisionConflicts", testStaleRevisionConflicts},
	{"ZoneOwnedTypesReadOnly", testZoneOwnedTypesReadOnly},
	{"BodyTooLarge", testBodyTooLarge},
	{"Pagination", testPagination},
	{"SecretNeverReturned", testSecretNeverReturned},
	{"DeleteMeshDeletesItsPolicies", testDeleteMeshCascades},
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func testInfoHealthMetrics(t *testing.T, s *shared) {
	n := s.n
	r := n.request(t, false, http.MethodGet, "/", nil)
	expect(t, r, http.StatusOK, "GET / without a token")
	info := r.object(t)
	if info["product"] != "Meshfed" || info["role"] != "global" || info["instanceId"] != "shared-1" {
		t.Errorf("GET / = %s, want product Meshfed, role global, instanceId shared-1", r.body)
	}
	if id, _ := info["clusterId"].(string); !uuidRE.MatchString(id) {
		t.Errorf("clusterId %q is not a UUID", info["clusterId"])
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		r := n.request(t, false, http.MethodGet, path, nil)
		expect(t, r, http.StatusOK, path+" without a token")
		if strings.TrimSpace(string(r.body)) != "ok" {
			t.Errorf("%s body = %q, want ok", path, r.body)
		}
	}

	// The API counts requests after answering them, so wait until the
	// healthz calls above show up.
	revLine := regexp.MustCompile(`(?m)^meshfed_store_revision ([0-9.e+]+)$`)
	var last result
	harness.Eventually(t, 10*time.Second, "API request metrics", func() bool {
		last = n.request(t, false, http.MethodGet, "/metrics", nil)
		body := string(last.body)
		return last.status == http.StatusOK &&
			strings.Contains(body, "meshfed_api_requests_total{") &&
			strings.Contains(body, `route="/healthz"`)
	})
	m := revLine.FindStringSubmatch(string(last.body))
	if m == nil {
		t.Fatalf("/metrics has no meshfed_store_revision sample:\n%s", last.body)
	}
	if v, err := strconv.ParseFloat(m[1], 64); err != nil || v < 1 {
		t.Errorf("meshfed_store_revision = %s, want at least 1 (the bootstrap)", m[1])
	}
}

func testUnauthorized(t *testing.T, s *shared) {
	n := s.n
	for _, path := range []string{"/meshes", "/meshes/default", "/meshes/default/meshtrafficpermissions", "/_resources"} {
		for _, tc := range []struct {
			name, header string
		}{
			{"no token", ""},
			{"wrong token", "Bearer not-the-token"},
			{"wrong scheme", "Basic " + n.token},
		} {
			var hdr []string
			if tc.header != "" {
				hdr = []string{"Authorization", tc.header}
			}
			r := n.request(t, false, http.MethodGet, path, nil, hdr...)
			if r.status != http.StatusUnauthorized {
				t.Errorf("GET %s with %s: got %s, want 401", path, tc.name, r)
				continue
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s with %s: WWW-Authenticate = %q", path, tc.name, r.header.Get("WWW-Authenticate"))
			}
			if b := r.errBody(t); b.Title != "Unauthorized" || strings.Contains(string(r.body), `"type"`) {
				t.Errorf("GET %s with %s: body %s", path, tc.name, r.body)
			}
		}
	}
	// A write without a token writes nothing.
	r := n.request(t, false, http.MethodPut, "/meshes/unauth-mesh", strings.NewReader("type: Mesh\nname: unauth-mesh\n"))
	expect(t, r, http.StatusUnauthorized, "PUT without a token")
	expect(t, n.get(t, "/meshes/unauth-mesh"), http.StatusNotFound, "mesh written without a token")
}

func testDefaultMeshAndTypes(t *testing.T, s *shared) {
	n := s.n
	r := n.get(t, "/meshes/default")
	expect(t, r, http.StatusOK, "GET /meshes/default")
	m := r.object(t)
	if m["type"] != "Mesh" || m["name"] != "default" {
		t.Errorf("default mesh = %s", r.body)
	}
	r.etag(t)

	r = n.get(t, "/_resources")
	expect(t, r, http.StatusOK, "GET /_resources")
	var doc struct {
		Resources []struct {
			Name  string `json:"name"`
			Path  string `json:"path"`
			Scope string `json:"scope"`
			Owner string `json:"owner"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("/_resources: %v\n%s", err, r.body)
	}
	want := map[string][3]string{ // name → path, scope, owner
		"Mesh":                  {"meshes", "global", "global"},
		"Dataplane":             {"dataplanes", "mesh", "zone"},
		"Zone":                  {"zones", "global", "global"},
		"ZoneIngress":           {"zoneingresses", "global", "zone"},
		"Secret":                {"secrets", "mesh", "global"},
		"MeshGateway":           {"meshgateways", "mesh", "global"},
		"TrafficTrace":          {"traffic-traces", "mesh", "global"},
		"TrafficLog":            {"traffic-logs", "mesh", "global"},
		"MeshTrafficPermission": {"meshtrafficpermissions", "mesh", "global"},
		"MeshTimeout":           {"meshtimeouts", "mesh", "global"},
		"MeshRetry":             {"meshretries", "mesh", "global"},
		"ZoneInsight":           {"zone-insights", "global", "global"},
		"DataplaneInsight":      {"dataplane-insights", "mesh", "zone"},
		"ZoneTokenRevocation":   {"zonetokenrevocations", "global", "global"},
	}
	got := map[string][3]string{}
	for _, d := range doc.Resources {
		if _, dup := got[d.Name]; dup {
			t.Errorf("/_resources lists %s twice", d.Name)
		}
		got[d.Name] = [3]string{d.Path, d.Scope, d.Owner}
	}
	if len(doc.Resources) != len(want) {
		t.Errorf("/_resources lists %d types, want %d: %s", len(doc.Resources), len(want), r.body)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("/_resources %s = (path, scope, owner) %v, want %v", name, got[name], w)
		}
	}
}

func testMeshCRUD(t *testing.T, s *shared) {
	n := s.n
	const path = "/meshes/crud-mesh"
	createYAML := `type: Mesh
name: crud-mesh
labels:
  team: a
metrics:
  enabledBackend: prom-1
  backends:
  - name: prom-1
    type: prometheus
tracing:
  defaultBackend: zipkin-1
  backends:
  - name: zipkin-1
    type: zipkin
    conf:
      url: http://zipkin.example:9411/api/v2/spans
`
	r := n.put(t, path, createYAML, "Content-Type", "application/yaml")
	expect(t, r, http.StatusCreated, "create mesh from YAML")
	rev1 := r.etag(t)
	if r.object(t)["name"] != "crud-mesh" {
		t.Errorf("PUT answer = %s", r.body)
	}

	r = n.get(t, path)
	expect(t, r, http.StatusOK, "GET mesh")
	if got := r.etag(t); got != rev1 {
		t.Errorf("GET ETag %d, PUT answered %d", got, rev1)
	}
	checkMeshDefaults := func(doc any, format string) {
		t.Helper()
		if v := dig(t, doc, "metrics", "backends", 0, "conf", "port"); v != float64(5670) {
			t.Errorf("%s: metrics.backends[0].conf.port = %v, want the default 5670", format, v)
		}
		if v := dig(t, doc, "metrics", "backends", 0, "conf", "path"); v != "/metrics" {
			t.Errorf("%s: metrics.backends[0].conf.path = %v, want the default /metrics", format, v)
		}
		if v := dig(t, doc, "tracing", "backends", 0, "sampling"); v != float64(100) {
			t.Errorf("%s: tracing.backends[0].sampling = %v, want the default 100", format, v)
		}
	}
	doc := r.object(t)
	checkMeshDefaults(doc, "JSON")
	if dig(t, doc, "type") != "Mesh" || dig(t, doc, "labels", "team") != "a" {
		t.Errorf("GET mesh = %s", r.body)
	}
	created := dig(t, doc, "creationTime")

	r = n.get(t, path, "Accept", "application/yaml")
	expect(t, r, http.StatusOK, "GET mesh as YAML")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	if json.Valid(r.body) {
		t.Errorf("Accept: application/yaml answered JSON:\n%s", r.body)
	}
	var ydoc map[string]any
	if err := yaml.Unmarshal(r.body, &ydoc); err != nil {
		t.Fatalf("YAML answer does not parse: %v\n%s", err, r.body)
	}
	if ydoc["name"] != "crud-mesh" || ydoc["type"] != "Mesh" {
		t.Errorf("YAML answer = %s", r.body)
	}
	checkMeshDefaults(ydoc, "YAML")

	// Update with a JSON body: 200 and a higher revision.
	updateJSON := `{"type":"Mesh","name":"crud-mesh","labels":{"team":"b"},
	  "metrics":{"enabledBackend":"prom-1","backends":[{"name":"prom-1","type":"prometheus","conf":{"port":1234}}]}}`
	r = n.put(t, path, updateJSON, "Content-Type", "application/json")
	expect(t, r, http.StatusOK, "update mesh from JSON")
	rev2 := r.etag(t)
	if rev2 <= rev1 {
		t.Errorf("update ETag %d is not above create ETag %d", rev2, rev1)
	}
	r = n.get(t, path)
	expect(t, r, http.StatusOK, "GET updated mesh")
	doc = r.object(t)
	if r.etag(t) != rev2 || dig(t, doc, "labels", "team") != "b" ||
		dig(t, doc, "metrics", "backends", 0, "conf", "port") != float64(1234) ||
		dig(t, doc, "metrics", "backends", 0, "conf", "path") != "/metrics" {
		t.Errorf("updated mesh (ETag %s) = %s", r.header.Get("ETag"), r.body)
	}
	if _, has := doc["tracing"]; has {
		t.Errorf("update replaces the whole mesh, but tracing is still there: %s", r.body)
	}
	if dig(t, doc, "creationTime") != created {
		t.Errorf("creationTime changed on update: %v → %v", created, doc["creationTime"])
	}

	r = n.del(t, path)
	expect(t, r, http.StatusOK, "DELETE mesh")
	expect(t, n.get(t, path), http.StatusNotFound, "GET deleted mesh")
	expect(t, n.del(t, path), http.StatusNotFound, "DELETE deleted mesh")
}

func testPolicyCRUD(t *testing.T, s *shared) {
	n := s.n
	n.createMesh(t, "crud-pol")

	// A targetRef policy: fields under spec.
	const mtp = "/meshes/crud-pol/meshtrafficpermissions/allow-web"
	r := n.put(t, mtp, `type: MeshTrafficPermission
name: allow-web
mesh: crud-pol
spec:
  from:
  - targetRef:
      kind: MeshService
      name: web
    default:
      action: Allow
`, "Content-Type", "application/yaml")
	expect(t, r, http.StatusCreated, "create MeshTrafficPermission")
	rev1 := r.etag(t)
	r = n.get(t, mtp)
	expect(t, r, http.StatusOK, "GET MeshTrafficPermission")
	doc := r.object(t)
	if r.etag(t) != rev1 || dig(t, doc, "mesh") != "crud-pol" ||
		dig(t, doc, "spec", "from", 0, "default", "action") != "Allow" ||
		dig(t, doc, "spec", "from", 0, "targetRef", "name") != "web" {
		t.Errorf("GET MeshTrafficPermission = %s", r.body)
	}
	if kind := dig(t, doc, "spec", "targetRef", "kind"); kind != "Mesh" {
		t.Errorf("spec.targetRef.kind = %v, want the default Mesh", kind)
	}
	if _, inline := doc["from"]; inline {
		t.Errorf("a targetRef policy is answered with inline fields: %s", r.body)
	}

	r = n.put(t, mtp, `{"type":"MeshTrafficPermission","name":"allow-web","mesh":"crud-pol",
	  "spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Deny"}}]}}`, "Content-Type", "application/json")
	expect(t, r, http.StatusOK, "update MeshTrafficPermission from JSON")
	rev2 := r.etag(t)
	if rev2 <= rev1 {
		t.Errorf("update ETag %d is not above %d", rev2, rev1)
	}
	r = n.get(t, mtp, "Accept", "application/yaml")
	expect(t, r, http.StatusOK, "GET MeshTrafficPermission as YAML")
	var ydoc map[string]any
	if err := yaml.Unmarshal(r.body, &ydoc); err != nil || json.Valid(r.body) {
		t.Fatalf("YAML answer (err %v):\n%s", err, r.body)
	}
	if dig(t, ydoc, "spec", "from", 0, "default", "action") != "Deny" || r.etag(t) != rev2 {
		t.Errorf("updated MeshTrafficPermission = %s", r.body)
	}

	// A classic policy: fields inline.
	const tt = "/meshes/crud-pol/traffic-traces/trace-all"
	r = n.put(t, tt, `type: TrafficTrace
name: trace-all
mesh: crud-pol
selectors:
- match:
    kuma.io/service: '*'
conf:
  backend: zipkin-1
`)
	expect(t, r, http.StatusCreated, "create TrafficTrace")
	tRev1 := r.etag(t)
	r = n.get(t, tt)
	expect(t, r, http.StatusOK, "GET TrafficTrace")
	doc = r.object(t)
	if dig(t, doc, "selectors", 0, "match", "kuma.io/service") != "*" || dig(t, doc, "conf", "backend") != "zipkin-1" {
		t.Errorf("GET TrafficTrace = %s", r.body)
	}
	if _, has := doc["spec"]; has {
		t.Errorf("a classic policy is answered under spec: %s", r.body)
	}
	// Name and mesh may be left out of the body: the URL's are used.
	r = n.put(t, tt, `{"type":"TrafficTrace","selectors":[{"match":{"kuma.io/service":"web"}}]}`)
	expect(t, r, http.StatusOK, "update TrafficTrace without name and mesh in the body")
	if tRev2 := r.etag(t); tRev2 <= tRev1 {
		t.Errorf("update ETag %d is not above %d", tRev2, tRev1)
	}
	doc = n.get(t, tt).object(t)
	if doc["name"] != "trace-all" || doc["mesh"] != "crud-pol" || dig(t, doc, "selectors", 0, "match", "kuma.io/service") != "web" {
		t.Errorf("updated TrafficTrace = %v", doc)
	}

	for _, p := range []string{mtp, tt} {
		expect(t, n.del(t, p), http.StatusOK, "DELETE "+p)
		expect(t, n.get(t, p), http.StatusNotFound, "GET deleted "+p)
	}
}

func testValidationListsEveryCause(t *testing.T, s *shared) {
	n := s.n
	r := n.put(t, "/meshes/invalid-mesh", `type: Mesh
name: invalid-mesh
mtls:
  enabledBackend: ca-2
  backends:
  - name: ca-1
    type: vault
metrics:
  backends:
  - name: prom-1
    type: prometheus
    conf:
      path: no-leading-slash
tracing:
  backends:
  - name: zipkin-1
    type: zipkin
    sampling: 150
    conf:
      url: http://zipkin.example:9411/api/v2/spans
`)
	expect(t, r, http.StatusBadRequest, "PUT a mesh with four problems")
	b := r.errBody(t)
	got := b.fields()
	sort.Strings(got)
	want := []string{"metrics.backends[0].conf.path", "mtls.backends[0].type", "mtls.enabledBackend", "tracing.backends[0].sampling"}
	if !slices.Equal(got, want) {
		t.Errorf("400 causes at %q, want exactly %q\n%s", got, want, r.body)
	}
	for _, c := range b.Causes {
		if c.Message == "" {
			t.Errorf("cause at %s has no message", c.Field)
		}
	}
	expect(t, n.get(t, "/meshes/invalid-mesh"), http.StatusNotFound, "GET the invalid mesh")

	// A policy: problems at spec paths, nothing written.
	n.createMesh(t, "invalid-pol")
	r = n.put(t, "/meshes/invalid-pol/meshtrafficpermissions/bad", `type: MeshTrafficPermission
name: bad
spec:
  targetRef:
    kind: MeshGateway
    name: gw
  from:
  - targetRef:
      kind: MeshService
    default:
      action: Maybe
`)
	expect(t, r, http.StatusBadRequest, "PUT a policy with three problems")
	got = r.errBody(t).fields()
	sort.Strings(got)
	want = []string{"spec.from[0].default.action", "spec.from[0].targetRef.name", "spec.targetRef.kind"}
	if !slices.Equal(got, want) {
		t.Errorf("400 causes at %q, want exactly %q\n%s", got, want, r.body)
	}
	expect(t, n.get(t, "/meshes/invalid-pol/meshtrafficpermissions/bad"), http.StatusNotFound, "GET the invalid policy")
}

func testBodyMustMatchURL(t *testing.T, s *shared) {
	n := s.n
	r := n.put(t, "/meshes/url-name", "type: Mesh\nname: body-name\n")
	expect(t, r, http.StatusBadRequest, "PUT a mesh whose body names another")
	if got := r.errBody(t).fields(); !slices.Equal(got, []string{"name"}) {
		t.Errorf("causes at %q, want [name]: %s", got, r.body)
	}
	if !strings.Contains(string(r.body), "url-name") || !strings.Contains(string(r.body), "body-name") {
		t.Errorf("the message should name both names: %s", r.body)
	}
	expect(t, n.get(t, "/meshes/url-name"), http.StatusNotFound, "GET url-name")
	expect(t, n.get(t, "/meshes/body-name"), http.StatusNotFound, "GET body-name")

	n.createMesh(t, "url-match")
	r = n.put(t, "/meshes/url-match/meshtrafficpermissions/p1", mtpYAML("default", "p1", nil))
	expect(t, r, http.StatusBadRequest, "PUT a policy whose body names another mesh")
	if got := r.errBody(t).fields(); !slices.Equal(got, []string{"mesh"}) {
		t.Errorf("causes at %q, want [mesh]: %s", got, r.body)
	}
	r = n.put(t, "/meshes/url-match/meshtrafficpermissions/p1", "type: MeshTimeout\nname: p1\nmesh: url-match\n")
	expect(t, r, http.StatusBadRequest, "PUT a MeshTimeout body at a MeshTrafficPermission URL")
	if got := r.errBody(t).fields(); !slices.Contains(got, "type") {
		t.Errorf("causes at %q, want type among them: %s", got, r.body)
	}
	expect(t, n.get(t, "/meshes/url-match/meshtrafficpermissions/p1"), http.StatusNotFound, "GET p1")
}

func testMissingMesh(t *testing.T, s *shared) {
	n := s.n
	r := n.put(t, "/meshes/no-such-mesh/meshtrafficpermissions/p1", mtpYAML("no-such-mesh", "p1", nil))
	expect(t, r, http.StatusBadRequest, "PUT a policy into a missing mesh")
	b := r.errBody(t)
	if got := b.fields(); !slices.Equal(got, []string{"mesh"}) {
		t.Errorf("causes at %q, want [mesh]: %s", got, r.body)
	}
	if !strings.Contains(string(r.body), "no-such-mesh") {
		t.Errorf("the message should name the mesh: %s", r.body)
	}
	expect(t, n.get(t, "/meshes/no-such-mesh"), http.StatusNotFound, "the missing mesh was not created")
}

func testNotFound(t *testing.T, s *shared) {
	n := s.n
	for _, path := range []string{
		"/meshes/no-such-mesh",
		"/meshes/default/meshtrafficpermissions/no-such-policy",
		"/meshes/default/secrets/no-such-secret",
		"/meshes/no-such-mesh/meshtrafficpermissions",
		"/zones/no-such-zone",
		"/meshes/default/no-such-plural",
		"/meshes/default/no-such-plural/x",
		"/no-such-plural",
		"/no-such-plural/x",
	} {
		r := n.get(t, path)
		if r.status != http.StatusNotFound {
			t.Errorf("GET %s: got %s, want 404", path, r)
			continue
		}
		if b := r.errBody(t); b.Details == "" {
			t.Errorf("GET %s: 404 without details: %s", path, r.body)
		}
	}
	r := n.get(t, "/meshes/default/no-such-plural")
	if !strings.Contains(string(r.body), "no-such-plural") {
		t.Errorf("404 for an unknown type should name it: %s", r.body)
	}
	expect(t, n.del(t, "/meshes/default/meshtrafficpermissions/no-such-policy"), http.StatusNotFound, "DELETE a missing policy")
}

func testStaleRevisionConflicts(t *testing.T, s *shared) {
	n := s.n
	n.createMesh(t, "conflict-mesh")
	const p = "/meshes/conflict-mesh/meshtrafficpermissions/p1"
	rev1 := n.mustPut(t, p, mtpYAML("conflict-mesh", "p1", map[string]string{"v": "1"}))
	rev2 := n.mustPut(t, p, mtpYAML("conflict-mesh", "p1", map[string]string{"v": "2"}))
	if rev2 <= rev1 {
		t.Fatalf("revisions %d then %d", rev1, rev2)
	}
	stale := fmt.Sprintf(`"%d"`, rev1)

	r := n.put(t, p, mtpYAML("conflict-mesh", "p1", map[string]string{"v": "3"}), "If-Match", stale)
	expect(t, r, http.StatusConflict, "PUT with a stale If-Match")
	r = n.put(t, p+"?revision="+strconv.FormatUint(rev1, 10), mtpYAML("conflict-mesh", "p1", map[string]string{"v": "3"}))
	expect(t, r, http.StatusConflict, "PUT with a stale ?revision")
	r = n.del(t, p, "If-Match", stale)
	expect(t, r, http.StatusConflict, "DELETE with a stale If-Match")
	if r.errBody(t).Title != "Conflict" {
		t.Errorf("409 body = %s", r.body)
	}

	r = n.get(t, p)
	expect(t, r, http.StatusOK, "GET after the refused writes")
	if r.etag(t) != rev2 || dig(t, r.object(t), "labels", "v") != "2" {
		t.Fatalf("a refused write changed the policy: ETag %s, %s", r.header.Get("ETag"), r.body)
	}

	r = n.put(t, p, mtpYAML("conflict-mesh", "p1", map[string]string{"v": "3"}), "If-Match", fmt.Sprintf(`"%d"`, rev2))
	expect(t, r, http.StatusOK, "PUT with the current If-Match")
	rev3 := r.etag(t)
	expect(t, n.del(t, p, "If-Match", fmt.Sprintf(`"%d"`, rev2)), http.StatusConflict, "DELETE with the previous revision")
	expect(t, n.del(t, p, "If-Match", fmt.Sprintf(`"%d"`, rev3)), http.StatusOK, "DELETE with the current If-Match")
	expect(t, n.get(t, p), http.StatusNotFound, "GET after the conditional delete")

	// Expecting a revision of a resource that does not exist is a conflict too.
	r = n.put(t, p, mtpYAML("conflict-mesh", "p1", nil), "If-Match", fmt.Sprintf(`"%d"`, rev3))
	expect(t, r, http.StatusConflict, "conditional PUT of a missing resource")
}

func testZoneOwnedTypesReadOnly(t *testing.T, s *shared) {
	n := s.n
	dp := `type: Dataplane
mesh: default
name: dp-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
`
	zi := `type: ZoneIngress
name: zi-1
networking:
  address: 10.0.0.2
  port: 10001
`
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPut, "/meshes/default/dataplanes/dp-1", dp},
		{http.MethodDelete, "/meshes/default/dataplanes/dp-1", ""},
		{http.MethodPut, "/zoneingresses/zi-1", zi},
		{http.MethodDelete, "/zoneingresses/zi-1", ""},
	} {
		r := n.do(t, tc.method, tc.path, tc.body)
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s on global: got %s, want 405", tc.method, tc.path, r)
			continue
		}
		if b := r.errBody(t); b.Owner != "zone" {
			t.Errorf("%s %s: owner %q, want zone: %s", tc.method, tc.path, b.Owner, r.body)
		}
		if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || strings.Contains(allow, "PUT") {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, allow)
		}
	}
	expect(t, n.get(t, "/meshes/default/dataplanes/dp-1"), http.StatusNotFound, "GET the refused dataplane")
	expect(t, n.get(t, "/zoneingresses/zi-1"), http.StatusNotFound, "GET the refused zone ingress")
	// Reading them is allowed.
	expect(t, n.get(t, "/meshes/default/dataplanes"), http.StatusOK, "list dataplanes on global")
	expect(t, n.get(t, "/zoneingresses"), http.StatusOK, "list zone ingresses on global")
}

// unsized hides a reader's length so the request is sent chunked.
type unsized struct{ io.Reader }

func testBodyTooLarge(t *testing.T, s *shared) {
	n := s.n
	big := "type: Mesh\nname: huge-mesh\nlabels:\n  filler: " + strings.Repeat("x", 2<<20) + "\n"
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"with Content-Length", func() io.Reader { return strings.NewReader(big) }},
		{"chunked", func() io.Reader { return unsized{strings.NewReader(big)} }},
	} {
		r := n.request(t, true, http.MethodPut, "/meshes/huge-mesh", tc.body())
		if r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("2 MiB body %s: got %d %.200s, want 413", tc.name, r.status, r.body)
			continue
		}
		if b := r.errBody(t); !strings.Contains(b.Details, "1048576") {
			t.Errorf("413 should name the limit: %s", r.body)
		}
	}
	expect(t, n.get(t, "/meshes/huge-mesh"), http.StatusNotFound, "GET the too-large mesh")
}

func testPagination(t *testing.T, s *shared) {
	n := s.n
	const mesh = "page-mesh"
	n.createMesh(t, mesh)
	var all, teamA []string
	for i := range 25 {
		name := fmt.Sprintf("page-%02d", i)
		team := "b"
		if i%3 == 0 {
			team = "a"
			teamA = append(teamA, name)
		}
		all = append(all, name)
		n.mustPut(t, "/meshes/"+mesh+"/meshtrafficpermissions/"+name, mtpYAML(mesh, name, map[string]string{"team": team}))
	}
	// A policy of the same type in another mesh must not show up.
	n.mustPut(t, "/meshes/default/meshtrafficpermissions/page-99", mtpYAML("default", "page-99", map[string]string{"team": "a"}))

	type page struct {
		Total int `json:"total"`
		Items []struct {
			Mesh string `json:"mesh"`
			Name string `json:"name"`
		} `json:"items"`
		Next *string `json:"next"`
	}
	list := func(path string) page {
		t.Helper()
		r := n.get(t, path)
		expect(t, r, http.StatusOK, "GET "+path)
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, r.body)
		}
		return p
	}

	var names []string
	var sizes []int
	path := "/meshes/" + mesh + "/meshtrafficpermissions?size=10"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("more than 5 pages of 10 for 25 items")
		}
		p := list(path)
		if p.Total != 25 {
			t.Errorf("GET %s: total %d, want 25", path, p.Total)
		}
		sizes = append(sizes, len(p.Items))
		for _, it := range p.Items {
			if it.Mesh != mesh {
				t.Errorf("item %s of mesh %q in the list of %s", it.Name, it.Mesh, mesh)
			}
			names = append(names, it.Name)
		}
		if p.Next == nil {
			break
		}
		if !strings.HasPrefix(*p.Next, "/") {
			t.Fatalf("next = %q, want a path", *p.Next)
		}
		path = *p.Next
	}
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("page sizes %v, want [10 10 5]", sizes)
	}
	if !slices.Equal(names, all) {
		t.Errorf("names across pages = %v, want %v (25 unique, in name order)", names, all)
	}

	q := url.Values{"filter[labels.team]": {"a"}}
	p := list("/meshes/" + mesh + "/meshtrafficpermissions?" + q.Encode())
	var got []string
	for _, it := range p.Items {
		got = append(got, it.Name)
	}
	if p.Total != len(teamA) || !slices.Equal(got, teamA) {
		t.Errorf("filter[labels.team]=a: total %d, items %v, want %v", p.Total, got, teamA)
	}
	q.Set("size", "2")
	q.Set("offset", "8")
	p = list("/meshes/" + mesh + "/meshtrafficpermissions?" + q.Encode())
	if p.Total != len(teamA) || len(p.Items) != 1 || p.Items[0].Name != teamA[8] || p.Next != nil {
		t.Errorf("filtered last page: %+v, want total %d and only %s", p, len(teamA), teamA[8])
	}

	for _, tc := range []struct{ query, field string }{
		{"size=0", "size"},
		{"size=5000", "size"},
		{"size=x", "size"},
		{"offset=-1", "offset"},
		{"offset=x", "offset"},
	} {
		r := n.get(t, "/meshes/"+mesh+"/meshtrafficpermissions?"+tc.query)
		if r.status != http.StatusBadRequest {
			t.Errorf("?%s: got %s, want 400", tc.query, r)
			continue
		}
		if got := r.errBody(t).fields(); !slices.Equal(got, []string{tc.field}) {
			t.Errorf("?%s: causes at %q, want [%s]", tc.query, got, tc.field)
		}
	}
}

func testSecretNeverReturned(t *testing.T, s *shared) {
	n := s.n
	const mesh = "secret-mesh"
	n.createMesh(t, mesh)
	const plain = "top-secret-value-42"
	encoded := "dG9wLXNlY3JldC12YWx1ZS00Mg==" // base64(plain)
	leaks := func(what string, r result) {
		t.Helper()
		if strings.Contains(string(r.body), encoded) || strings.Contains(string(r.body), plain) {
			t.Errorf("%s returns the secret data:\n%s", what, r.body)
		}
	}
	const p = "/meshes/" + mesh + "/secrets/s1"
	r := n.put(t, p, "type: Secret\nname: s1\nmesh: "+mesh+"\ndata: "+encoded+"\n")
	expect(t, r, http.StatusCreated, "PUT secret")
	leaks("PUT", r)

	r = n.get(t, p)
	expect(t, r, http.StatusOK, "GET secret")
	leaks("GET", r)
	if doc := r.object(t); doc["type"] != "Secret" || doc["name"] != "s1" {
		t.Errorf("GET secret = %s", r.body)
	}
	r = n.get(t, p, "Accept", "application/yaml")
	expect(t, r, http.StatusOK, "GET secret as YAML")
	leaks("GET as YAML", r)
	for _, lp := range []string{"/meshes/" + mesh + "/secrets", "/secrets"} {
		r = n.get(t, lp)
		expect(t, r, http.StatusOK, "GET "+lp)
		leaks("GET "+lp, r)
		if !strings.Contains(string(r.body), `"s1"`) {
			t.Errorf("GET %s does not list s1: %s", lp, r.body)
		}
	}

	r = n.put(t, p, "type: Secret\nname: s1\nmesh: "+mesh+"\ndata: not base64!\n")
	expect(t, r, http.StatusBadRequest, "PUT secret with bad data")
	if got := r.errBody(t).fields(); !slices.Equal(got, []string{"data"}) {
		t.Errorf("causes at %q, want [data]", got)
	}
}

func testDeleteMeshCascades(t *testing.T, s *shared) {
	n := s.n
	policies := func(mesh string) []string {
		return []string{
			"/meshes/" + mesh + "/meshtrafficpermissions/p1",
			"/meshes/" + mesh + "/meshtrafficpermissions/p2",
			"/meshes/" + mesh + "/traffic-traces/t1",
			"/meshes/" + mesh + "/secrets/s1",
		}
	}
	body := func(mesh, path string) string {
		name := path[strings.LastIndexByte(path, '/')+1:]
		switch {
		case strings.Contains(path, "/traffic-traces/"):
			return "type: TrafficTrace\nname: " + name + "\nselectors:\n- match:\n    kuma.io/service: '*'\n"
		case strings.Contains(path, "/secrets/"):
			return "type: Secret\nname: " + name + "\ndata: aGVsbG8=\n"
		}
		return mtpYAML(mesh, name, nil)
	}
	revs := map[string]uint64{}
	for _, mesh := range []string{"casc-a", "casc-b"} {
		n.createMesh(t, mesh)
		for _, p := range policies(mesh) {
			revs[p] = n.mustPut(t, p, body(mesh, p))
		}
	}

	expect(t, n.del(t, "/meshes/casc-a"), http.StatusOK, "DELETE mesh casc-a")
	expect(t, n.get(t, "/meshes/casc-a"), http.StatusNotFound, "GET deleted mesh")
	for _, p := range policies("casc-a") {
		expect(t, n.get(t, p), http.StatusNotFound, "GET "+p+" after its mesh was deleted")
	}
	for _, lp := range []string{"/meshes/casc-a/meshtrafficpermissions", "/meshes/casc-a/traffic-traces", "/meshes/casc-a/secrets"} {
		expect(t, n.get(t, lp), http.StatusNotFound, "list "+lp+" of the deleted mesh")
	}
	// Lists across meshes hold nothing of casc-a any more.
	r := n.get(t, "/meshtrafficpermissions?size=1000")
	expect(t, r, http.StatusOK, "list every MeshTrafficPermission")
	if strings.Contains(string(r.body), `"mesh":"casc-a"`) {
		t.Errorf("cross-mesh list still holds casc-a's policies: %s", r.body)
	}
	for _, p := range policies("casc-b") {
		r := n.get(t, p)
		expect(t, r, http.StatusOK, "GET "+p+" of the other mesh")
		if got := r.etag(t); got != revs[p] {
			t.Errorf("%s: ETag %d, was %d before the other mesh was deleted", p, got, revs[p])
		}
	}

	// A new mesh of the same name starts empty.
	n.createMesh(t, "casc-a")
	for _, lp := range []string{"/meshes/casc-a/meshtrafficpermissions", "/meshes/casc-a/traffic-traces", "/meshes/casc-a/secrets"} {
		r := n.get(t, lp)
		expect(t, r, http.StatusOK, "list "+lp+" of the re-created mesh")
		if total := r.object(t)["total"]; total != float64(0) {
			t.Errorf("%s of the re-created mesh: total %v, want 0: %s", lp, total, r.body)
		}
	}
}
