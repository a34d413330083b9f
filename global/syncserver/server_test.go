package syncserver_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// seed fills the feed with one resource of each kind the filter decides
// on: a Mesh (rev 1), a policy (2), zone-1's Dataplane (3, not fan-out),
// zone-1's and zone-2's ZoneIngress (4, 5).
func seed(t *testing.T, f *fakeFeed) {
	t.Helper()
	f.put(mesh(t, "default"))
	f.put(mtp(t, "default", "allow-all"))
	f.put(dataplane(t, "default", "web-1", "zone-1"))
	f.put(zoneIngress(t, "zi-1", "zone-1"))
	f.put(zoneIngress(t, "zi-2", "zone-2"))
}

func TestHelloFromEmptyZoneGetsEverythingItReceives(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)

	z, w := h.connect("zone-1", 0, "")
	want := &syncpb.Welcome{GlobalNode: "global-1", ClusterId: clusterID, Reset_: false, HeartbeatIntervalMs: 60000}
	if !proto.Equal(w, want) {
		t.Fatalf("welcome = %v, want %v", w, want)
	}
	parts := z.batchOf()
	if len(parts) != 1 || parts[0].GetRevision() != 5 {
		t.Fatalf("want one Changes at revision 5, got %v", parts)
	}
	wantNames := []string{"+Mesh/default@1", "+MeshTrafficPermission/default/allow-all@2", "+ZoneIngress/zi-2@5"}
	if got := names(parts...); !slices.Equal(got, wantNames) {
		t.Fatalf("changes = %v, want %v", got, wantNames)
	}
	for _, u := range parts[0].GetUpserts() {
		r, err := batch.Decode(u)
		if err != nil {
			t.Fatalf("upsert %s does not decode: %v", u.GetName(), err)
		}
		if r.Revision != u.GetRevision() {
			t.Errorf("%s: revision %d, want %d", u.GetName(), r.Revision, u.GetRevision())
		}
	}
	z.quiet(50 * time.Millisecond)
}

func TestEmptyGlobalSendsNoChanges(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	z, w := h.connect("zone-1", 0, "")
	if w.GetReset_() {
		t.Fatal("an empty zone on an empty global got a reset")
	}
	z.quiet(50 * time.Millisecond)
	rev := h.feed.put(mesh(t, "default"))
	if got := names(z.batchOf()...); !slices.Equal(got, []string{fmt.Sprintf("+Mesh/default@%d", rev)}) {
		t.Fatalf("changes = %v", got)
	}
}

func TestLiveChangesAndDeletionsArePushed(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	z.batchOf()

	start := time.Now()
	rev := h.feed.put(mtp(t, "default", "new"))
	parts := z.batchOf()
	if took := time.Since(start); took > time.Second {
		t.Errorf("a change took %s to reach the zone", took)
	}
	if got, want := names(parts...), []string{fmt.Sprintf("+MeshTrafficPermission/default/new@%d", rev)}; !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if parts[len(parts)-1].GetRevision() != rev {
		t.Fatalf("revision = %d, want %d", parts[len(parts)-1].GetRevision(), rev)
	}

	// An update of a policy and a deletion of another, in one batch.
	h.feed.put(mtp(t, "default", "new"))
	rev = h.feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))
	var got []string
	for len(got) < 2 {
		got = append(got, names(z.batchOf()...)...)
	}
	slices.Sort(got)
	want := []string{fmt.Sprintf("+MeshTrafficPermission/default/new@%d", rev-1), fmt.Sprintf("-MeshTrafficPermission/default/allow-all@%d", rev)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}

	// What the zone reported itself is not sent back to it.
	h.feed.put(dataplane(t, "default", "web-2", "zone-1"))
	z.quiet(100 * time.Millisecond)
}

func TestLargeBatchesAreChunked(t *testing.T) {
	checkLeaks(t)
	one, err := batch.Encode(mtp(t, "default", "p-00"))
	if err != nil {
		t.Fatal(err)
	}
	maxBytes := 3 * proto.Size(one)
	h := newHarness(t, func(c *syncserver.Config) { c.MaxMessageBytes = maxBytes })
	h.feed.put(mesh(t, "default"))
	var want []string
	want = append(want, "+Mesh/default@1")
	for i := range 10 {
		rev := h.feed.put(mtp(t, "default", fmt.Sprintf("p-%02d", i)))
		want = append(want, fmt.Sprintf("+MeshTrafficPermission/default/p-%02d@%d", i, rev))
	}
	slices.Sort(want)

	check := func(parts []*syncpb.Changes, rev uint64) {
		t.Helper()
		if len(parts) < 3 {
			t.Fatalf("want several parts under %d bytes, got %d", maxBytes, len(parts))
		}
		for i, p := range parts {
			if p.GetMore() != (i < len(parts)-1) {
				t.Errorf("part %d/%d: more = %v", i+1, len(parts), p.GetMore())
			}
			if p.GetRevision() != rev {
				t.Errorf("part %d: revision %d, want %d", i+1, p.GetRevision(), rev)
			}
			size := 0
			for _, u := range p.GetUpserts() {
				size += proto.Size(u)
			}
			if size > maxBytes && len(p.GetUpserts()) > 1 {
				t.Errorf("part %d holds %d bytes of resources, over %d", i+1, size, maxBytes)
			}
		}
	}

	z, _ := h.connect("zone-1", 0, "")
	parts := z.batchOf()
	check(parts, h.feed.revision())
	if got := names(parts...); !slices.Equal(got, want) {
		t.Fatalf("changes = %v\nwant %v", got, want)
	}

	// Live changes are chunked the same way.
	var live []string
	h.feed.mu.Lock() // one batch: nobody reads the feed until all are in
	for i := range 10 {
		h.feed.rev++
		r := mtp(t, "default", fmt.Sprintf("q-%02d", i))
		r.Revision = h.feed.rev
		h.feed.live[r.Key()] = r
		h.feed.last[r.Key()] = batch.Change{Key: r.Key(), Revision: r.Revision, Resource: r}
		live = append(live, fmt.Sprintf("+MeshTrafficPermission/default/q-%02d@%d", i, r.Revision))
	}
	h.feed.changed()
	h.feed.mu.Unlock()
	parts = z.batchOf()
	check(parts, h.feed.revision())
	if got := names(parts...); !slices.Equal(got, live) {
		t.Fatalf("changes = %v\nwant %v", got, live)
	}
}

func TestAckIsRecorded(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	rev := z.batchOf()[0].GetRevision()
	rej := &syncpb.Rejection{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "allow-all", Revision: 2, Reason: "not today"}
	z.ack(rev, rej)
	eventually(t, "the ack", func() bool {
		_, acks, _ := h.insights.snapshot()
		return len(acks) == 1
	})
	_, acks, _ := h.insights.snapshot()
	a := acks[0]
	if a.zone != "zone-1" || a.replica != "zone-1-r1" || a.revision != rev || len(a.rejected) != 1 || !proto.Equal(a.rejected[0], rej) {
		t.Fatalf("acked = %+v", a)
	}
	// An ack of an older revision than sent is fine (the zone is catching up).
	z.ack(rev - 1)
	eventually(t, "the second ack", func() bool {
		_, acks, _ := h.insights.snapshot()
		return len(acks) == 2
	})
}

func TestAckOfARevisionNeverSentEndsTheStream(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	rev := z.batchOf()[0].GetRevision()
	z.ack(rev + 1)
	if code, err := z.end(); code != codes.InvalidArgument {
		t.Fatalf("stream ended with %v, want InvalidArgument", err)
	}
	eventually(t, "disconnected", func() bool {
		_, _, d := h.insights.snapshot()
		return len(d) == 1
	})
	_, acks, d := h.insights.snapshot()
	if len(acks) != 0 {
		t.Errorf("the bad ack was recorded: %+v", acks)
	}
	if status.Code(d[0].err) != codes.InvalidArgument {
		t.Errorf("disconnected with %v", d[0].err)
	}
}

func TestReportIsAppliedAndAcknowledged(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	h.reports.rejectNames["bad-dp"] = true
	z, _ := h.connect("zone-1", 0, "")

	good, err := batch.Encode(dataplane(t, "default", "web-1", "zone-1"))
	if err != nil {
		t.Fatal(err)
	}
	bad := proto.Clone(good).(*syncpb.Resource)
	bad.Name = "bad-dp"
	report := &syncpb.Report{Sequence: 7, Upserts: []*syncpb.Resource{good, bad},
		Deletes: []*syncpb.Deletion{{Type: api.TypeDataplane, Mesh: "default", Name: "web-0", Revision: 6}}}
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Report{Report: report}})

	m := z.next()
	ack := m.GetReportAck()
	if ack == nil {
		t.Fatalf("want ReportAck, got %v", m)
	}
	if ack.GetSequence() != 7 || len(ack.GetRejected()) != 1 || ack.GetRejected()[0].GetName() != "bad-dp" {
		t.Fatalf("report ack = %v", ack)
	}
	applied := h.reports.all()
	if len(applied) != 1 || applied[0].zone != "zone-1" || !proto.Equal(applied[0].report, report) {
		t.Fatalf("applied = %+v", applied)
	}
}

func TestReportNotStoredEndsTheStreamUnavailable(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	h.reports.err = errors.New("no leader")
	z, _ := h.connect("zone-1", 0, "")
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Report{Report: &syncpb.Report{Sequence: 1}}})
	if code, err := z.end(); code != codes.Unavailable {
		t.Fatalf("stream ended with %v, want Unavailable", err)
	}
}

func TestResumeSendsOnlyLaterChanges(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)                                                        // 1..5
	h.feed.put(mtp(t, "default", "later"))                                 // 6
	h.feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all")) // 7

	z, w := h.connect("zone-1", 2, clusterID)
	if w.GetReset_() {
		t.Fatal("resume from a revision the feed holds got a reset")
	}
	h.feed.mu.Lock()
	since := slices.Clone(h.feed.since)
	h.feed.mu.Unlock()
	if len(since) == 0 || since[0] != 2 {
		t.Fatalf("the feed was read from %v, want from the zone's revision 2", since)
	}
	parts := z.batchOf()
	want := []string{"+MeshTrafficPermission/default/later@6", "+ZoneIngress/zi-2@5", "-MeshTrafficPermission/default/allow-all@7"}
	if got := names(parts...); !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if parts[len(parts)-1].GetRevision() != 7 {
		t.Fatalf("revision %d, want 7", parts[len(parts)-1].GetRevision())
	}

	// Up to date: nothing until the next change.
	z2, w2 := h.connect("zone-2", 7, clusterID)
	if w2.GetReset_() {
		t.Fatal("an up-to-date zone got a reset")
	}
	z2.quiet(50 * time.Millisecond)
	rev := h.feed.put(mesh(t, "other"))
	if got := names(z2.batchOf()...); !slices.Equal(got, []string{fmt.Sprintf("+Mesh/other@%d", rev)}) {
		t.Fatalf("changes = %v", got)
	}
}

// filtered renders what zone receives of the feed's state, as resetNames does.
func filtered(f *fakeFeed, zone string) []string {
	all, _ := f.All()
	filter := syncserver.DefaultFilter(zone)
	var out []string
	for _, r := range all {
		if filter(r.Key(), r) {
			out = append(out, fmt.Sprintf("+%s@%d", r.Key(), r.Revision))
		}
	}
	slices.Sort(out)
	return out
}

func checkReset(t *testing.T, chunks []*syncpb.Reset, f *fakeFeed, zone string) {
	t.Helper()
	rev := f.revision()
	for i, c := range chunks {
		if c.GetLast() != (i == len(chunks)-1) {
			t.Errorf("chunk %d/%d: last = %v", i+1, len(chunks), c.GetLast())
		}
		if c.GetRevision() != rev {
			t.Errorf("chunk %d: revision %d, want %d", i+1, c.GetRevision(), rev)
		}
	}
	if got, want := resetNames(chunks...), filtered(f, zone); !slices.Equal(got, want) {
		t.Fatalf("reset = %v\nwant %v", got, want)
	}
}

func TestTooOldRevisionGetsAChunkedReset(t *testing.T) {
	checkLeaks(t)
	one, err := batch.Encode(mtp(t, "default", "p-00"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *syncserver.Config) { c.MaxMessageBytes = 2 * proto.Size(one) })
	seed(t, h.feed)
	for i := range 6 {
		h.feed.put(mtp(t, "default", fmt.Sprintf("p-%02d", i)))
	}
	h.feed.del(key(api.TypeMeshTrafficPermission, "default", "p-00"))
	h.feed.forget(8)

	z, w := h.connect("zone-1", 3, clusterID)
	if !w.GetReset_() || w.GetClusterId() != clusterID {
		t.Fatalf("welcome = %v, want a reset", w)
	}
	chunks := z.resetChunks()
	if len(chunks) < 3 {
		t.Fatalf("want several chunks, got %d", len(chunks))
	}
	checkReset(t, chunks, h.feed, "zone-1")

	// The reset's revision can be acknowledged; live changes follow.
	z.ack(chunks[0].GetRevision())
	rev := h.feed.put(mtp(t, "default", "after"))
	if got := names(z.batchOf()...); !slices.Equal(got, []string{fmt.Sprintf("+MeshTrafficPermission/default/after@%d", rev)}) {
		t.Fatalf("changes after the reset = %v", got)
	}
	eventually(t, "the ack of the reset", func() bool {
		_, acks, _ := h.insights.snapshot()
		return len(acks) == 1 && acks[0].revision == chunks[0].GetRevision()
	})
}

func TestResetOfAnEmptyStateIsOneLastChunk(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	h.feed.put(dataplane(t, "default", "web-1", "zone-1"))
	z, w := h.connect("zone-1", 1, "cluster-b")
	if !w.GetReset_() {
		t.Fatal("no reset")
	}
	chunks := z.resetChunks()
	if len(chunks) != 1 || len(chunks[0].GetResources()) != 0 || chunks[0].GetRevision() != 1 {
		t.Fatalf("reset = %v", chunks)
	}
}

func TestAnotherClusterGetsAReset(t *testing.T) {
	cases := []struct {
		name      string
		cluster   string
		revision  uint64
		wantReset bool
	}{
		{"same cluster", clusterID, 3, false},
		{"another cluster", "cluster-b", 3, true},
		{"another cluster at revision 0", "cluster-b", 0, true},
		{"no cluster but a revision", "", 3, true},
		{"empty zone", "", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t, nil)
			seed(t, h.feed)
			z, w := h.connect("zone-1", c.revision, c.cluster)
			if w.GetReset_() != c.wantReset {
				t.Fatalf("welcome.reset = %v, want %v", w.GetReset_(), c.wantReset)
			}
			if c.wantReset {
				checkReset(t, z.resetChunks(), h.feed, "zone-1")
			} else if z.changes() == nil {
				t.Fatal("no changes")
			}
		})
	}
}

func TestCursorBelowTheFloorMidStreamGetsAReset(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	z.batchOf()
	// The zone's cursor (5) falls behind the tombstones while it is
	// connected (the feed pruned them): the next change needs a reset.
	h.feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))
	h.feed.forget(7)
	rev := h.feed.put(mtp(t, "default", "x"))
	// The session may notice the prune at the deletion's wake-up already
	// (a reset at revision 6, then another at 7): wait for the reset that
	// brings the zone to the feed's revision.
	for {
		m := z.next()
		if m.GetChanges() != nil {
			continue // the deletion, if the session saw it before the prune
		}
		if m.GetReset_() == nil {
			t.Fatalf("want Reset, got %v", m)
		}
		chunks := []*syncpb.Reset{m.GetReset_()}
		if !m.GetReset_().GetLast() {
			chunks = append(chunks, z.resetChunks()...)
		}
		if chunks[0].GetRevision() == rev {
			checkReset(t, chunks, h.feed, "zone-1")
			return
		}
	}
}

func TestZoneAheadOfThisNodeIsNotSentOlderRevisions(t *testing.T) {
	checkLeaks(t)
	// The zone applied revision 8 from another global node; this node has
	// applied only 5 of the same log so far.
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, w := h.connect("zone-1", 8, clusterID)
	if w.GetReset_() {
		t.Fatal("a zone ahead of the node got a reset")
	}
	z.quiet(50 * time.Millisecond)

	// The node catches up on entries the zone already has: nothing to send.
	h.feed.put(mtp(t, "default", "six"))
	h.feed.put(mtp(t, "default", "seven"))
	h.feed.put(mtp(t, "default", "eight"))
	z.quiet(100 * time.Millisecond)
	// The zone may acknowledge what it holds.
	z.ack(8)

	rev := h.feed.put(mtp(t, "default", "nine"))
	parts := z.batchOf()
	if got := names(parts...); !slices.Equal(got, []string{fmt.Sprintf("+MeshTrafficPermission/default/nine@%d", rev)}) {
		t.Fatalf("changes = %v", got)
	}
	if parts[len(parts)-1].GetRevision() != 9 {
		t.Fatalf("revision %d, want 9", parts[len(parts)-1].GetRevision())
	}
}

func TestKeepaliveMovesTheCursorPastChangesTheZoneDoesNotReceive(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, func(c *syncserver.Config) { c.KeepaliveRevisions = 3 })
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	z.batchOf()
	for i := range 5 {
		h.feed.put(dataplane(t, "default", fmt.Sprintf("dp-%d", i), "zone-1"))
	}
	c := z.changes()
	if len(c.GetUpserts())+len(c.GetDeletes()) != 0 || c.GetMore() || c.GetRevision() <= 5+3 {
		t.Fatalf("want an empty Changes past revision 8, got %v", c)
	}
	z.ack(c.GetRevision())
	eventually(t, "the ack", func() bool {
		_, acks, _ := h.insights.snapshot()
		return len(acks) == 1
	})
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name  string
		first *syncpb.StreamRequest // nil: send nothing
		want  codes.Code
	}{
		{"bad token", helloMsg("zone-1", "forged"), codes.Unauthenticated},
		{"empty token", helloMsg("zone-1", ""), codes.Unauthenticated},
		{"token for another zone", helloMsg("zone-1", "good-zone-2"), codes.PermissionDenied},
		{"no zone name", helloMsg("", "good-zone-1"), codes.InvalidArgument},
		{"first message not hello", &syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Ack{Ack: &syncpb.Ack{Revision: 1}}}, codes.InvalidArgument},
		{"empty first message", &syncpb.StreamRequest{}, codes.InvalidArgument},
		{"no hello in time", nil, codes.DeadlineExceeded},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t, func(c *syncserver.Config) { c.HelloTimeout = 100 * time.Millisecond })
			seed(t, h.feed)
			z := h.dial(true)
			if c.first != nil {
				z.send(c.first)
			}
			code, err := z.end()
			if code != c.want {
				t.Fatalf("stream ended with %v, want %v", err, c.want)
			}
			if st, _ := status.FromError(err); st.Message() == "" {
				t.Errorf("refusal without a reason: %v", err)
			}
			conn, _, disc := h.insights.snapshot()
			if len(conn) != 0 || len(disc) != 0 {
				t.Errorf("a refused zone reached insights: %v %v", conn, disc)
			}
		})
	}
}

func helloMsg(zone, token string) *syncpb.StreamRequest {
	return &syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Hello{Hello: &syncpb.Hello{Zone: zone, ReplicaId: "r1", Token: token}}}
}

func TestProtocolViolationsAfterHello(t *testing.T) {
	cases := []struct {
		name string
		msg  *syncpb.StreamRequest
	}{
		{"second hello", helloMsg("zone-1", "good-zone-1")},
		{"empty message", &syncpb.StreamRequest{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t, nil)
			z, _ := h.connect("zone-1", 0, "")
			z.send(c.msg)
			if code, err := z.end(); code != codes.InvalidArgument {
				t.Fatalf("stream ended with %v, want InvalidArgument", err)
			}
		})
	}
}

func TestSilentZoneIsDropped(t *testing.T) {
	checkLeaks(t)
	const interval = 50 * time.Millisecond
	h := newHarness(t, func(c *syncserver.Config) { c.HeartbeatInterval = interval })
	z, w := h.connect("zone-1", 0, "")
	if w.GetHeartbeatIntervalMs() != 50 {
		t.Fatalf("welcome heartbeat interval = %d ms", w.GetHeartbeatIntervalMs())
	}

	// A zone that heartbeats stays connected well past three intervals, and
	// hears global's heartbeats.
	heard := 0
	var lastSent time.Time
	deadline := time.Now().Add(10 * interval)
	for time.Now().Before(deadline) {
		z.heartbeat()
		lastSent = time.Now()
		select {
		case m := <-z.msgs:
			if m.GetHeartbeat() == nil {
				t.Fatalf("unexpected %v", m)
			}
			heard++
		case err := <-z.ended:
			t.Fatalf("a heartbeating zone was dropped: %v", err)
		case <-time.After(interval / 2):
		}
	}
	if heard < 3 {
		t.Errorf("heard %d heartbeats from global in %s", heard, 10*interval)
	}

	// Then silence: dropped after three intervals (checked at a tick).
	code, err := z.end()
	if code != codes.DeadlineExceeded {
		t.Fatalf("stream ended with %v, want DeadlineExceeded", err)
	}
	if took := time.Since(lastSent); took < 3*interval {
		t.Errorf("dropped after %s of silence, before three intervals", took)
	}
	eventually(t, "disconnected", func() bool {
		_, _, d := h.insights.snapshot()
		return len(d) == 1
	})
}

func TestDefaultFilter(t *testing.T) {
	filter := syncserver.DefaultFilter("zone-1")
	cases := []struct {
		name string
		key  api.Key
		res  *api.Resource
		want bool
	}{
		{"Mesh", key(api.TypeMesh, "", "default"), mesh(t, "default"), true},
		{"policy", key(api.TypeMeshTrafficPermission, "default", "p"), mtp(t, "default", "p"), true},
		{"policy deletion", key(api.TypeMeshTrafficPermission, "default", "p"), nil, true},
		{"Dataplane of this zone", key(api.TypeDataplane, "default", "web-1"), dataplane(t, "default", "web-1", "zone-1"), false},
		{"Dataplane of another zone", key(api.TypeDataplane, "default", "web-2"), dataplane(t, "default", "web-2", "zone-2"), true},
		{"Dataplane deletion", key(api.TypeDataplane, "default", "web-2"), nil, true},
		{"ZoneIngress of this zone", key(api.TypeZoneIngress, "", "zi-1"), zoneIngress(t, "zi-1", "zone-1"), false},
		{"ZoneIngress of another zone", key(api.TypeZoneIngress, "", "zi-2"), zoneIngress(t, "zi-2", "zone-2"), true},
		{"ZoneIngress deletion", key(api.TypeZoneIngress, "", "zi-2"), nil, true},
		{"unknown type", key("Nope", "", "x"), nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := filter(c.key, c.res); got != c.want {
				t.Fatalf("filter = %v, want %v", got, c.want)
			}
		})
	}
	// Every global-owned fan-out type passes; no non-fan-out type does.
	for _, d := range api.Types() {
		k := key(d.Name, "default", "x")
		got := filter(k, nil)
		if want := d.FanOut; got != want {
			t.Errorf("%s deletion: filter = %v, want %v", d.Name, got, want)
		}
	}
}

func TestInsightsConnectedAndDisconnectedOnce(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	z, _ := h.connect("zone-1", 0, "")
	z.batchOf()
	conn, _, disc := h.insights.snapshot()
	if len(conn) != 1 || conn[0] != (connectEvent{"zone-1", "zone-1-r1", "global-1"}) || len(disc) != 0 {
		t.Fatalf("connected = %v, disconnected = %v", conn, disc)
	}
	z.cancel()
	eventually(t, "disconnected", func() bool {
		_, _, d := h.insights.snapshot()
		return len(d) > 0
	})
	conn, _, disc = h.insights.snapshot()
	if len(conn) != 1 || len(disc) != 1 || disc[0].zone != "zone-1" || disc[0].replica != "zone-1-r1" || disc[0].err == nil {
		t.Fatalf("connected = %v, disconnected = %v", conn, disc)
	}
}

func TestSlowZoneBlocksNeitherTheFeedNorOtherZones(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	h.feed.put(mesh(t, "default"))

	// zone-1 never reads. Fixed small windows (they also turn off BDP
	// estimation): once ~64 KiB is in flight, the server's Send blocks.
	slow := h.dial(false, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow.hello(&syncpb.Hello{Zone: "zone-1", ReplicaId: "slow", Token: "good-zone-1"})
	fast, _ := h.connect("zone-2", 0, "")
	fast.batchOf()
	eventually(t, "both sessions", func() bool {
		conn, _, _ := h.insights.snapshot()
		return len(conn) == 2
	})

	// About 500 KiB that only zone-1 receives (zone-2's own ingresses): far
	// more than the 64 KiB window plus the server transport's 64 KiB write
	// quota, so zone-1's session is stuck in Send from then on.
	bulk := make([]*api.Resource, 2500)
	for i := range bulk {
		bulk[i] = zoneIngress(t, fmt.Sprintf("zi-%04d", i), "zone-2")
	}
	start := time.Now()
	for _, r := range bulk {
		h.feed.put(r)
	}
	if took := time.Since(start); took > waitFor {
		t.Errorf("writing to the feed took %s while a zone does not read", took)
	}

	// The scenario is real: zone-1's session is stuck sending.
	eventually(t, "zone-1's session writer to block in Send", func() bool {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "syncserver.(*session).startWriter") && strings.Contains(g, "SendMsg") {
				return true
			}
		}
		return false
	})

	// zone-2 still gets a new change promptly: the slow session holds no
	// lock of the feed and no shared queue.
	for i := range 3 {
		start := time.Now()
		rev := h.feed.put(mtp(t, "default", fmt.Sprintf("marker-%d", i)))
		var got []string
		for len(got) == 0 { // skip keepalives (empty Changes)
			got = names(fast.batchOf()...)
		}
		if want := []string{fmt.Sprintf("+MeshTrafficPermission/default/marker-%d@%d", i, rev)}; !slices.Equal(got, want) {
			t.Fatalf("zone-2 got %v, want %v", got, want)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("zone-2 got a change after %s while zone-1 does not read", took)
		}
	}

}

// TestHungZoneIsDropped: a zone that neither reads nor speaks while its
// session's writer is stuck in Send is still dropped after three heartbeat
// intervals: the session loop is not the goroutine blocked in Send.
func TestHungZoneIsDropped(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, func(c *syncserver.Config) { c.HeartbeatInterval = 300 * time.Millisecond })
	h.feed.put(mesh(t, "default"))
	slow := h.dial(false, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow.hello(&syncpb.Hello{Zone: "zone-1", ReplicaId: "hung", Token: "good-zone-1"})
	eventually(t, "the session", func() bool {
		conn, _, _ := h.insights.snapshot()
		return len(conn) == 1
	})
	for i := range 2500 {
		h.feed.put(zoneIngress(t, fmt.Sprintf("zi-%04d", i), "zone-2"))
	}
	eventually(t, "the hung zone dropped", func() bool {
		_, _, disc := h.insights.snapshot()
		return len(disc) == 1 && disc[0].zone == "zone-1"
	})
}
