package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/test/harness"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// wait bounds every wait of these tests; each ends as soon as its condition
// holds.
const wait = 15 * time.Second

// runZone starts one replica of a zone whose replica file is file (kept
// across restarts). stop is idempotent and registered as a cleanup.
func runZone(t *testing.T, g *node, name, file, tok string, reps *reports) *zone {
	t.Helper()
	rep, err := replica.Open(file, nil, replica.Options{Zone: name})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := ca.CertPool(g.syncCA)
	if err != nil {
		t.Fatal(err)
	}
	cfg := syncclient.Config{
		Zone: name, ReplicaID: name + "-r1", GlobalAddrs: []string{g.cfg.SyncAddr}, Token: tok,
		DialOptions:       []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool}))},
		Replica:           rep,
		HeartbeatInterval: time.Second,
		Backoff:           syncclient.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond},
	}
	if reps != nil {
		cfg.Reports = reps
	}
	c, err := syncclient.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	z := &zone{rep: rep, client: c}
	var once sync.Once
	z.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			rep.Close()
		})
	}
	t.Cleanup(z.stop)
	return z
}

func (n *node) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(n.api, n.token, client.WithRetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func overview(t *testing.T, c *client.Client, zone string) *api.ZoneOverview {
	t.Helper()
	ov, err := c.ZoneOverview(context.Background(), zone)
	if err != nil && !api.IsNotFound(err) { // a zone's Zone appears on its first flush
		t.Fatalf("overview of %s: %v", zone, err)
	}
	if ov == nil {
		ov = &api.ZoneOverview{}
	}
	return ov
}

// statusIn returns key's state in each zone ("applied", ...), and the reasons.
func statusIn(t *testing.T, c *client.Client, key api.Key) (map[string]api.ZoneResourceStatus, *api.ResourceStatus) {
	t.Helper()
	st, err := c.ResourceStatus(context.Background(), key)
	if err != nil {
		t.Fatalf("status of %s: %v", key, err)
	}
	out := map[string]api.ZoneResourceStatus{}
	for _, z := range st.Zones {
		out[z.Zone] = z
	}
	return out, st
}

func ingressReport(t *testing.T, seq uint64, zone, address string) *syncpb.Report {
	t.Helper()
	r, err := api.Decode([]byte(fmt.Sprintf(`{"type":"ZoneIngress","name":"ingress","zone":%q,"networking":{"address":%q,"port":10001},
		"availableServices":[{"mesh":"default","tags":{"kuma.io/service":"web"},"instances":1}]}`, zone, address)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := batch.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return &syncpb.Report{Sequence: seq, Upserts: []*syncpb.Resource{w}}
}

const mtpBody = `{"type":"MeshTrafficPermission","mesh":"default","name":"allow","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"%s"}}]}}`

func TestZoneOverviewAndResourceStatus(t *testing.T) {
	g := startGlobal(t)
	c := g.client(t)
	file1, file2 := filepath.Join(t.TempDir(), "zone-1.db"), filepath.Join(t.TempDir(), "zone-2.db")
	tok1, tok2 := g.zoneToken(t, "zone-1"), g.zoneToken(t, "zone-2")
	reps2 := newReports()
	reps2.add(dataplaneReport(t, 1, "web-1"))
	reps2.add(ingressReport(t, 2, "zone-2", "10.0.2.1"))
	runZone(t, g, "zone-1", file1, tok1, nil)
	z2 := runZone(t, g, "zone-2", file2, tok2, reps2)

	// Both zones online, served by g1, caught up.
	for _, name := range []string{"zone-1", "zone-2"} {
		harness.Eventually(t, wait, name+" online and caught up", func() bool {
			st := overview(t, c, name).Status
			return st.Online && st.Replicas == 1 && st.GlobalNode == "g1" && st.ConnectTime != nil &&
				st.AckedRevision > 0 && st.LagRevisions == 0 && st.LagSeconds == 0 && st.Enabled && st.Network == name
		})
	}
	ov := overview(t, c, "zone-2")
	if ov.Type != api.TypeZoneOverview || ov.Name != "zone-2" || len(ov.ZoneInsight.Subscriptions) != 1 ||
		ov.Status.ReplicaStatus[0].ReplicaID != "zone-2-r1" || len(ov.Status.Rejected) != 0 {
		t.Errorf("zone-2 overview: %+v", ov)
	}

	// The per-zone gauges.
	code, metrics := g.call(t, "GET", "/metrics", nil)
	for _, want := range []string{`meshfed_zone_online{zone="zone-1"} 1`, `meshfed_zone_replicas{zone="zone-2"} 1`,
		`meshfed_zone_lag_revisions{zone="zone-2"} 0`, `meshfed_zone_rejected_resources{zone="zone-1"} 0`} {
		if code != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	// The list form, paged.
	code, body := g.call(t, "GET", "/zones+insights?size=1", nil)
	var page struct {
		Total int
		Items []api.ZoneOverview
		Next  *string
	}
	if err := json.Unmarshal(body, &page); code != 200 || err != nil || page.Total != 2 || len(page.Items) != 1 ||
		page.Items[0].Name != "zone-1" || page.Next == nil || !strings.Contains(*page.Next, "offset=1") {
		t.Fatalf("GET /zones+insights?size=1: %d %s", code, body)
	}
	all, err := c.ZoneOverviews(context.Background())
	if err != nil || len(all) != 2 || all[1].Name != "zone-2" {
		t.Fatalf("ZoneOverviews: %v %+v", err, all)
	}

	// A policy: applied in both zones.
	if code, body := g.call(t, "PUT", "/meshes/default/meshtrafficpermissions/allow", fmt.Sprintf(mtpBody, "Allow")); code != 201 {
		t.Fatalf("put policy: %d %s", code, body)
	}
	key := api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "allow"}
	harness.Eventually(t, wait, "the policy applied in both zones", func() bool {
		in, st := statusIn(t, c, key)
		return in["zone-1"].Status == api.ResourceApplied && in["zone-2"].Status == api.ResourceApplied &&
			st.Summary.AppliedEverywhere && st.Summary.Applied == 2
	})

	// Zone-2 stops: offline.
	z2.stop()
	harness.Eventually(t, wait, "zone-2 offline", func() bool {
		st := overview(t, c, "zone-2").Status
		return !st.Online && st.Replicas == 0 && st.OfflineReason != ""
	})
	// A change while it is away: applied in zone-1, pending in zone-2,
	// which lags by revisions and time.
	if code, body := g.call(t, "PUT", "/meshes/default/meshtrafficpermissions/allow", fmt.Sprintf(mtpBody, "Deny")); code != 200 {
		t.Fatalf("update policy: %d %s", code, body)
	}
	harness.Eventually(t, wait, "the update applied in zone-1 only", func() bool {
		in, st := statusIn(t, c, key)
		return in["zone-1"].Status == api.ResourceApplied && in["zone-1"].Online &&
			in["zone-2"].Status == api.ResourcePending && !in["zone-2"].Online && !st.Summary.AppliedEverywhere
	})
	st2 := overview(t, c, "zone-2").Status
	if st2.LagRevisions == 0 || st2.LagSeconds <= 0 || st2.LatestRevision <= st2.AckedRevision {
		t.Errorf("zone-2 lag while away: %+v", st2)
	}
	if st1 := overview(t, c, "zone-1").Status; st1.LagRevisions != 0 {
		t.Errorf("zone-1 lags while caught up: %+v", st1)
	}

	// Zone-2 comes back from its file: the update applied everywhere, no lag.
	z2 = runZone(t, g, "zone-2", file2, tok2, reps2)
	harness.Eventually(t, wait, "the update applied in both zones", func() bool {
		in, st := statusIn(t, c, key)
		return in["zone-2"].Status == api.ResourceApplied && in["zone-2"].Online && st.Summary.AppliedEverywhere
	})
	_, st := statusIn(t, c, key)
	if r, ok := z2.rep.Get(key); !ok || r.Revision != st.Revision {
		t.Errorf("zone-2's replica holds %v, want the policy at revision %d", r, st.Revision)
	}
	harness.Eventually(t, wait, "zone-2 caught up", func() bool {
		st := overview(t, c, "zone-2").Status
		return st.Online && st.LagRevisions == 0 && st.LagSeconds == 0
	})
	if len(overview(t, c, "zone-2").ZoneInsight.Subscriptions) != 2 {
		t.Errorf("zone-2's insight should hold its two streams: %+v", overview(t, c, "zone-2").ZoneInsight.Subscriptions)
	}

	// What zones reported: zone-2's ingress and Dataplane are applied in
	// zone-1 (for cross-zone endpoints) and are zone-2's own.
	harness.Eventually(t, wait, "zone-2's ingress applied in zone-1", func() bool {
		in, _ := statusIn(t, c, api.Key{Type: api.TypeZoneIngress, Name: "zone-2.ingress"})
		return in["zone-1"].Status == api.ResourceApplied &&
			in["zone-2"].Status == api.ResourceNotSent && in["zone-2"].Reason == "reported by this zone"
	})
	harness.Eventually(t, wait, "zone-2's Dataplane applied in zone-1", func() bool {
		in, _ := statusIn(t, c, api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "zone-2.web-1"})
		return in["zone-1"].Status == api.ResourceApplied && in["zone-2"].Status == api.ResourceNotSent
	})

	// A resource both zones refuse: a ZoneIngress in global's state that
	// names no zone in its kuma.io/zone label (written past the API, which
	// refuses zone-owned types, as a hand-made or migrated state could).
	bad, err := api.Decode([]byte(`{"type":"ZoneIngress","name":"orphan","zone":"zone-9","networking":{"address":"10.0.9.1","port":10001}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(bad); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.srv.Store().Put(context.Background(), bad, rest.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	badKey := api.Key{Type: api.TypeZoneIngress, Name: "orphan"}
	harness.Eventually(t, wait, "the orphan ingress rejected by both zones", func() bool {
		in, st := statusIn(t, c, badKey)
		return in["zone-1"].Status == api.ResourceRejected && in["zone-2"].Status == api.ResourceRejected &&
			strings.Contains(in["zone-1"].Reason, "kuma.io/zone") && st.Summary.Rejected == 2 && !st.Summary.AppliedEverywhere
	})
	ov = overview(t, c, "zone-1")
	if len(ov.Status.Rejected) != 1 || ov.Status.Rejected[0].Name != "orphan" || ov.Status.LagRevisions != 0 {
		t.Errorf("zone-1 overview after the rejection: %+v", ov.Status)
	}
	// Deleted on global: the rejection goes with it.
	if err := g.srv.Store().Delete(context.Background(), badKey, rest.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, wait, "the rejection gone with the resource", func() bool {
		return len(overview(t, c, "zone-1").Status.Rejected) == 0
	})

	// Unknown things are 404s.
	if _, err := c.ZoneOverview(context.Background(), "zone-9"); !api.IsNotFound(err) {
		t.Errorf("overview of an unknown zone: %v", err)
	}
	if _, err := c.ResourceStatus(context.Background(), api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "nope"}); !api.IsNotFound(err) {
		t.Errorf("status of an unknown resource: %v", err)
	}
	if code, _ := g.call(t, "GET", "/meshes/default/zones/zone-1/_status", nil); code != 404 {
		t.Errorf("status of a global-scoped type under a mesh: %d, want 404", code)
	}
	// The status of a Mesh and a Zone (global-scoped routes).
	in, _ := statusIn(t, c, api.Key{Type: api.TypeMesh, Name: "default"})
	if in["zone-1"].Status != api.ResourceApplied || in["zone-2"].Status != api.ResourceApplied {
		t.Errorf("mesh status: %+v", in)
	}
	in, _ = statusIn(t, c, api.Key{Type: api.TypeZone, Name: "zone-1"})
	if len(in) != 2 {
		t.Errorf("zone status: %+v", in)
	}
	// Without the token: 401.
	anon, _ := client.New(g.api, "", client.WithRetry(client.RetryPolicy{Disabled: true}))
	var ue *client.UnauthorizedError
	if _, err := anon.ZoneOverview(context.Background(), "zone-1"); !errors.As(err, &ue) {
		t.Errorf("overview without a token: %v", err)
	}
}

func TestZoneLifecycle(t *testing.T) {
	g := startGlobal(t)
	c := g.client(t)
	tok1, tok2 := g.zoneToken(t, "zone-1"), g.zoneToken(t, "zone-2")
	reps2 := newReports()
	reps2.add(dataplaneReport(t, 1, "web-1"))
	reps2.add(ingressReport(t, 2, "zone-2", "10.0.2.1"))
	z1 := runZone(t, g, "zone-1", filepath.Join(t.TempDir(), "zone-1.db"), tok1, nil)
	z2 := runZone(t, g, "zone-2", filepath.Join(t.TempDir(), "zone-2.db"), tok2, reps2)
	ingKey := api.Key{Type: api.TypeZoneIngress, Name: "zone-2.ingress"}
	hasIngress := func() bool { _, ok := z1.rep.Get(ingKey); return ok }
	harness.Eventually(t, wait, "zone-2's ingress in zone-1's replica", hasIngress)
	harness.Eventually(t, wait, "zone-2 online", func() bool { return overview(t, c, "zone-2").Status.Online })

	// An online zone cannot be deleted.
	code, body := g.call(t, "DELETE", "/zones/zone-2", nil)
	if code != 409 || !strings.Contains(string(body), "online") {
		t.Fatalf("delete an online zone: %d %s, want 409 saying it is online", code, body)
	}

	// Disabled: its stream is dropped and refused, its ingress leaves zone-1.
	if code, body := g.call(t, "PUT", "/zones/zone-2", `{"type":"Zone","name":"zone-2","enabled":false}`); code != 200 {
		t.Fatalf("disable zone-2: %d %s", code, body)
	}
	harness.Eventually(t, wait, "zone-2 refused as disabled", func() bool {
		st := z2.client.Status()
		return !st.Connected && st.Refused && st.LastError != nil && strings.Contains(st.LastError.Error(), "disabled")
	})
	harness.Eventually(t, wait, "zone-2's ingress gone from zone-1's replica", func() bool { return !hasIngress() })
	ov := overview(t, c, "zone-2")
	if ov.Status.Online || ov.Status.Enabled || !strings.Contains(ov.Status.OfflineReason, "disabled") {
		t.Errorf("disabled zone-2 overview: %+v", ov.Status)
	}
	in, _ := statusIn(t, c, ingKey)
	if in["zone-1"].Status != api.ResourceNotSent || !strings.Contains(in["zone-1"].Reason, "disabled") {
		t.Errorf("ingress of a disabled zone in zone-1: %+v", in["zone-1"])
	}
	// Global still holds what zone-2 reported.
	if code, _ := g.call(t, "GET", "/zoneingresses/zone-2.ingress", nil); code != 200 {
		t.Errorf("zone-2's ingress on global after disabling: %d", code)
	}

	// Enabled again: it reconnects, and zone-1 gets the ingress back.
	if code, body := g.call(t, "PUT", "/zones/zone-2", `{"type":"Zone","name":"zone-2","enabled":true}`); code != 200 {
		t.Fatalf("enable zone-2: %d %s", code, body)
	}
	harness.Eventually(t, wait, "zone-2 reconnected", func() bool {
		return z2.client.Status().Connected && overview(t, c, "zone-2").Status.Online
	})
	harness.Eventually(t, wait, "zone-2's ingress back in zone-1's replica", hasIngress)

	// Stopped (offline), it can be deleted, with everything it reported.
	z2.stop()
	harness.Eventually(t, wait, "zone-2 offline", func() bool { return !overview(t, c, "zone-2").Status.Online })
	if code, body := g.call(t, "DELETE", "/zones/zone-2", nil); code != 200 {
		t.Fatalf("delete an offline zone: %d %s", code, body)
	}
	for _, path := range []string{"/zones/zone-2", "/zone-insights/zone-2", "/zoneingresses/zone-2.ingress",
		"/meshes/default/dataplanes/zone-2.web-1", "/zones/zone-2/_overview"} {
		if code, body := g.call(t, "GET", path, nil); code != 404 {
			t.Errorf("GET %s after deleting zone-2: %d %s, want 404", path, code, body)
		}
	}
	harness.Eventually(t, wait, "zone-2's ingress deleted from zone-1's replica", func() bool { return !hasIngress() })
	if code, _ := g.call(t, "GET", "/zones/zone-1", nil); code != 200 {
		t.Errorf("zone-1 went with zone-2: %d", code)
	}
}
