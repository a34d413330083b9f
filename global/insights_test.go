package global

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/sync/batch"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

// testState is a store.State driven through its FSM, as Raft would.
type testState struct {
	t     *testing.T
	st    *store.State
	fsm   *store.FSM
	index uint64
}

func newTestState(t *testing.T) *testState {
	ts := &testState{t: t, st: store.NewState()}
	ts.fsm = store.NewFSM(ts.st)
	ts.apply(store.CmdBootstrap, store.BootstrapCommand{ClusterID: "c", AdminToken: "a", CreateDefaultMesh: true, Now: t0})
	return ts
}

func (ts *testState) apply(typ store.CommandType, body any) store.ApplyResult {
	ts.t.Helper()
	data, err := store.EncodeCommand(typ, body)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.index++
	res := ts.fsm.Apply(&raft.Log{Index: ts.index, Type: raft.LogCommand, Data: data}).(store.ApplyResult)
	if res.Err != nil {
		ts.t.Fatalf("apply %s: %v", typ, res.Err)
	}
	return res
}

func (ts *testState) put(doc string) *api.Resource {
	ts.t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		ts.t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		ts.t.Fatal(err)
	}
	body, _ := json.Marshal(r)
	return ts.apply(store.CmdPut, store.PutCommand{Resource: body, Now: t0.Add(time.Duration(ts.index) * time.Second)}).Resource
}

func ingressDoc(zone string) string {
	return fmt.Sprintf(`{"type":"ZoneIngress","name":"%[1]s.ingress","labels":{"kuma.io/zone":"%[1]s","kuma.io/origin":"zone"},
		"zone":"%[1]s","networking":{"address":"10.0.0.1","port":10001}}`, zone)
}

func zoneDoc(zone string, enabled bool) string {
	return fmt.Sprintf(`{"type":"Zone","name":"%s","enabled":%t}`, zone, enabled)
}

// seen renders changes as "+key@rev" (upsert) or "-key@rev" (deletion).
func seen(cs []batch.Change) []string {
	var out []string
	for _, c := range cs {
		sign := "+"
		if c.Resource == nil {
			sign = "-"
		}
		out = append(out, fmt.Sprintf("%s%s@%d", sign, c.Key, c.Revision))
	}
	return out
}

func TestFeedHidesWhatADisabledZoneReported(t *testing.T) {
	ts := newTestState(t)
	feed := stateFeed{st: ts.st}
	ts.put(zoneDoc("zone-1", true))
	ts.put(zoneDoc("zone-2", true))
	ing := ts.put(ingressDoc("zone-2"))
	start := ts.st.Revision()

	// Disabling zone-2 presents its ingress as deleted, at the Zone's revision.
	z := ts.put(zoneDoc("zone-2", false))
	cs, _, err := feed.ChangesSince(start)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("+Zone/zone-2@%d", z.Revision), fmt.Sprintf("-ZoneIngress/zone-2.ingress@%d", z.Revision)}
	if got := seen(cs); !slices.Equal(got, want) {
		t.Fatalf("changes after disabling = %v, want %v", got, want)
	}
	all, _ := feed.All()
	for _, r := range all {
		if r.Key() == ing.Key() {
			t.Error("All() shows a disabled zone's ingress")
		}
	}
	// A change of the hidden resource itself stays hidden.
	ing2 := ts.put(`{"type":"ZoneIngress","name":"zone-2.ingress","labels":{"kuma.io/zone":"zone-2","kuma.io/origin":"zone"},
		"zone":"zone-2","networking":{"address":"10.0.0.2","port":10001}}`)
	cs, _, _ = feed.ChangesSince(z.Revision)
	if got := seen(cs); !slices.Equal(got, []string{fmt.Sprintf("-ZoneIngress/zone-2.ingress@%d", ing2.Revision)}) {
		t.Fatalf("change of a hidden ingress = %v", got)
	}

	// Enabling it again presents the ingress again.
	z = ts.put(zoneDoc("zone-2", true))
	cs, _, _ = feed.ChangesSince(ing2.Revision)
	want = []string{fmt.Sprintf("+Zone/zone-2@%d", z.Revision), fmt.Sprintf("+ZoneIngress/zone-2.ingress@%d", z.Revision)}
	if got := seen(cs); !slices.Equal(got, want) {
		t.Fatalf("changes after enabling = %v, want %v", got, want)
	}
	if cs[1].Resource.Revision != ing2.Revision {
		t.Errorf("the re-presented ingress is at revision %d, want its own %d", cs[1].Resource.Revision, ing2.Revision)
	}
	// From before everything: each key once, as it is now.
	cs, _, _ = feed.ChangesSince(start)
	want = []string{fmt.Sprintf("+ZoneIngress/zone-2.ingress@%d", ing2.Revision), fmt.Sprintf("+Zone/zone-2@%d", z.Revision)}
	if got := seen(cs); !slices.Equal(got, want) {
		t.Fatalf("changes since %d = %v, want %v", start, got, want)
	}
}

func TestMergeInsight(t *testing.T) {
	ts := newTestState(t)
	mtp := ts.put(`{"type":"MeshTrafficPermission","mesh":"default","name":"p","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`)
	key := mtp.Key()
	gone := api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "gone"}

	stored := &api.ZoneInsightSpec{
		Subscriptions: []api.ZoneSubscription{
			{GlobalInstanceID: "g1", ReplicaID: "r0", ConnectTime: t0.Add(-time.Hour), DisconnectTime: at(-50 * time.Minute)},
			{GlobalInstanceID: "g1", ReplicaID: "r1", ConnectTime: t0.Add(-30 * time.Minute)}, // a previous run of g1
			{GlobalInstanceID: "g2", ReplicaID: "r2", ConnectTime: t0.Add(-20 * time.Minute), AckedRevision: 3},
			{GlobalInstanceID: "g1", ReplicaID: "r3", ConnectTime: t0.Add(-10 * time.Minute)}, // this run's, known locally
		},
		AckedRevision: 5, AckTime: at(-time.Minute),
		Rejected: []api.ZoneRejection{
			{Type: key.Type, Mesh: key.Mesh, Name: key.Name, Revision: mtp.Revision, Reason: "old reason"},
			{Type: gone.Type, Mesh: gone.Mesh, Name: gone.Name, Revision: 1, Reason: "deleted since"},
		},
	}
	li := &localInsight{
		subs: []api.ZoneSubscription{
			{GlobalInstanceID: "g1", ReplicaID: "r3", ConnectTime: t0.Add(-10 * time.Minute), DisconnectTime: at(-time.Second), DisconnectReason: "bye"},
			{GlobalInstanceID: "g1", ReplicaID: "r4", ConnectTime: t0, AckedRevision: 9, AckTime: at(0)},
		},
		acked: 9, ackTime: at(0),
		rejected: map[api.Key]api.ZoneRejection{key: {Type: key.Type, Mesh: key.Mesh, Name: key.Name, Revision: mtp.Revision, Reason: "new reason"}},
	}
	got := mergeInsight(stored, li, "g1", t0, ts.st.Get)

	var subs []string
	for _, s := range got.Subscriptions {
		state := "live"
		if s.DisconnectTime != nil {
			state = "ended: " + s.DisconnectReason
		}
		subs = append(subs, fmt.Sprintf("%s/%s %s", s.GlobalInstanceID, s.ReplicaID, state))
	}
	want := []string{
		"g1/r0 ended: ",
		"g1/r1 ended: " + restartedReason,
		"g2/r2 live",
		"g1/r3 ended: bye",
		"g1/r4 live",
	}
	if !slices.Equal(subs, want) {
		t.Errorf("subscriptions:\n got  %q\n want %q", subs, want)
	}
	if got.AckedRevision != 9 || !got.AckTime.Equal(t0) {
		t.Errorf("acked %d at %v, want 9 at %v", got.AckedRevision, got.AckTime, t0)
	}
	if len(got.Rejected) != 1 || got.Rejected[0].Reason != "new reason" {
		t.Errorf("rejected = %+v, want the local reason only (the other resource is gone)", got.Rejected)
	}
	if stored.Subscriptions[1].DisconnectTime != nil {
		t.Error("merge modified the stored insight")
	}

	// A newer version applied drops the rejection; one more stream trims
	// the oldest ended one first.
	mtp2 := ts.put(`{"type":"MeshTrafficPermission","mesh":"default","name":"p","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Deny"}}]}}`)
	li.acked = mtp2.Revision
	li.subs = append(li.subs, api.ZoneSubscription{GlobalInstanceID: "g1", ReplicaID: "r5", ConnectTime: t0.Add(time.Second)})
	got = mergeInsight(stored, li, "g1", t0, ts.st.Get)
	if len(got.Rejected) != 0 {
		t.Errorf("rejected = %+v after a newer version was acknowledged", got.Rejected)
	}
	if n := len(got.Subscriptions); n != api.MaxZoneSubscriptions || got.Subscriptions[0].ReplicaID != "r1" {
		t.Errorf("trimmed subscriptions = %+v", got.Subscriptions)
	}
	// No stored insight, no local knowledge: an empty insight.
	if e := mergeInsight(nil, nil, "g1", t0, ts.st.Get); len(e.Subscriptions)+len(e.Rejected) != 0 || e.AckedRevision != 0 {
		t.Errorf("empty merge = %+v", e)
	}
}

func TestTrimSubscriptionsKeepsLiveStreams(t *testing.T) {
	var subs []api.ZoneSubscription
	for i := range 7 {
		s := api.ZoneSubscription{GlobalInstanceID: "g1", ReplicaID: fmt.Sprintf("r%d", i), ConnectTime: t0.Add(time.Duration(i) * time.Minute)}
		if i == 3 {
			s.DisconnectTime = at(time.Hour)
		}
		subs = append(subs, s)
	}
	got := trimSubscriptions(subs)
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ReplicaID)
	}
	// r3 (ended) goes first, then the oldest live one.
	if want := []string{"r1", "r2", "r4", "r5", "r6"}; !slices.Equal(ids, want) {
		t.Errorf("trimmed = %v, want %v", ids, want)
	}
}

func TestReconnectBeforeTheOldStreamEnds(t *testing.T) {
	zi := &zoneInsights{zones: map[string]*localInsight{}, kick: make(chan struct{}, 1)}
	zi.Connected("zone-1", "r1", "g1", t0)
	zi.Connected("zone-1", "r1", "g1", t0.Add(time.Second)) // the replica reconnected
	zi.Acked("zone-1", "r1", 7, nil)
	zi.Disconnected("zone-1", "r1", t0.Add(2*time.Second), fmt.Errorf("old stream gone"))
	subs := zi.zones["zone-1"].subs
	if len(subs) != 2 || subs[0].DisconnectTime == nil || subs[1].DisconnectTime != nil ||
		subs[1].AckedRevision != 7 || subs[0].AckedRevision != 0 {
		t.Fatalf("subs = %+v: want the old stream ended, the new one live with the ack", subs)
	}
}
