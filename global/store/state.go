package store

import (
	"errors"
	"sort"
	"sync"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
)

// DefaultMaxTombstones is how many recent deletions State remembers so that a
// watcher can be told about them; older ones are pruned and a watcher behind
// them must start over (ErrTooOld).
const DefaultMaxTombstones = 10000

// ErrTooOld is returned by ChangesSince when the requested revision is behind
// the oldest tombstone still held: deletions may have been forgotten, so the
// caller must re-read everything (a Reset in sync terms).
var ErrTooOld = errors.New("revision too old: deletions since then have been pruned")

// Change is one entry of ChangesSince: the resource's latest version, or a
// deletion (Resource nil).
type Change struct {
	Key      api.Key
	Revision uint64
	Resource *api.Resource // nil when deleted
}

type tombstone struct {
	key      api.Key
	revision uint64
}

// changeRef points at one change in revision order; it is stale when the key
// has changed again since.
type changeRef struct {
	revision uint64
	key      api.Key
}

// ClusterMeta is the replicated identity of the global cluster, written once
// by the bootstrap command.
type ClusterMeta struct {
	ClusterID  string `json:"clusterId"`
	AdminToken string `json:"adminToken"`
	// ZoneTokenKey is the Ed25519 private key that signs zone tokens.
	ZoneTokenKey []byte `json:"zoneTokenKey,omitempty"`
	// SyncCA is the CA of the sync port's serving certificates; zones
	// verify global with its certificate.
	SyncCA ca.KeyPair `json:"syncCA,omitzero"`
}

// HasSecrets reports whether the cluster's zone-token key and sync CA exist.
func (m ClusterMeta) HasSecrets() bool { return len(m.ZoneTokenKey) > 0 && len(m.SyncCA.CertPEM) > 0 }

// State is the FSM's in-memory indexed store: resources by key and by
// (type, mesh), each with the revision of its last change, plus recent
// tombstones and a revision-ordered change log so that a watcher can ask for
// everything since revision R. Only the FSM writes it (one writer, the Raft
// apply goroutine); readers take the read lock. Resources are immutable and
// handed out without copying.
type State struct {
	mu sync.RWMutex

	revision  uint64             // index of the last applied command
	index     *api.Index         // every live resource, by key and by type → mesh → name
	lastTouch map[api.Key]uint64 // key → revision of its last change (live or deleted)

	tombs         []tombstone // ordered by revision
	tombFloor     uint64      // deletions at or below this revision may be forgotten
	maxTombstones int

	changes []changeRef // ordered by revision; may hold stale refs

	meta         ClusterMeta
	bootstrapped bool

	notify chan struct{} // closed and replaced on every change
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		index:         api.NewIndex(),
		lastTouch:     map[api.Key]uint64{},
		maxTombstones: DefaultMaxTombstones,
		notify:        make(chan struct{}),
	}
}

// Revision returns the index of the last applied command.
func (s *State) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revision
}

// Watch returns a channel closed at the next change of the state (any applied
// command or a Restore). Take it before reading to avoid missing a change.
func (s *State) Watch() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.notify
}

// Get returns the live resource under key.
func (s *State) Get(key api.Key) (*api.Resource, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index.Get(key)
}

// List returns the resources of a type, in one mesh or (mesh "") all,
// sorted by mesh then name.
func (s *State) List(typ, mesh string) []*api.Resource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index.List(typ, mesh)
}

// Count returns the number of resources of a type in a mesh ("" = all).
func (s *State) Count(typ, mesh string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index.Count(typ, mesh)
}

// Meta returns the cluster identity and whether the store was bootstrapped.
func (s *State) Meta() (ClusterMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.meta, s.bootstrapped
}

// ChangesSince returns the latest change of every key changed after revision
// since, in revision order, and the state's revision they bring the caller
// to. It fails with ErrTooOld when tombstones that far back were pruned.
func (s *State) ChangesSince(since uint64) ([]Change, uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if since < s.tombFloor {
		return nil, s.revision, ErrTooOld
	}
	i := sort.Search(len(s.changes), func(i int) bool { return s.changes[i].revision > since })
	var out []Change
	for _, c := range s.changes[i:] {
		if s.lastTouch[c.key] != c.revision {
			continue // superseded by a later change of the same key
		}
		out = append(out, Change{Key: c.key, Revision: c.revision, Resource: s.resource(c.key)})
	}
	return out, s.revision, nil
}

// The methods below are the FSM's; they run under the write lock taken by
// (*State).apply.

func (s *State) put(r *api.Resource) {
	s.index.Put(r)
	s.touch(r.Key(), r.Revision)
}

func (s *State) remove(key api.Key, revision uint64) {
	if _, ok := s.index.Delete(key); !ok {
		return
	}
	s.tombs = append(s.tombs, tombstone{key: key, revision: revision})
	s.touch(key, revision)
	s.pruneTombstones()
}

// resource returns the live resource under key, nil when there is none.
func (s *State) resource(key api.Key) *api.Resource {
	r, _ := s.index.Get(key)
	return r
}

func (s *State) touch(key api.Key, revision uint64) {
	if s.lastTouch[key] == revision {
		return // already in the log at this revision (a batch touching it twice)
	}
	s.lastTouch[key] = revision
	s.changes = append(s.changes, changeRef{revision: revision, key: key})
	// Compact the change log when most of it is stale: it then holds at most
	// twice the live keys and tombstones, so it stays proportional to state.
	if len(s.changes) > 1024 && len(s.changes) > 2*len(s.lastTouch) {
		s.compactChanges()
	}
}

func (s *State) compactChanges() {
	kept := s.changes[:0:0]
	for _, c := range s.changes {
		if s.lastTouch[c.key] == c.revision {
			kept = append(kept, c)
		}
	}
	s.changes = kept
}

func (s *State) pruneTombstones() {
	excess := len(s.tombs) - s.maxTombstones
	if excess <= 0 {
		return
	}
	for _, t := range s.tombs[:excess] {
		if s.lastTouch[t.key] == t.revision { // not re-created since
			delete(s.lastTouch, t.key)
		}
		if t.revision > s.tombFloor {
			s.tombFloor = t.revision
		}
	}
	s.tombs = append(s.tombs[:0:0], s.tombs[excess:]...)
}

// apply runs fn under the write lock, moves the revision to index and wakes
// watchers.
func (s *State) apply(index uint64, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
	if index > s.revision {
		s.revision = index
	}
	close(s.notify)
	s.notify = make(chan struct{})
}

// All returns every live resource and the revision of that view, taken
// under one read lock.
func (s *State) All() ([]*api.Resource, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index.All(), s.revision
}
