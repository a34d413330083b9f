// Package replica is a zone's copy of everything global sends it, persisted in
// one bbolt file, so that a zone restarted while global is unreachable comes
// up with its last known state and serves it.
//
// Where it sits in the data flow (DESIGN.md §3, §6, §7): global's sync server
// streams Changes and Reset messages to the zone's sync client, which applies
// them here (ApplyChanges, Reset) and acknowledges the revision the replica
// reports, with the resources it rejected. The zone's HTTP API, xDS
// generation and ingress computation read from here (Get, List, Count) and
// wait for the next change with Watch.
//
// Reads are served from an in-memory api.Index (by key, and by type → mesh →
// name, like global's State); a write goes to the file in one bbolt
// transaction (fsynced on commit) and only then to memory, so a crash
// mid-write leaves the old consistent state on disk and readers never see a
// change the file does not hold. Any number of readers may run concurrently
// with one writer; writers are serialized.
//
// Each resource is stored exactly as global sent it (its Kuma JSON body and
// global revision): the replica checks that it decodes and validates, but
// does not rewrite it, so that global's state and the replica compare equal
// resource by resource.
package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/api"
)

// fileMode is the mode of a file Open creates: the replica holds Secrets.
const fileMode os.FileMode = 0o600

// DefaultLockTimeout is how long Open waits for another process to release
// the file.
const DefaultLockTimeout = 2 * time.Second

// Options configures a replica.
type Options struct {
	// Zone (required) is this zone's name. Global never sends a zone its own
	// zone-owned resources (Dataplanes, ZoneIngress labeled kuma.io/zone with
	// this name); the replica refuses them. The name is recorded in the file
	// at creation, and a file written for another zone is refused.
	Zone string
	// LockTimeout bounds how long Open waits while another process holds
	// the file; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Validate checks the options.
func (o Options) Validate() error {
	if o.Zone == "" {
		return errors.New("replica: Zone must be set")
	}
	if o.LockTimeout < 0 {
		return errors.New("replica: LockTimeout must not be negative")
	}
	return nil
}

// Errors Open returns (wrapped, with the path and details). A caller may
// branch on them, e.g. to tell the operator to move the file away.
var (
	// ErrCorrupt: the file is not a readable bbolt database, or a record in
	// it does not decode.
	ErrCorrupt = errors.New("replica file is corrupt")
	// ErrNotReplica: the file is a bbolt database written by something else.
	ErrNotReplica = errors.New("file is not a meshfed zone replica")
	// ErrUnsupportedFormat: the file's format version is not one this
	// build understands (written by a newer meshd, typically).
	ErrUnsupportedFormat = errors.New("unsupported replica format version")
	// ErrWrongZone: the file holds another zone's replica.
	ErrWrongZone = errors.New("replica file belongs to another zone")
	// ErrLocked: another process has the file open.
	ErrLocked = errors.New("replica file is locked by another process")
	// ErrClosed: a write after Close.
	ErrClosed = errors.New("replica is closed")
)

// RevisionError refuses a write that would move the replica's revision
// backwards (an older Changes, or a Reset from the same cluster at an older
// revision). Nothing was written.
type RevisionError struct {
	Current uint64 // the replica's revision
	Got     uint64 // the revision of the refused write
}

func (e *RevisionError) Error() string {
	return fmt.Sprintf("revision %d is older than the replica's revision %d: a replica never goes back", e.Got, e.Current)
}

// Replica is a zone's persisted copy of what global sends it. Its methods are
// safe for concurrent use; writes are serialized.
type Replica struct {
	logger *slog.Logger
	zone   string
	path   string

	// wmu serializes writers: a write runs its bolt transaction and then
	// updates memory while holding it, so memory follows commits in order.
	wmu    sync.Mutex
	db     *bolt.DB // nil after Close
	closed bool

	// mu guards the in-memory state below: readers take it shared, a
	// writer takes it exclusively only to publish a committed change.
	mu        sync.RWMutex
	revision  uint64
	clusterID string
	index     *api.Index
	notify    chan struct{} // closed and replaced on every change
}

// Open opens the replica file at path, creating it (mode 0600) when it does
// not exist, and loads it into memory. It refuses a file that is corrupt, not
// a replica, of an unknown format version, or another zone's.
func Open(path string, logger *slog.Logger, opts Options) (*Replica, error) {
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
			return nil, fmt.Errorf("open replica %s: %w (waited %v)", path, ErrLocked, timeout)
		case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
			return nil, fmt.Errorf("open replica %s: %w: not a readable bbolt database (%w); move it away to start from an empty replica", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	r := &Replica{
		logger: logger,
		zone:   opts.Zone,
		path:   path,
		db:     db,
		index:  api.NewIndex(),
		notify: make(chan struct{}),
	}
	created, err := r.load()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	if created {
		logger.Info("created zone replica", "path", path)
	} else {
		logger.Info("loaded zone replica", "path", path, "revision", r.revision,
			"cluster_id", r.clusterID, "resources", r.index.Len())
	}
	return r, nil
}

// Close closes the file. Reads keep answering from memory; writes fail with
// ErrClosed. Close is idempotent.
func (r *Replica) Close() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	db := r.db
	r.db = nil
	if err := db.Close(); err != nil {
		return fmt.Errorf("close replica %s: %w", r.path, err)
	}
	return nil
}

// Path returns the file's path.
func (r *Replica) Path() string { return r.path }

// Zone returns the zone the replica belongs to.
func (r *Replica) Zone() string { return r.zone }

// Revision returns global's revision last fully applied (0 when empty).
func (r *Replica) Revision() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revision
}

// ClusterID returns the global cluster the data came from ("" until the
// first Reset).
func (r *Replica) ClusterID() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.clusterID
}

// Watch returns a channel closed at the next change (a write that changed a
// resource or moved the revision, or a Reset). Take it before reading, so
// that a change between the read and the wait is not missed.
func (r *Replica) Watch() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.notify
}

// Get returns the resource under key. The result must not be modified.
func (r *Replica) Get(key api.Key) (*api.Resource, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.Get(key)
}

// List returns the resources of a type, in one mesh or (mesh "") all, sorted
// by mesh then name. The results must not be modified.
func (r *Replica) List(typ, mesh string) []*api.Resource {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.List(typ, mesh)
}

// Count returns the number of resources of a type in a mesh ("" = all).
func (r *Replica) Count(typ, mesh string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.Count(typ, mesh)
}

// Len returns the number of resources held.
func (r *Replica) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.Len()
}

// publish runs fn under the write lock and wakes watchers.
func (r *Replica) publish(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
	close(r.notify)
	r.notify = make(chan struct{})
}
