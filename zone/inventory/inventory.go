// Package inventory is a zone's own resources — the types zones own
// (Dataplanes, ZoneIngress) — persisted in one bbolt file, together with the
// outbox of reports that carry every change of them to global.
//
// Where it sits in the data flow (DESIGN.md §3, §6, §7): the zone API (and,
// later, xDS registration) writes Dataplanes and ZoneIngress here (Put,
// Delete). Each write appends a report (a syncpb.Report numbered by the
// zone's own sequence) in the same bbolt transaction as the change itself, so
// a crash never loses a report nor leaves one for a change that did not
// happen. The zone's sync client (zone/syncclient) sends the pending reports
// to global in sequence order (Pending, Watch); global writes them through
// Raft with kuma.io/zone pinned and acknowledges them, and Acked removes them
// from the outbox, recording any resource global refused (Rejections).
//
// Decisions:
//
//   - One counter: every change takes the next sequence number, which is
//     both the resource's revision (its ETag on the zone API) and the
//     sequence of the report that carries it.
//   - One resource per report, and a newer change of a key replaces its
//     pending report (coalescing): a zone cut off from global for a long time
//     holds at most one pending report per resource it changed, not one per
//     change. Replacing a report that is in flight is safe: global applies
//     reports of one stream in order, and the newer report carries the
//     whole current state of the key (or its deletion).
//   - A write whose labels and spec equal the stored ones changes nothing
//     (no new revision, no report), as on global (docs/decisions.md D3).
//   - The zone's labels are pinned: kuma.io/zone is this zone and
//     kuma.io/origin is "zone", as global stores them; a write that sets
//     them to anything else is refused.
//   - ReportTo: when global has lost the zone's resources — the zone finds
//     itself following another global cluster (global's data was replaced),
//     or its Zone resource on global was created anew (global deleted the
//     offline zone with what it had reported) — every resource is reported
//     again. Otherwise a reconnection sends only the pending reports.
//
// Reads are served from memory; writes are serialized, go to the file in one
// transaction (fsynced on commit) and only then to memory.
package inventory

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// fileMode is the mode of a file Open creates.
const fileMode os.FileMode = 0o600

// DefaultLockTimeout is how long Open waits for another process to release
// the file.
const DefaultLockTimeout = 2 * time.Second

// DefaultMaxReportBytes bounds the resources of one report that ReportTo
// builds (global accepts messages of up to 16 MiB; stay well under).
const DefaultMaxReportBytes = 1 << 20

// Options configures an inventory.
type Options struct {
	// Zone (required) is this zone's name: it is pinned on every resource
	// (kuma.io/zone), a ZoneIngress must name it, and a file written for
	// another zone is refused.
	Zone string
	// ReplicaID names this replica of the zone control plane in the stamps
	// of its changes (see Merge); empty for a zone run as one replica.
	ReplicaID string
	// LockTimeout bounds how long Open waits while another process holds
	// the file; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
	// MaxReportBytes bounds the resources of one report ReportTo builds;
	// 0 means DefaultMaxReportBytes.
	MaxReportBytes int
}

// Validate checks the options.
func (o Options) Validate() error {
	if o.Zone == "" {
		return errors.New("inventory: Zone must be set")
	}
	if o.LockTimeout < 0 {
		return errors.New("inventory: LockTimeout must not be negative")
	}
	if o.MaxReportBytes < 0 {
		return errors.New("inventory: MaxReportBytes must not be negative")
	}
	return nil
}

// Errors Open and the writes return (wrapped, with details).
var (
	// ErrCorrupt: the file is not a readable bbolt database, or a record in
	// it does not decode.
	ErrCorrupt = errors.New("inventory file is corrupt")
	// ErrNotInventory: the file is a bbolt database written by something
	// else.
	ErrNotInventory = errors.New("file is not a meshfed zone inventory")
	// ErrUnsupportedFormat: the file's format version is not one this build
	// understands.
	ErrUnsupportedFormat = errors.New("unsupported inventory format version")
	// ErrWrongZone: the file holds another zone's inventory.
	ErrWrongZone = errors.New("inventory file belongs to another zone")
	// ErrLocked: another process has the file open.
	ErrLocked = errors.New("inventory file is locked by another process")
	// ErrClosed: a write after Close.
	ErrClosed = errors.New("inventory is closed")
)

// Rejection is a reported resource global refused to store, with its reason.
// It stays until a later report of the same resource is accepted.
type Rejection struct {
	Type string `json:"type"`
	Mesh string `json:"mesh,omitempty"`
	Name string `json:"name"`
	// Sequence is the report global refused it in.
	Sequence uint64 `json:"sequence"`
	Reason   string `json:"reason"`
	// Time is when the refusal arrived.
	Time time.Time `json:"time"`
}

// Status summarizes the outbox.
type Status struct {
	// Sequence is the last sequence number taken (the newest change).
	Sequence uint64 `json:"sequence"`
	// Acked is the highest report sequence global has acknowledged.
	Acked uint64 `json:"acked"`
	// Pending counts the reports global has not acknowledged yet, and
	// OldestPending is the first of them (0 when none).
	Pending       int    `json:"pending"`
	OldestPending uint64 `json:"oldestPending,omitempty"`
	// ReportedTo is where the zone reports to (empty until it has followed
	// a global cluster).
	ReportedTo Target `json:"reportedTo"`
	// Rejected lists the resources global refused, sorted by key.
	Rejected []Rejection `json:"rejected"`
}

// PutOptions tunes Put.
type PutOptions struct {
	// ExpectRevision, when non-zero, makes the write fail with
	// *api.ConflictError unless the stored resource is at that revision.
	ExpectRevision uint64
	// Now is the write's time (creation and modification times); zero means
	// time.Now().
	Now time.Time
}

// Inventory is a zone's own resources and its report outbox. Its methods
// are safe for concurrent use; writes are serialized.
type Inventory struct {
	logger         *slog.Logger
	zone           string
	path           string
	maxReportBytes int

	// wmu serializes writers: a write runs its bolt transaction and then
	// updates memory while holding it.
	wmu    sync.Mutex
	db     *bolt.DB // nil after Close
	closed bool

	// mu guards the in-memory state below.
	mu           sync.RWMutex
	seq          uint64
	acked        uint64
	reportedTo   Target
	index        *api.Index
	pending      []*syncpb.Report   // ascending sequence
	pendingByKey map[api.Key]uint64 // the pending one-resource report of a key
	rejections   map[api.Key]Rejection
	// versions holds each key's last change (a tombstone after a
	// deletion); clock is the newest stamp time seen (guarded by wmu).
	versions      map[api.Key]version
	clock         int64
	replica       string
	reportsNotify chan struct{} // closed and replaced when a report is added
	changeNotify  chan struct{} // closed and replaced when a resource changes
	specNotify    chan struct{} // the same, for resources other than system types
}

// Open opens the inventory file at path, creating it (mode 0600) when it
// does not exist, and loads it into memory.
func Open(path string, logger *slog.Logger, opts Options) (*Inventory, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: timeout})
	if err != nil {
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return nil, fmt.Errorf("open inventory %s: %w (waited %v)", path, ErrLocked, timeout)
		case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
			return nil, fmt.Errorf("open inventory %s: %w: not a readable bbolt database (%w)", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	if opts.MaxReportBytes == 0 {
		opts.MaxReportBytes = DefaultMaxReportBytes
	}
	inv := &Inventory{
		maxReportBytes: opts.MaxReportBytes,
		logger:         logger,
		zone:           opts.Zone,
		path:           path,
		db:             db,
		index:          api.NewIndex(),
		pendingByKey:   map[api.Key]uint64{},
		rejections:     map[api.Key]Rejection{},
		versions:       map[api.Key]version{},
		replica:        opts.ReplicaID,
		reportsNotify:  make(chan struct{}),
		changeNotify:   make(chan struct{}),
		specNotify:     make(chan struct{}),
	}
	created, err := inv.load()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	if created {
		logger.Info("created zone inventory", "path", path)
	} else {
		logger.Info("loaded zone inventory", "path", path, "resources", inv.index.Len(),
			"sequence", inv.seq, "pending_reports", len(inv.pending), "rejected", len(inv.rejections))
	}
	return inv, nil
}

// Close closes the file. Reads keep answering from memory; writes fail with
// ErrClosed. Close is idempotent.
func (inv *Inventory) Close() error {
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return nil
	}
	inv.closed = true
	db := inv.db
	inv.db = nil
	if err := db.Close(); err != nil {
		return fmt.Errorf("close inventory %s: %w", inv.path, err)
	}
	return nil
}

// Path returns the file's path.
func (inv *Inventory) Path() string { return inv.path }

// Zone returns the zone the inventory belongs to.
func (inv *Inventory) Zone() string { return inv.zone }

// Sequence returns the last sequence number taken (0 when nothing was ever
// written).
func (inv *Inventory) Sequence() uint64 {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.seq
}

// Get returns the resource under key. The result must not be modified.
func (inv *Inventory) Get(key api.Key) (*api.Resource, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.index.Get(key)
}

// List returns the resources of a type, in one mesh or (mesh "") all, sorted
// by mesh then name. The results must not be modified.
func (inv *Inventory) List(typ, mesh string) []*api.Resource {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.index.List(typ, mesh)
}

// Changed returns a channel closed at the next change of a resource. Take it
// before reading, so that a change in between is not missed.
func (inv *Inventory) Changed() <-chan struct{} {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.changeNotify
}

// SpecChanged is Changed for the resources that shape the zone's
// configuration — every type but the system ones (DataplaneInsight, which
// proxies' streams rewrite all the time). Take it before reading.
func (inv *Inventory) SpecChanged() <-chan struct{} {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.specNotify
}

// Status returns a summary of the outbox and the rejected resources.
func (inv *Inventory) Status() Status {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	st := Status{Sequence: inv.seq, Acked: inv.acked, Pending: len(inv.pending),
		ReportedTo: inv.reportedTo, Rejected: []Rejection{}}
	if len(inv.pending) > 0 {
		st.OldestPending = inv.pending[0].GetSequence()
	}
	for _, r := range inv.rejections {
		st.Rejected = append(st.Rejected, r)
	}
	sort.Slice(st.Rejected, func(i, j int) bool {
		a, b := st.Rejected[i], st.Rejected[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Mesh != b.Mesh {
			return a.Mesh < b.Mesh
		}
		return a.Name < b.Name
	})
	return st
}

// Target is where the zone reports to, as the zone can tell from its
// replica of global's state.
type Target struct {
	// ClusterID is the global cluster's id.
	ClusterID string `json:"clusterId,omitempty"`
	// ZoneCreated is the creation time of this zone's Zone resource on
	// global ("" while global has none), in RFC 3339 with nanoseconds.
	ZoneCreated string `json:"zoneCreated,omitempty"`
}

// ReportedTo returns where the zone last reported to.
func (inv *Inventory) ReportedTo() Target {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.reportedTo
}

// Pending returns the reports global has not acknowledged, in sequence
// order. They must not be modified.
func (inv *Inventory) Pending() []*syncpb.Report {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return append([]*syncpb.Report(nil), inv.pending...)
}

// PendingAfter implements syncclient.Reports: at most limit pending
// reports with a sequence after after, in order, without copying the rest
// (a zone may hold thousands while global catches up).
func (inv *Inventory) PendingAfter(after uint64, limit int) []*syncpb.Report {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	i := sort.Search(len(inv.pending), func(i int) bool { return inv.pending[i].GetSequence() > after })
	end := min(len(inv.pending), i+max(limit, 0))
	return append([]*syncpb.Report(nil), inv.pending[i:end]...)
}

// Watch implements syncclient.Reports: a channel closed when a report is
// added. Take it before calling Pending.
func (inv *Inventory) Watch() <-chan struct{} {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.reportsNotify
}

// singleKey returns the key of a report that carries exactly one resource
// (or deletion).
func singleKey(rep *syncpb.Report) (api.Key, bool) {
	ups, dels := rep.GetUpserts(), rep.GetDeletes()
	switch {
	case len(ups) == 1 && len(dels) == 0:
		u := ups[0]
		return api.Key{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName()}, true
	case len(ups) == 0 && len(dels) == 1:
		d := dels[0]
		return api.Key{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName()}, true
	}
	return api.Key{}, false
}

// reportKeys returns the keys a report is about.
func reportKeys(rep *syncpb.Report) []api.Key {
	var out []api.Key
	for _, u := range rep.GetUpserts() {
		out = append(out, api.Key{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName()})
	}
	for _, d := range rep.GetDeletes() {
		out = append(out, api.Key{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName()})
	}
	return out
}

// pendingIndex returns the position of report seq in pending, or -1.
// Callers hold mu.
func (inv *Inventory) pendingIndex(seq uint64) int {
	i := sort.Search(len(inv.pending), func(i int) bool { return inv.pending[i].GetSequence() >= seq })
	if i < len(inv.pending) && inv.pending[i].GetSequence() == seq {
		return i
	}
	return -1
}

// removePending drops report seq from memory. Callers hold mu for writing.
func (inv *Inventory) removePending(seq uint64) {
	i := inv.pendingIndex(seq)
	if i < 0 {
		return
	}
	if k, ok := singleKey(inv.pending[i]); ok && inv.pendingByKey[k] == seq {
		delete(inv.pendingByKey, k)
	}
	inv.pending = append(inv.pending[:i], inv.pending[i+1:]...)
}

// addPending appends report rep (the newest sequence). Callers hold mu for
// writing.
func (inv *Inventory) addPending(rep *syncpb.Report) {
	inv.pending = append(inv.pending, rep)
	if k, ok := singleKey(rep); ok {
		inv.pendingByKey[k] = rep.GetSequence()
	}
}

// notifyReports wakes Watch waiters. Callers hold mu for writing.
func (inv *Inventory) notifyReports() {
	close(inv.reportsNotify)
	inv.reportsNotify = make(chan struct{})
}

// notifyChange wakes Changed waiters, and SpecChanged waiters when spec
// (a resource other than a system type changed). Callers hold mu for
// writing.
func (inv *Inventory) notifyChange(spec bool) {
	close(inv.changeNotify)
	inv.changeNotify = make(chan struct{})
	if spec {
		close(inv.specNotify)
		inv.specNotify = make(chan struct{})
	}
}
