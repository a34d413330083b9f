package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/test/harness"
)

var meshctlTests = []namedTest{
	{"Apply", testCtlApply},
	{"ApplyDryRun", testCtlApplyDryRun},
	{"Get", testCtlGet},
	{"Delete", testCtlDelete},
	{"ApplyInvalidFileWritesNothing", testCtlApplyInvalid},
	{"ApplyUnreadableInput", testCtlApplyUnreadable},
	{"UnknownType", testCtlUnknownType},
	{"ControlPlanesConfig", testCtlControlPlanes},
	{"Version", testCtlVersion},
	{"NoToken", testCtlNoToken},
}

// ctlFor returns a meshctl that talks to the shared node through
// MESHCTL_API and MESHCTL_TOKEN.
func ctlFor(t *testing.T, s *shared) *ctl {
	return newCtl(t, "MESHCTL_API="+s.g.URL(), "MESHCTL_TOKEN="+s.n.token)
}

// nonEmptyLines splits output into its non-blank lines.
func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

const applyDocs = `# a Mesh and two policies inside it
type: Mesh
name: ctl-apply
---
type: MeshTrafficPermission
name: allow-all
mesh: ctl-apply
spec:
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
---
type: TrafficTrace
name: trace-all
mesh: ctl-apply
selectors:
- match:
    kuma.io/service: '*'
`

func testCtlApply(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	file := writeFile(t, "apply.yaml", applyDocs)

	r := c.ok(t, "", "apply", "-f", file)
	lines := nonEmptyLines(r.stdout)
	want := []string{
		`Mesh "ctl-apply" created`,
		`MeshTrafficPermission "allow-all" in mesh "ctl-apply" created`,
		`TrafficTrace "trace-all" in mesh "ctl-apply" created`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("apply output:\n%s\nwant:\n%s", r.stdout, strings.Join(want, "\n"))
	}
	revs := map[string]uint64{}
	for _, p := range []string{"/meshes/ctl-apply", "/meshes/ctl-apply/meshtrafficpermissions/allow-all", "/meshes/ctl-apply/traffic-traces/trace-all"} {
		res := s.n.get(t, p)
		expect(t, res, http.StatusOK, "GET "+p+" after apply")
		revs[p] = res.etag(t)
	}

	// Applying the same file again updates (and changes nothing).
	r = c.ok(t, "", "apply", "-f", file)
	lines = nonEmptyLines(r.stdout)
	if len(lines) != 3 {
		t.Errorf("re-apply output:\n%s", r.stdout)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, " updated") {
			t.Errorf("re-apply line %q, want ... updated", l)
		}
	}
	for p, rev := range revs {
		if got := s.n.get(t, p).etag(t); got != rev {
			t.Errorf("%s: re-applying the same content moved the revision %d → %d", p, rev, got)
		}
	}

	// Standard input.
	r = c.ok(t, mtpYAML("ctl-apply", "from-stdin", map[string]string{"src": "stdin"}), "apply", "-f", "-")
	if got := strings.TrimSpace(r.stdout); got != `MeshTrafficPermission "from-stdin" in mesh "ctl-apply" created` {
		t.Errorf("apply -f - output: %q", got)
	}
	res := s.n.get(t, "/meshes/ctl-apply/meshtrafficpermissions/from-stdin")
	expect(t, res, http.StatusOK, "GET the policy applied from stdin")
	if dig(t, res.object(t), "labels", "src") != "stdin" {
		t.Errorf("policy applied from stdin = %s", res.body)
	}

	// A changed document is updated and gets a new revision.
	changed := strings.Replace(applyDocs, "action: Allow", "action: Deny", 1)
	r = c.ok(t, changed, "apply", "-f", "-")
	if !strings.Contains(r.stdout, `MeshTrafficPermission "allow-all" in mesh "ctl-apply" updated`) {
		t.Errorf("apply of a change:\n%s", r.stdout)
	}
	res = s.n.get(t, "/meshes/ctl-apply/meshtrafficpermissions/allow-all")
	if dig(t, res.object(t), "spec", "from", 0, "default", "action") != "Deny" ||
		res.etag(t) <= revs["/meshes/ctl-apply/meshtrafficpermissions/allow-all"] {
		t.Errorf("policy after applying a change (ETag %s): %s", res.header.Get("ETag"), res.body)
	}
}

func testCtlApplyDryRun(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	docs := strings.ReplaceAll(applyDocs, "ctl-apply", "ctl-dry")
	r := c.ok(t, "", "apply", "--dry-run", "-f", writeFile(t, "dry.yaml", docs))
	lines := nonEmptyLines(r.stdout)
	if len(lines) != 3 {
		t.Errorf("dry-run output:\n%s", r.stdout)
	}
	for _, l := range lines {
		if !strings.Contains(l, "created") || !strings.Contains(l, "dry run") {
			t.Errorf("dry-run line %q, want ... created (dry run)", l)
		}
	}
	for _, p := range []string{"/meshes/ctl-dry", "/meshes/ctl-dry/meshtrafficpermissions/allow-all", "/meshes/ctl-dry/traffic-traces/trace-all"} {
		expect(t, s.n.get(t, p), http.StatusNotFound, "GET "+p+" after a dry run")
	}

	// A dry run of a change to an existing resource leaves it as it was.
	s.n.createMesh(t, "ctl-dry-2")
	rev := s.n.mustPut(t, "/meshes/ctl-dry-2/meshtrafficpermissions/p1", mtpYAML("ctl-dry-2", "p1", map[string]string{"v": "1"}))
	r = c.ok(t, mtpYAML("ctl-dry-2", "p1", map[string]string{"v": "2"}), "apply", "--dry-run", "-f", "-")
	if !strings.Contains(r.stdout, "updated") {
		t.Errorf("dry-run of a change: %q", r.stdout)
	}
	res := s.n.get(t, "/meshes/ctl-dry-2/meshtrafficpermissions/p1")
	if res.etag(t) != rev || dig(t, res.object(t), "labels", "v") != "1" {
		t.Errorf("a dry run changed the policy: ETag %s, %s", res.header.Get("ETag"), res.body)
	}
}

func testCtlGet(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	s.n.createMesh(t, "ctl-get")
	s.n.mustPut(t, "/meshes/ctl-get/meshtrafficpermissions/mtp-one", mtpYAML("ctl-get", "mtp-one", map[string]string{"team": "a"}))
	s.n.mustPut(t, "/meshes/ctl-get/meshtrafficpermissions/mtp-two", mtpYAML("ctl-get", "mtp-two", nil))

	// Table of meshes.
	r := c.ok(t, "", "get", "meshes")
	lines := nonEmptyLines(r.stdout)
	if len(lines) < 3 || strings.Fields(lines[0])[0] != "NAME" {
		t.Fatalf("get meshes table:\n%s", r.stdout)
	}
	var rows []string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l)[0])
	}
	for _, want := range []string{"default", "ctl-get"} {
		if !slices.Contains(rows, want) {
			t.Errorf("get meshes has no row %s:\n%s", want, r.stdout)
		}
	}

	// One mesh as YAML and as JSON.
	r = c.ok(t, "", "get", "mesh", "ctl-get", "-o", "yaml")
	var ydoc map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &ydoc); err != nil {
		t.Fatalf("get mesh -o yaml does not parse: %v\n%s", err, r.stdout)
	}
	if ydoc["name"] != "ctl-get" || ydoc["type"] != "Mesh" {
		t.Errorf("get mesh -o yaml:\n%s", r.stdout)
	}
	if json.Valid([]byte(r.stdout)) {
		t.Errorf("-o yaml printed JSON:\n%s", r.stdout)
	}
	r = c.ok(t, "", "get", "mesh", "ctl-get", "-o", "json")
	var jdoc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &jdoc); err != nil {
		t.Fatalf("get mesh -o json does not parse: %v\n%s", err, r.stdout)
	}
	if jdoc["name"] != "ctl-get" || jdoc["type"] != "Mesh" {
		t.Errorf("get mesh -o json:\n%s", r.stdout)
	}

	// A list as JSON: Kuma's list shape.
	r = c.ok(t, "", "get", "meshes", "-o", "json")
	var list struct {
		Total int              `json:"total"`
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("get meshes -o json does not parse: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, it := range list.Items {
		names = append(names, it["name"].(string))
	}
	if list.Total != len(list.Items) || !slices.Contains(names, "ctl-get") || !slices.Contains(names, "default") {
		t.Errorf("get meshes -o json: total %d, names %v", list.Total, names)
	}

	// Mesh-scoped lists: the plural with --mesh and the alias with -m.
	policyRows := func(out string) []string {
		t.Helper()
		lines := nonEmptyLines(out)
		if len(lines) == 0 {
			t.Fatalf("empty table")
		}
		head := strings.Fields(lines[0])
		if !slices.Equal(head[:2], []string{"MESH", "NAME"}) {
			t.Fatalf("table header %q, want MESH NAME ...", lines[0])
		}
		var rows []string
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			rows = append(rows, f[0]+"/"+f[1])
		}
		return rows
	}
	want := []string{"ctl-get/mtp-one", "ctl-get/mtp-two"}
	r = c.ok(t, "", "get", "meshtrafficpermissions", "--mesh", "ctl-get")
	if got := policyRows(r.stdout); !slices.Equal(got, want) {
		t.Errorf("get meshtrafficpermissions --mesh ctl-get rows %v, want %v\n%s", got, want, r.stdout)
	}
	if !strings.Contains(r.stdout, "team=a") {
		t.Errorf("the table should show mtp-one's labels:\n%s", r.stdout)
	}
	r = c.ok(t, "", "get", "mtp", "-m", "ctl-get")
	if got := policyRows(r.stdout); !slices.Equal(got, want) {
		t.Errorf("get mtp -m ctl-get rows %v, want %v\n%s", got, want, r.stdout)
	}
	r = c.ok(t, "", "get", "mtp", "mtp-one", "-m", "ctl-get", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(r.stdout), &ydoc); err != nil || ydoc["name"] != "mtp-one" || ydoc["mesh"] != "ctl-get" {
		t.Errorf("get mtp mtp-one -o yaml (err %v):\n%s", err, r.stdout)
	}
}

func testCtlDelete(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	s.n.createMesh(t, "ctl-del")
	s.n.mustPut(t, "/meshes/ctl-del/meshtrafficpermissions/doomed", mtpYAML("ctl-del", "doomed", nil))
	s.n.mustPut(t, "/meshes/ctl-del/meshtrafficpermissions/kept", mtpYAML("ctl-del", "kept", nil))

	r := c.ok(t, "", "delete", "mtp", "doomed", "-m", "ctl-del")
	if !strings.Contains(r.stdout, "deleted") {
		t.Errorf("delete output: %q", r.stdout)
	}
	expect(t, s.n.get(t, "/meshes/ctl-del/meshtrafficpermissions/doomed"), http.StatusNotFound, "GET the deleted policy")
	expect(t, s.n.get(t, "/meshes/ctl-del/meshtrafficpermissions/kept"), http.StatusOK, "GET the other policy")

	r = c.fails(t, "", "get", "mtp", "doomed", "-m", "ctl-del")
	if !strings.Contains(r.stderr, "not found") {
		t.Errorf("get of a deleted policy: stderr %q, want it to say not found", r.stderr)
	}
	r = c.fails(t, "", "delete", "mtp", "doomed", "-m", "ctl-del")
	if !strings.Contains(r.stderr, "not found") {
		t.Errorf("second delete: stderr %q, want it to say not found", r.stderr)
	}
}

func testCtlApplyInvalid(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	s.n.createMesh(t, "ctl-invalid")
	file := writeFile(t, "bad.yaml", `type: Mesh
name: ctl-invalid-new
---
type: MeshTrafficPermission
name: bad-policy
mesh: ctl-invalid
spec:
  targetRef:
    kind: Nonsense
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Maybe
`)
	r := c.fails(t, "", "apply", "-f", file)
	for _, field := range []string{"spec.targetRef.kind", "spec.from[0].default.action"} {
		if !strings.Contains(r.stderr, field) {
			t.Errorf("stderr does not name %s:\n%s", field, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, "bad-policy") {
		t.Errorf("stderr does not name the invalid resource:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout, "created") {
		t.Errorf("stdout reports writes:\n%s", r.stdout)
	}
	expect(t, s.n.get(t, "/meshes/ctl-invalid-new"), http.StatusNotFound, "the valid document of a bad file was written")
	expect(t, s.n.get(t, "/meshes/ctl-invalid/meshtrafficpermissions/bad-policy"), http.StatusNotFound, "the invalid document was written")

	// A document that does not decode (unknown field) fails before the
	// API is asked, and also writes nothing.
	file = writeFile(t, "bad-shape.yaml", "type: Mesh\nname: ctl-invalid-new\n---\ntype: Mesh\nname: ctl-invalid-other\nmtlss: {}\n")
	r = c.fails(t, "", "apply", "-f", file)
	if !strings.Contains(r.stderr, "mtlss") {
		t.Errorf("stderr does not name the unknown field:\n%s", r.stderr)
	}
	expect(t, s.n.get(t, "/meshes/ctl-invalid-new"), http.StatusNotFound, "the valid document of a bad file was written")
}

func testCtlApplyUnreadable(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	r := c.fails(t, "", "apply", "-f", writeFile(t, "garbage.yaml", "type: Mesh\nname: [unclosed\n  : : :\n"))
	if !strings.Contains(strings.ToLower(r.stderr), "yaml") {
		t.Errorf("a file that is not YAML: stderr %q, want it to say the YAML is malformed", r.stderr)
	}
	r = c.fails(t, "", "apply", "-f", writeFile(t, "scalar.yaml", "just some words\n"))
	if strings.TrimSpace(r.stderr) == "" || strings.Contains(r.stderr, "panic") {
		t.Errorf("a YAML scalar: stderr %q", r.stderr)
	}
	missing := writeFile(t, "x", "") + "-does-not-exist.yaml"
	r = c.fails(t, "", "apply", "-f", missing)
	if !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("a missing file: stderr %q, want its path and 'no such file'", r.stderr)
	}
	r = c.fails(t, "", "apply")
	if !strings.Contains(r.stderr, "-f") {
		t.Errorf("apply without -f: stderr %q", r.stderr)
	}
	r = c.fails(t, "", "apply", "-f", "-")
	if !strings.Contains(r.stderr, "no resources") {
		t.Errorf("apply of empty stdin: stderr %q", r.stderr)
	}
}

func testCtlUnknownType(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	r := c.fails(t, "", "get", "foo")
	for _, want := range []string{`"foo"`, "Mesh", "MeshTrafficPermission", "TrafficTrace", "Dataplane"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("get foo: stderr %q does not mention %s", r.stderr, want)
		}
	}
	r = c.fails(t, "", "delete", "foo", "x")
	if !strings.Contains(r.stderr, "MeshTrafficPermission") {
		t.Errorf("delete foo: stderr %q does not list the known types", r.stderr)
	}
}

func testCtlControlPlanes(t *testing.T, s *shared) {
	c := newCtl(t) // no MESHCTL_API / MESHCTL_TOKEN
	tokenFile := writeFile(t, "token", s.n.token+"\n")

	r := c.fails(t, "", "get", "meshes")
	if !strings.Contains(r.stderr, "control plane") {
		t.Errorf("get without any control plane: stderr %q", r.stderr)
	}

	// A wrong address is refused and not saved.
	// (meshctl retries refused connections until --timeout, 30s by default.)
	wrong := "http://" + harness.FreeAddr(t)
	start := time.Now()
	r = c.fails(t, "", "config", "control-planes", "add", "--name", "wrong", "--address", wrong, "--token-file", tokenFile, "--timeout", "2s")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("add with a wrong address and --timeout 2s took %s", d)
	}
	if !strings.Contains(r.stderr, wrong) || !strings.Contains(r.stderr, "not usable") {
		t.Errorf("add with a wrong address: stderr %q, want it to name the address", r.stderr)
	}
	// A right address with a wrong token is refused too.
	r = c.fails(t, "", "config", "control-planes", "add", "--name", "wrong", "--address", s.g.URL(), "--token", "bad-token")
	if !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
		t.Errorf("add with a wrong token: stderr %q", r.stderr)
	}
	if _, err := os.Stat(c.config); err == nil {
		b, _ := os.ReadFile(c.config)
		if strings.Contains(string(b), "wrong") {
			t.Errorf("a refused control plane was saved:\n%s", b)
		}
	}

	r = c.ok(t, "", "config", "control-planes", "add", "--name", "local", "--address", s.g.URL(), "--token-file", tokenFile)
	if !strings.Contains(r.stdout, "local") {
		t.Errorf("add output: %q", r.stdout)
	}
	r = c.ok(t, "", "config", "control-planes", "list")
	lines := nonEmptyLines(r.stdout)
	if len(lines) != 2 {
		t.Fatalf("list:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[1]); len(f) != 3 || f[0] != "*" || f[1] != "local" || f[2] != s.g.URL() {
		t.Errorf("list row %q, want * local %s", lines[1], s.g.URL())
	}

	// Now meshctl works from its config alone.
	r = c.ok(t, "", "get", "meshes")
	if !strings.Contains(r.stdout, "default") {
		t.Errorf("get meshes through the config:\n%s", r.stdout)
	}
	// The config file lives where MESHCTL_CONFIG says, not under HOME.
	if _, err := os.Stat(c.config); err != nil {
		t.Errorf("config file %s: %v", c.config, err)
	}

	// Adding the same name again needs --overwrite.
	r = c.fails(t, "", "config", "control-planes", "add", "--name", "local", "--address", s.g.URL(), "--token-file", tokenFile)
	if !strings.Contains(r.stderr, "overwrite") {
		t.Errorf("re-adding local: stderr %q", r.stderr)
	}
}

func testCtlVersion(t *testing.T, s *shared) {
	c := ctlFor(t, s)
	info := s.n.request(t, false, http.MethodGet, "/", nil).object(t)
	cluster, _ := info["clusterId"].(string)
	if cluster == "" {
		t.Fatalf("GET / has no clusterId")
	}
	r := c.ok(t, "", "version")
	if !strings.Contains(r.stdout, "meshctl") {
		t.Errorf("version does not print meshctl's version:\n%s", r.stdout)
	}
	for _, want := range []string{"global", cluster, "shared-1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("version output does not contain %q:\n%s", want, r.stdout)
		}
	}
}

func testCtlNoToken(t *testing.T, s *shared) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no token", []string{"MESHCTL_API=" + s.g.URL()}},
		{"wrong token", []string{"MESHCTL_API=" + s.g.URL(), "MESHCTL_TOKEN=wrong"}},
	} {
		c := newCtl(t, tc.env...)
		r := c.fails(t, "", "get", "meshes")
		if !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
			t.Errorf("%s: stderr %q, want it to say unauthorized", tc.name, r.stderr)
		}
		r = c.fails(t, mtpYAML("default", "no-token", nil), "apply", "-f", "-")
		if !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
			t.Errorf("%s: apply stderr %q, want it to say unauthorized", tc.name, r.stderr)
		}
	}
	expect(t, s.n.get(t, "/meshes/default/meshtrafficpermissions/no-token"), http.StatusNotFound, "policy applied without a token")
}
