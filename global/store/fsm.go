package store

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
)

// FSM applies Raft log entries to a State. It implements raft.FSM.
type FSM struct {
	state *State
}

// NewFSM returns an FSM over state.
func NewFSM(state *State) *FSM { return &FSM{state: state} }

// Apply decodes one command and runs its handler from commandTable. Unknown
// or malformed commands change nothing and return an error result, so every
// replica stays identical.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed command at index %d: %w", l.Index, err)}
	}
	handler, ok := commandTable[cmd.Type]
	if !ok {
		return ApplyResult{Err: fmt.Errorf("unknown command type %q at index %d", cmd.Type, l.Index)}
	}
	var res ApplyResult
	f.state.apply(l.Index, func() { res = handler(f.state, l.Index, cmd.Body) })
	return res
}

// snapshotHeader is the first line of a snapshot.
type snapshotHeader struct {
	Version      int         `json:"version"`
	Revision     uint64      `json:"revision"`
	Bootstrapped bool        `json:"bootstrapped"`
	Meta         ClusterMeta `json:"meta"`
	TombFloor    uint64      `json:"tombFloor"`
	Resources    int         `json:"resources"`
	Tombstones   int         `json:"tombstones"`
}

// snapshotRecord is one line after the header: a resource or a tombstone.
type snapshotRecord struct {
	Revision uint64          `json:"revision"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Deleted  *api.Key        `json:"deleted,omitempty"`
}

const snapshotVersion = 1

// fsmSnapshot is a point-in-time view: pointers to immutable resources,
// captured under the read lock; Persist does the encoding and I/O without it.
type fsmSnapshot struct {
	header    snapshotHeader
	resources []*api.Resource
	tombs     []tombstone
}

// Snapshot captures the state quickly; raft calls Persist later, concurrently
// with new Applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &fsmSnapshot{
		header: snapshotHeader{
			Version: snapshotVersion, Revision: s.revision, Bootstrapped: s.bootstrapped,
			Meta: s.meta, TombFloor: s.tombFloor,
			Resources: s.index.Len(), Tombstones: len(s.tombs),
		},
		resources: s.index.All(),
		tombs:     append([]tombstone(nil), s.tombs...),
	}
	return snap, nil
}

// Persist writes the snapshot as JSON lines: header, resources (in revision
// order, so a restore rebuilds the change log in order), tombstones.
func (snap *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	sort.Slice(snap.resources, func(i, j int) bool {
		a, b := snap.resources[i], snap.resources[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		return a.Key().String() < b.Key().String()
	})
	w := bufio.NewWriterSize(sink, 64<<10)
	enc := json.NewEncoder(w)
	err := enc.Encode(snap.header)
	for _, r := range snap.resources {
		if err != nil {
			break
		}
		var body []byte
		if body, err = json.Marshal(r); err == nil {
			err = enc.Encode(snapshotRecord{Revision: r.Revision, Resource: body})
		}
	}
	for _, t := range snap.tombs {
		if err != nil {
			break
		}
		k := t.key
		err = enc.Encode(snapshotRecord{Revision: t.revision, Deleted: &k})
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds no resources of its own.
func (snap *fsmSnapshot) Release() {}

// Restore replaces the state with a snapshot's. The new state is built
// without the lock, then swapped in under the lock readers use.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	fresh, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.state.replace(fresh)
	return nil
}

func readSnapshot(r io.Reader) (*State, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	if h.Version != snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d not supported (want %d)", h.Version, snapshotVersion)
	}
	st := NewState()
	st.revision, st.bootstrapped, st.meta, st.tombFloor = h.Revision, h.Bootstrapped, h.Meta, h.TombFloor
	var pending []tombstone
	for i := 0; i < h.Resources+h.Tombstones; i++ {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("snapshot record %d: %w", i, err)
		}
		if rec.Deleted != nil {
			pending = append(pending, tombstone{key: *rec.Deleted, revision: rec.Revision})
			continue
		}
		res, err := api.DecodeJSON(rec.Resource)
		if err != nil {
			return nil, fmt.Errorf("snapshot record %d: %w", i, err)
		}
		res.Revision = rec.Revision
		st.put(res)
	}
	// Interleave tombstones into the change log in revision order.
	for _, t := range pending {
		st.tombs = append(st.tombs, t)
		if st.lastTouch[t.key] < t.revision {
			st.lastTouch[t.key] = t.revision
		}
		st.changes = append(st.changes, changeRef{revision: t.revision, key: t.key})
	}
	sort.SliceStable(st.changes, func(i, j int) bool { return st.changes[i].revision < st.changes[j].revision })
	return st, nil
}

// replace swaps in a restored state's contents and wakes watchers.
func (s *State) replace(fresh *State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision, s.index, s.lastTouch = fresh.revision, fresh.index, fresh.lastTouch
	s.tombs, s.tombFloor, s.changes = fresh.tombs, fresh.tombFloor, fresh.changes
	s.meta, s.bootstrapped = fresh.meta, fresh.bootstrapped
	close(s.notify)
	s.notify = make(chan struct{})
}
