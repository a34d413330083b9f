// Command clusterbench measures a three-node global cluster of real
// `meshd global` processes on loopback (fresh data dirs, Raft with fsync).
//
// Writes: 1, 16 and 64 concurrent clients, each sending its writes to the
// nodes' APIs in turn, so two thirds of the writes go through a follower
// that forwards them to the leader; then the highest level again with every
// write sent to the leader, for the cost of forwarding.
//
// Failover: with writers running, kill -9 the leader and measure the time
// from the kill to the first acknowledged write that started after it
// (necessarily committed under a new leader); restart the killed node on its
// data dir, wait until the cluster has converged again, repeat.
//
//	go run ./test/bench/clusterbench -meshd ./bin/meshd [-clients 1,16,64] [-duration 5s] [-failovers 5]
//
// Figures are printed, never asserted. The failover writers retry at once
// (every 10 ms, on the next node) instead of honouring Retry-After, so the
// figure is the cluster's, not a client's back-off.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

func main() {
	meshd := flag.String("meshd", "./bin/meshd", "meshd binary")
	clientsFlag := flag.String("clients", "1,16,64", "comma-separated concurrency levels")
	duration := flag.Duration("duration", 5*time.Second, "duration of each write run")
	keys := flag.Int("keys", 1000, "distinct resources written")
	failovers := flag.Int("failovers", 5, "leader kills to measure (0 skips the failover part)")
	nodes := flag.Int("nodes", 3, "cluster size")
	flag.Parse()
	var levels []int
	for _, s := range strings.Split(*clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "clusterbench: -clients: %q is not a positive number\n", s)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	if err := run(*meshd, levels, *duration, *keys, *failovers, *nodes); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

// node is one started meshd.
type node struct {
	spec harness.NodeSpec
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *node) url() string { return "http://" + n.spec.APIAddr }

func (n *node) start(meshd string) error {
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(meshd, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(n.done) }()
	return nil
}

func (n *node) running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the node's PID and waits for it to exit.
func (n *node) kill() {
	if n.running() {
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// stop sends SIGTERM to the node's PID, waiting up to 10 s before SIGKILL.
func (n *node) stop() {
	if !n.running() {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.kill()
	}
}

type cluster struct {
	meshd string
	nodes []*node
	token string
}

func startCluster(meshd, dir string, size int) (*cluster, error) {
	c := &cluster{meshd: meshd}
	var join []string
	for i := 1; i <= size; i++ {
		spec, err := harness.NewNodeSpec(dir, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{spec: spec, log: filepath.Join(dir, spec.ID+".log")})
		join = append(join, spec.GossipAddr)
	}
	for _, n := range c.nodes {
		// The default dead threshold and min quorum: a killed node stays a
		// voter until it comes back, as in production.
		n.args = n.spec.Args(join, size, 30*time.Second, "warn")
		if err := n.start(meshd); err != nil {
			c.stop()
			return nil, err
		}
	}
	if _, err := c.waitConverged(60 * time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) stop() {
	// Stop together: one by one, each graceful leave would shrink the
	// configuration under the next.
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()
}

func (c *cluster) byID(id string) *node {
	for _, n := range c.nodes {
		if n.spec.ID == id {
			return n
		}
	}
	return nil
}

// waitConverged waits until every running node is ready and they agree on
// a leader holding all of them as voters; it returns the leader.
func (c *cluster) waitConverged(timeout time.Duration) (*node, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if c.token == "" {
			for _, n := range c.nodes {
				if b, err := os.ReadFile(filepath.Join(n.spec.DataDir, "admin-token")); err == nil {
					c.token = string(bytes.TrimSpace(b))
				}
			}
		}
		if c.token != "" {
			apis := map[string]string{}
			for _, n := range c.nodes {
				if n.running() {
					apis[n.spec.ID] = n.url()
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			leader, err := harness.Converged(ctx, apis, c.token)
			cancel()
			if err == nil {
				return c.byID(leader), nil
			}
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("the cluster did not converge within %s: %v (logs in %s)", timeout, last, filepath.Dir(c.nodes[0].log))
}

func run(meshd string, levels []int, duration time.Duration, keys, failovers, size int) error {
	dir, err := os.MkdirTemp("", "clusterbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	c, err := startCluster(meshd, dir, size)
	if err != nil {
		return err
	}
	defer c.stop()
	leader, _ := c.waitConverged(10 * time.Second)
	fmt.Printf("meshd global, %d nodes on loopback (%d cores), formed and converged in %s; leader %s\n",
		size, numCPU(), time.Since(t0).Round(time.Millisecond), leader.spec.ID)
	fmt.Printf("writes (PUT of a MeshTrafficPermission, %d keys, %s per run); \"spread\": each client sends its\n", keys, duration)
	fmt.Printf("writes to the %d nodes in turn, so %d in %d are forwarded by a follower; \"leader\": all to the leader\n", size, size-1, size)
	fmt.Printf("%-7s %8s %10s %9s %9s %9s %9s %9s %7s\n", "via", "clients", "writes/s", "p50", "p99", "max", "p50-ldr", "p50-fwd", "errors")
	type runSpec struct {
		clients int
		spread  bool
	}
	var runs []runSpec
	for _, n := range levels {
		runs = append(runs, runSpec{n, true})
	}
	if len(levels) > 0 { // the cost of forwarding, at the highest level
		runs = append(runs, runSpec{levels[len(levels)-1], false})
	}
	for _, rn := range runs {
		leader, err := c.waitConverged(30 * time.Second)
		if err != nil {
			return err
		}
		r := load(c, leader, rn.clients, rn.spread, duration, keys)
		via := "leader"
		if rn.spread {
			via = "spread"
		}
		fmt.Printf("%-7s %8d %10.0f %9s %9s %9s %9s %9s %7d\n", via, rn.clients, r.opsPerSec, r.p50, r.p99, r.max,
			dash(r.p50Leader), dash(r.p50Forwarded), r.errors)
	}
	if failovers <= 0 {
		return nil
	}
	fmt.Printf("\nfailover: kill -9 of the leader while 4 writers run -> first acknowledged write started after the kill\n")
	var times []time.Duration
	for i := 1; i <= failovers; i++ {
		d, old, next, err := failover(c)
		if err != nil {
			return fmt.Errorf("failover %d: %w", i, err)
		}
		times = append(times, d)
		fmt.Printf("  #%d  killed %s, new leader %s: %s\n", i, old, next, d.Round(time.Millisecond))
	}
	sorted := append([]time.Duration(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	fmt.Printf("  median %s (min %s, max %s)\n", sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	return nil
}

func dash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.String()
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func mtpBody(name string, seq int) string {
	return fmt.Sprintf(`{"type":"MeshTrafficPermission","mesh":"default","name":%q,"labels":{"seq":"s%d"},"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`, name, seq)
}

// put writes one resource; it reports whether the write was acknowledged.
func put(ctx context.Context, hc *http.Client, base, token, name string, seq int) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/meshes/default/meshtrafficpermissions/"+name, strings.NewReader(mtpBody(name, seq)))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated
}

type result struct {
	opsPerSec               float64
	p50, p99, max           time.Duration
	p50Leader, p50Forwarded time.Duration
	errors                  int
}

func percentile(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)*p/100, len(lat)-1)].Round(10 * time.Microsecond)
}

// load runs clients writers for d. With spread, writer i sends its j-th
// write to node (i+j) mod N, so every writer, even a single one, uses every
// node's API; otherwise every write goes to the leader.
func load(c *cluster, leader *node, clients int, spread bool, d time.Duration, keys int) result {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var all, viaLeader, forwarded []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mineLeader, mineForwarded []time.Duration
			myErrs := 0
			for j := 0; ctx.Err() == nil; j++ {
				n := leader
				if spread {
					n = c.nodes[(i+j)%len(c.nodes)]
				}
				name := fmt.Sprintf("bench-%d", (i*7919+j)%keys)
				t0 := time.Now()
				ok := put(ctx, hc, n.url(), c.token, name, j)
				if ctx.Err() != nil {
					break
				}
				if !ok {
					myErrs++
					continue
				}
				if n == leader {
					mineLeader = append(mineLeader, time.Since(t0))
				} else {
					mineForwarded = append(mineForwarded, time.Since(t0))
				}
			}
			mu.Lock()
			all = append(append(all, mineLeader...), mineForwarded...)
			viaLeader = append(viaLeader, mineLeader...)
			forwarded = append(forwarded, mineForwarded...)
			errs += myErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, l := range [][]time.Duration{all, viaLeader, forwarded} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	r := result{errors: errs, p50Leader: percentile(viaLeader, 50), p50Forwarded: percentile(forwarded, 50)}
	if len(all) > 0 {
		r.opsPerSec = float64(len(all)) / elapsed.Seconds()
		r.p50, r.p99 = percentile(all, 50), percentile(all, 99)
		r.max = all[len(all)-1].Round(10 * time.Microsecond)
	}
	return r
}

// failover kills the leader under write load, measures the time to the
// first acknowledged write started after the kill, then restarts the killed
// node and waits for the cluster to converge with it.
func failover(c *cluster) (time.Duration, string, string, error) {
	leader, err := c.waitConverged(30 * time.Second)
	if err != nil {
		return 0, "", "", err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var killedAt, firstAck time.Time
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, seq := w, 0; ctx.Err() == nil; seq++ {
				n := c.nodes[i%len(c.nodes)]
				t0 := time.Now()
				if put(ctx, hc, n.url(), c.token, fmt.Sprintf("failover-%d", w), seq) {
					mu.Lock()
					if !killedAt.IsZero() && !t0.Before(killedAt) && firstAck.IsZero() {
						firstAck = time.Now()
					}
					mu.Unlock()
					continue
				}
				i++ // try the next node at once
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(500 * time.Millisecond) // steady state
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	leader.kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := firstAck
		mu.Unlock()
		if !got.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			return 0, "", "", errors.New("no write was acknowledged within 30s of the kill")
		}
		time.Sleep(time.Millisecond)
	}
	d := firstAck.Sub(killedAt)
	next, err := c.waitConverged(30 * time.Second)
	if err != nil {
		return 0, "", "", err
	}
	if err := leader.start(c.meshd); err != nil {
		return 0, "", "", err
	}
	if _, err := c.waitConverged(60 * time.Second); err != nil {
		return 0, "", "", err
	}
	return d, leader.spec.ID, next.spec.ID, nil
}
