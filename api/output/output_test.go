package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/api"
)

func mustDecode(t *testing.T, doc string) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	return r
}

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestTableColumns(t *testing.T) {
	mesh := mustDecode(t, `
type: Mesh
name: payments
mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}
metrics: {enabledBackend: prom, backends: [{name: prom, type: prometheus}]}
routing: {localityAwareLoadBalancing: true}
`)
	mesh.CreationTime = now.Add(-90 * time.Minute)
	mtp := mustDecode(t, `
type: MeshTrafficPermission
mesh: payments
name: allow
labels: {team: b, env: prod}
spec: {from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}
`)
	mtp.CreationTime = now.Add(-30 * time.Second)
	cases := []struct {
		items []*api.Resource
		want  []string
	}{
		{[]*api.Resource{mesh}, []string{"NAME", "MTLS", "AGE", "payments", "builtin/ca-1", "prometheus/prom", "on", "1h"}},
		{[]*api.Resource{mtp}, []string{"MESH", "NAME", "LABELS", "payments", "allow", "env=prod,team=b", "30s"}},
		{nil, []string{"No resources found."}},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := Many(&b, Table, c.items, now); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("table missing %q:\n%s", w, b.String())
			}
		}
	}
}

func TestStructuredFormats(t *testing.T) {
	r := mustDecode(t, "type: Mesh\nname: m1\n")
	var b bytes.Buffer
	if err := One(&b, YAML, r, now); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "type: Mesh\nname: m1\n") {
		t.Errorf("YAML should start with type and name:\n%s", b.String())
	}
	back, err := api.Decode(b.Bytes())
	if err != nil || back.Name != "m1" {
		t.Fatalf("YAML does not decode back: %v", err)
	}
	b.Reset()
	if err := Many(&b, JSON, []*api.Resource{r, r}, now); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Total int               `json:"total"`
		Items []json.RawMessage `json:"items"`
		Next  *string           `json:"next"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || doc.Total != 2 || len(doc.Items) != 2 || doc.Next != nil {
		t.Fatalf("JSON list = %s (%v)", b.String(), err)
	}
	b.Reset()
	if err := Many(&b, YAML, nil, now); err != nil {
		t.Fatal(err)
	}
	var y map[string]any
	if err := yaml.Unmarshal(b.Bytes(), &y); err != nil || y["total"] != float64(0) {
		t.Fatalf("empty YAML list = %s (%v)", b.String(), err)
	}
}

func TestParseFormatAndAge(t *testing.T) {
	for _, ok := range []string{"table", "yaml", "json"} {
		if _, err := ParseFormat(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("xml accepted")
	}
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 3 * time.Minute: "3m", 5 * time.Hour: "5h", 72 * time.Hour: "3d", -time.Second: "0s"} {
		if got := Age(now.Add(-d), now); got != want {
			t.Errorf("Age(%s) = %s, want %s", d, got, want)
		}
	}
	if Age(time.Time{}, now) != "-" {
		t.Error("zero time")
	}
}
