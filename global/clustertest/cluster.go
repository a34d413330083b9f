package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/global/store"
)

// Test timings: small enough for a test, the same shape as production.
const (
	DefaultAutopilotInterval   = 200 * time.Millisecond
	DefaultDeadServerThreshold = 2 * time.Second
	// StopTimeout bounds how long a node may take to stop.
	StopTimeout = 30 * time.Second
)

// Options configure a Cluster.
type Options struct {
	// Configure adjusts every node's configuration (after the defaults of
	// this package, before NodeSpec.Configure).
	Configure func(*global.Config)
	// LogLevel is the level of the captured node logs; default Info.
	LogLevel slog.Level
	// ClientRetry is the retry deadline of the nodes' API clients; default 5s.
	ClientRetry time.Duration
}

// NodeSpec describes a node to add to a Cluster.
type NodeSpec struct {
	// ID is the node id (global.Config.NodeID). Required.
	ID string
	// Join lists gossip addresses to join. Nil: every other node of the
	// cluster, as known when the node starts. Use NoJoin for none.
	Join   []string
	NoJoin bool
	// BootstrapExpect is global.Config.BootstrapExpect.
	BootstrapExpect int
	// Configure adjusts this node's configuration last.
	Configure func(*global.Config)
}

// Cluster is a set of global nodes in this process, on one in-memory network.
type Cluster struct {
	t    testing.TB
	opts Options
	net  *network
	dir  string

	mu         sync.Mutex
	nodes      []*Node
	seq        int
	transports []*http.Transport
	token      string
}

// New returns an empty cluster; t.Cleanup stops its nodes.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.ClientRetry == 0 {
		opts.ClientRetry = 5 * time.Second
	}
	c := &Cluster{t: t, opts: opts, net: newNetwork(), dir: t.TempDir()}
	t.Cleanup(c.Close)
	return c
}

// Start adds n nodes node-1..node-n that bootstrap together
// (BootstrapExpect n, each joining all the others), starts them and waits
// until they have a ready leader, n voters, and every node has applied the
// log (so that every node knows the admin token).
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := New(t, opts)
	for i := 1; i <= n; i++ {
		c.Add(NodeSpec{ID: fmt.Sprintf("node-%d", i), BootstrapExpect: n})
	}
	for _, nd := range c.Nodes() {
		nd.Start()
	}
	c.WaitLeader(30 * time.Second)
	c.WaitVoters(30*time.Second, n)
	c.WaitConverged(30 * time.Second)
	return c
}

// Add declares a node (addresses, data dir) without starting it.
func (c *Cluster) Add(spec NodeSpec) *Node {
	c.t.Helper()
	if spec.ID == "" {
		c.t.Fatal("clustertest: NodeSpec.ID must be set")
	}
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s#%d", spec.ID, c.seq)
	c.mu.Unlock()
	apiAddr, err := freeAddr()
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	n := &Node{
		c: c, spec: spec, name: name,
		dataDir:    filepath.Join(c.dir, strings.ReplaceAll(name, "#", "-")),
		apiAddr:    apiAddr,
		raftAddr:   "raft-" + name,
		gossipAddr: c.net.newGossipAddr(),
		syncAddr:   mustFreeAddr(c.t),
		logs:       &LogBuffer{},
	}
	if os.Getenv("CLUSTERTEST_LOG") != "" {
		n.logs.echo = os.Stderr
	}
	c.net.register(name, apiAddr, raft.ServerAddress(n.raftAddr))
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// Nodes returns every node ever added, in order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Node returns the most recently added node with this id (nil if none).
func (c *Cluster) Node(id string) *Node {
	nodes := c.Nodes()
	for i := len(nodes) - 1; i >= 0; i-- {
		if nodes[i].spec.ID == id {
			return nodes[i]
		}
	}
	return nil
}

// Running returns the nodes whose Run has not returned.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes() {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Others returns the running nodes other than the given ones.
func (c *Cluster) Others(except ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Running() {
		skip := false
		for _, e := range except {
			skip = skip || e == n
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// Close stops every node abruptly (no graceful leave: the whole cluster
// goes), then closes the network and idle HTTP connections. On a failed
// test it logs the tail of every node's log.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		wg.Add(1)
		go func() { defer wg.Done(); n.halt(true) }()
	}
	wg.Wait()
	c.net.close()
	c.mu.Lock()
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
	c.mu.Unlock()
	if c.t.Failed() {
		for _, n := range c.Nodes() {
			lines := n.logs.Lines()
			if len(lines) > 200 {
				lines = lines[len(lines)-200:]
			}
			c.t.Logf("--- last %d log lines of %s ---\n%s", len(lines), n.name, strings.Join(lines, "\n"))
		}
	}
}

func (c *Cluster) newTransport(from string) *http.Transport {
	tr := &http.Transport{
		DialContext:         c.net.dialContext(from),
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	c.mu.Lock()
	c.transports = append(c.transports, tr)
	c.mu.Unlock()
	return tr
}

// Partition cuts the network into groups: nodes of one group reach each
// other, nodes of different groups do not. A node named in no group is cut
// from every other node. It replaces any earlier partition.
func (c *Cluster) Partition(groups ...[]*Node) {
	group := map[*Node]int{}
	for i, g := range groups {
		for _, n := range g {
			group[n] = i + 1
		}
	}
	nodes := c.Nodes()
	var cuts [][2]string
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			ga, gb := group[a], group[b]
			if ga == 0 || gb == 0 || ga != gb {
				cuts = append(cuts, [2]string{a.name, b.name})
			}
		}
	}
	c.net.setCuts(cuts)
	c.t.Logf("clustertest: partition %s", describeGroups(groups))
}

// Isolate cuts n from every other node.
func (c *Cluster) Isolate(n *Node) {
	c.Partition([]*Node{n}, c.Others(n))
}

// Heal removes every cut.
func (c *Cluster) Heal() {
	c.net.setCuts(nil)
	c.t.Logf("clustertest: healed")
}

func describeGroups(groups [][]*Node) string {
	var parts []string
	for _, g := range groups {
		var ids []string
		for _, n := range g {
			ids = append(ids, n.ID())
		}
		parts = append(parts, "{"+strings.Join(ids, ",")+"}")
	}
	return strings.Join(parts, " | ")
}

// Leader returns the only running node that believes it leads, or nil if
// none or several do.
func (c *Cluster) Leader() *Node {
	var leaders []*Node
	for _, n := range c.Running() {
		if st := n.Store(); st != nil && st.IsLeader() {
			leaders = append(leaders, n)
		}
	}
	if len(leaders) != 1 {
		return nil
	}
	return leaders[0]
}

// WaitLeader waits until exactly one of among (default: every running node)
// leads, is ready to serve (it applied its predecessors' log and the cluster
// is bootstrapped), and every node of among names it as leader.
func (c *Cluster) WaitLeader(timeout time.Duration, among ...*Node) *Node {
	c.t.Helper()
	var leader *Node
	Eventually(c.t, timeout, func() error {
		nodes := among
		if len(nodes) == 0 {
			nodes = c.Running()
		}
		leader = nil
		for _, n := range nodes {
			if st := n.Store(); st != nil && st.IsLeader() {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.ID(), n.ID())
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader among " + ids(nodes))
		}
		if err := leader.Store().Ready(); err != nil {
			return fmt.Errorf("leader %s not ready: %w", leader.ID(), err)
		}
		for _, n := range nodes {
			st := n.Store()
			if st == nil {
				return fmt.Errorf("%s never started", n.ID())
			}
			if id, _ := st.Leader(); id != leader.ID() {
				return fmt.Errorf("%s names leader %q, not %s", n.ID(), id, leader.ID())
			}
		}
		return nil
	}, "a leader")
	return leader
}

// WaitVoters waits until the leader's Raft configuration has exactly count
// voters.
func (c *Cluster) WaitVoters(timeout time.Duration, count int) []store.Server {
	c.t.Helper()
	var servers []store.Server
	Eventually(c.t, timeout, func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		var err error
		if servers, err = l.Store().Configuration(); err != nil {
			return err
		}
		if v := Voters(servers); len(v) != count {
			return fmt.Errorf("voters %v, want %d", v, count)
		}
		return nil
	}, "%d voters", count)
	return servers
}

// Voters returns the ids of the voters of a configuration, sorted.
func Voters(servers []store.Server) []string {
	var out []string
	for _, s := range servers {
		if s.Voter {
			out = append(out, s.ID)
		}
	}
	sort.Strings(out)
	return out
}

// WaitConverged waits until every node of among (default: every running
// node) has applied the same Raft index and holds the same revision; it
// returns that revision.
func (c *Cluster) WaitConverged(timeout time.Duration, among ...*Node) uint64 {
	c.t.Helper()
	var rev uint64
	Eventually(c.t, timeout, func() error {
		nodes := among
		if len(nodes) == 0 {
			nodes = c.Running()
		}
		var first *Node
		var applied uint64
		for _, n := range nodes {
			st := n.Store()
			if st == nil || st.Raft() == nil {
				return fmt.Errorf("%s is not running", n.ID())
			}
			r, a := st.State().Revision(), st.Raft().AppliedIndex()
			if first == nil {
				first, rev, applied = n, r, a
				continue
			}
			if r != rev || a != applied {
				return fmt.Errorf("%s at revision %d (applied %d), %s at revision %d (applied %d)",
					first.ID(), rev, applied, n.ID(), r, a)
			}
		}
		return nil
	}, "convergence")
	return rev
}

// Dump returns a node's state: every resource as "revision json" by key,
// plus the cluster meta and the state's revision.
func Dump(n *Node) map[string]string {
	st := n.Store().State()
	out := map[string]string{}
	meta, _ := st.Meta()
	out["_meta"] = meta.ClusterID + " " + meta.AdminToken
	out["_revision"] = fmt.Sprint(st.Revision())
	for _, d := range api.Types() {
		for _, r := range st.List(d.Name, "") {
			b, err := json.Marshal(r)
			if err != nil {
				b = []byte(err.Error())
			}
			out[r.Key().String()] = fmt.Sprintf("%d %s", r.Revision, b)
		}
	}
	return out
}

// AssertSameState fails the test unless every node of among holds exactly
// the state of the first one (resource by resource, revisions included).
func (c *Cluster) AssertSameState(among ...*Node) {
	c.t.Helper()
	if len(among) < 2 {
		return
	}
	want := Dump(among[0])
	for _, n := range among[1:] {
		got := Dump(n)
		var diffs []string
		for k, v := range want {
			if got[k] != v {
				diffs = append(diffs, fmt.Sprintf("%s: %s has %q, %s has %q", k, among[0].ID(), v, n.ID(), got[k]))
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: only on %s: %q", k, n.ID(), v))
			}
		}
		sort.Strings(diffs)
		if len(diffs) > 0 {
			if len(diffs) > 10 {
				diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
			}
			c.t.Errorf("state of %s differs from %s (%d resources):\n%s", n.ID(), among[0].ID(), len(want)-2, strings.Join(diffs, "\n"))
		}
	}
}

// Token returns the cluster's admin token (waiting until one node knows it).
func (c *Cluster) Token() string {
	c.t.Helper()
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		return tok
	}
	Eventually(c.t, 30*time.Second, func() error {
		for _, n := range c.Running() {
			if m, ok := n.Store().State().Meta(); ok && m.AdminToken != "" {
				tok = m.AdminToken
				return nil
			}
		}
		return errors.New("no node knows the admin token yet")
	}, "the admin token")
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return tok
}

func ids(nodes []*Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID())
	}
	return strings.Join(out, ",")
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Node is one global node of a Cluster; it keeps its id, addresses and
// data dir across restarts.
type Node struct {
	c          *Cluster
	spec       NodeSpec
	name       string // unique on the network (id#seq)
	dataDir    string
	apiAddr    string
	raftAddr   string
	gossipAddr string
	syncAddr   string
	logs       *LogBuffer

	mu      sync.Mutex
	srv     *global.Server
	cfg     global.Config
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	started bool
	client  *client.Client
}

// ID is the node id.
func (n *Node) ID() string { return n.spec.ID }

// Name is the node's unique name on the network (id#sequence).
func (n *Node) Name() string { return n.name }

// APIAddr is the node's HTTP API address; URL its base URL.
func (n *Node) APIAddr() string { return n.apiAddr }
func (n *Node) URL() string     { return "http://" + n.apiAddr }

// RaftAddr and GossipAddr are the node's (in-memory) transport addresses.
func (n *Node) RaftAddr() string   { return n.raftAddr }
func (n *Node) GossipAddr() string { return n.gossipAddr }

// SyncAddr is the node's sync port (plaintext in these clusters).
func (n *Node) SyncAddr() string { return n.syncAddr }

func mustFreeAddr(t testing.TB) string {
	t.Helper()
	a, err := freeAddr()
	if err != nil {
		t.Fatalf("free address: %v", err)
	}
	return a
}

// DataDir is the node's data directory.
func (n *Node) DataDir() string { return n.dataDir }

// Logs is the node's log, across restarts.
func (n *Node) Logs() *LogBuffer { return n.logs }

// Server returns the node's current (or last) server; nil before Start.
func (n *Node) Server() *global.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Store returns the node's current (or last) store; nil before Start.
func (n *Node) Store() *store.Node {
	if s := n.Server(); s != nil {
		return s.Store()
	}
	return nil
}

// Config returns the configuration the node last started with.
func (n *Node) Config() global.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Running reports whether the node's Run has been started and not returned.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Start builds a fresh server on the node's data dir and addresses, with
// fresh transports, and runs it. Call it from the test goroutine.
func (n *Node) Start() {
	n.c.t.Helper()
	if err := n.TryStart(); err != nil {
		n.c.t.Fatalf("clustertest: start %s: %v", n.name, err)
	}
}

// TryStart is Start returning its error (global.New refusing the
// configuration) instead of failing the test.
func (n *Node) TryStart() error {
	if n.Running() {
		return fmt.Errorf("%s is already running", n.name)
	}
	c := n.c
	_, rt := raft.NewInmemTransport(raft.ServerAddress(n.raftAddr))
	gt := newGossipTransport(c.net, n.name, n.gossipAddr)
	cfg := global.Config{
		NodeID:              n.spec.ID,
		DataDir:             n.dataDir,
		APIAddr:             n.apiAddr,
		RaftAddr:            n.raftAddr,
		GossipAddr:          n.gossipAddr,
		SyncAddr:            n.syncAddr,
		SyncInsecure:        true,
		BootstrapExpect:     n.spec.BootstrapExpect,
		AutopilotInterval:   DefaultAutopilotInterval,
		DeadServerThreshold: DefaultDeadServerThreshold,
		TimingMultiplier:    1,
		Version:             "clustertest",
		RaftTransport:       rt,
		GossipTransport:     gt,
		HTTPClient:          &http.Client{Transport: c.newTransport(n.name), Timeout: 5 * time.Second},
	}
	switch {
	case n.spec.NoJoin:
	case n.spec.Join != nil:
		cfg.Join = n.spec.Join
	default:
		for _, o := range c.Nodes() {
			if o != n && o.spec.ID != n.spec.ID {
				cfg.Join = append(cfg.Join, o.gossipAddr)
			}
		}
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	if n.spec.Configure != nil {
		n.spec.Configure(&cfg)
	}
	level := c.opts.LogLevel
	logger := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: level})).With("node", n.spec.ID)
	srv, err := global.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.mu.Lock()
	n.srv, n.cfg, n.cancel, n.done, n.err, n.started = srv, cfg, cancel, done, nil, true
	n.mu.Unlock()
	c.net.attach(n.name, rt, gt)
	go func() {
		err := srv.Run(ctx)
		c.net.down(n.name)
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// Stop stops the node gracefully, as SIGTERM does: it hands leadership
// over if it leads, asks the leader to remove it, leaves gossip, then
// shuts down. It returns Run's error.
func (n *Node) Stop() error {
	n.c.t.Helper()
	return n.halt(false)
}

// Kill stops the node abruptly, as kill -9 would: it drops off the network
// first (peers see it go silent, its connections break), then shuts down
// without leaving. It returns Run's error.
func (n *Node) Kill() error {
	n.c.t.Helper()
	return n.halt(true)
}

func (n *Node) halt(abrupt bool) error {
	n.mu.Lock()
	srv, cancel, done, started := n.srv, n.cancel, n.done, n.started
	n.mu.Unlock()
	if !started {
		return nil
	}
	if abrupt {
		n.c.net.down(n.name)
		srv.SkipLeave()
	}
	cancel()
	select {
	case <-done:
	case <-time.After(StopTimeout):
		n.c.t.Errorf("clustertest: %s did not stop within %v", n.name, StopTimeout)
		return errors.New("did not stop")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Restart starts the node again (same id, data dir and addresses).
func (n *Node) Restart() {
	n.c.t.Helper()
	if n.Running() {
		n.c.t.Fatalf("clustertest: restart %s: still running", n.name)
	}
	n.Start()
}

// Wait waits up to timeout for Run to return by itself; exited is false if
// it is still running, err is Run's error.
func (n *Node) Wait(timeout time.Duration) (exited bool, err error) {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false, nil
	}
	select {
	case <-done:
		n.mu.Lock()
		defer n.mu.Unlock()
		return true, n.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Client returns an API client of this node with the cluster's admin
// token, retrying for Options.ClientRetry. It is never cut from the node.
func (n *Node) Client() *client.Client {
	n.c.t.Helper()
	n.mu.Lock()
	cl := n.client
	n.mu.Unlock()
	if cl != nil {
		return cl
	}
	cl = n.NewClient(client.WithRetryTimeout(n.c.opts.ClientRetry))
	n.mu.Lock()
	n.client = cl
	n.mu.Unlock()
	return cl
}

// NewClient returns a new API client of this node (its own connections)
// with the cluster's admin token and the given options.
func (n *Node) NewClient(opts ...client.Option) *client.Client {
	n.c.t.Helper()
	hc := n.HTTPClient()
	cl, err := client.New(n.URL(), n.c.Token(), append([]client.Option{client.WithHTTPClient(hc)}, opts...)...)
	if err != nil {
		n.c.t.Fatalf("clustertest: client of %s: %v", n.name, err)
	}
	return cl
}

// HTTPClient returns a plain HTTP client bound to this node (never cut
// from it), with a 5s timeout, for raw API calls.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{Transport: n.c.newTransport(""), Timeout: 5 * time.Second}
}

// RaftStats returns hashicorp/raft's stats of the running node.
func (n *Node) RaftStats() map[string]string {
	if st := n.Store(); st != nil && st.Raft() != nil {
		return st.Raft().Stats()
	}
	return nil
}
