package server

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// nodeLockStripes serialises SetResources and Clear per node (a node's
// bookkeeping and its go-control-plane snapshot must change in the same
// order) while different nodes proceed in parallel.
const nodeLockStripes = 64

// resources is the bookkeeping in front of go-control-plane's
// SnapshotCache: per-pointer entries, shared type sets, each node's
// snapshot.
type resources struct {
	snapshots cache.SnapshotCache

	seed  maphash.Seed
	nodeL [nodeLockStripes]sync.Mutex

	mu      sync.Mutex
	entries map[types.Resource]*entry // resources held by a live typeSet
	sets    map[typeKey]*typeSet
	nodes   map[string]*snapshot
	recent  [types.UnknownType]*typeSet // the set last used, per type
	empty   [types.UnknownType]string   // version of an empty set, per type
}

func newResources(snapshots cache.SnapshotCache) *resources {
	r := &resources{
		snapshots: snapshots,
		seed:      maphash.MakeSeed(),
		entries:   make(map[types.Resource]*entry),
		sets:      make(map[typeKey]*typeSet),
		nodes:     make(map[string]*snapshot),
	}
	for rt, u := range typeURLs {
		r.empty[rt] = typeVersion(u, nil)
	}
	return r
}

func (r *resources) lockNode(nodeID string) func() {
	l := &r.nodeL[maphash.String(r.seed, nodeID)%nodeLockStripes]
	l.Lock()
	return l.Unlock
}

// set replaces nodeID's resources (types absent from res become empty). It
// reports whether anything changed; when nothing did, the cache is not
// touched and nothing is sent.
//
// Cost: a type whose list holds the same pointers, in the same order, as
// the node's current set or as the set most recently used for that type by
// any node costs one pointer comparison per resource. Other lists cost a
// map lookup per resource, and a hash of the resources never seen before.
func (r *resources) set(nodeID string, res map[string][]types.Resource) (bool, error) {
	for typeURL := range res {
		if cache.GetResponseType(typeURL) == types.UnknownType {
			return false, fmt.Errorf("unsupported type_url %q", typeURL)
		}
	}
	defer r.lockNode(nodeID)()

	// Find each type's set by pointer comparison, or look its resources'
	// entries up by pointer.
	var (
		found  [types.UnknownType]*typeSet
		lists  [types.UnknownType][]*entry
		misses int
	)
	r.mu.Lock()
	old := r.nodes[nodeID]
	for rt, u := range typeURLs {
		list := res[u]
		if old != nil && samePointers(old.sets[rt], list) {
			found[rt] = old.sets[rt]
			continue
		}
		if ts := r.recent[rt]; ts != nil && samePointers(ts, list) {
			found[rt] = ts
			continue
		}
		es := make([]*entry, len(list))
		for i, x := range list {
			if e, ok := r.entries[x]; ok {
				es[i] = e
			} else {
				misses++
			}
		}
		lists[rt] = es
	}
	r.mu.Unlock()

	// Hash the new resources outside the lock.
	var keys [types.UnknownType]typeKey
	for rt, u := range typeURLs {
		if found[rt] != nil {
			keys[rt] = found[rt].key
			continue
		}
		for i, e := range lists[rt] {
			if e != nil {
				continue
			}
			e, err := hashResource(u, res[u][i])
			if err != nil {
				return false, err
			}
			lists[rt][i] = e
		}
		v := r.empty[rt]
		if len(lists[rt]) > 0 {
			v = typeVersion(u, lists[rt])
		}
		keys[rt] = typeKey{typeURL: u, version: v}
	}

	r.mu.Lock()
	old = r.nodes[nodeID] // unchanged: the node lock is held
	if old != nil && sameKeys(old, &keys) {
		r.mu.Unlock()
		return false, nil
	}
	// Plan: reuse the registered sets, register again a found set that was
	// released meanwhile, build the others. Nothing changes until every
	// set is built (a duplicate name changes nothing).
	snap := &snapshot{}
	var register [types.UnknownType]bool
	for rt := range typeURLs {
		if ts, ok := r.sets[keys[rt]]; ok {
			snap.sets[rt] = ts
			continue
		}
		register[rt] = true
		if found[rt] != nil {
			snap.sets[rt] = found[rt]
			continue
		}
		ts, err := newTypeSet(keys[rt], lists[rt])
		if err != nil {
			r.mu.Unlock()
			return false, err
		}
		snap.sets[rt] = ts
	}
	// Commit.
	for rt, ts := range snap.sets {
		if register[rt] {
			r.sets[ts.key] = ts
			for i, e := range ts.entries {
				if known, ok := r.entries[e.res]; ok {
					ts.entries[i] = known
					e = known
				} else {
					r.entries[e.res] = e
				}
				e.refs++
			}
		}
		ts.refs++
		r.recent[rt] = ts
	}
	r.nodes[nodeID] = snap
	if old != nil {
		r.release(old)
	}
	r.mu.Unlock()

	// The node lock is still held: snapshots reach the cache in the order
	// of the bookkeeping.
	if err := r.snapshots.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		return true, fmt.Errorf("set snapshot: %w", err)
	}
	return true, nil
}

// samePointers reports whether list holds exactly ts's resources, in order.
func samePointers(ts *typeSet, list []types.Resource) bool {
	if ts == nil || len(ts.entries) != len(list) {
		return false
	}
	for i, e := range ts.entries {
		if e.res != list[i] {
			return false
		}
	}
	return true
}

func sameKeys(s *snapshot, keys *[types.UnknownType]typeKey) bool {
	for rt, ts := range s.sets {
		if ts.key != keys[rt] {
			return false
		}
	}
	return true
}

// release drops a snapshot's references; r.mu is held.
func (r *resources) release(s *snapshot) {
	for rt, ts := range s.sets {
		ts.refs--
		if ts.refs > 0 {
			continue
		}
		delete(r.sets, ts.key)
		if r.recent[rt] == ts {
			r.recent[rt] = nil
		}
		for _, e := range ts.entries {
			e.refs--
			if e.refs == 0 {
				delete(r.entries, e.res)
			}
		}
	}
}

// clear forgets nodeID: its resources and go-control-plane's state for it
// (including the watches of streams still open, which then receive nothing
// more until they reconnect).
func (r *resources) clear(nodeID string) {
	defer r.lockNode(nodeID)()
	r.mu.Lock()
	if old, ok := r.nodes[nodeID]; ok {
		delete(r.nodes, nodeID)
		r.release(old)
	}
	r.mu.Unlock()
	r.snapshots.ClearSnapshot(nodeID)
}
