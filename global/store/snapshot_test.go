package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/api"
)

// richHarness builds a state with every kind of history: bootstrap, creates,
// updates, deletes, re-creations, a mesh cascade, and (with a small
// tombstone window) pruned deletions.
func richHarness(t *testing.T, maxTombstones int) *fsmHarness {
	t.Helper()
	h := newHarness(t)
	h.st.maxTombstones = maxTombstones
	h.bootstrap(true)
	for _, doc := range []string{
		meshYAML("a", "team", "core"), meshYAML("b"), zoneYAML("zone-1"), zoneYAML("zone-2", "region", "eu"),
		mtpYAML("a", "allow"), mtpYAML("b", "allow"), secretYAML("a", "ca", "Y2EK"), meshTimeoutYAML("b", "timeouts"),
		dataplaneYAML("default", "web-1", "10.0.0.1"), dataplaneYAML("default", "web-2", "10.0.0.2"),
		secretYAML("default", "tls", "c2VjcmV0IGtleQo="),
	} {
		h.mustPut(doc)
	}
	for i := 0; i < 6; i++ {
		h.mustPut(mtpYAML("default", fmt.Sprintf("p%d", i)))
	}
	h.mustPut(mtpYAML("a", "allow", "v", "2"))         // update
	h.mustPut(zoneYAML("zone-1", "v", "2"))            // update of a global type
	must(t, h.del(key(api.TypeZone, "", "zone-2"), 0)) // delete
	h.mustPut(zoneYAML("zone-2"))                      // re-creation
	must(t, h.del(key(api.TypeDataplane, "default", "web-2"), 0))
	for i := 0; i < 6; i += 2 {
		must(t, h.del(key(api.TypeMeshTrafficPermission, "default", fmt.Sprintf("p%d", i)), 0))
	}
	must(t, h.del(key(api.TypeMesh, "", "a"), 0))        // cascade: one revision, several tombstones
	h.mustPut(mtpYAML("default", "p0", "back", "again")) // re-created after its tombstone
	h.mustPut(meshYAML("a"))                             // mesh re-created, empty
	return h
}

func must(t *testing.T, res ApplyResult) {
	t.Helper()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
}

// compareStates fails unless b is indistinguishable from a: same resources
// (revisions, times, bodies), meta, tombstones, floor, and the same answer
// to ChangesSince for every revision.
func compareStates(t *testing.T, a, b *State) {
	t.Helper()
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Errorf("content differs:\n%s\nvs\n%s", da, db)
	}
	a.mu.RLock()
	b.mu.RLock()
	if a.revision != b.revision || a.tombFloor != b.tombFloor {
		t.Errorf("revision %d/%d, floor %d/%d", a.revision, b.revision, a.tombFloor, b.tombFloor)
	}
	if fmt.Sprint(a.tombs) != fmt.Sprint(b.tombs) {
		t.Errorf("tombstones differ:\n%v\n%v", a.tombs, b.tombs)
	}
	if fmt.Sprint(a.lastTouch) != fmt.Sprint(b.lastTouch) { // fmt sorts map keys
		t.Errorf("lastTouch differs:\n%v\n%v", a.lastTouch, b.lastTouch)
	}
	for _, ra := range a.index.All() {
		k := ra.Key()
		rb, _ := b.index.Get(k)
		if rb == nil || !ra.CreationTime.Equal(rb.CreationTime) || !ra.ModificationTime.Equal(rb.ModificationTime) || ra.Revision != rb.Revision {
			t.Errorf("%s: %v vs %v", k, ra, rb)
		}
	}
	rev := a.revision
	a.mu.RUnlock()
	b.mu.RUnlock()
	for since := uint64(0); since <= rev+1; since++ {
		ca, ra, ea := a.ChangesSince(since)
		cb, rb, eb := b.ChangesSince(since)
		if ta, tb := changesText(t, ca, ra, ea), changesText(t, cb, rb, eb); ta != tb {
			t.Errorf("ChangesSince(%d) differs:\n%s\nvs\n%s", since, ta, tb)
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	tests := []struct {
		name          string
		maxTombstones int
		wantFloor     bool
	}{
		{"all tombstones kept", DefaultMaxTombstones, false},
		{"tombstones pruned", 4, true},
		{"one tombstone", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := richHarness(t, tt.maxTombstones)
			if err := checkInvariants(h.st); err != nil {
				t.Fatal(err)
			}
			if (h.st.tombFloor > 0) != tt.wantFloor {
				t.Fatalf("tomb floor %d: the history does not exercise pruning as intended", h.st.tombFloor)
			}
			data, err := snapshotBytes(h.fsm)
			if err != nil {
				t.Fatal(err)
			}

			// Into a fresh FSM.
			fresh := NewState()
			if err := NewFSM(fresh).Restore(memSinkOf(data).reader()); err != nil {
				t.Fatal(err)
			}
			if err := checkInvariants(fresh); err != nil {
				t.Fatal(err)
			}
			compareStates(t, h.st, fresh)

			// Into an FSM that holds something else: replaced entirely, but
			// the node's own tombstone window is kept.
			other := newHarness(t)
			other.st.maxTombstones = tt.maxTombstones
			other.bootstrap(false)
			other.mustPut(meshYAML("leftover"))
			if err := other.fsm.Restore(memSinkOf(data).reader()); err != nil {
				t.Fatal(err)
			}
			compareStates(t, h.st, other.st)
			if other.st.maxTombstones != tt.maxTombstones {
				t.Errorf("restore reset the tombstone window to %d", other.st.maxTombstones)
			}

			// Both continue identically from the same log.
			other.index, other.now = h.index, h.now
			for _, x := range []*fsmHarness{h, other} {
				must(t, x.del(key(api.TypeMesh, "", "b"), 0))
				x.mustPut(mtpYAML("default", "p9"))
				x.mustPut(mtpYAML("default", "p1", "v", "3"))
			}
			compareStates(t, h.st, other.st)

			// A snapshot of the restored state is byte-identical.
			again, err := snapshotBytes(other.fsm)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := snapshotBytes(h.fsm)
			if !bytes.Equal(again, want) {
				t.Errorf("snapshots differ after restore")
			}
		})
	}
}

func TestSnapshotOfEmptyState(t *testing.T) {
	data, err := snapshotBytes(NewFSM(NewState()))
	if err != nil {
		t.Fatal(err)
	}
	h := richHarness(t, DefaultMaxTombstones)
	if err := h.fsm.Restore(memSinkOf(data).reader()); err != nil {
		t.Fatal(err)
	}
	compareStates(t, NewState(), h.st)
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	h := richHarness(t, 4)
	good, err := snapshotBytes(h.fsm)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"not JSON", "garbage\n"},
		{"unknown version", strings.Replace(lines[0], `"version":1`, `"version":99`, 1) + strings.Join(lines[1:], "")},
		{"truncated", strings.Join(lines[:len(lines)/2], "")},
		{"bad resource", lines[0] + `{"revision":3,"resource":{"type":"Nope","name":"x"}}` + "\n" + strings.Join(lines[2:], "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := richHarness(t, 4)
			before := dump(t, target.st)
			w := target.st.Watch()
			if err := target.fsm.Restore(io.NopCloser(strings.NewReader(tt.data))); err == nil {
				t.Fatal("no error")
			}
			if after := dump(t, target.st); after != before {
				t.Error("a failed restore changed the state")
			}
			select {
			case <-w:
				t.Error("a failed restore woke watchers")
			default:
			}
		})
	}
}

func TestPersistFailureCancelsSink(t *testing.T) {
	h := richHarness(t, DefaultMaxTombstones)
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{failWrites: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("sink cancelled=%v closed=%v; want cancelled only", sink.cancelled, sink.closed)
	}
}

// TestSnapshotConcurrency runs, all at once: a writer applying thousands of
// puts and deletes, readers, a snapshotter restoring each snapshot into
// another FSM, and a restorer rolling the live FSM back to an earlier
// snapshot. Raft never runs Apply and Restore at the same time (both run
// on its FSM goroutine), so the writer and the restorer share a mutex;
// readers and snapshot Persist use none.
func TestSnapshotConcurrency(t *testing.T) {
	defer goleak.VerifyNone(t)
	const writes = 3000
	h := newHarness(t)
	h.st.maxTombstones = 50
	h.bootstrap(true)
	for _, m := range []string{"a", "b"} {
		h.mustPut(meshYAML(m))
	}
	docs := map[int]func(i int) string{
		0: func(i int) string { return mtpYAML("a", fmt.Sprintf("p%d", i%40), "gen", fmt.Sprint(i)) },
		1: func(i int) string { return mtpYAML("b", fmt.Sprintf("p%d", i%25), "gen", fmt.Sprint(i)) },
		2: func(i int) string { return zoneYAML(fmt.Sprintf("zone-%d", i%10), "gen", fmt.Sprint(i)) },
		3: func(i int) string { return secretYAML("a", fmt.Sprintf("s%d", i%15), "Y2EK") },
	}
	// Pre-decode the commands so the race detector spends its time on the
	// concurrency under test.
	type op struct {
		del  bool
		key  api.Key
		body []byte
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ops := make([]op, writes)
	for i := range ops {
		r := fixture(t, docs[rng.IntN(len(docs))](i))
		if rng.IntN(3) == 0 {
			ops[i] = op{del: true, key: r.Key()}
			continue
		}
		body, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		ops[i] = op{key: r.Key(), body: body}
	}

	var (
		fsmMu  sync.Mutex // raft's FSM goroutine: Apply and Restore never overlap
		done   atomic.Bool
		wg     sync.WaitGroup
		snaps  = make(chan []byte, 4)
		errs   = make(chan error, 100)
		report = func(err error) {
			select {
			case errs <- err:
			default:
			}
		}
		restores, snapshots, reads atomic.Int64
	)

	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		defer done.Store(true)
		for i, o := range ops {
			var data []byte
			var err error
			if o.del {
				data, err = EncodeCommand(CmdDelete, DeleteCommand{Type: o.key.Type, Mesh: o.key.Mesh, Name: o.key.Name})
			} else {
				data, err = EncodeCommand(CmdPut, PutCommand{Resource: o.body, Now: t0.Add(time.Duration(i) * time.Second)})
			}
			if err != nil {
				report(err)
				return
			}
			fsmMu.Lock()
			h.applyLog(raft.LogCommand, data)
			fsmMu.Unlock()
		}
	}()

	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(seed uint64) { // reader
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for !done.Load() {
				reads.Add(1)
				rev := h.st.Revision()
				since := rng.Uint64N(rev + 1)
				cs, at, err := h.st.ChangesSince(since)
				if err != nil && !errors.Is(err, ErrTooOld) {
					report(fmt.Errorf("ChangesSince(%d): %w", since, err))
				}
				seen := map[api.Key]bool{}
				for i, c := range cs {
					if c.Revision <= since || c.Revision > at || (i > 0 && cs[i-1].Revision > c.Revision) || seen[c.Key] {
						report(fmt.Errorf("ChangesSince(%d) at %d: bad change %d %+v", since, at, i, c))
					}
					seen[c.Key] = true
					if c.Resource != nil && (c.Resource.Key() != c.Key || c.Resource.Revision != c.Revision) {
						report(fmt.Errorf("change %+v carries %s", c, c.Resource))
					}
				}
				list := h.st.List(api.TypeMeshTrafficPermission, "")
				for i := 1; i < len(list); i++ {
					p, c := list[i-1], list[i]
					if p.Mesh > c.Mesh || p.Mesh == c.Mesh && p.Name >= c.Name {
						report(fmt.Errorf("List not sorted: %s before %s", p.Key(), c.Key()))
					}
				}
				if len(list) > 0 {
					r := list[rng.IntN(len(list))]
					if got, ok := h.st.Get(r.Key()); ok && got.Key() != r.Key() {
						report(fmt.Errorf("Get(%s) = %s", r.Key(), got.Key()))
					}
				}
				_ = h.st.Count(api.TypeZone, "")
				_, _ = h.st.Meta()
			}
		}(uint64(r))
	}

	wg.Add(1)
	go func() { // snapshotter: Snapshot concurrently with Apply (as raft does between Snapshot and Persist)
		defer wg.Done()
		defer close(snaps)
		for !done.Load() {
			fsmMu.Lock()
			snap, err := h.fsm.Snapshot()
			fsmMu.Unlock()
			if err != nil {
				report(err)
				return
			}
			sink := &memSink{}
			if err := snap.Persist(sink); err != nil {
				report(err)
				return
			}
			snap.Release()
			snapshots.Add(1)
			st := NewState()
			if err := NewFSM(st).Restore(sink.reader()); err != nil {
				report(fmt.Errorf("restore into another FSM: %w", err))
				return
			}
			if err := checkInvariants(st); err != nil {
				report(fmt.Errorf("restored state at %d: %w", st.Revision(), err))
			}
			select {
			case snaps <- sink.Bytes():
			default:
			}
		}
	}()

	wg.Add(1)
	go func() { // restorer: rolls the live FSM back while readers read
		defer wg.Done()
		for data := range snaps {
			fsmMu.Lock()
			err := h.fsm.Restore(memSinkOf(data).reader())
			fsmMu.Unlock()
			if err != nil {
				report(fmt.Errorf("restore into the live FSM: %w", err))
				continue
			}
			restores.Add(1)
			if err := checkInvariants(h.st); err != nil {
				report(fmt.Errorf("live state after restore: %w", err))
			}
		}
	}()

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := checkInvariants(h.st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes, %d reads, %d snapshots, %d live restores", writes, reads.Load(), snapshots.Load(), restores.Load())
	if snapshots.Load() == 0 || restores.Load() == 0 {
		t.Errorf("no overlap exercised: %d snapshots, %d restores", snapshots.Load(), restores.Load())
	}
}
