package output

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
)

func TestDataplaneOverviewsTable(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ack := now.Add(-3 * time.Second)
	items := []api.DataplaneOverview{
		{Mesh: "default", Name: "zone-1.web-1", Labels: map[string]string{api.LabelZone: "zone-1", "meshfed.io/proxy": "grpc"},
			CreationTime: now.Add(-time.Hour), Online: true,
			Dataplane: &api.DataplaneSpec{Networking: api.DataplaneNetworking{Inbound: []api.DataplaneInbound{{Port: 80, Tags: map[string]string{api.TagService: "web"}}}}},
			DataplaneInsight: &api.DataplaneInsightSpec{
				Subscriptions: []api.DiscoverySubscription{{ID: "1", ControlPlaneInstanceID: "zone-1-a", ConnectTime: now.Add(-time.Minute),
					Status: api.DiscoveryStatus{Total: api.DiscoveryServiceStats{ResponsesRejected: 2, LastAckTime: &ack}}}},
				MTLS: &api.DataplaneInsightMTLS{CertificateExpirationTime: now.Add(20 * time.Hour)},
			}},
		{Mesh: "default", Name: "db-1", CreationTime: now.Add(-2 * time.Hour)},
	}
	var b bytes.Buffer
	if err := DataplaneOverviews(&b, Table, items, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", b.String())
	}
	for _, want := range []string{"zone-1.web-1", "zone-1", "online", "grpc", "web", "zone-1-a", "3.0s", " 2 ", "in 20h"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{"db-1", "offline", "envoy"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row %q lacks %q", lines[2], want)
		}
	}
	b.Reset()
	if err := DataplaneOverviews(&b, JSON, items, now); err != nil || !strings.Contains(b.String(), `"total": 2`) {
		t.Errorf("json: %v\n%s", err, b.String())
	}
}

func TestMeshInsightsTable(t *testing.T) {
	items := []api.MeshInsight{
		{Name: "secure", Dataplanes: api.MeshInsightDataplanes{Total: 3, Online: 2, Offline: 1},
			MTLS:     api.MeshInsightMTLS{EnabledBackend: "ca-1", Type: "builtin"},
			Policies: map[string]api.MeshInsightPolicy{"MeshTrafficPermission": {Total: 2}, "Secret": {Total: 2}}},
		{Name: "plain", Policies: map[string]api.MeshInsightPolicy{}},
	}
	var b bytes.Buffer
	if err := MeshInsights(&b, Table, items); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"secure", "2/3", "ca-1 (builtin)", "MeshTrafficPermission:2 Secret:2", "plain", "0/0", "off"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
