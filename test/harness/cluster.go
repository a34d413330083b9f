package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
)

// ClusterOptions tunes StartCluster.
type ClusterOptions struct {
	// Nodes is the cluster size (--bootstrap-expect); default 3.
	Nodes int
	// DeadThreshold is --autopilot-dead-threshold; default 2s, so that the
	// tests see autopilot act within their budget.
	DeadThreshold time.Duration
	// LogLevel is every node's --log-level; default "info" (debug logs of
	// Raft and memberlist dwarf everything else).
	LogLevel string
	// Extra flags for every node, after the harness's own (they win).
	Extra []string
}

// Cluster is a multi-node `meshd global` cluster of real processes on
// 127.0.0.1: every node joins every node's gossip address and waits for
// --bootstrap-expect N peers.
type Cluster struct {
	Nodes []*Global
	// Join is every node's gossip address, as passed to --join.
	Join []string

	bins Binaries
	dir  string
	opts ClusterOptions
}

// NodeSpec is one node of a loopback cluster: its id, data dir and
// addresses.
type NodeSpec struct {
	ID, DataDir, APIAddr, RaftAddr, GossipAddr, SyncAddr string
}

// NewNodeSpec picks free loopback ports for node id, with its data in
// dir/ID-data.
func NewNodeSpec(dir, id string) (NodeSpec, error) {
	s := NodeSpec{ID: id, DataDir: filepath.Join(dir, id+"-data")}
	for _, a := range []*string{&s.APIAddr, &s.RaftAddr, &s.GossipAddr, &s.SyncAddr} {
		addr, err := freeAddr()
		if err != nil {
			return NodeSpec{}, err
		}
		*a = addr
	}
	return s, nil
}

// Args returns the `meshd global` arguments of the node in a cluster of
// expect nodes: its own id, data dir and addresses, --join with every
// node's gossip address, --bootstrap-expect, --autopilot-dead-threshold and
// --log-level. The benchmark starts its clusters with it too.
func (s NodeSpec) Args(join []string, expect int, deadThreshold time.Duration, logLevel string) []string {
	return []string{"global", "--node-id", s.ID, "--data-dir", s.DataDir,
		"--api-addr", s.APIAddr, "--raft-addr", s.RaftAddr, "--gossip-addr", s.GossipAddr, "--sync-addr", s.SyncAddr,
		"--join", strings.Join(join, ","), "--bootstrap-expect", fmt.Sprint(expect),
		"--autopilot-dead-threshold", deadThreshold.String(), "--log-level", logLevel}
}

// StartCluster starts opts.Nodes `meshd global` processes named
// PREFIX-1..PREFIX-N on free loopback ports, with their data under dir, and
// waits until every node is ready and all agree on one leader whose Raft
// configuration holds every node as a voter.
func StartCluster(t testing.TB, bins Binaries, dir, prefix string, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.DeadThreshold == 0 {
		opts.DeadThreshold = 2 * time.Second
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	c := &Cluster{bins: bins, dir: dir, opts: opts}
	var specs []NodeSpec
	for i := 1; i <= opts.Nodes; i++ {
		s, err := NewNodeSpec(dir, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
		c.Join = append(c.Join, s.GossipAddr)
	}
	for _, s := range specs {
		args := append(s.Args(c.Join, opts.Nodes, opts.DeadThreshold, opts.LogLevel), opts.Extra...)
		c.Nodes = append(c.Nodes, &Global{Process: Start(t, dir, s.ID, bins.Meshd, args), NodeID: s.ID,
			DataDir: s.DataDir, APIAddr: s.APIAddr, RaftAddr: s.RaftAddr, GossipAddr: s.GossipAddr, SyncAddr: s.SyncAddr})
	}
	for _, g := range c.Nodes {
		g.WaitReady(t, 60*time.Second) // fails at once if a node exits
	}
	c.WaitConverged(t, 60*time.Second)
	return c
}

// ID is the node's --node-id: NodeID, or the process name when NodeID is
// empty.
func (g *Global) ID() string {
	if g.NodeID != "" {
		return g.NodeID
	}
	return g.Name
}

// Node returns the node with the id, or nil.
func (c *Cluster) Node(id string) *Global {
	for _, g := range c.Nodes {
		if g.ID() == id {
			return g
		}
	}
	return nil
}

// Running returns the nodes whose process is running.
func (c *Cluster) Running() []*Global {
	var out []*Global
	for _, g := range c.Nodes {
		if g.Running() {
			out = append(out, g)
		}
	}
	return out
}

// Token returns the cluster's admin token, read from the data dir of any
// node that has written it (they all hold the same, replicated token).
func (c *Cluster) Token(t testing.TB) string {
	t.Helper()
	var tok string
	Eventually(t, 30*time.Second, "an admin token in a node's data dir", func() bool {
		for _, g := range c.Nodes {
			if b, err := os.ReadFile(filepath.Join(g.DataDir, "admin-token")); err == nil && len(bytes.TrimSpace(b)) > 0 {
				tok = string(bytes.TrimSpace(b))
				return true
			}
		}
		return false
	})
	return tok
}

// Client returns an API client of the node with the cluster's admin token
// and the given options (the client's default retries unless overridden).
func (c *Cluster) Client(t testing.TB, g *Global, opts ...client.Option) *client.Client {
	t.Helper()
	cl, err := client.New(g.URL(), c.Token(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// statusHTTP bounds every status call: a node that hangs must not hang a
// test.
var statusHTTP = &http.Client{Timeout: 3 * time.Second}

// FetchStatus asks one node for GET /global/status once (no retries).
func FetchStatus(ctx context.Context, apiURL, token string) (*api.GlobalStatus, error) {
	cl, err := client.New(apiURL, token, client.WithRetry(client.RetryPolicy{Disabled: true}), client.WithHTTPClient(statusHTTP))
	if err != nil {
		return nil, err
	}
	return cl.GlobalStatus(ctx)
}

// Status asks the node for GET /global/status once.
func (c *Cluster) Status(t testing.TB, g *Global) (*api.GlobalStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return FetchStatus(ctx, g.URL(), c.Token(t))
}

// Agreement checks that the statuses (one per node, keyed by the node that
// answered) agree on one leader, that the leader is one of them, and that
// in the leader's status each of them is alive in gossip and a voter in
// Raft. It returns the leader's id, or why they do not agree yet.
func Agreement(statuses map[string]*api.GlobalStatus) (string, error) {
	if len(statuses) == 0 {
		return "", errors.New("no status")
	}
	leader := ""
	ids := make([]string, 0, len(statuses))
	for id, st := range statuses {
		ids = append(ids, id)
		if st.Leader == "" {
			return "", fmt.Errorf("%s knows no leader", id)
		}
		if leader != "" && st.Leader != leader {
			return "", fmt.Errorf("nodes disagree on the leader: %s and %s", leader, st.Leader)
		}
		leader = st.Leader
	}
	sort.Strings(ids)
	lst, ok := statuses[leader]
	if !ok {
		return "", fmt.Errorf("the leader %s is not among %v", leader, ids)
	}
	for _, id := range ids {
		m := Member(lst, id)
		switch {
		case m == nil:
			return "", fmt.Errorf("the leader does not list %s", id)
		case m.GossipState != "alive":
			return "", fmt.Errorf("the leader sees %s %s in gossip", id, m.GossipState)
		case !m.InRaft || !m.Voter:
			return "", fmt.Errorf("%s is not a voter in the leader's configuration (inRaft %v, voter %v)", id, m.InRaft, m.Voter)
		}
	}
	return leader, nil
}

// Member returns the member with the id in a status, or nil.
func Member(st *api.GlobalStatus, id string) *api.GlobalMember {
	for i := range st.Members {
		if st.Members[i].ID == id {
			return &st.Members[i]
		}
	}
	return nil
}

// WaitConverged waits until every running node answers /readyz with 200
// and the nodes agree on a leader (see Agreement); it returns the leader.
func (c *Cluster) WaitConverged(t testing.TB, timeout time.Duration) *Global {
	t.Helper()
	var leader string
	var last error
	deadline := time.Now().Add(timeout)
	for {
		leader, last = c.converged(t)
		if last == nil {
			return c.Node(leader)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not converge within %s: %v", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) converged(t testing.TB) (string, error) {
	t.Helper()
	running := c.Running()
	if len(running) == 0 {
		return "", errors.New("no node is running")
	}
	token := c.tokenIfAny()
	if token == "" {
		return "", errors.New("no admin token written yet")
	}
	apis := map[string]string{}
	for _, g := range running {
		apis[g.ID()] = g.URL()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Converged(ctx, apis, token)
}

// Converged checks, once, that every node (id → API base URL) answers
// /readyz with 200 and that their GET /global/status answers agree on a
// leader (see Agreement); it returns the leader's id.
func Converged(ctx context.Context, apis map[string]string, token string) (string, error) {
	statuses := map[string]*api.GlobalStatus{}
	for id, url := range apis {
		if err := ready(ctx, statusHTTP, url); err != nil {
			return "", fmt.Errorf("%s: %w", id, err)
		}
		st, err := FetchStatus(ctx, url, token)
		if err != nil {
			return "", fmt.Errorf("%s: status: %w", id, err)
		}
		statuses[id] = st
	}
	return Agreement(statuses)
}

func (c *Cluster) tokenIfAny() string {
	for _, g := range c.Nodes {
		if b, err := os.ReadFile(filepath.Join(g.DataDir, "admin-token")); err == nil {
			return string(bytes.TrimSpace(b))
		}
	}
	return ""
}

// ready asks url/readyz once.
func ready(ctx context.Context, hc *http.Client, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// Leader waits for convergence (up to 30 s) and returns the leader.
func (c *Cluster) Leader(t testing.TB) *Global {
	t.Helper()
	return c.WaitConverged(t, 30*time.Second)
}

// Followers waits for convergence and returns the running nodes other than
// the leader.
func (c *Cluster) Followers(t testing.TB) []*Global {
	t.Helper()
	leader := c.Leader(t)
	var out []*Global
	for _, g := range c.Running() {
		if g != leader {
			out = append(out, g)
		}
	}
	return out
}

// Kill sends SIGKILL to the node's process (by its PID) and waits for it
// to exit: no graceful leave, no flush.
func (c *Cluster) Kill(t testing.TB, g *Global) {
	t.Helper()
	g.Kill(t)
}

// Terminate sends SIGTERM to the node's process (by its PID) and waits for
// it to exit; the test fails unless it exits cleanly within 10 s.
func (c *Cluster) Terminate(t testing.TB, g *Global) {
	t.Helper()
	g.Stop(t)
}

// Restart starts a stopped node again with the same arguments (same id,
// data dir and ports) and waits until it answers /readyz.
func (c *Cluster) Restart(t testing.TB, g *Global) {
	t.Helper()
	g.Restart(t)
	g.WaitReady(t, 60*time.Second)
}

// Replace starts a replacement for the stopped node g, as an operator
// replaces a dead machine: the same --node-id with a fresh data dir and new
// ports, joining the cluster's gossip addresses. The replacement takes g's
// place in c.Nodes (and its gossip address joins c.Join). It does not wait:
// the leader's autopilot is what admits it.
func (c *Cluster) Replace(t testing.TB, g *Global) *Global {
	t.Helper()
	if g.Running() {
		t.Fatalf("replace %s: it is still running", g.ID())
	}
	dir, err := os.MkdirTemp(c.dir, g.ID()+"-replacement-")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewNodeSpec(dir, g.ID())
	if err != nil {
		t.Fatal(err)
	}
	c.Join = append(c.Join, s.GossipAddr)
	args := append(s.Args(c.Join, c.opts.Nodes, c.opts.DeadThreshold, c.opts.LogLevel), c.opts.Extra...)
	r := &Global{Process: Start(t, dir, g.ID()+"-replacement", c.bins.Meshd, args), NodeID: g.ID(),
		DataDir: s.DataDir, APIAddr: s.APIAddr, RaftAddr: s.RaftAddr, GossipAddr: s.GossipAddr}
	for i, n := range c.Nodes {
		if n == g {
			c.Nodes[i] = r
		}
	}
	return r
}

// Signal sends sig to the process by its PID without waiting.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return errors.New(p.Name + " is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// WaitExit waits up to timeout for the process to exit on its own and
// returns its exit code (-1 if a signal ended it). A non-zero exit it
// returns is the caller's to judge: the cleanup does not report it, except
// a data race (66), which fails the test. It fails the test if the process
// is still running after timeout (and kills it).
func (p *Process) WaitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s (pid %d) still running after %s; killed it", p.Name, p.PID(), timeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		code = ee.ExitCode()
	}
	if code == 66 {
		t.Errorf("%s: data race detected (see %s)", p.Name, p.LogPath)
	}
	p.err = nil
	return code
}
