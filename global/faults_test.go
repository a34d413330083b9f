package global_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/global/clustertest"
	"github.com/meshfed/meshfed/global/membership"
	"github.com/meshfed/meshfed/global/store"
)

// Killing the leader: the survivors elect a new one within seconds, writes
// resume through them, no acknowledged write is lost, and the killed node
// restarts and catches up to the same state.
func TestLeaderLoss(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	old := c.Leader()
	survivors := c.Others(old)

	w := startWriter(t, "ll", survivors...)
	defer w.Stop()
	w.WaitAcked(t, 10*time.Second, time.Time{}, 20)

	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Errorf("kill %s: Run returned %v", old.ID(), err)
	}
	leader := c.WaitLeader(10*time.Second, survivors...)
	failover := time.Since(killed)
	t.Logf("killed leader %s; %s leads after %v", old.ID(), leader.ID(), failover)
	if failover > 5*time.Second {
		t.Errorf("new leader after %v, want a few seconds at most", failover)
	}
	w.WaitAcked(t, 10*time.Second, killed, 20)
	firstAfter := firstAckAfter(w, killed)
	t.Logf("first write acknowledged %v after the kill; %d errors: %v", firstAfter, len(w.Errors()), w.Errors())
	w.Stop()

	c.WaitConverged(10*time.Second, survivors...)
	w.AssertDurable(t, survivors...)

	old.Restart()
	c.WaitConverged(20 * time.Second)
	c.AssertSameState(c.Nodes()...)
	w.AssertDurable(t, old)
	if id, _ := old.Store().Leader(); id != leader.ID() {
		t.Errorf("restarted %s follows %q, want %s", old.ID(), id, leader.ID())
	}
}

func firstAckAfter(w *writer, t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.ackAt {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return -1
}

// isUnavailable503 checks a raw answer is a 503 with Retry-After.
func isUnavailable503(r rawResponse) error {
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		return fmt.Errorf("%d Retry-After=%q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	return nil
}

// A cut-off minority cannot write or read consistently (503 with
// Retry-After, never a wrong answer) while the majority keeps writing; an
// isolated leader steps down; after healing everyone converges, and writes
// refused in the minority never appear.
func TestPartitions(t *testing.T) {
	t.Run("isolated follower", func(t *testing.T) {
		c := clustertest.Start(t, 3, clustertest.Options{})
		leader := c.Leader()
		f := c.Others(leader)[0]
		seed := do(t, c, leader, "PUT", mtpURL(leader, "p"), mtpDoc("default", "p", "before"))
		if seed.Status != 201 {
			t.Fatalf("seed: %d %s", seed.Status, seed.Body)
		}
		c.WaitConverged(5 * time.Second)

		c.Isolate(f)
		checkMinority(t, c, []*clustertest.Node{f}, c.Others(f), "p")
	})

	t.Run("isolated leader", func(t *testing.T) {
		c := clustertest.Start(t, 3, clustertest.Options{})
		old := c.Leader()
		seed := do(t, c, old, "PUT", mtpURL(old, "p"), mtpDoc("default", "p", "before"))
		if seed.Status != 201 {
			t.Fatalf("seed: %d %s", seed.Status, seed.Body)
		}
		c.WaitConverged(5 * time.Second)

		c.Isolate(old)
		checkMinority(t, c, []*clustertest.Node{old}, c.Others(old), "p")
	})

	t.Run("5 nodes split 2-3, old leader in the minority", func(t *testing.T) {
		c := clustertest.Start(t, 5, clustertest.Options{})
		old := c.Leader()
		seed := do(t, c, old, "PUT", mtpURL(old, "p"), mtpDoc("default", "p", "before"))
		if seed.Status != 201 {
			t.Fatalf("seed: %d %s", seed.Status, seed.Body)
		}
		c.WaitConverged(5 * time.Second)

		others := c.Others(old)
		minority := []*clustertest.Node{old, others[0]}
		majority := others[1:]
		c.Partition(minority, majority)
		checkMinority(t, c, minority, majority, "p")
	})
}

// checkMinority runs the checks of a partition that has just been made.
func checkMinority(t *testing.T, c *clustertest.Cluster, minority, majority []*clustertest.Node, key string) {
	t.Helper()
	c.Token() // known from here on: the goroutines below must not wait for it
	// Right after the cut (an old leader may still believe it leads), the
	// minority's writes and consistent reads must fail with 503, never
	// succeed. Fire them at once, concurrently with the majority's work.
	type answer struct {
		node  *clustertest.Node
		what  string
		resp  rawResponse
		value string
	}
	answers := make(chan answer, 2*len(minority))
	for _, n := range minority {
		go func() {
			value := "minority-" + n.ID()
			answers <- answer{n, "write", rawDo(c, n, "PUT", mtpURL(n, key), mtpDoc("default", key, value)), value}
		}()
		go func() {
			answers <- answer{n, "consistent read", rawDo(c, n, "GET", mtpURL(n, key)+"?consistent=true", nil), ""}
		}()
	}

	leader := c.WaitLeader(10*time.Second, majority...)
	// The majority keeps writing, through every one of its nodes.
	var lastRev uint64
	for i, n := range majority {
		r := do(t, c, n, "PUT", mtpURL(n, key), mtpDoc("default", key, fmt.Sprintf("majority-%d", i)))
		if r.Status != 200 {
			t.Fatalf("majority write through %s: %d %s", n.ID(), r.Status, r.Body)
		}
		lastRev = etag(t, r)
	}
	want := fmt.Sprintf("majority-%d", len(majority)-1)

	for range 2 * len(minority) {
		a := <-answers
		if err := isUnavailable503(a.resp); err != nil {
			t.Errorf("%s in the minority, %s: %v, want 503 with Retry-After", a.node.ID(), a.what, err)
		}
	}
	// An isolated leader steps down; the minority never elects one.
	for _, n := range minority {
		clustertest.Eventually(t, 5*time.Second, func() error {
			if n.Store().IsLeader() {
				return errors.New("still leader")
			}
			return nil
		}, "%s steps down", n.ID())
	}
	// Later calls in the minority fail the same way; plain reads stay local
	// (and may be stale).
	for _, n := range minority {
		if err := isUnavailable503(do(t, c, n, "PUT", mtpURL(n, key), mtpDoc("default", key, "minority-late"))); err != nil {
			t.Errorf("%s: late write: %v", n.ID(), err)
		}
		if err := isUnavailable503(do(t, c, n, "GET", mtpURL(n, key)+"?consistent=true", nil)); err != nil {
			t.Errorf("%s: late consistent read: %v", n.ID(), err)
		}
		r := do(t, c, n, "GET", mtpURL(n, key), nil)
		if r.Status != 200 || strings.HasPrefix(labelValue(t, r.Body), "minority") {
			t.Errorf("%s: local read: %d %s", n.ID(), r.Status, r.Body)
		}
		if n.Store().IsLeader() {
			t.Errorf("%s leads in the minority", n.ID())
		}
	}

	c.Heal()
	all := append(append([]*clustertest.Node(nil), minority...), majority...)
	c.WaitLeader(10*time.Second, all...)
	c.WaitConverged(10*time.Second, all...)
	c.AssertSameState(all...)
	for _, n := range all {
		r := do(t, c, n, "GET", mtpURL(n, key)+"?consistent=true", nil)
		if r.Status != 200 || labelValue(t, r.Body) != want || etag(t, r) != lastRev {
			t.Errorf("%s after healing: %d ETag %s %s, want %q at %d", n.ID(), r.Status, r.Header.Get("ETag"), r.Body, want, lastRev)
		}
	}
	t.Logf("majority leader during the partition: %s", leader.ID())
}

// rawDo is do without a testing.TB (for goroutines): a transport error is
// reported as status 0.
func rawDo(c *clustertest.Cluster, n *clustertest.Node, method, url string, body []byte) rawResponse {
	r, err := tryDo(c, n, method, url, body)
	if err != nil {
		return rawResponse{Body: []byte(err.Error())}
	}
	return r
}

// A follower that misses more entries than the leader keeps after a
// snapshot catches up, when it restarts, by installing the leader's
// snapshot, and ends with the leader's state, resource by resource.
func TestRejoinAfterSnapshot(t *testing.T) {
	const trailing = 16
	c := clustertest.Start(t, 3, clustertest.Options{Configure: func(cfg *global.Config) {
		cfg.SnapshotThreshold = 64
		cfg.SnapshotInterval = 100 * time.Millisecond
		cfg.TrailingLogs = trailing
		cfg.DeadServerThreshold = time.Minute // the stopped follower stays a voter
	}})
	leader := c.Leader()
	f := c.Others(leader)[0]
	behind := f.Store().Raft().LastIndex()
	if err := f.Kill(); err != nil {
		t.Fatalf("kill %s: %v", f.ID(), err)
	}

	// Enough writes for a snapshot and a compaction past the follower's log.
	cl := leader.Client()
	work := make(chan int)
	errs := make(chan error, 8)
	const total = 300
	for range 8 {
		go func() {
			for i := range work {
				name := fmt.Sprintf("s-%d", i)
				_, _, err := cl.Put(context.Background(), mtpFor(name, name), client.PutOptions{})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	clustertest.Eventually(t, 20*time.Second, func() error {
		// Only the log from the last snapshot minus TrailingLogs is kept:
		// the follower's next entry must be gone.
		var snap uint64
		_, _ = fmt.Sscan(leader.RaftStats()["last_snapshot_index"], &snap)
		if snap < behind+trailing+10 {
			return fmt.Errorf("leader's last snapshot at %d, follower stopped at %d", snap, behind)
		}
		return nil
	}, "a leader snapshot past the follower")

	mark := f.Logs().Len()
	f.Restart()
	c.WaitConverged(30 * time.Second)
	c.AssertSameState(c.Nodes()...)
	if got := f.Store().State().Count("MeshTrafficPermission", "default"); got != total {
		t.Errorf("%s holds %d MeshTrafficPermissions, want %d", f.ID(), got, total)
	}
	installed := clustertest.Grep(f.Logs().Since(mark), "Installed remote snapshot")
	if len(installed) == 0 {
		t.Errorf("%s caught up without installing a snapshot (stopped at index %d); its log:\n%s", f.ID(), behind, strings.Join(f.Logs().Since(mark), "\n"))
	}
}

// Autopilot removes voters dead past the threshold, never below MinQuorum;
// a new node (fresh data dir) with a dead node's id replaces it: it becomes
// a voter at its new address and catches up.
func TestDeadServerReplacement(t *testing.T) {
	const threshold = 2 * time.Second
	c := clustertest.Start(t, 5, clustertest.Options{Configure: func(cfg *global.Config) {
		cfg.MinQuorum = 3
		cfg.DeadServerThreshold = threshold
		cfg.DeadNodeReclaim = time.Second
	}})
	leader := c.Leader()
	followers := c.Others(leader)
	a, b, x := followers[0], followers[1], followers[2]
	alive := []*clustertest.Node{leader, followers[3]}

	killed := time.Now()
	a.Kill()
	b.Kill()
	servers := c.WaitVoters(30*time.Second, 3)
	removedAfter := time.Since(killed)
	t.Logf("%s and %s removed %v after they were killed; voters %v", a.ID(), b.ID(), removedAfter, clustertest.Voters(servers))
	if removedAfter < threshold {
		t.Errorf("removed after %v, before the dead threshold %v", removedAfter, threshold)
	}
	if got, want := strings.Join(clustertest.Voters(servers), ","), ids(leader, x, followers[3]); got != want {
		t.Errorf("voters %s, want %s", got, want)
	}

	// A third death would take the voters below MinQuorum: it stays.
	x.Kill()
	clustertest.Eventually(t, 20*time.Second, func() error {
		m, ok := leader.Server().Members().Member(x.ID())
		if !ok || m.State != membership.Dead {
			return fmt.Errorf("%s is %v in gossip", x.ID(), m.State)
		}
		if since := time.Since(m.Since); since < threshold+5*clustertest.DefaultAutopilotInterval {
			return fmt.Errorf("dead for %v only", since)
		}
		return nil
	}, "%s dead past the threshold", x.ID())
	servers, err := leader.Store().Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(clustertest.Voters(servers), ","), ids(leader, x, followers[3]); got != want {
		t.Errorf("voters %s after a third death, want %s (MinQuorum 3)", got, want)
	}
	// Two of three voters still commit.
	if r := do(t, c, alive[1], "PUT", mtpURL(alive[1], "q"), mtpDoc("default", "q", "2of3")); r.Status != 201 {
		t.Fatalf("write with 2 of 3 voters: %d %s", r.Status, r.Body)
	}

	// Replacements: one for x (still a voter, at its old address) and one
	// for a (already removed), each with a fresh data dir and new addresses.
	x2 := c.Add(clustertest.NodeSpec{ID: x.ID()})
	a2 := c.Add(clustertest.NodeSpec{ID: a.ID()})
	x2.Start()
	a2.Start()
	clustertest.Eventually(t, 30*time.Second, func() error {
		servers, err := leader.Store().Configuration()
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, s := range servers {
			if s.Voter {
				got[s.ID] = s.Address
			}
		}
		if len(got) != 4 || got[x.ID()] != x2.RaftAddr() || got[a.ID()] != a2.RaftAddr() {
			return fmt.Errorf("voters %v", got)
		}
		return nil
	}, "the replacements as voters at their new addresses")
	nodes := append(alive, x2, a2)
	c.WaitConverged(20*time.Second, nodes...)
	c.AssertSameState(nodes...)
	if _, ok := x2.Store().State().Get(mtpKey("q")); !ok {
		t.Errorf("%s (replacement) misses a write made before it joined", x2.ID())
	}
	// The replacement serves: a write through it is forwarded and lands.
	if r := do(t, c, x2, "PUT", mtpURL(x2, "r"), mtpDoc("default", "r", "via-replacement")); r.Status != 201 {
		t.Errorf("write through the replacement: %d %s", r.Status, r.Body)
	}
}

func ids(nodes ...*clustertest.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// A node stopped gracefully (SIGTERM) leaves the Raft configuration at once,
// long before any dead threshold; a leader hands leadership over first, so
// that writes never fail while it goes.
func TestGracefulLeave(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{Configure: func(cfg *global.Config) {
		cfg.DeadServerThreshold = 10 * time.Minute // removal can only come from leaving
	}})
	leader := c.Leader()
	f1, f2 := c.Others(leader)[0], c.Others(leader)[1]

	start := time.Now()
	leaderMark := leader.Logs().Len()
	if err := f1.Stop(); err != nil {
		t.Errorf("stop %s: %v", f1.ID(), err)
	}
	clustertest.Eventually(t, 2*time.Second, func() error {
		servers, err := leader.Store().Configuration()
		if err != nil {
			return err
		}
		if got, want := strings.Join(clustertest.Voters(servers), ","), ids(leader, f2); got != want || len(servers) != 2 {
			return fmt.Errorf("servers %v", servers)
		}
		return nil
	}, "%s removed from the configuration", f1.ID())
	t.Logf("%s stopped and removed in %v", f1.ID(), time.Since(start))
	for _, l := range clustertest.Grep(leader.Logs().Since(leaderMark), "autopilot: adding a voter") {
		if strings.Contains(l, " node="+f1.ID()+" ") {
			t.Errorf("the leader added %s back while it was leaving: %s", f1.ID(), l)
		}
	}
	clustertest.Eventually(t, 5*time.Second, func() error {
		if m, _ := leader.Server().Members().Member(f1.ID()); m.State != membership.Left {
			return fmt.Errorf("%s is %q in gossip", f1.ID(), m.State)
		}
		return nil
	}, "%s left gossip", f1.ID())

	// Stop the leader while a client writes through the remaining follower.
	w := startWriter(t, "gl", f2)
	w.WaitAcked(t, 10*time.Second, time.Time{}, 10)
	mark := f2.Logs().Len()
	stopAt := time.Now()
	done := make(chan error, 1)
	go func() { done <- leader.Stop() }()
	c.WaitLeader(5*time.Second, f2)
	handover := time.Since(stopAt)
	if err := <-done; err != nil {
		t.Errorf("stop %s: %v", leader.ID(), err)
	}
	w.WaitAcked(t, 10*time.Second, time.Now(), 10)
	w.Stop()
	t.Logf("leader %s stopped; %s leads after %v; %d writes, errors: %v", leader.ID(), f2.ID(), handover, w.Acked(), w.Errors())
	if errs := w.Errors(); len(errs) > 0 {
		t.Errorf("%d writes failed while the leader left: %v", len(errs), errs)
	}
	if handover > 2*time.Second {
		t.Errorf("leadership moved after %v", handover)
	}
	lines := f2.Logs().Since(mark)
	if got := clustertest.Grep(lines, "heartbeat timeout reached"); len(got) > 0 {
		t.Errorf("%s took over by an election timeout, not a transfer:\n%s", f2.ID(), strings.Join(got, "\n"))
	}
	if got := clustertest.Grep(lines, "entering leader state"); len(got) != 1 {
		t.Errorf("%s entered leader state %d times", f2.ID(), len(got))
	}
	servers, err := f2.Store().Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 || servers[0].ID != f2.ID() {
		t.Errorf("configuration after both left: %v", servers)
	}
	w.AssertDurable(t, f2)
}

// Bad input: a node of another cluster and a second node with a taken id
// are refused with clear errors and change nothing; malformed forwarded
// commands get an error answer and the leader keeps working.
func TestBadInput(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader()
	before, err := leader.Store().Configuration()
	if err != nil {
		t.Fatal(err)
	}
	clusterID := mustMeta(t, leader).ClusterID
	assertConfigUnchanged := func(what string) {
		t.Helper()
		l := c.WaitLeader(5*time.Second, c.Nodes()[:3]...)
		after, err := l.Store().Configuration()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("after %s the configuration is %v, was %v", what, after, before)
		}
	}

	t.Run("another cluster", func(t *testing.T) {
		joinMain := false
		var mainGossip []string
		for _, n := range c.Nodes() {
			mainGossip = append(mainGossip, n.GossipAddr())
		}
		foreign := c.Add(clustertest.NodeSpec{ID: "foreign", Configure: func(cfg *global.Config) {
			if joinMain {
				cfg.Join = mainGossip
			} else {
				cfg.Join = nil // alone: bootstrap a cluster of its own
			}
		}})
		foreign.Start()
		clustertest.Eventually(t, 10*time.Second, func() error {
			if _, ok := foreign.Store().State().Meta(); !ok {
				return errors.New("not bootstrapped")
			}
			return nil
		}, "the foreign cluster bootstrapped")
		foreignID := mustMeta(t, foreign).ClusterID
		if err := foreign.Stop(); err != nil {
			t.Fatal(err)
		}

		joinMain = true
		foreign.Restart()
		exited, err := foreign.Wait(20 * time.Second)
		if !exited {
			t.Fatalf("the foreign node still runs after trying to join")
		}
		t.Logf("foreign node: %v", err)
		if err == nil || !strings.Contains(err.Error(), clusterID) || !strings.Contains(err.Error(), foreignID) {
			t.Errorf("foreign node's Run returned %v, want an error naming both cluster ids (%s, %s)", err, foreignID, clusterID)
		}
		assertConfigUnchanged("a foreign node's join")
		for _, n := range c.Nodes()[:3] {
			if m, ok := n.Server().Members().Member("foreign"); ok && m.State == membership.Alive {
				t.Errorf("%s counts the foreign node as a live member: %+v", n.ID(), m)
			}
		}
	})

	t.Run("duplicate node id", func(t *testing.T) {
		orig := c.Node("node-2")
		dup := c.Add(clustertest.NodeSpec{ID: "node-2"})
		dup.Start()
		exited, err := dup.Wait(20 * time.Second)
		if !exited {
			t.Fatalf("the duplicate node still runs")
		}
		t.Logf("duplicate node: %v", err)
		if err == nil || !strings.Contains(err.Error(), `node id "node-2" is already used`) {
			t.Errorf("duplicate node's Run returned %v, want a duplicate node id error", err)
		}
		assertConfigUnchanged("a duplicate id's join")
		if r := do(t, c, orig, "PUT", mtpURL(orig, "after-dup"), mtpDoc("default", "after-dup", "x")); r.Status != 201 {
			t.Errorf("write through the original node-2: %d %s", r.Status, r.Body)
		}
	})

	t.Run("malformed forwarded commands", func(t *testing.T) {
		leader := c.WaitLeader(5*time.Second, c.Nodes()[:3]...)
		follower := c.Others(leader)[0]
		last := leader.Store().Raft().LastIndex()
		url := leader.URL() + "/_internal/raft/apply"
		huge := make([]byte, 3<<20)
		for i := range huge {
			huge[i] = 'x'
		}
		for _, tc := range []struct {
			name string
			body []byte
			want string // in the answer
		}{
			{"garbage", []byte("\x00garbage{"), "malformed forwarded command"},
			{"bootstrap command", []byte(`{"type":"bootstrap","body":{"clusterId":"evil","adminToken":"evil"}}`), `\"bootstrap\" may not be forwarded`},
			{"unknown type", []byte(`{"type":"nope","body":{}}`), `\"nope\" may not be forwarded`},
			{"empty", nil, "malformed forwarded command"},
			{"huge", huge, "request body too large"},
		} {
			r := do(t, c, leader, "POST", url, tc.body)
			if (r.Status != 200 && r.Status != 400 && r.Status != 413) || !strings.Contains(string(r.Body), tc.want) {
				t.Errorf("%s: %d %.300s, want an error answer containing %q", tc.name, r.Status, r.Body, tc.want)
			}
			if r.Status == 200 && !strings.Contains(string(r.Body), `"error"`) {
				t.Errorf("%s: answered as a success: %.300s", tc.name, r.Body)
			}
		}
		if got := leader.Store().Raft().LastIndex(); got != last {
			t.Errorf("refused commands reached the log: last index %d → %d", last, got)
		}
		// Without the admin token: 401, nothing else.
		req := do(t, c, leader, "POST", url, []byte(`{"type":"put","body":{}}`), "Authorization", "Bearer nope")
		if req.Status != 401 {
			t.Errorf("apply with a wrong token: %d %s", req.Status, req.Body)
		}
		// A follower never proposes a forwarded command itself.
		if r := do(t, c, follower, "POST", follower.URL()+"/_internal/raft/apply", []byte(`{"type":"put","body":{}}`)); !strings.Contains(string(r.Body), `"unavailable"`) {
			t.Errorf("apply on a follower: %d %s", r.Status, r.Body)
		}
		// A put whose body is garbage reaches the log (the type may be
		// forwarded) and fails identically on every replica.
		r := do(t, c, leader, "POST", url, []byte(`{"type":"put","body":{"resource":"garbage"}}`))
		if !strings.Contains(string(r.Body), `"error"`) {
			t.Errorf("put with a garbage resource: %d %s", r.Status, r.Body)
		}
		// The leader keeps working and the replicas agree.
		if r := do(t, c, follower, "PUT", mtpURL(follower, "after-garbage"), mtpDoc("default", "after-garbage", "ok")); r.Status != 201 {
			t.Errorf("write after the garbage: %d %s", r.Status, r.Body)
		}
		if !leader.Store().IsLeader() {
			t.Errorf("%s lost leadership", leader.ID())
		}
		main := c.Nodes()[:3]
		c.WaitConverged(10*time.Second, main...)
		c.AssertSameState(main...)
	})
}

func mustMeta(t testing.TB, n *clustertest.Node) store.ClusterMeta {
	t.Helper()
	m, ok := n.Store().State().Meta()
	if !ok {
		t.Fatalf("%s: no cluster meta", n.ID())
	}
	return m
}

// TestGossipSplitHeals: after a partition long enough for gossip to declare
// the other side dead on both sides, healing the network reunites the pool
// (memberlist alone never probes a dead member again), and a follower that
// was cut off can forward writes again.
func TestGossipSplitHeals(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{Configure: func(cfg *global.Config) {
		cfg.GossipReconnectInterval = 300 * time.Millisecond
		cfg.DeadServerThreshold = time.Hour // keep the Raft configuration as it is
	}})
	leader := c.Leader()
	f := c.Others(leader)[0]
	c.Isolate(f)
	deadOn := func(viewer *clustertest.Node, id string) bool {
		m, ok := viewer.Server().Members().Member(id)
		return ok && m.State == membership.Dead
	}
	clustertest.Eventually(t, 30*time.Second, func() error {
		if !deadOn(leader, f.ID()) || !deadOn(f, leader.ID()) {
			return errors.New("not yet dead on both sides")
		}
		return nil
	}, "both sides of the split to declare the other dead")
	c.Heal()
	clustertest.Eventually(t, 20*time.Second, func() error {
		for _, viewer := range c.Running() {
			for _, m := range viewer.Server().Members().Members() {
				if m.State != membership.Alive {
					return fmt.Errorf("%s sees %s %s", viewer.ID(), m.ID, m.State)
				}
			}
		}
		return nil
	}, "every node to see every other alive again")
	c.WaitLeader(10 * time.Second)
	clustertest.Eventually(t, 10*time.Second, func() error {
		r := do(t, c, f, "PUT", mtpURL(f, "after-heal"), mtpDoc("default", "after-heal", "v"))
		if r.Status != 201 && r.Status != 200 {
			return fmt.Errorf("%d %s", r.Status, r.Body)
		}
		return nil
	}, "a write through the formerly cut-off follower")
}
