// Package membership is how global nodes find each other: a
// hashicorp/memberlist gossip pool (port 5691) in which every node advertises
// its Raft, API and sync addresses, its cluster id and whether it holds Raft
// state. The global role reads it to bootstrap Raft (--bootstrap-expect), to
// forward requests to the leader's API, and to add and remove Raft voters
// (autopilot).
//
// It refuses to merge with nodes of another cluster (a different cluster id)
// and refuses a second live node with this node's id.
package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node advertises to the others.
type Meta struct {
	RaftAddr  string `json:"raft"`
	APIAddr   string `json:"api"`
	SyncAddr  string `json:"sync,omitempty"`
	ClusterID string `json:"cluster,omitempty"`
	// HasState: the node holds Raft state (it is not new).
	HasState bool   `json:"state,omitempty"`
	Version  string `json:"version,omitempty"`
	// Leaving: the node is leaving gracefully (set by Leave), so that the
	// others record its departure as Left rather than Dead.
	Leaving bool `json:"leaving,omitempty"`
}

// State is a member's gossip state.
type State string

const (
	// memberlist reports joins, updates and departures, not suspicion, so
	// a suspected member shows as alive until it is declared dead.
	Alive State = "alive"
	Dead  State = "dead"
	Left  State = "left"
)

// Member is one node as this node sees it.
type Member struct {
	ID         string    `json:"id"`
	GossipAddr string    `json:"gossipAddress"`
	Meta       Meta      `json:"meta"`
	State      State     `json:"state"`
	Since      time.Time `json:"since"` // when this node saw it enter State
}

// Config configures membership.
type Config struct {
	// NodeID is this node's name in the pool; the same as its Raft id.
	NodeID string
	// BindAddr is the gossip listen address (host:port, UDP and TCP).
	BindAddr string
	// AdvertiseAddr is the address others reach; default BindAddr.
	AdvertiseAddr string
	// Join lists gossip addresses of nodes to join; retried until one
	// answers.
	Join []string
	// TimingMultiplier scales the failure detector (probe interval 500 ms,
	// timeout 250 ms, gossip 100 ms at 1). Default 1.
	TimingMultiplier int
	// DeadNodeReclaim is how soon a dead node's id may be taken by a node at
	// another address (replacement). Default 5s.
	DeadNodeReclaim time.Duration
	// ReconnectInterval is how often dead members (and the join addresses)
	// are tried again, so that a gossip split heals. Default 10s.
	ReconnectInterval time.Duration
	// Meta returns this node's current metadata; called whenever it is
	// (re)broadcast.
	Meta func() Meta
	// Transport replaces memberlist's UDP/TCP transport (tests).
	Transport memberlist.Transport
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id must not be empty"))
	}
	if c.Transport == nil {
		if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip-addr %q: %w", c.BindAddr, err))
		}
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join %q: not host:port", j))
		}
	}
	if c.TimingMultiplier == 0 {
		c.TimingMultiplier = 1
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = 10 * time.Second * time.Duration(c.TimingMultiplier)
	}
	if c.DeadNodeReclaim == 0 {
		c.DeadNodeReclaim = 5 * time.Second
	}
	if c.Meta == nil {
		errs = append(errs, errors.New("meta function must be set"))
	}
	return errors.Join(errs...)
}

// Membership is this node's view of the gossip pool.
type Membership struct {
	cfg    Config
	logger *slog.Logger

	mu       sync.Mutex
	ml       *memberlist.Memberlist
	members  map[string]*Member
	notify   chan struct{}
	refusal  error  // why a join was refused (cluster id, duplicate id)
	local    string // this node's gossip address, once running
	joinedCh chan struct{}
	leaving  atomic.Bool // Leave was called
}

// New builds membership; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	return &Membership{cfg: cfg, logger: logger, members: map[string]*Member{},
		notify: make(chan struct{}), joinedCh: make(chan struct{})}, nil
}

// ErrRefused wraps the reason another cluster refused this node.
var ErrRefused = errors.New("refused by the cluster")

// Run starts gossip, joins the configured nodes (retrying with backoff until
// one answers) and blocks until ctx ends; then it shuts gossip down (without
// a graceful leave: call Leave first for that). It returns an error if the
// cluster refuses this node (another cluster's id, a duplicate node id).
func (m *Membership) Run(ctx context.Context) error {
	ml, err := memberlist.Create(m.memberlistConfig())
	if err != nil {
		return fmt.Errorf("gossip on %s: %w", m.cfg.BindAddr, err)
	}
	m.mu.Lock()
	m.ml = ml
	m.local = ml.LocalNode().Address()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.ml = nil // Leave and UpdateMeta are no-ops from now on
		m.mu.Unlock()
		_ = ml.Shutdown()
	}()

	if len(m.cfg.Join) == 0 {
		close(m.joinedCh)
	} else if err := m.joinLoop(ctx, ml); err != nil {
		return err
	}
	m.reconnect(ctx, ml)
	return nil
}

// reconnect heals gossip splits. memberlist never probes a dead member
// again, so once every node that knew a member has marked it dead (a long
// partition, nodes restarted after a replacement) the pools would stay
// apart for good. Every ReconnectInterval this node tries to join its dead
// members and its --join addresses again; joining a live pool is only a
// state exchange.
func (m *Membership) reconnect(ctx context.Context, ml *memberlist.Memberlist) {
	tick := time.NewTicker(m.cfg.ReconnectInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var addrs []string
		m.mu.Lock()
		for _, mem := range m.members {
			if mem.State == Dead && mem.GossipAddr != "" {
				addrs = append(addrs, mem.GossipAddr)
			}
		}
		m.mu.Unlock()
		if len(addrs) == 0 {
			continue
		}
		n, err := ml.Join(append(addrs, m.cfg.Join...))
		m.logger.Debug("gossip: tried to reach dead members again", "addresses", len(addrs), "contacted", n, "err", err)
	}
}

func (m *Membership) joinLoop(ctx context.Context, ml *memberlist.Memberlist) error {
	backoff := 100 * time.Millisecond
	for {
		n, err := ml.Join(m.cfg.Join)
		if r := m.refused(); r != nil {
			return fmt.Errorf("%w: %v", ErrRefused, r)
		}
		if n > 0 {
			m.logger.Info("joined the gossip pool", "contacted", n, "node", m.cfg.NodeID)
			close(m.joinedCh)
			return nil
		}
		m.logger.Debug("join failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Joined is closed once this node has joined a pool (immediately when it
// has nothing to join).
func (m *Membership) Joined() <-chan struct{} { return m.joinedCh }

func (m *Membership) memberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	mult := time.Duration(m.cfg.TimingMultiplier)
	c.Name = m.cfg.NodeID
	c.ProbeInterval = 500 * time.Millisecond * mult
	c.ProbeTimeout = 250 * time.Millisecond * mult
	c.GossipInterval = 100 * time.Millisecond * mult
	c.PushPullInterval = 15 * time.Second * mult
	c.SuspicionMult = 3
	c.DeadNodeReclaimTime = m.cfg.DeadNodeReclaim
	c.Delegate = &delegate{m: m}
	c.Events = &events{m: m}
	c.Merge = &mergeCheck{m: m}
	c.Alive = &aliveCheck{m: m}
	c.Conflict = &conflicts{m: m}
	c.Logger = nil
	c.LogOutput = &logWriter{logger: m.logger.With("component", "gossip")}
	if m.cfg.Transport != nil {
		c.Transport = m.cfg.Transport
	} else {
		host, port, _ := net.SplitHostPort(m.cfg.BindAddr)
		c.BindAddr = host
		c.BindPort, _ = strconv.Atoi(port)
		ahost, aport, err := net.SplitHostPort(m.cfg.AdvertiseAddr)
		if err == nil {
			c.AdvertiseAddr = ahost
			c.AdvertisePort, _ = strconv.Atoi(aport)
		}
	}
	return c
}

// Members returns every node this node knows of (itself included), sorted
// by id.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns one member by id.
func (m *Membership) Member(id string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	if !ok {
		return Member{}, false
	}
	return *mem, true
}

// Watch returns a channel closed at the next membership change.
func (m *Membership) Watch() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notify
}

// UpdateMeta re-broadcasts this node's metadata (after its cluster id or
// state changed).
func (m *Membership) UpdateMeta() error {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return nil
	}
	return ml.UpdateNode(2 * time.Second)
}

// Leave announces a graceful departure and waits up to timeout for it to
// spread. memberlist does not tell the others whether a node left or died
// (its Node.State is never set), so this node first re-broadcasts its
// metadata with Leaving set: the others then record it as Left.
func (m *Membership) Leave(timeout time.Duration) error {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return nil
	}
	m.leaving.Store(true)
	if err := ml.UpdateNode(timeout / 2); err != nil {
		m.logger.Warn("announcing the graceful leave", "err", err)
	}
	return ml.Leave(timeout)
}

func (m *Membership) refused() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refusal
}

// record updates a member from a memberlist node; caller must not hold mu.
func (m *Membership) record(n *memberlist.Node, state State) {
	var meta Meta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			m.logger.Warn("ignoring malformed gossip metadata", "node", n.Name, "err", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.members[n.Name]
	if cur == nil || cur.State != state {
		cur = &Member{ID: n.Name, State: state, Since: time.Now()}
		m.members[n.Name] = cur
	}
	cur.GossipAddr = n.Address()
	cur.Meta = meta
	close(m.notify)
	m.notify = make(chan struct{})
}

// check decides whether a peer may be in this node's pool.
func (m *Membership) check(peer *memberlist.Node) error {
	var meta Meta
	if len(peer.Meta) > 0 {
		if err := json.Unmarshal(peer.Meta, &meta); err != nil {
			return fmt.Errorf("node %s sent malformed metadata: %v", peer.Name, err)
		}
	}
	own := m.cfg.Meta()
	if meta.ClusterID != "" && own.ClusterID != "" && meta.ClusterID != own.ClusterID {
		return fmt.Errorf("node %s (%s) belongs to cluster %s, this node to cluster %s", peer.Name, peer.Address(), meta.ClusterID, own.ClusterID)
	}
	// memberlist calls this with its node lock held: read our own address
	// from m.local, never from memberlist.
	m.mu.Lock()
	local := m.local
	m.mu.Unlock()
	// A dead or departed node's id may be taken by a new node (replacement:
	// memberlist hands the id over after DeadNodeReclaim); a live one's not.
	// Only an alive peer counts: a node that merged a dead member's state
	// shortly before reports it as suspect.
	if peer.Name == m.cfg.NodeID && local != "" && peer.Address() != local && peer.State == memberlist.StateAlive {
		return fmt.Errorf("node id %q is already used by the live node at %s (this node is %s); give each node its own --node-id", peer.Name, peer.Address(), local)
	}
	return nil
}

type delegate struct{ m *Membership }

func (d *delegate) NodeMeta(limit int) []byte {
	meta := d.m.cfg.Meta()
	meta.Leaving = d.m.leaving.Load()
	b, _ := json.Marshal(meta)
	if len(b) > limit {
		d.m.logger.Error("gossip metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ m *Membership }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.m.record(n, Alive) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.m.record(n, Alive) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	// n.State is not set by memberlist: whether the node left is in the
	// metadata it broadcast before leaving.
	var meta Meta
	_ = json.Unmarshal(n.Meta, &meta)
	state := Dead
	if meta.Leaving {
		state = Left
	}
	e.m.logger.Info("gossip member gone", "node", n.Name, "state", state)
	e.m.record(n, state)
}

type mergeCheck struct{ m *Membership }

func (c *mergeCheck) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := c.m.check(p); err != nil {
			c.m.logger.Error("refusing to merge gossip pools", "err", err)
			c.m.mu.Lock()
			if c.m.refusal == nil {
				c.m.refusal = err
			}
			c.m.mu.Unlock()
			return err
		}
	}
	return nil
}

type aliveCheck struct{ m *Membership }

func (c *aliveCheck) NotifyAlive(peer *memberlist.Node) error {
	if err := c.m.check(peer); err != nil {
		c.m.logger.Warn("ignoring gossip member", "err", err)
		return err
	}
	return nil
}

type conflicts struct{ m *Membership }

func (c *conflicts) NotifyConflict(existing, other *memberlist.Node) {
	c.m.logger.Error("two nodes claim one node id", "node", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// logWriter forwards memberlist's log lines to slog at debug level, except
// errors and warnings.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(p)
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	}
	w.logger.Log(context.Background(), level, strings.TrimRight(line, "\r\n"))
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
