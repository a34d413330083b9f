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

func tp(t time.Time) *time.Time { return &t }

func zoneOverviews() []api.ZoneOverview {
	return []api.ZoneOverview{
		{Type: api.TypeZoneOverview, Name: "zone-1", Status: api.ZoneStatus{
			Online: true, Enabled: true, Network: "zone-1", GlobalNode: "global-2", GlobalNodes: []string{"global-1", "global-2"},
			ConnectTime: tp(now.Add(-5 * time.Minute)), Replicas: 2, AckedRevision: 120, LatestRevision: 120,
			ReplicaStatus: []api.ZoneReplicaStatus{
				{ReplicaID: "zone-1-a", GlobalNode: "global-1", ConnectTime: now.Add(-2 * time.Hour), AckedRevision: 120, AckTime: tp(now.Add(-300 * time.Millisecond))},
				{ReplicaID: "zone-1-b", GlobalNode: "global-2", ConnectTime: now.Add(-5 * time.Minute), AckedRevision: 121},
			},
			Rejected: []api.ZoneRejection{{Type: "MeshTimeout", Mesh: "default", Name: "too-long", Revision: 98, Reason: "spec.default: unknown field"}},
		}},
		{Type: api.TypeZoneOverview, Name: "zone-2", Status: api.ZoneStatus{
			Enabled: true, Network: "zone-2", AckedRevision: 100, LatestRevision: 104, LagRevisions: 4, LagSeconds: 2.5,
			OfflineReason: "the last stream ended: context canceled", Rejected: []api.ZoneRejection{},
		}},
		{Type: api.TypeZoneOverview, Name: "zone-3", Status: api.ZoneStatus{
			Network: "zone-3", LatestRevision: 104, LagRevisions: 104, LagSeconds: 7200,
			OfflineReason: "the zone is disabled (enabled: false)",
		}},
	}
}

// rows splits a table into its header and rows (fields joined by one space),
// keyed by the first field.
func rows(t *testing.T, out string, header string) map[string]string {
	t.Helper()
	got := map[string]string{}
	inTable := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			inTable = false
		case strings.Join(f, " ") == header:
			inTable = true
		case inTable:
			got[f[0]] = strings.Join(f, " ")
		}
	}
	return got
}

func TestZoneOverviewsTable(t *testing.T) {
	var b bytes.Buffer
	if err := ZoneOverviews(&b, Table, zoneOverviews(), now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	got := rows(t, out, "NAME STATUS GLOBAL-NODE REPLICAS ACKED-REV LAG REJECTED AGE")
	want := map[string]string{
		"zone-1": "zone-1 online global-1,global-2 2 120 0 1 5m",
		"zone-2": "zone-2 offline - 0 100 4 (2.5s) 0 -",
		"zone-3": "zone-3 disabled - 0 - 104 (2h) 0 -",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("row %s:\n got  %q\n want %q\n%s", name, got[name], w, out)
		}
	}
	for _, s := range []string{
		"offline:\n  zone-2: the last stream ended: context canceled\n  zone-3: the zone is disabled (enabled: false)\n",
		"rejected resources:\n  zone-1: MeshTimeout default/too-long@98: spec.default: unknown field\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in\n%s", s, out)
		}
	}
	if strings.Contains(out, "replicas:") {
		t.Errorf("the list shows replicas:\n%s", out)
	}

	b.Reset()
	if err := ZoneOverviews(&b, Table, nil, now); err != nil || b.String() != "No zones found.\n" {
		t.Errorf("empty list: %q %v", b.String(), err)
	}
}

func TestZoneOverviewTableShowsReplicas(t *testing.T) {
	ov := zoneOverviews()[0]
	var b bytes.Buffer
	if err := ZoneOverview(&b, Table, &ov, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	got := rows(t, out, "REPLICA GLOBAL-NODE CONNECTED ACKED-REV LAST-ACK")
	want := map[string]string{
		"zone-1-a": "zone-1-a global-1 2h 120 300ms",
		"zone-1-b": "zone-1-b global-2 5m 121 -",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("replica %s:\n got  %q\n want %q\n%s", id, got[id], w, out)
		}
	}
	zones := rows(t, out, "NAME STATUS GLOBAL-NODE REPLICAS ACKED-REV LAG REJECTED AGE")
	if zones["zone-1"] != "zone-1 online global-1,global-2 2 120 0 1 5m" || !strings.Contains(out, "rejected resources:") {
		t.Errorf("overview table:\n%s", out)
	}
}

func TestZoneOverviewsJSONAndYAML(t *testing.T) {
	for _, f := range []Format{JSON, YAML} {
		var b bytes.Buffer
		if err := ZoneOverviews(&b, f, zoneOverviews(), now); err != nil {
			t.Fatal(err)
		}
		j := b.Bytes()
		if f == YAML {
			if !strings.HasPrefix(b.String(), "total: 3\nitems:\n- type: ZoneOverview\n  name: zone-1\n") {
				t.Errorf("YAML out of the API's order:\n%s", b.String())
			}
			var err error
			if j, err = yaml.YAMLToJSON(j); err != nil {
				t.Fatal(err)
			}
		}
		var doc struct {
			Total int                `json:"total"`
			Items []api.ZoneOverview `json:"items"`
		}
		if err := json.Unmarshal(j, &doc); err != nil {
			t.Fatalf("%s: %v\n%s", f, err, b.String())
		}
		if doc.Total != 3 || doc.Items[1].Status.LagRevisions != 4 || len(doc.Items[0].Status.ReplicaStatus) != 2 {
			t.Errorf("%s round trip: %+v", f, doc)
		}
	}
	ov := zoneOverviews()[1]
	var b bytes.Buffer
	if err := ZoneOverview(&b, JSON, &ov, now); err != nil || !strings.Contains(b.String(), `"lagSeconds": 2.5`) {
		t.Errorf("one overview as JSON: %v\n%s", err, b.String())
	}
}

func resourceStatus() *api.ResourceStatus {
	return &api.ResourceStatus{
		Type: "MeshTrafficPermission", Mesh: "default", Name: "allow", Revision: 42, ModificationTime: now.Add(-3 * time.Minute),
		Summary: api.ResourceStatusSummary{Applied: 1, Pending: 1, Rejected: 1, NotSent: 1},
		Zones: []api.ZoneResourceStatus{
			{Zone: "zone-1", Status: api.ResourceApplied, Online: true, Enabled: true, AckedRevision: 50},
			{Zone: "zone-2", Status: api.ResourcePending, Enabled: true, AckedRevision: 40, Reason: "the zone is offline"},
			{Zone: "zone-3", Status: api.ResourceRejected, Online: true, Enabled: true, AckedRevision: 42, Reason: "invalid: spec.from"},
			{Zone: "zone-4", Status: api.ResourceNotSent, Reason: "the zone is disabled (enabled: false)"},
		},
	}
}

func TestResourceStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := ResourceStatus(&b, Table, resourceStatus(), now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	first := strings.SplitN(out, "\n", 2)[0]
	if want := `MeshTrafficPermission "allow" in mesh "default" at revision 42 (modified 3m ago): applied in 1 of 3 zone(s) that receive it; rejected by 1`; first != want {
		t.Errorf("title:\n got  %q\n want %q", first, want)
	}
	got := rows(t, out, "ZONE STATUS ONLINE ACKED-REV REASON")
	want := map[string]string{
		"zone-1": "zone-1 applied yes 50 -",
		"zone-2": "zone-2 pending no 40 the zone is offline",
		"zone-3": "zone-3 rejected yes 42 invalid: spec.from",
		"zone-4": "zone-4 not-sent no - the zone is disabled (enabled: false)",
	}
	for z, w := range want {
		if got[z] != w {
			t.Errorf("row %s:\n got  %q\n want %q\n%s", z, got[z], w, out)
		}
	}

	cases := []struct {
		summary api.ResourceStatusSummary
		want    string
	}{
		{api.ResourceStatusSummary{Applied: 2, NotSent: 1, AppliedEverywhere: true}, "applied in every zone that receives it (2)"},
		{api.ResourceStatusSummary{NotSent: 2, AppliedEverywhere: true}, "no zone receives it"},
	}
	for _, c := range cases {
		st := resourceStatus()
		st.Mesh, st.Type, st.Summary = "", "Zone", c.summary
		b.Reset()
		if err := ResourceStatus(&b, Table, st, now); err != nil {
			t.Fatal(err)
		}
		if first := strings.SplitN(b.String(), "\n", 2)[0]; !strings.HasSuffix(first, ": "+c.want) || !strings.HasPrefix(first, `Zone "allow" at`) {
			t.Errorf("title %q, want it to end with %q", first, c.want)
		}
	}
	st := resourceStatus()
	st.Zones = nil
	b.Reset()
	if err := ResourceStatus(&b, Table, st, now); err != nil || !strings.Contains(b.String(), "No zones found.") {
		t.Errorf("no zones: %v\n%s", err, b.String())
	}
}

func TestResourceStatusJSONAndYAML(t *testing.T) {
	for _, f := range []Format{JSON, YAML} {
		var b bytes.Buffer
		if err := ResourceStatus(&b, f, resourceStatus(), now); err != nil {
			t.Fatal(err)
		}
		j := b.Bytes()
		if f == YAML {
			if !strings.HasPrefix(b.String(), "type: MeshTrafficPermission\nmesh: default\nname: allow\nrevision: 42\n") {
				t.Errorf("YAML out of the API's order:\n%s", b.String())
			}
			var err error
			if j, err = yaml.YAMLToJSON(j); err != nil {
				t.Fatal(err)
			}
		}
		var got api.ResourceStatus
		if err := json.Unmarshal(j, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Zones) != 4 || got.Zones[2].Status != api.ResourceRejected || got.Zones[2].Reason != "invalid: spec.from" {
			t.Errorf("%s round trip: %+v", f, got)
		}
	}
}

func TestLag(t *testing.T) {
	cases := []struct {
		revs uint64
		secs float64
		want string
	}{
		{0, 12, "0"},
		{3, 0.25, "3 (250ms)"},
		{3, 1.5, "3 (1.5s)"},
		{10, 90, "10 (1m)"},
	}
	for _, c := range cases {
		if got := Lag(c.revs, c.secs); got != c.want {
			t.Errorf("Lag(%d, %v) = %q, want %q", c.revs, c.secs, got, c.want)
		}
	}
}
