package integration

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/test/harness"
)

// TestMetrics runs a global node and a zone, makes some traffic (API
// writes and reads, an mTLS Mesh whose intermediate the zone gets signed,
// a proxy that ACKs one xDS type and NACKs another), then checks that both
// /metrics parse with Prometheus' text parser, that every series
// docs/metrics.md documents as always present is there, and that the
// traffic shows in the values.
func TestMetrics(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	f := startFederation(t)

	secure := "type: Mesh\nname: secure\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
	if code, body := f.gAPI.call(t, "PUT", "/meshes/secure", secure); code != 201 {
		t.Fatalf("PUT the mTLS Mesh: %d %s", code, body)
	}
	if code, _ := f.gAPI.call(t, "GET", "/meshes/nope", ""); code != 404 {
		t.Fatalf("GET an unknown Mesh: %d", code)
	}
	if code, _ := f.gAPI.call(t, "GET", "/global/status", ""); code != 200 {
		t.Fatalf("GET /global/status: %d", code)
	}
	harness.Eventually(t, 15*time.Second, "the zone's intermediate CA for Mesh secure", func() bool {
		st, ok := f.zoneServer.Status()
		for _, c := range st.CA {
			if ok && c.Mesh == "secure" && c.NotAfter != nil {
				return true
			}
		}
		return false
	})

	t.Log("a proxy connects, ACKs clusters and NACKs listeners")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	runProxy(ctx, t, f.xdsAddr)

	if code, _ := f.zAPI.call(t, "GET", "/zone/status", ""); code != 200 {
		t.Fatalf("GET /zone/status: %d", code)
	}
	harness.Eventually(t, 10*time.Second, "the proxy's report stored on global", func() bool {
		return f.gAPI.status(t, "/meshes/secure/dataplanes/zone-1.web-1") == 200
	})

	documented := documentedSeries(t)
	var g, z map[string]*dto.MetricFamily
	harness.Eventually(t, 10*time.Second, "global's acks and reports counted, the zone connected", func() bool {
		g, z = scrape(t, f.gAPI), scrape(t, f.zAPI)
		return sum(g, "meshfed_sync_acks_total", nil) > 0 && sum(g, "meshfed_sync_reports_total", nil) > 0 &&
			sum(z, "meshfed_zone_sync_connected", nil) == 1 && sum(g, "meshfed_zone_online", map[string]string{"zone": "zone-1"}) == 1
	})
	for name, role := range documented {
		switch {
		case role.always && (role.global && g[name] == nil):
			t.Errorf("global /metrics lacks %s (docs/metrics.md)", name)
		case role.always && (role.zone && z[name] == nil):
			t.Errorf("zone /metrics lacks %s (docs/metrics.md)", name)
		}
	}
	for _, fams := range []map[string]*dto.MetricFamily{g, z} {
		for name := range fams {
			if strings.HasPrefix(name, "meshfed_") && documented[name] == nil {
				t.Errorf("%s is served but not documented in docs/metrics.md", name)
			}
		}
	}

	now := float64(time.Now().Unix())
	zone1 := map[string]string{"zone": "zone-1"}
	checks := []struct {
		what string
		got  float64
		ok   func(float64) bool
	}{
		{"global meshfed_raft_leader", sum(g, "meshfed_raft_leader", nil), eq(1)},
		{"global meshfed_raft_applied_index", sum(g, "meshfed_raft_applied_index", nil), gt(1)},
		{"global meshfed_raft_commit_index", sum(g, "meshfed_raft_commit_index", nil), gt(1)},
		{"global meshfed_raft_term", sum(g, "meshfed_raft_term", nil), gt(0)},
		{"global meshfed_raft_apply_duration_seconds{via=leader} count", count(g, "meshfed_raft_apply_duration_seconds", map[string]string{"via": "leader"}), gt(2)},
		{"global meshfed_store_revision", sum(g, "meshfed_store_revision", nil), gt(1)},
		{"global meshfed_sync_streams{zone-1}", sum(g, "meshfed_sync_streams", zone1), eq(1)},
		{"global meshfed_sync_streams_opened_total{zone-1}", sum(g, "meshfed_sync_streams_opened_total", zone1), gt(0)},
		{"global meshfed_sync_messages_sent_total{welcome}", sum(g, "meshfed_sync_messages_sent_total", map[string]string{"zone": "zone-1", "type": "welcome"}), gt(0)},
		{"global meshfed_sync_messages_sent_total{changes}", sum(g, "meshfed_sync_messages_sent_total", map[string]string{"zone": "zone-1", "type": "changes"}), gt(0)},
		{"global meshfed_sync_sent_bytes_total", sum(g, "meshfed_sync_sent_bytes_total", zone1), gt(100)},
		{"global meshfed_sync_received_bytes_total", sum(g, "meshfed_sync_received_bytes_total", zone1), gt(10)},
		{"global meshfed_sync_certificate_requests_total{signed}", sum(g, "meshfed_sync_certificate_requests_total", map[string]string{"result": "signed"}), gt(0)},
		{"global meshfed_sync_refusals_total", sum(g, "meshfed_sync_refusals_total", nil), eq(0)},
		{"global meshfed_zone_lag_revisions{zone-1}", sum(g, "meshfed_zone_lag_revisions", zone1), ge(0)},
		{"global API PUT /meshes/{name} 201", sum(g, "meshfed_api_requests_total", map[string]string{"route": "/meshes/{name}", "method": "PUT", "code": "201"}), gt(0)},
		{"global API GET /meshes/{name} 404", sum(g, "meshfed_api_requests_total", map[string]string{"route": "/meshes/{name}", "method": "GET", "code": "404"}), gt(0)},
		{"global API POST /tokens/zone 200", sum(g, "meshfed_api_requests_total", map[string]string{"route": "/tokens/zone", "code": "200"}), gt(0)},
		{"global API GET /global/status", sum(g, "meshfed_api_requests_total", map[string]string{"route": "/global/status"}), gt(0)},
		{"global API latency count", count(g, "meshfed_api_request_duration_seconds", map[string]string{"route": "/meshes/{name}"}), gt(1)},

		{"zone meshfed_zone_replica_revision", sum(z, "meshfed_zone_replica_revision", nil), gt(1)},
		{"zone meshfed_zone_sync_streams_total", sum(z, "meshfed_zone_sync_streams_total", nil), gt(0)},
		{"zone meshfed_zone_sync_messages_received_total", sum(z, "meshfed_zone_sync_messages_received_total", nil), gt(1)},
		{"zone meshfed_zone_sync_received_bytes_total", sum(z, "meshfed_zone_sync_received_bytes_total", nil), gt(100)},
		{"zone meshfed_zone_sync_sent_bytes_total", sum(z, "meshfed_zone_sync_sent_bytes_total", nil), gt(10)},
		{"zone meshfed_zone_sync_changes_applied_total", sum(z, "meshfed_zone_sync_changes_applied_total", nil), gt(0)},
		{"zone meshfed_xds_streams{envoy}", sum(z, "meshfed_xds_streams", map[string]string{"kind": "envoy"}), eq(1)},
		{"zone meshfed_xds_responses_total", sum(z, "meshfed_xds_responses_total", nil), gt(1)},
		{"zone meshfed_xds_acks_total", sum(z, "meshfed_xds_acks_total", nil), gt(0)},
		{"zone meshfed_xds_nacks_total", sum(z, "meshfed_xds_nacks_total", nil), gt(0)},
		{"zone meshfed_zone_xds_pass_seconds count", count(z, "meshfed_zone_xds_pass_seconds", nil), gt(0)},
		{"zone meshfed_zone_ca_certificates_issued_total", sum(z, "meshfed_zone_ca_certificates_issued_total", nil), gt(0)},
		{"zone intermediate expiry{secure}", sum(z, "meshfed_zone_ca_intermediate_expiry_timestamp_seconds", map[string]string{"mesh": "secure"}), gt(now + 3600)},
		{"zone intermediate failing{secure}", sum(z, "meshfed_zone_ca_intermediate_failing", map[string]string{"mesh": "secure"}), eq(0)},
		{"zone earliest intermediate expiry", sum(z, "meshfed_zone_ca_intermediate_earliest_expiry_seconds", nil), gt(3600)},
		{"zone earliest dataplane cert expiry", sum(z, "meshfed_zone_dataplane_cert_earliest_expiry_seconds", nil), gt(60)},
		{"zone API GET /zone/status", sum(z, "meshfed_api_requests_total", map[string]string{"route": "/zone/status", "code": "200"}), gt(0)},
	}
	for _, c := range checks {
		if !c.ok(c.got) {
			t.Errorf("%s = %v", c.what, c.got)
		}
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
func gt(min float64) func(float64) bool  { return func(v float64) bool { return v > min } }
func ge(min float64) func(float64) bool  { return func(v float64) bool { return v >= min } }

// runProxy connects an Envoy-like ADS client for Dataplane web-1 of Mesh
// secure (registering itself through its metadata), ACKs the first
// clusters response and NACKs the first listeners response, and returns
// with the stream still open (ctx ends it).
func runProxy(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"dataplane": map[string]any{
		"type": "Dataplane", "mesh": "secure", "name": "web-1",
		"networking": map[string]any{"address": "127.0.0.1", "inbound": []any{
			map[string]any{"port": 8080, "tags": map[string]any{"kuma.io/service": "web", "kuma.io/protocol": "http"}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	sctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "secure.web-1", Cluster: "web", UserAgentName: "envoy", Metadata: md}
	for _, r := range []*discoverygrpc.DiscoveryRequest{{Node: node, TypeUrl: resource.ClusterType}, {TypeUrl: resource.ListenerType}} {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	acked, nacked := false, false
	for !acked || !nacked {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("ADS stream: %v", err)
		}
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		switch resp.GetTypeUrl() {
		case resource.ClusterType:
			req.VersionInfo, acked = resp.GetVersionInfo(), true
		case resource.ListenerType:
			if nacked {
				continue
			}
			req.ErrorDetail, nacked = &status.Status{Code: 3, Message: "rejected by the metrics test"}, true
		default:
			continue
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
}

// documented is what docs/metrics.md says of a series.
type documented struct {
	global, zone bool // served by the role
	always       bool // not marked †
}

// documentedSeries reads docs/metrics.md's tables: rows "| `name` [†] |"
// under the "## Both roles", "## Global" and "## Zone" sections.
func documentedSeries(t *testing.T) map[string]*documented {
	t.Helper()
	file, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	out := map[string]*documented{}
	var global, zone bool
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## Both"):
			global, zone = true, true
		case strings.HasPrefix(line, "## Global"):
			global, zone = true, false
		case strings.HasPrefix(line, "## Zone"):
			global, zone = false, true
		case strings.HasPrefix(line, "## "):
			global, zone = false, false
		}
		cell, ok := strings.CutPrefix(line, "| `meshfed_")
		if !ok || !(global || zone) {
			continue
		}
		name, rest, _ := strings.Cut(cell, "`")
		cellEnd, _, _ := strings.Cut(rest, "|")
		out["meshfed_"+name] = &documented{global: global, zone: zone, always: !strings.Contains(cellEnd, "†")}
	}
	if err := sc.Err(); err != nil || len(out) < 20 {
		t.Fatalf("docs/metrics.md: %d series read, err %v", len(out), err)
	}
	return out
}

// scrape fetches and parses an API's /metrics with Prometheus' text parser.
func scrape(t *testing.T, e endpoint) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := endpoint{base: e.base}.call(t, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("GET %s/metrics: %d", e.base, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v", e.base, err)
	}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			if v := value(m); math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%s/metrics: %s%s is %v", e.base, name, labels(m), v)
			}
		}
	}
	return fams
}

// sum adds the values of name's series whose labels include match.
func sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range series(fams, name, match) {
		total += value(m)
	}
	return total
}

// count adds the sample counts of name's histogram series matching match.
func count(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range series(fams, name, match) {
		total += float64(m.GetHistogram().GetSampleCount())
	}
	return total
}

func series(fams map[string]*dto.MetricFamily, name string, match map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range match {
			ok = ok && have[k] == v
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return m.GetHistogram().GetSampleSum()
	case m.Summary != nil:
		return m.GetSummary().GetSampleSum()
	}
	return 0
}

func labels(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.GetLabel() {
		fmt.Fprintf(&b, "%s=%q,", l.GetName(), l.GetValue())
	}
	return "{" + strings.TrimSuffix(b.String(), ",") + "}"
}
