package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/meshfed/meshfed/api"
)

// stateOp is one scripted change to a State at a revision.
type stateOp struct {
	rev    uint64
	put    *api.Resource // nil: remove the key below
	remove api.Key
}

func putAt(r *api.Resource) stateOp          { return stateOp{rev: r.Revision, put: r} }
func removeAt(rev uint64, k api.Key) stateOp { return stateOp{rev: rev, remove: k} }

func applyOps(st *State, ops ...stateOp) {
	for _, op := range ops {
		st.apply(op.rev, func() {
			if op.put != nil {
				st.put(op.put)
			} else {
				st.remove(op.remove, op.rev)
			}
		})
	}
}

func names(rs []*api.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Mesh + "/" + r.Name
	}
	return out
}

func TestStateListCountGet(t *testing.T) {
	st := NewState()
	applyOps(st,
		putAt(bare(api.TypeMesh, "", "b", 1)),
		putAt(bare(api.TypeMesh, "", "a", 2)),
		putAt(bare(api.TypeZone, "", "zone-1", 3)),
		putAt(bare(api.TypeMeshTrafficPermission, "b", "x", 4)),
		putAt(bare(api.TypeMeshTrafficPermission, "a", "y", 5)),
		putAt(bare(api.TypeMeshTrafficPermission, "a", "x", 6)),
		putAt(bare(api.TypeSecret, "a", "s", 7)),
		putAt(bare(api.TypeMeshTrafficPermission, "a", "x", 8, "v", "2")), // update: still one entry
	)

	tests := []struct {
		name      string
		typ, mesh string
		want      []string
	}{
		{"all meshes of a type, sorted by mesh then name", api.TypeMeshTrafficPermission, "", []string{"a/x", "a/y", "b/x"}},
		{"one mesh", api.TypeMeshTrafficPermission, "a", []string{"a/x", "a/y"}},
		{"other mesh", api.TypeMeshTrafficPermission, "b", []string{"b/x"}},
		{"mesh without that type", api.TypeSecret, "b", nil},
		{"missing mesh", api.TypeMeshTrafficPermission, "c", nil},
		{"global-scoped type", api.TypeMesh, "", []string{"/a", "/b"}},
		{"type with nothing stored", api.TypeDataplane, "", nil},
		{"unknown type", "NoSuchType", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := st.List(tt.typ, tt.mesh)
			if fmt.Sprint(names(got)) != fmt.Sprint(tt.want) {
				t.Errorf("List(%q, %q) = %v, want %v", tt.typ, tt.mesh, names(got), tt.want)
			}
			if n := st.Count(tt.typ, tt.mesh); n != len(tt.want) {
				t.Errorf("Count(%q, %q) = %d, want %d", tt.typ, tt.mesh, n, len(tt.want))
			}
		})
	}

	r, ok := st.Get(key(api.TypeMeshTrafficPermission, "a", "x"))
	if !ok || r.Revision != 8 || r.Labels["v"] != "2" {
		t.Fatalf("Get after update = %v, %v; want the revision 8 version", r, ok)
	}
	if _, ok := st.Get(key(api.TypeMeshTrafficPermission, "", "x")); ok {
		t.Error("Get with the wrong mesh found a resource")
	}
	if st.Revision() != 8 {
		t.Errorf("Revision() = %d, want 8", st.Revision())
	}

	// Removing the last resource of a mesh drops the mesh from the index.
	applyOps(st,
		removeAt(9, key(api.TypeMeshTrafficPermission, "b", "x")),
		removeAt(10, key(api.TypeMeshTrafficPermission, "b", "x")), // already gone: no-op
		removeAt(11, key(api.TypeSecret, "nope", "nope")),          // never existed: no-op
	)
	if n := st.Count(api.TypeMeshTrafficPermission, "b"); n != 0 {
		t.Errorf("Count after remove = %d", n)
	}
	if got := names(st.List(api.TypeMeshTrafficPermission, "")); fmt.Sprint(got) != "[a/x a/y]" {
		t.Errorf("List after remove = %v", got)
	}
	if len(st.tombs) != 1 {
		t.Errorf("removing missing keys recorded tombstones: %v", st.tombs)
	}
	if err := checkInvariants(st); err != nil {
		t.Fatal(err)
	}
}

// wantChange is one expected ChangesSince entry.
type wantChange struct {
	rev     uint64
	key     api.Key
	deleted bool
}

func checkChanges(t *testing.T, got []Change, want []wantChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Revision != w.rev || g.Key != w.key || (g.Resource == nil) != w.deleted {
			t.Errorf("change %d = {%d %s deleted=%v}, want {%d %s deleted=%v}", i, g.Revision, g.Key, g.Resource == nil, w.rev, w.key, w.deleted)
		}
		if g.Resource != nil && (g.Resource.Revision != g.Revision || g.Resource.Key() != g.Key) {
			t.Errorf("change %d carries %s, want %s@%d", i, g.Resource, g.Key, g.Revision)
		}
	}
}

func TestStateChangesSince(t *testing.T) {
	a, b, c := key(api.TypeMesh, "", "a"), key(api.TypeMesh, "", "b"), key(api.TypeMesh, "", "c")
	st := NewState()
	applyOps(st,
		putAt(bare(api.TypeMesh, "", "a", 1)),
		putAt(bare(api.TypeMesh, "", "b", 2)),
		putAt(bare(api.TypeMesh, "", "a", 3, "v", "2")), // update
		removeAt(4, b),
		putAt(bare(api.TypeMesh, "", "c", 5)),
		putAt(bare(api.TypeMesh, "", "b", 6)), // re-creation
		removeAt(7, c),
	)
	tests := []struct {
		since uint64
		want  []wantChange
	}{
		{0, []wantChange{{3, a, false}, {6, b, false}, {7, c, true}}},
		{1, []wantChange{{3, a, false}, {6, b, false}, {7, c, true}}},
		{3, []wantChange{{6, b, false}, {7, c, true}}},
		{4, []wantChange{{6, b, false}, {7, c, true}}},
		{5, []wantChange{{6, b, false}, {7, c, true}}},
		{6, []wantChange{{7, c, true}}},
		{7, nil},
		{100, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("since=", tt.since), func(t *testing.T) {
			got, rev, err := st.ChangesSince(tt.since)
			if err != nil {
				t.Fatal(err)
			}
			if rev != 7 {
				t.Errorf("revision = %d, want 7", rev)
			}
			checkChanges(t, got, tt.want)
		})
	}
}

func TestStateTombstonePruning(t *testing.T) {
	k := func(n string) api.Key { return key(api.TypeMesh, "", n) }
	st := NewState()
	st.maxTombstones = 2
	applyOps(st,
		putAt(bare(api.TypeMesh, "", "a", 1)),
		putAt(bare(api.TypeMesh, "", "b", 2)),
		putAt(bare(api.TypeMesh, "", "c", 3)),
		putAt(bare(api.TypeMesh, "", "d", 4)),
		removeAt(5, k("a")),
		removeAt(6, k("b")),
		removeAt(7, k("c")), // a's tombstone (5) is pruned: floor 5
		putAt(bare(api.TypeMesh, "", "e", 8)),
	)
	tests := []struct {
		since   uint64
		tooOld  bool
		changes []wantChange
	}{
		{0, true, nil},
		{4, true, nil},
		{5, false, []wantChange{{6, k("b"), true}, {7, k("c"), true}, {8, k("e"), false}}},
		{6, false, []wantChange{{7, k("c"), true}, {8, k("e"), false}}},
		{8, false, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("since=", tt.since), func(t *testing.T) {
			got, rev, err := st.ChangesSince(tt.since)
			if rev != 8 {
				t.Errorf("revision = %d, want 8", rev)
			}
			if tt.tooOld {
				if !errors.Is(err, ErrTooOld) || got != nil {
					t.Fatalf("got %v, %v; want ErrTooOld", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkChanges(t, got, tt.changes)
		})
	}
	if st.tombFloor != 5 || len(st.tombs) != 2 {
		t.Errorf("floor %d, %d tombstones; want 5, 2", st.tombFloor, len(st.tombs))
	}
	if _, ok := st.lastTouch[k("a")]; ok {
		t.Error("a pruned deletion is still in lastTouch")
	}

	// A pruned tombstone of a key that was re-created since keeps the key's
	// last touch.
	applyOps(st,
		putAt(bare(api.TypeMesh, "", "b", 9)),
		removeAt(10, k("d")), // prunes b@6: b lives on at 9
	)
	if st.lastTouch[k("b")] != 9 || st.tombFloor != 6 {
		t.Errorf("lastTouch[b] = %d, floor %d; want 9, 6", st.lastTouch[k("b")], st.tombFloor)
	}
	got, _, err := st.ChangesSince(6)
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, got, []wantChange{{7, k("c"), true}, {8, k("e"), false}, {9, k("b"), false}, {10, k("d"), true}})
	if err := checkInvariants(st); err != nil {
		t.Fatal(err)
	}
}

// changeModel is the naive reference for ChangesSince: the last change of
// every key and a FIFO of tombstones.
type changeModel struct {
	last  map[api.Key]Change
	live  map[api.Key]*api.Resource
	tombs []tombstone
	floor uint64
	max   int
}

func newChangeModel(max int) *changeModel {
	return &changeModel{last: map[api.Key]Change{}, live: map[api.Key]*api.Resource{}, max: max}
}

func (m *changeModel) put(r *api.Resource) {
	m.live[r.Key()] = r
	m.last[r.Key()] = Change{Key: r.Key(), Revision: r.Revision, Resource: r}
}

func (m *changeModel) remove(k api.Key, rev uint64) {
	if _, ok := m.live[k]; !ok {
		return
	}
	delete(m.live, k)
	m.last[k] = Change{Key: k, Revision: rev}
	m.tombs = append(m.tombs, tombstone{key: k, revision: rev})
	for len(m.tombs) > m.max {
		m.floor = max(m.floor, m.tombs[0].revision)
		m.tombs = m.tombs[1:]
	}
}

// sorted returns the last change of every key in revision order.
func (m *changeModel) sorted() []Change {
	out := make([]Change, 0, len(m.last))
	for _, c := range m.last {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out
}

// changesSince answers from all, the output of sorted.
func (m *changeModel) changesSince(all []Change, since uint64) ([]Change, error) {
	if since < m.floor {
		return nil, ErrTooOld
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].Revision > since })
	return all[i:], nil
}

func sameChanges(got, want []Change) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d changes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] { // Resource pointers must be the very stored ones
			return fmt.Errorf("change %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	return nil
}

// TestStateChangesSinceModel drives random puts and removes well past the
// change-log compaction threshold and compares every ChangesSince answer
// with the naive model.
func TestStateChangesSinceModel(t *testing.T) {
	tests := []struct {
		name       string
		keys       int
		ops        int
		deletePct  int
		tombstones int
	}{
		{"few hot keys", 3, 3000, 30, DefaultMaxTombstones},
		{"fifty keys", 50, 5000, 40, DefaultMaxTombstones},
		{"many keys, rare deletes", 700, 6000, 10, DefaultMaxTombstones},
		{"small tombstone window", 40, 5000, 50, 16},
		{"tiny tombstone window", 10, 4000, 50, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			st := NewState()
			st.maxTombstones = tt.tombstones
			m := newChangeModel(tt.tombstones)
			touches := 0
			check := func(all []Change, since uint64) {
				t.Helper()
				got, rev, err := st.ChangesSince(since)
				want, werr := m.changesSince(all, since)
				if rev != st.Revision() || !errors.Is(err, werr) && err != werr {
					t.Fatalf("ChangesSince(%d): rev %d err %v; want rev %d err %v", since, rev, err, st.Revision(), werr)
				}
				if err := sameChanges(got, want); err != nil {
					t.Fatalf("ChangesSince(%d) after %d ops: %v", since, st.Revision(), err)
				}
			}
			for rev := uint64(1); rev <= uint64(tt.ops); rev++ {
				k := key(api.TypeMeshTrafficPermission, fmt.Sprintf("m%d", rng.IntN(3)), fmt.Sprintf("p%d", rng.IntN(tt.keys)))
				if rng.IntN(100) < tt.deletePct {
					if _, live := m.live[k]; live {
						touches++
					}
					applyOps(st, removeAt(rev, k))
					m.remove(k, rev)
				} else {
					r := bare(k.Type, k.Mesh, k.Name, rev)
					applyOps(st, putAt(r))
					m.put(r)
					touches++
				}
				if rev%97 == 0 {
					all := m.sorted()
					check(all, rng.Uint64N(rev+1))
					check(all, rev-1)
				}
			}
			// Every revision near the ends and the floor, a sample between.
			all := m.sorted()
			stride := uint64(max(1, len(all)/50))
			for since := uint64(0); since <= uint64(tt.ops)+1; since++ {
				if since < 64 || since+64 > uint64(tt.ops) || since+2 >= m.floor && since <= m.floor+2 || since%stride == 0 {
					check(all, since)
				}
			}
			if len(st.changes) >= touches {
				t.Errorf("change log never compacted: %d entries for %d changes", len(st.changes), touches)
			}
			if limit := max(1024, 2*len(st.lastTouch)) + 1; len(st.changes) > limit {
				t.Errorf("change log holds %d entries, more than %d", len(st.changes), limit)
			}
			if err := checkInvariants(st); err != nil {
				t.Fatal(err)
			}
			if st.index.Len() != len(m.live) {
				t.Errorf("%d live resources, model %d", st.index.Len(), len(m.live))
			}
		})
	}
}

func TestStateWatch(t *testing.T) {
	st := NewState()
	w1 := st.Watch()
	select {
	case <-w1:
		t.Fatal("watch closed before any change")
	default:
	}
	applyOps(st, putAt(bare(api.TypeMesh, "", "a", 1)))
	select {
	case <-w1:
	default:
		t.Fatal("watch not closed by apply")
	}
	w2 := st.Watch()
	if w2 == w1 {
		t.Fatal("Watch returned the closed channel again")
	}
	select {
	case <-w2:
		t.Fatal("new watch already closed")
	default:
	}
	// Restoring a snapshot also wakes watchers.
	data, err := snapshotBytes(NewFSM(NewState()))
	if err != nil {
		t.Fatal(err)
	}
	if err := NewFSM(st).Restore(memSinkOf(data).reader()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w2:
	default:
		t.Fatal("watch not closed by Restore")
	}
}

func memSinkOf(data []byte) *memSink {
	s := &memSink{}
	s.Buffer.Write(data)
	return s
}
