package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/ca"
)

// Config configures one global node's store.
type Config struct {
	// NodeID is this node's Raft server id; unique in the cluster.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// RaftAddr is the address the Raft transport listens on (host:port).
	RaftAddr string
	// AdvertiseAddr is the Raft address other nodes dial; default RaftAddr.
	AdvertiseAddr string
	// Transport replaces the Raft TCP transport (in-process tests use
	// raft.InmemTransport to cut links). RaftAddr must then be its address.
	Transport raft.Transport
	// Forwarder sends writes and read-index requests to the leader when this
	// node is a follower. Nil: followers answer them with NotLeaderError.
	Forwarder Forwarder
	// Bootstrap makes a node with no Raft state bootstrap a cluster of
	// itself alone.
	Bootstrap bool
	// SkipDefaultMesh: the bootstrap command does not create the default
	// Mesh.
	SkipDefaultMesh bool
	// TimingMultiplier scales every Raft timeout (heartbeat, election,
	// leader lease, commit). 1 is tuned for a LAN; raise it for slow or
	// loaded machines, as with Consul's raft_multiplier. Default 1.
	TimingMultiplier int
	// ApplyTimeout bounds how long a write waits for Raft. Default 5s.
	ApplyTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot make
	// the next periodic check (SnapshotInterval) take one. Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often Raft checks SnapshotThreshold (each wait
	// is randomised between one and two intervals); a write alone never
	// triggers a snapshot. Default 2m (Raft's own default).
	SnapshotInterval time.Duration
	// TrailingLogs is how many log entries are kept after a snapshot, so that
	// a slightly lagging follower catches up without a snapshot install.
	// Default 10240.
	TrailingLogs uint64
	// MaxTombstones bounds how many recent deletions the state remembers.
	// Default DefaultMaxTombstones.
	MaxTombstones int
	// Metrics, when set, receives the store's own metrics
	// (meshfed_raft_apply_*, see docs/metrics.md).
	Metrics prometheus.Registerer
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id must not be empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil && c.Transport == nil {
		errs = append(errs, fmt.Errorf("raft address %q: %w", c.RaftAddr, err))
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.RaftAddr
	}
	if c.Transport != nil {
		// addresses are the transport's
	} else if host, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft advertise address %q: %w", c.AdvertiseAddr, err))
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("raft advertise address %q: must be an IP other nodes can dial", c.AdvertiseAddr))
	}
	if c.TimingMultiplier == 0 {
		c.TimingMultiplier = 1
	}
	if c.TimingMultiplier < 1 || c.TimingMultiplier > 10 {
		errs = append(errs, fmt.Errorf("timing multiplier %d: must be between 1 and 10", c.TimingMultiplier))
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 5 * time.Second
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 2 * time.Minute
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.MaxTombstones == 0 {
		c.MaxTombstones = DefaultMaxTombstones
	}
	if c.MaxTombstones < 0 {
		errs = append(errs, fmt.Errorf("max tombstones %d: must not be negative", c.MaxTombstones))
	}
	return errors.Join(errs...)
}

// NotLeaderError: this node is not the Raft leader and cannot do what was
// asked itself. It unwraps to an *api.UnavailableError so the API answers
// 503 with Retry-After.
type NotLeaderError struct {
	LeaderID   string // empty when no leader is known (election)
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "no Raft leader (election in progress)"
	}
	return fmt.Sprintf("not the Raft leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error {
	return &api.UnavailableError{Reason: e.Error(), RetryAfter: time.Second}
}

// Node is one global node's store: Raft plus the FSM state. It implements
// rest.Store.
type Node struct {
	cfg    Config
	logger *slog.Logger
	state  *State
	fsm    *FSM

	raft atomic.Pointer[raft.Raft]
	// leaderReady is set once this node, as leader, has applied everything
	// committed before its term (a barrier succeeded).
	leaderReady atomic.Bool
	// hadState: the node had Raft state when it started (or bootstrapped).
	hadState atomic.Bool
	// started is closed once Raft runs.
	started chan struct{}
	metrics *metrics
}

var _ rest.Store = (*Node)(nil)

// New builds a node; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	st := NewState()
	st.maxTombstones = cfg.MaxTombstones
	return &Node{cfg: cfg, logger: logger, state: st, fsm: NewFSM(st), started: make(chan struct{}), metrics: m}, nil
}

// State returns the node's FSM state (for readers: the API, the sync server).
func (n *Node) State() *State { return n.state }

// Raft returns the running Raft instance, or nil before Run started it.
func (n *Node) Raft() *raft.Raft { return n.raft.Load() }

// Run opens the Raft stores, starts Raft, bootstraps when configured, and
// proposes the bootstrap command (cluster id, admin token, default Mesh) the
// first time this node leads an uninitialised cluster. It blocks until ctx
// ends, then shuts Raft down.
func (n *Node) Run(ctx context.Context) error {
	r, closeStores, err := n.start()
	if err != nil {
		return err
	}
	n.raft.Store(r)
	close(n.started)
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			n.logger.Warn("raft shutdown", "err", err)
		}
		closeStores()
	}()
	leaderCh := r.LeaderCh()
	isLeader := r.State() == raft.Leader
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		if isLeader && !n.leaderReady.Load() {
			// A new leader has not necessarily applied everything committed
			// before it won (after a restart, log entries past the snapshot
			// are only applied once a new entry commits). A barrier does
			// that; until it has, Ready reports not ready.
			if err := r.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
				n.logger.Warn("leader barrier failed; retrying", "err", err)
				retry.Reset(200 * time.Millisecond)
			} else {
				n.leaderReady.Store(true)
			}
		}
		if isLeader && n.leaderReady.Load() {
			if meta, done := n.state.Meta(); !done {
				if err := n.proposeBootstrap(); err != nil {
					n.logger.Warn("bootstrap command failed; retrying", "err", err)
					retry.Reset(200 * time.Millisecond)
				} else {
					retry.Reset(0) // the secrets next
				}
			} else if !meta.HasSecrets() {
				if err := n.proposeSecrets(meta.ClusterID); err != nil {
					n.logger.Warn("init-secrets command failed; retrying", "err", err)
					retry.Reset(200 * time.Millisecond)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case isLeader = <-leaderCh:
			n.leaderReady.Store(false)
			n.logger.Info("raft leadership changed", "leader", isLeader, "node", n.cfg.NodeID)
		case <-retry.C:
		}
	}
}

func (n *Node) start() (*raft.Raft, func(), error) {
	raftDir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", raftDir, err)
	}
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(raftDir, "raft.db"))
	if err != nil {
		return nil, nil, fmt.Errorf("open raft log %s: %w", raftDir, err)
	}
	hlog := hclogFor(n.logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hlog)
	if err != nil {
		bolt.Close()
		return nil, nil, fmt.Errorf("open snapshots: %w", err)
	}
	logs, err := raft.NewLogCache(512, bolt)
	if err != nil {
		bolt.Close()
		return nil, nil, err
	}
	trans := n.cfg.Transport
	if trans == nil {
		adv, err := net.ResolveTCPAddr("tcp", n.cfg.AdvertiseAddr)
		if err != nil {
			bolt.Close()
			return nil, nil, fmt.Errorf("raft advertise address: %w", err)
		}
		tcp, err := raft.NewTCPTransportWithLogger(n.cfg.RaftAddr, adv, 3, 10*time.Second, hlog)
		if err != nil {
			bolt.Close()
			return nil, nil, fmt.Errorf("raft transport on %s: %w", n.cfg.RaftAddr, err)
		}
		trans = tcp
	}
	closeAll := func() {
		if c, ok := trans.(interface{ Close() error }); ok {
			c.Close()
		}
		bolt.Close()
	}
	rc := n.raftConfig(hlog)
	existing, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("inspect raft state: %w", err)
	}
	n.hadState.Store(existing)
	if n.cfg.Bootstrap && !existing {
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(rc, logs, bolt, snaps, trans, conf); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("bootstrap raft: %w", err)
		}
		n.hadState.Store(true)
		n.logger.Info("bootstrapped a new single-node raft cluster", "node", n.cfg.NodeID)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, bolt, snaps, trans)
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("start raft: %w", err)
	}
	return r, closeAll, nil
}

func (n *Node) raftConfig(hlog hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	m := time.Duration(n.cfg.TimingMultiplier)
	c.LocalID = raft.ServerID(n.cfg.NodeID)
	c.HeartbeatTimeout = 250 * time.Millisecond * m
	c.ElectionTimeout = 250 * time.Millisecond * m
	c.LeaderLeaseTimeout = 125 * time.Millisecond * m
	c.CommitTimeout = 10 * time.Millisecond * m
	// Let concurrent writers share one log append and fsync.
	c.BatchApplyCh = true
	c.MaxAppendEntries = 256
	c.SnapshotThreshold = n.cfg.SnapshotThreshold
	c.SnapshotInterval = n.cfg.SnapshotInterval
	c.TrailingLogs = n.cfg.TrailingLogs
	c.Logger = hlog
	return c
}

func (n *Node) proposeBootstrap() error {
	token := make([]byte, 32)
	id := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	if _, err := rand.Read(id); err != nil {
		return err
	}
	data, err := EncodeCommand(CmdBootstrap, BootstrapCommand{
		ClusterID:         formatUUID(id),
		AdminToken:        hex.EncodeToString(token),
		CreateDefaultMesh: !n.cfg.SkipDefaultMesh,
		Now:               time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	res, err := n.proposeRaw(data)
	if err == nil && res.Created {
		n.logger.Info("created the default mesh", "mesh", "default", "revision", res.Resource.Revision)
	}
	return err
}

// proposeSecrets creates the zone-token signing key and the sync CA.
func (n *Node) proposeSecrets(clusterID string) error {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	syncCA, err := ca.NewRoot("Meshfed sync CA "+clusterID, 10*365*24*time.Hour, ca.KeyOptions{})
	if err != nil {
		return err
	}
	data, err := EncodeCommand(CmdInitSecrets, InitSecretsCommand{ZoneTokenKey: key, SyncCA: syncCA})
	if err != nil {
		return err
	}
	if _, err := n.proposeRaw(data); err != nil {
		return err
	}
	n.logger.Info("created the zone-token signing key and the sync CA")
	return nil
}

func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Leader returns the current leader's id and Raft address ("" if unknown).
func (n *Node) Leader() (id, addr string) {
	r := n.raft.Load()
	if r == nil {
		return "", ""
	}
	a, i := r.LeaderWithID()
	return string(i), string(a)
}

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// propose appends a command to the Raft log and returns the FSM's result.
// On a follower with a Forwarder, the leader proposes it instead.
func (n *Node) propose(ctx context.Context, t CommandType, body any) (ApplyResult, error) {
	data, err := EncodeCommand(t, body)
	if err != nil {
		return ApplyResult{}, err
	}
	return n.proposeEncoded(ctx, data, true)
}

func (n *Node) proposeEncoded(ctx context.Context, data []byte, forward bool) (ApplyResult, error) {
	r, err := n.running()
	if err != nil {
		return ApplyResult{}, err
	}
	if r.State() != raft.Leader {
		leaderID, _ := n.Leader()
		if !forward || n.cfg.Forwarder == nil || leaderID == "" || leaderID == n.cfg.NodeID {
			return ApplyResult{}, n.notLeader()
		}
		ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		defer cancel()
		start := time.Now()
		res, err := n.cfg.Forwarder.Apply(ctx, leaderID, data)
		n.metrics.observe(viaForward, start, err)
		if err != nil {
			return ApplyResult{}, err
		}
		return res, res.Err
	}
	start := time.Now()
	f := r.Apply(data, n.cfg.ApplyTimeout)
	err = f.Error()
	n.metrics.observe(viaLeader, start, err)
	if err != nil {
		return ApplyResult{}, n.raftError(err)
	}
	res, ok := f.Response().(ApplyResult)
	if !ok {
		return ApplyResult{}, fmt.Errorf("unexpected FSM response %T", f.Response())
	}
	return res, res.Err
}

// proposeRaw proposes an already encoded command here, never forwarding.
func (n *Node) proposeRaw(data []byte) (ApplyResult, error) {
	return n.proposeEncoded(context.Background(), data, false)
}

// raftError maps raft's errors to the API's: every "not now" is 503.
func (n *Node) raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (the write may or may not have been applied; it is safe to retry)", n.notLeader())
	case errors.Is(err, raft.ErrRaftShutdown):
		return &api.UnavailableError{Reason: "node is shutting down", RetryAfter: time.Second}
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return &api.UnavailableError{Reason: "raft is overloaded: " + err.Error(), RetryAfter: time.Second}
	}
	return fmt.Errorf("raft: %w", err)
}

// Ready reports whether the node can serve: Raft started, a leader known,
// and the cluster bootstrapped.
func (n *Node) Ready() error {
	r := n.raft.Load()
	if r == nil {
		return errors.New("raft is starting")
	}
	if id, _ := n.Leader(); id == "" {
		return errors.New("no raft leader")
	}
	if r.State() == raft.Leader && !n.leaderReady.Load() {
		return errors.New("new leader is applying the log")
	}
	meta, ok := n.state.Meta()
	if !ok {
		return errors.New("cluster not bootstrapped yet")
	}
	if !meta.HasSecrets() {
		return errors.New("cluster secrets (zone-token key, sync CA) not created yet")
	}
	return nil
}

// consistent makes the next read linearizable. On the leader, a Raft
// barrier commits an entry of the current term and waits until the FSM has
// applied everything before it. On a follower, the leader does that and
// answers its revision (read index); the follower waits until it has applied
// that revision, then reads locally.
func (n *Node) consistent(ctx context.Context) error {
	r, err := n.running()
	if err != nil {
		return err
	}
	if r.State() == raft.Leader {
		return n.barrier(ctx)
	}
	leaderID, _ := n.Leader()
	if n.cfg.Forwarder == nil || leaderID == "" || leaderID == n.cfg.NodeID {
		return n.notLeader()
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	rev, err := n.cfg.Forwarder.ReadIndex(ctx, leaderID)
	if err != nil {
		return err
	}
	return n.waitRevision(ctx, rev)
}

// barrier is the leader's half of a linearizable read.
func (n *Node) barrier(ctx context.Context) error {
	r, err := n.running()
	if err != nil {
		return err
	}
	if r.State() != raft.Leader {
		return n.notLeader()
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
		if timeout <= 0 { // raft reads a non-positive timeout as "none"
			return &api.UnavailableError{Reason: "deadline exceeded before the read", RetryAfter: time.Second}
		}
	}
	if err := r.Barrier(timeout).Error(); err != nil {
		return n.raftError(err)
	}
	return nil
}

// Get implements rest.Store.
func (n *Node) Get(ctx context.Context, key api.Key, opts rest.ReadOptions) (*api.Resource, error) {
	if opts.Consistent {
		if err := n.consistent(ctx); err != nil {
			return nil, err
		}
	}
	r, ok := n.state.Get(key)
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, api.ErrNotFound)
	}
	return r, nil
}

// List implements rest.Store. Listing a mesh that does not exist is
// api.ErrNotFound.
func (n *Node) List(ctx context.Context, typ, mesh string, opts rest.ReadOptions) ([]*api.Resource, error) {
	if opts.Consistent {
		if err := n.consistent(ctx); err != nil {
			return nil, err
		}
	}
	if mesh != "" {
		if _, ok := n.state.Get(api.Key{Type: api.TypeMesh, Name: mesh}); !ok {
			return nil, fmt.Errorf("mesh %q: %w", mesh, api.ErrNotFound)
		}
	}
	return n.state.List(typ, mesh), nil
}

// Put implements rest.Store.
func (n *Node) Put(ctx context.Context, r *api.Resource, opts rest.WriteOptions) (*api.Resource, bool, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	res, err := n.propose(ctx, CmdPut, PutCommand{Resource: body, ExpectRevision: opts.ExpectRevision, Now: time.Now().UTC()})
	if err != nil {
		return nil, false, err
	}
	return res.Resource, res.Created, nil
}

// Delete implements rest.Store.
func (n *Node) Delete(ctx context.Context, key api.Key, opts rest.WriteOptions) error {
	_, err := n.propose(ctx, CmdDelete, DeleteCommand{Type: key.Type, Mesh: key.Mesh, Name: key.Name, ExpectRevision: opts.ExpectRevision})
	return err
}
