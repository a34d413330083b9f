// Package peers connects the replicas of one zone control plane (DESIGN.md
// §7): they find each other through a hashicorp/memberlist gossip pool
// (--gossip-addr, --join) and share their inventories — the Dataplanes and
// ZoneIngresses registered on any of them — so that any replica can serve
// any proxy and none is a single point of failure.
//
// Where it sits in the data flow: a registration lands in one replica's
// inventory (zone API, xDS); this package sends it straight to the other
// replicas, which merge it into their own inventories (last writer wins by
// stamp, see zone/inventory); each replica reports its inventory to global
// over its own sync stream.
//
// Decisions:
//
//   - Delivery in two layers. A change made on this replica is sent at once
//     to every live peer over memberlist's reliable (TCP) channel; a peer
//     that misses it (down, partitioned) gets it from the periodic
//     push/pull state exchange, which also runs when a replica joins. So a
//     partition heals by itself within one push/pull interval.
//   - Only changes stamped by this replica are sent directly (no echo);
//     push/pull exchanges everything, tombstones included. Its payload is
//     gzipped JSON.
//   - The pool is labelled with the zone's name (memberlist's Label), so a
//     replica of another zone, or a global node, is never merged by
//     mistake; with SecretKey set the gossip is also encrypted and
//     authenticated (memberlist's AES-GCM keyring).
//   - A record a peer sends that does not validate is refused alone and
//     logged; it changes nothing else.
//   - memberlist never probes a dead member again, so the replica re-joins
//     its dead peers and its --join addresses every ReconnectInterval: a
//     long partition heals too. A peer seen alive again after being dead
//     gets a state exchange at once (it may have missed changes, or made
//     some while apart), not only at the next push/pull.
package peers

import (
	"bytes"
	"compress/gzip"
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
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshfed/meshfed/zone/inventory"
)

// Store is the inventory as this package needs it.
type Store interface {
	// Records returns the versions changed after local sequence since (0:
	// all), only those stamped by origin when it is set, and the sequence
	// they reach.
	Records(since uint64, origin string) ([]inventory.Record, uint64, error)
	// Merge takes a peer's records.
	Merge(recs []inventory.Record) (inventory.MergeResult, error)
	// Changed is closed at the next change.
	Changed() <-chan struct{}
}

// Meta is what a replica advertises to its peers.
type Meta struct {
	APIAddr string `json:"api,omitempty"`
	XDSAddr string `json:"xds,omitempty"`
	// Leaving is set as the replica shuts down, so that its peers record
	// it as left rather than dead (memberlist tells them only that it is
	// gone).
	Leaving bool `json:"leaving,omitempty"`
}

// Config configures a replica's membership in its zone's pool.
type Config struct {
	// Zone and ReplicaID (required) name the pool and this member; replica
	// ids must be unique within the zone.
	Zone      string
	ReplicaID string
	// BindAddr (required unless Transport) is the gossip address,
	// host:port, UDP and TCP.
	BindAddr string
	// AdvertiseAddr is the address peers reach; default BindAddr.
	AdvertiseAddr string
	// Join lists other replicas' gossip addresses; tried until one answers,
	// and again every ReconnectInterval.
	Join []string
	// SecretKey (16, 24 or 32 bytes) encrypts the gossip; nil: plaintext.
	SecretKey []byte
	// Store (required) is this replica's inventory.
	Store Store
	// Meta is advertised to the peers.
	Meta Meta
	// PushPullInterval is how often the full state is exchanged with a
	// random peer; default 15s.
	PushPullInterval time.Duration
	// ReconnectInterval is how often dead peers and the join addresses are
	// tried again; default 10s.
	ReconnectInterval time.Duration
	// Transport replaces memberlist's network transport (tests), and Fast
	// shortens its failure detector to memberlist's local-network timings.
	Transport memberlist.Transport
	Fast      bool
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Zone == "" {
		errs = append(errs, errors.New("zone: must be set"))
	}
	if c.ReplicaID == "" {
		errs = append(errs, errors.New("replica-id: must be set"))
	}
	if c.Transport == nil {
		if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip-addr: %q is not host:port: %w", c.BindAddr, err))
		}
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join: address %d (%q) is not host:port", i+1, j))
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("gossip-key: must be 16, 24 or 32 bytes, not %d", len(c.SecretKey)))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("store: must be set"))
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = 15 * time.Second
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = 10 * time.Second
	}
	if c.PushPullInterval < 0 || c.ReconnectInterval < 0 {
		errs = append(errs, errors.New("intervals must not be negative"))
	}
	return errors.Join(errs...)
}

// Peer is another replica as this one sees it.
type Peer struct {
	ID         string `json:"id"`
	GossipAddr string `json:"gossipAddress"`
	APIAddr    string `json:"apiAddress,omitempty"`
	XDSAddr    string `json:"xdsAddress,omitempty"`
	// State is alive, dead or left (memberlist does not report suspicion:
	// a suspected peer shows alive until it is declared dead).
	State string `json:"state"`
}

// Status is this replica's view of its pool.
type Status struct {
	ReplicaID string `json:"replicaId"`
	Peers     []Peer `json:"peers"`
	// Sent and Received count the records sent directly and merged (any
	// way); Refused counts the records peers sent that did not validate.
	Sent     uint64 `json:"recordsSent"`
	Received uint64 `json:"recordsMerged"`
	Refused  uint64 `json:"recordsRefused"`
}

// Peers is one replica's membership in its zone's pool.
type Peers struct {
	cfg    Config
	logger *slog.Logger

	mu sync.Mutex
	ml *memberlist.Memberlist
	// known holds every peer seen, with its last state (memberlist lists
	// only live ones).
	known   map[string]Peer
	leaving bool
	// resync takes the gossip addresses of peers seen again after being
	// dead: joinLoop exchanges state with them at once.
	resync   chan string
	sent     uint64
	received uint64
	refused  uint64
}

// New checks cfg; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Peers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Peers{cfg: cfg, logger: logger, known: map[string]Peer{}, resync: make(chan string, 64)}, nil
}

// message is what replicas send each other, directly or in push/pull.
type message struct {
	Zone    string             `json:"zone"`
	From    string             `json:"from"`
	Records []inventory.Record `json:"records"`
}

// maxDirectBytes bounds one direct message (JSON, before any framing).
const maxDirectBytes = 512 << 10

// Run joins the pool and shares changes until ctx ends; then it leaves the
// pool (so that peers see this replica as left, not dead) and shuts gossip
// down.
func (p *Peers) Run(ctx context.Context) error {
	ml, err := memberlist.Create(p.memberlistConfig())
	if err != nil {
		return fmt.Errorf("gossip on %s: %w", p.cfg.BindAddr, err)
	}
	p.mu.Lock()
	p.ml = ml
	p.mu.Unlock()
	p.logger.Info("zone gossip started", "replica", p.cfg.ReplicaID, "gossip", ml.LocalNode().Address(),
		"join", strings.Join(p.cfg.Join, ","), "encrypted", len(p.cfg.SecretKey) > 0)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.joinLoop(ctx, ml) }()
	go func() { defer wg.Done(); p.sendLoop(ctx, ml) }()
	wg.Wait()
	p.mu.Lock()
	p.leaving = true
	p.mu.Unlock()
	_ = ml.UpdateNode(time.Second)
	_ = ml.Leave(time.Second)
	p.mu.Lock()
	p.ml = nil
	p.mu.Unlock()
	return ml.Shutdown()
}

// joinLoop joins the configured addresses until one answers, then every
// ReconnectInterval tries them and the dead members again.
func (p *Peers) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	backoff := 100 * time.Millisecond
	joined := len(p.cfg.Join) == 0
	for {
		wait := p.cfg.ReconnectInterval
		if !joined {
			wait = backoff
			backoff = min(backoff*2, p.cfg.ReconnectInterval)
		}
		var addrs []string
		if !joined {
			addrs = p.cfg.Join
		} else {
			addrs = p.deadAddrs()
			if len(addrs) > 0 {
				addrs = append(addrs, p.cfg.Join...)
			}
		}
		if len(addrs) > 0 {
			n, err := ml.Join(addrs)
			switch {
			case n > 0 && !joined:
				joined = true
				p.logger.Info("joined the zone's replicas", "contacted", n, "members", ml.NumMembers())
			case err != nil:
				p.logger.Debug("gossip join failed; retrying", "addresses", addrs, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case addr := <-p.resync:
			// A peer back from the dead may have missed changes, and may
			// have made some while apart: exchange state with it now rather
			// than at the next push/pull (joining a live member is only
			// that exchange).
			if _, err := ml.Join([]string{addr}); err != nil {
				p.logger.Debug("state exchange with a returning replica failed", "gossip", addr, "err", err)
			}
		}
	}
}

// deadAddrs returns the gossip addresses of peers memberlist declared dead
// (it probes them no more).
func (p *Peers) deadAddrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, peer := range p.known {
		if peer.State == "dead" {
			out = append(out, peer.GossipAddr)
		}
	}
	sort.Strings(out)
	return out
}

// sendLoop sends every change stamped by this replica to the live peers as
// soon as it is made.
func (p *Peers) sendLoop(ctx context.Context, ml *memberlist.Memberlist) {
	changed := p.cfg.Store.Changed()
	_, since, err := p.cfg.Store.Records(^uint64(0), p.cfg.ReplicaID)
	if err != nil {
		p.logger.Error("reading the inventory", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		changed = p.cfg.Store.Changed()
		recs, reached, err := p.cfg.Store.Records(since, p.cfg.ReplicaID)
		if err != nil {
			p.logger.Error("reading the inventory's changes", "err", err)
			continue
		}
		since = max(since, reached)
		if len(recs) == 0 {
			continue
		}
		msgs, err := p.encodeDirect(recs)
		if err != nil {
			p.logger.Error("encoding changes for the zone's replicas", "err", err)
			continue
		}
		for _, n := range p.alivePeers() {
			for _, m := range msgs {
				if err := ml.SendReliable(n, m); err != nil {
					// The next push/pull carries it.
					p.logger.Debug("sending changes to a replica failed", "peer", n.Name, "err", err)
					break
				}
			}
		}
		p.mu.Lock()
		p.sent += uint64(len(recs))
		p.mu.Unlock()
	}
}

// alivePeers returns the live peers as memberlist nodes, built from what
// the event callbacks recorded: the nodes memberlist.Members returns are
// its own, which it keeps changing without a lock the caller can take.
func (p *Peers) alivePeers() []*memberlist.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*memberlist.Node
	for _, peer := range p.known {
		host, port, err := net.SplitHostPort(peer.GossipAddr)
		n, _ := strconv.Atoi(port)
		if peer.State != "alive" || err != nil {
			continue
		}
		out = append(out, &memberlist.Node{Name: peer.ID, Addr: net.ParseIP(host), Port: uint16(n)})
	}
	return out
}

// encodeDirect splits recs into messages of at most maxDirectBytes (a
// single larger record travels alone).
func (p *Peers) encodeDirect(recs []inventory.Record) ([][]byte, error) {
	var out [][]byte
	var cur []inventory.Record
	size := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		b, err := json.Marshal(message{Zone: p.cfg.Zone, From: p.cfg.ReplicaID, Records: cur})
		if err != nil {
			return err
		}
		out = append(out, b)
		cur, size = nil, 0
		return nil
	}
	for _, r := range recs {
		n := len(r.Resource) + len(r.Name) + len(r.Mesh) + 128
		if size+n > maxDirectBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		cur = append(cur, r)
		size += n
	}
	return out, flush()
}

// merge takes a peer's message (direct or push/pull).
func (p *Peers) merge(m message, how string) {
	if m.Zone != p.cfg.Zone {
		p.logger.Warn("refused records from another zone's replica", "from", m.From, "their_zone", m.Zone)
		return
	}
	if len(m.Records) == 0 {
		return
	}
	res, err := p.cfg.Store.Merge(m.Records)
	if err != nil {
		p.logger.Error("merging a replica's records failed", "from", m.From, "via", how, "err", err)
		return
	}
	for _, e := range res.Refused {
		p.logger.Warn("refused a record from a replica", "from", m.From, "via", how, "err", e)
	}
	if res.Applied > 0 {
		p.logger.Debug("merged a replica's records", "from", m.From, "via", how, "applied", res.Applied, "stale", res.Stale)
	}
	p.mu.Lock()
	p.received += uint64(res.Applied)
	p.refused += uint64(len(res.Refused))
	p.mu.Unlock()
}

// Status returns this replica's view of the pool.
func (p *Peers) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{ReplicaID: p.cfg.ReplicaID, Peers: []Peer{}, Sent: p.sent, Received: p.received, Refused: p.refused}
	for _, peer := range p.known {
		st.Peers = append(st.Peers, peer)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].ID < st.Peers[j].ID })
	return st
}

// record notes a peer's state: alive, or gone (left when it said it was
// leaving, dead otherwise).
func (p *Peers) record(n *memberlist.Node, gone bool) {
	if n.Name == p.cfg.ReplicaID {
		return
	}
	var meta Meta
	_ = json.Unmarshal(n.Meta, &meta)
	state := "alive"
	switch {
	case gone && meta.Leaving:
		state = "left"
	case gone:
		state = "dead"
	}
	peer := Peer{ID: n.Name, GossipAddr: n.Address(), APIAddr: meta.APIAddr, XDSAddr: meta.XDSAddr, State: state}
	p.mu.Lock()
	prev, had := p.known[n.Name]
	p.known[n.Name] = peer
	p.mu.Unlock()
	if !had || prev.State != peer.State {
		p.logger.Info("zone replica "+peer.State, "peer", peer.ID, "gossip", peer.GossipAddr)
	}
	if had && prev.State != "alive" && peer.State == "alive" {
		select {
		case p.resync <- peer.GossipAddr:
		default: // a burst of returns: the periodic push/pull covers the rest
		}
	}
}

func (p *Peers) memberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	if p.cfg.Fast {
		c = memberlist.DefaultLocalConfig()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2
		c.GossipInterval = 50 * time.Millisecond
	}
	c.Name = p.cfg.ReplicaID
	c.Label = "meshfed-zone/" + p.cfg.Zone
	c.SecretKey = p.cfg.SecretKey
	c.PushPullInterval = p.cfg.PushPullInterval
	c.Delegate = &delegate{p: p}
	c.Events = &events{p: p}
	c.Logger = nil
	c.LogOutput = &logWriter{logger: p.logger.With("component", "gossip")}
	if p.cfg.Transport != nil {
		c.Transport = p.cfg.Transport
		return c
	}
	host, port, _ := net.SplitHostPort(p.cfg.BindAddr)
	c.BindAddr = host
	c.BindPort, _ = strconv.Atoi(port)
	if ahost, aport, err := net.SplitHostPort(p.cfg.AdvertiseAddr); err == nil {
		c.AdvertiseAddr = ahost
		c.AdvertisePort, _ = strconv.Atoi(aport)
	}
	return c
}

// delegate plugs the inventory into memberlist.
type delegate struct{ p *Peers }

func (d *delegate) NodeMeta(limit int) []byte {
	d.p.mu.Lock()
	meta := d.p.cfg.Meta
	meta.Leaving = d.p.leaving
	d.p.mu.Unlock()
	b, _ := json.Marshal(meta)
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg receives a direct message; memberlist runs it on the
// connection's own goroutine.
func (d *delegate) NotifyMsg(b []byte) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		d.p.logger.Warn("refused a gossip message that does not decode", "err", err)
		return
	}
	d.p.merge(m, "direct")
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is this replica's whole inventory, for push/pull.
func (d *delegate) LocalState(join bool) []byte {
	recs, _, err := d.p.cfg.Store.Records(0, "")
	if err != nil {
		d.p.logger.Error("reading the inventory for a state exchange", "err", err)
		return nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(message{Zone: d.p.cfg.Zone, From: d.p.cfg.ReplicaID, Records: recs}); err != nil {
		d.p.logger.Error("encoding the inventory for a state exchange", "err", err)
		return nil
	}
	if err := zw.Close(); err != nil {
		return nil
	}
	return buf.Bytes()
}

// MergeRemoteState takes a peer's whole inventory.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(buf))
	if err != nil {
		d.p.logger.Warn("refused a state exchange that does not decode", "err", err)
		return
	}
	var m message
	if err := json.NewDecoder(io.LimitReader(zr, 256<<20)).Decode(&m); err != nil {
		d.p.logger.Warn("refused a state exchange that does not decode", "err", err)
		return
	}
	d.p.merge(m, "push/pull")
}

// events records the peers' states.
type events struct{ p *Peers }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.p.record(n, false) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.p.record(n, true) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.p.record(n, false) }

// logWriter turns memberlist's log lines into slog records.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	switch {
	case strings.Contains(line, "[ERR]"):
		w.logger.Warn(line)
	case strings.Contains(line, "[WARN]"):
		w.logger.Info(line)
	default:
		w.logger.Debug(line)
	}
	return len(b), nil
}
