package api

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Helpers shared by the per-type tests (mesh_test.go, dataplane_test.go, ...).

var cmpSpec = []cmp.Option{cmp.AllowUnexported(Duration{}), cmpopts.EquateEmpty()}

// mustPrepare decodes doc, applies defaults and validates it, failing the
// test on any problem.
func mustPrepare(t *testing.T, doc string) *Resource {
	t.Helper()
	r, err := Decode([]byte(doc))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if err := Prepare(r); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return r
}

// problems decodes and prepares doc and returns the sorted field paths of
// the *ValidationError it fails with (nil if it does not fail), and the
// error for messages.
func problems(t *testing.T, doc string) ([]string, error) {
	t.Helper()
	r, err := Decode([]byte(doc))
	if err == nil {
		err = Prepare(r)
	}
	if err == nil {
		return nil, nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, not *ValidationError: %v", err, err)
	}
	var paths []string
	for _, fe := range ve.Errors {
		if fe.Message == "" {
			t.Errorf("problem at %q has no message", fe.Field)
		}
		if strings.ToLower(fe.Message[:1]) != fe.Message[:1] {
			t.Errorf("message %q does not start in lower case", fe.Message)
		}
		paths = append(paths, fe.Field)
	}
	slices.Sort(paths)
	return paths, err
}

// invalidCase is a document that must be refused with exactly the field
// paths in want (in any order; repeated paths count).
type invalidCase struct {
	name string
	doc  string
	want []string
}

func runInvalid(t *testing.T, cases []invalidCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := problems(t, tc.doc)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" || err == nil {
				t.Errorf("field paths (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// validCase is a document that must decode, prepare and round-trip.
type validCase struct {
	name string
	doc  string
}

func runValid(t *testing.T, cases []validCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustPrepare(t, tc.doc)
			checkRoundTrip(t, r)
		})
	}
}

// checkRoundTrip encodes r as YAML and JSON, decodes both and checks that
// nothing changed, that a second Prepare changes nothing (defaults are
// idempotent) and that the encoding is stable.
func checkRoundTrip(t *testing.T, r *Resource) {
	t.Helper()
	y, err := MarshalYAML(r)
	if err != nil {
		t.Fatalf("MarshalYAML: %v", err)
	}
	back, err := Decode(y)
	if err != nil {
		t.Fatalf("Decode of MarshalYAML output: %v\n%s", err, y)
	}
	if diff := cmp.Diff(r, back, cmpSpec...); diff != "" {
		t.Fatalf("YAML round trip changed the resource (-before +after):\n%s\nYAML:\n%s", diff, y)
	}
	if err := Prepare(back); err != nil {
		t.Fatalf("Prepare after round trip: %v", err)
	}
	if diff := cmp.Diff(r, back, cmpSpec...); diff != "" {
		t.Fatalf("second Prepare changed the resource (-before +after):\n%s", diff)
	}
	y2, err := MarshalYAML(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(y) != string(y2) {
		t.Fatalf("YAML encoding is not stable:\n%s\n---\n%s", y, y2)
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := DecodeJSON(j)
	if err != nil {
		t.Fatalf("DecodeJSON: %v\n%s", err, j)
	}
	if diff := cmp.Diff(r, fromJSON, cmpSpec...); diff != "" {
		t.Fatalf("JSON round trip changed the resource (-before +after):\n%s", diff)
	}
}

// encodeYAML prepares doc and returns its YAML encoding.
func encodeYAML(t *testing.T, doc string) string {
	t.Helper()
	y, err := MarshalYAML(mustPrepare(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return string(y)
}

func TestRegistryTypes(t *testing.T) {
	names := map[string]bool{}
	plurals := map[string]bool{}
	aliases := map[string]string{}
	for _, d := range Types() {
		if names[d.Name] || plurals[d.Plural] {
			t.Errorf("%s: duplicate name or plural %q", d.Name, d.Plural)
		}
		names[d.Name], plurals[d.Plural] = true, true
		for _, a := range append([]string{strings.ToLower(d.Name), d.Plural}, d.Aliases...) {
			if other, ok := aliases[a]; ok && other != d.Name {
				t.Errorf("alias %q names both %s and %s", a, other, d.Name)
			}
			aliases[a] = d.Name
			if got, err := LookupAny(a); err != nil || got.Name != d.Name {
				t.Errorf("LookupAny(%q) = %v, %v; want %s", a, got, err, d.Name)
			}
		}

		t.Run(d.Name, func(t *testing.T) {
			s1, s2 := d.New(), d.New()
			if s1 == nil || s1 == s2 {
				t.Fatalf("New() must return a fresh non-nil Spec each time")
			}
			mesh := ""
			if d.Scope == ScopeMesh {
				mesh = "default"
			}
			r := &Resource{Meta: Meta{Type: d.Name, Mesh: mesh, Name: "empty"}, Spec: s1}
			j, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("encode empty %s: %v", d.Name, err)
			}
			back, err := DecodeJSON(j)
			if err != nil {
				t.Fatalf("decode empty %s: %v\n%s", d.Name, err, j)
			}
			if diff := cmp.Diff(r, back, cmpSpec...); diff != "" {
				t.Errorf("empty %s round trip (-want +got):\n%s", d.Name, diff)
			}
			y, err := MarshalYAML(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(y); err != nil {
				t.Errorf("decode empty %s YAML: %v\n%s", d.Name, err, y)
			}
			// Defaults must never panic on an empty Spec, and Validate must
			// not panic on an undefaulted one.
			d.New().Validate(&Validator{}, d.specRoot())
			s1.Default()
			s1.Validate(&Validator{}, d.specRoot())
		})
	}
}

func TestCodecFieldPaths(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "unknown fields at every depth", doc: `
type: Mesh
name: default
color: blue
mtls:
  backends:
  - name: ca-1
    type: builtin
    conf:
      caCert:
        rsaBits: 2048
  - name: ca-2
    type: builtin
    dpcert: {}
`, want: []string{"color", "mtls.backends[0].conf.caCert.rsaBits", "mtls.backends[1].dpcert"}},
		{name: "wrong JSON types", doc: `
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: http
    servicePort: -1
    tags:
      kuma.io/service: web
      version: 2
  - port: 8081.5
    tags: [a, b]
  outbound: {}
`, want: []string{
			"networking.inbound[0].port",
			"networking.inbound[0].servicePort",
			`networking.inbound[0].tags["version"]`,
			"networking.inbound[1].port",
			"networking.inbound[1].tags",
			"networking.outbound",
		}},
		{name: "integer out of range", doc: `
type: ZoneIngress
name: zi-1
zone: zone-1
networking:
  address: 10.0.0.1
  port: 4294967296
`, want: []string{"networking.port"}},
		{name: "spec fields outside spec and unknown spec field", doc: `
type: MeshTrafficPermission
mesh: default
name: mtp
targetRef:
  kind: Mesh
spec:
  to: []
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`, want: []string{"spec.to", "targetRef"}},
		{name: "spec is not an object", doc: `
type: MeshRetry
mesh: default
name: r
spec: [1, 2]
`, want: []string{"spec"}},
		{name: "case-insensitive match is refused", doc: `
type: Zone
name: zone-1
Enabled: true
`, want: []string{"Enabled"}},
		{name: "bad duration is reported by validation with the other problems", doc: `
type: MeshTimeout
mesh: default
name: t
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: soon
      connectionTimeout: 5
  from:
  - targetRef:
      kind: MeshService
    default: {}
`, want: []string{
			"spec.from[0].default",
			"spec.from[0].targetRef.kind",
			"spec.from[0].targetRef.name",
			"spec.to[0].default.connectionTimeout",
			"spec.to[0].default.idleTimeout",
		}},
		{name: "envelope and spec problems together", doc: `
type: Mesh
name: Default_Mesh
labels:
  team: "a b"
mtls:
  enabledBackend: nope
`, want: []string{"labels[\"team\"]", "mtls.enabledBackend", "name"}},
		{name: "mesh on a global type, no mesh on a mesh type", doc: `
type: Zone
mesh: default
name: zone-1
`, want: []string{"mesh"}},
		{name: "no mesh on a mesh-scoped type", doc: `
type: Secret
name: s
data: YWJj
`, want: []string{"mesh"}},
	})

	t.Run("messages", func(t *testing.T) {
		_, err := problems(t, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-2
  backends:
  - name: ca-1
    type: vault
metrics:
  backends:
  - name: prom
    type: prometheus
    conf:
      port: "5670"
`)
		want := `metrics.backends[0].conf.port: must be an integer, not a JSON string`
		if err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
		_, err = problems(t, `
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
      version: 2
`)
		want = `networking.inbound[0].tags["version"]: must be a string, not a JSON number (quote the value in YAML)`
		if err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
		_, err = problems(t, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-2
  backends:
  - name: ca-1
    type: vault
`)
		want = `mtls.backends[0].type: must be one of builtin, provided; mtls.enabledBackend: backend "ca-2" is not defined in mtls.backends`
		if err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	})
}

func TestTagValidation(t *testing.T) {
	cases := []struct {
		key, value string
		ok         bool
	}{
		{"kuma.io/service", "backend_kuma-demo_svc_8080", true},
		{"kuma.io/service", "*", true},
		{"port", "http/8080", true},
		{"k8s.kuma.io/namespace", "kuma-demo", true},
		{"version", "v1:canary", true},
		{"version", "", false},
		{"version", "has space", false},
		{"version", strings.Repeat("a", 254), false},
		{"", "x", false},
		{"Kuma.IO/service", "x", false},
		{"-bad", "x", false},
	}
	for _, tc := range cases {
		v := &Validator{}
		ValidateTag(v, "tags", tc.key, tc.value)
		if v.OK() != tc.ok {
			t.Errorf("ValidateTag(%q, %q): ok = %v, want %v (%v)", tc.key, tc.value, v.OK(), tc.ok, v.Err())
		}
	}
}

func TestAddressHelpers(t *testing.T) {
	for s, want := range map[string]bool{
		"10.0.0.1": true, "::1": true, "fd00::1": true, "backend.svc": true, "localhost": true,
		"Web-1.Example.com": true, "10.0.0.300": false, "": false, "a..b": false, "-a.com": false,
		"has space": false,
	} {
		if got := IsIPOrHostname(s); got != want {
			t.Errorf("IsIPOrHostname(%q) = %v, want %v", s, got, want)
		}
	}
}
