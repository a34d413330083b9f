package inventory

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
)

func openReplica(t testing.TB, id string) *Inventory {
	t.Helper()
	inv, err := Open(filepath.Join(t.TempDir(), "inventory.db"), slog.New(slog.NewTextHandler(io.Discard, nil)),
		Options{Zone: testZone, ReplicaID: id})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	return inv
}

// exchange merges everything a holds into b and the other way round, as
// gossip's push/pull does.
func exchange(t testing.TB, a, b *Inventory) {
	t.Helper()
	for _, p := range [][2]*Inventory{{a, b}, {b, a}} {
		recs, _, err := p[0].Records(0, "")
		if err != nil {
			t.Fatalf("Records: %v", err)
		}
		res, err := p[1].Merge(recs)
		if err != nil || len(res.Refused) > 0 {
			t.Fatalf("Merge: %v %v", err, res.Refused)
		}
	}
}

// view is an inventory's resources as comparable text (labels and spec).
func view(t testing.TB, inv *Inventory) string {
	t.Helper()
	var b strings.Builder
	for _, typ := range []string{api.TypeDataplane, api.TypeZoneIngress} {
		for _, r := range inv.List(typ, "") {
			j, err := json.Marshal(r.WithMeta(api.Meta{Type: r.Type, Mesh: r.Mesh, Name: r.Name, Labels: r.Labels}))
			if err != nil {
				t.Fatal(err)
			}
			b.Write(j)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestMergeLastWriterWins(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	mustPut(t, a, dataplane(t, "web-1", "10.0.0.1"))
	exchange(t, a, b)
	if _, ok := b.Get(dpKey("web-1")); !ok {
		t.Fatal("b did not take a's Dataplane")
	}
	if got := pendingSummary(b); !strings.Contains(got, "web-1") {
		t.Errorf("b must report what it took from a; pending: %s", got)
	}
	// b changes it after seeing a's version: b's change wins everywhere.
	mustPut(t, b, dataplane(t, "web-1", "10.0.0.2"))
	exchange(t, a, b)
	for name, inv := range map[string]*Inventory{"a": a, "b": b} {
		r, _ := inv.Get(dpKey("web-1"))
		if got := r.Spec.(*api.DataplaneSpec).Networking.Address; got != "10.0.0.2" {
			t.Errorf("%s: address %s, want b's 10.0.0.2", name, got)
		}
	}
	// A deletion on a wins over the older version, and stays deleted when
	// the older version arrives again.
	recsBefore, _, _ := b.Records(0, "")
	if _, err := a.Delete(dpKey("web-1"), 0); err != nil {
		t.Fatal(err)
	}
	exchange(t, a, b)
	if _, ok := b.Get(dpKey("web-1")); ok {
		t.Fatal("b kept a Dataplane a deleted")
	}
	res, err := b.Merge(recsBefore)
	if err != nil || res.Stale != 1 || res.Applied != 0 {
		t.Fatalf("an old version after the deletion: %+v %v; want stale", res, err)
	}
	if _, ok := b.Get(dpKey("web-1")); ok {
		t.Fatal("an old version brought a deleted Dataplane back")
	}
}

func TestMergeRefusesBadRecords(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	mustPut(t, a, dataplane(t, "good", "10.0.0.1"))
	recs, _, _ := a.Records(0, "")
	good := recs[0]
	otherZone := good
	otherZone.Name = "other"
	otherZone.Resource = []byte(strings.Replace(string(good.Resource), `"kuma.io/zone":"zone-1"`, `"kuma.io/zone":"zone-2"`, 1))
	otherZone.Resource = []byte(strings.Replace(string(otherZone.Resource), `"name":"good"`, `"name":"other"`, 1))
	invalid := good
	invalid.Name = "invalid"
	invalid.Resource = []byte(strings.Replace(strings.Replace(string(good.Resource), `"name":"good"`, `"name":"invalid"`, 1), `"address":"10.0.0.1"`, `"address":""`, 1))
	future := good
	future.Name = "future"
	future.Resource = []byte(strings.Replace(string(good.Resource), `"name":"good"`, `"name":"future"`, 1))
	future.Stamp.Time = time.Now().Add(time.Hour).UnixNano()
	globalType := Record{Type: api.TypeMesh, Name: "m", Stamp: good.Stamp, Resource: []byte(`{"type":"Mesh","name":"m"}`)}
	noStamp := good
	noStamp.Name = "nostamp"
	noStamp.Stamp = Stamp{}

	res, err := b.Merge([]Record{otherZone, invalid, future, globalType, noStamp, good})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 1 || len(res.Refused) != 5 {
		t.Fatalf("applied %d, refused %v; want the good one applied and 5 refused", res.Applied, res.Refused)
	}
	for i, want := range []string{`kuma.io/zone`, `networking.address`, `ahead of this replica's clock`, `not a type zones own`, `stamp`} {
		if !strings.Contains(res.Refused[i].Error(), want) {
			t.Errorf("refusal %d: %v; want it to mention %q", i, res.Refused[i], want)
		}
	}
	if got := len(b.List(api.TypeDataplane, "")); got != 1 {
		t.Errorf("b holds %d Dataplanes, want only the good one", got)
	}
}

// TestMergeConverges: random writes on three replicas, exchanged in random
// pairs, end with the same view everywhere once every pair has exchanged.
func TestMergeConverges(t *testing.T) {
	reps := []*Inventory{openReplica(t, "a"), openReplica(t, "b"), openReplica(t, "c")}
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"web-1", "web-2", "web-3", "web-4"}
	for step := 0; step < 300; step++ {
		inv := reps[rng.IntN(len(reps))]
		name := names[rng.IntN(len(names))]
		switch rng.IntN(4) {
		case 0:
			_, _ = inv.Delete(dpKey(name), 0)
		case 1:
			i, j := rng.IntN(3), rng.IntN(3)
			if i != j {
				exchange(t, reps[i], reps[j])
			}
		default:
			mustPut(t, inv, dataplane(t, name, "10.0.0."+string(rune('1'+rng.IntN(9)))))
		}
	}
	exchange(t, reps[0], reps[1])
	exchange(t, reps[1], reps[2])
	exchange(t, reps[0], reps[1])
	want := view(t, reps[0])
	for i, inv := range reps[1:] {
		if got := view(t, inv); got != want {
			t.Errorf("replica %d differs:\n%s\nwant\n%s", i+1, got, want)
		}
	}
}

func TestVersionsSurviveRestartAndPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := Open(path, logger, Options{Zone: testZone, ReplicaID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	mustPut(t, inv, dataplane(t, "web-2", "10.0.0.2"))
	if _, err := inv.Delete(dpKey("web-2"), 0); err != nil {
		t.Fatal(err)
	}
	before, _, _ := inv.Records(0, "")
	_ = inv.Close()
	inv, err = Open(path, logger, Options{Zone: testZone, ReplicaID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inv.Close() }()
	after, seq, _ := inv.Records(0, "")
	if len(after) != 2 || after[0].Stamp != before[0].Stamp || after[1].Stamp != before[1].Stamp || !after[1].Deleted {
		t.Fatalf("records after restart %+v, want %+v", after, before)
	}
	if since, _, _ := inv.Records(seq, "a"); len(since) != 0 {
		t.Errorf("Records since the last sequence: %d, want none", len(since))
	}
	// A later local write stamps after everything seen, restart or not.
	r := mustPut(t, inv, dataplane(t, "web-1", "10.0.0.9"))
	recs, _, _ := inv.Records(r.Revision-1, "a")
	if len(recs) != 1 || !recs[0].Stamp.After(before[1].Stamp) {
		t.Errorf("new write's record %+v must be newer than %+v", recs, before[1].Stamp)
	}
	n, err := inv.PruneTombstones(time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneTombstones = %d, %v; want the one tombstone", n, err)
	}
	if all, _, _ := inv.Records(0, ""); len(all) != 1 {
		t.Errorf("after pruning %d records, want 1", len(all))
	}
}

// TestMergeSystemTypes: a DataplaneInsight (a zone-owned system type the
// zone writes itself) travels between replicas like a Dataplane.
func TestMergeSystemTypes(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	mustPut(t, a, dataplane(t, "web-1", "10.0.0.1"))
	ins := &api.Resource{Meta: api.Meta{Type: api.TypeDataplaneInsight, Mesh: "default", Name: "web-1"},
		Spec: &api.DataplaneInsightSpec{Subscriptions: []api.DiscoverySubscription{{ID: "1", ControlPlaneInstanceID: "a", ConnectTime: time.Now().UTC()}}}}
	if err := api.Prepare(ins); err != nil {
		t.Fatal(err)
	}
	if errs, err := a.PutSystem([]*api.Resource{ins}, time.Time{}); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	exchange(t, a, b)
	got, ok := b.Get(api.Key{Type: api.TypeDataplaneInsight, Mesh: "default", Name: "web-1"})
	if !ok || !got.Spec.(*api.DataplaneInsightSpec).Online() {
		t.Fatalf("b's copy of a's insight: %v", got)
	}
}

// TestSpecChanged: a system type's change (an insight) wakes Changed but
// not SpecChanged; a Dataplane's wakes both.
func TestSpecChanged(t *testing.T) {
	inv := openReplica(t, "a")
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	all, spec := inv.Changed(), inv.SpecChanged()
	ins := &api.Resource{Meta: api.Meta{Type: api.TypeDataplaneInsight, Mesh: "default", Name: "web-1"}, Spec: &api.DataplaneInsightSpec{}}
	if err := api.Prepare(ins); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.PutSystem([]*api.Resource{ins}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	default:
		t.Error("an insight's change did not wake Changed")
	}
	select {
	case <-spec:
		t.Error("an insight's change woke SpecChanged")
	default:
	}
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.2"))
	select {
	case <-spec:
	default:
		t.Error("a Dataplane's change did not wake SpecChanged")
	}
}
