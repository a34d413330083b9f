package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
)

const nodeTimeout = 20 * time.Second

// testLogger writes warnings and errors to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// runningNode is a Node whose Run goroutine was started.
type runningNode struct {
	*Node
	cancel context.CancelFunc
	exited chan struct{} // closed when Run has returned
	err    error         // Run's result, once exited
	once   sync.Once
}

func goRun(n *Node) *runningNode {
	ctx, cancel := context.WithCancel(context.Background())
	rn := &runningNode{Node: n, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(rn.exited)
		rn.err = n.Run(ctx)
	}()
	return rn
}

// shutdown cancels Run and waits for it to return.
func (rn *runningNode) shutdown() error {
	rn.cancel()
	select {
	case <-rn.exited:
		return rn.err
	case <-time.After(nodeTimeout):
		return errors.New("Run did not return after cancel")
	}
}

// stop shuts the node down and fails the test if Run failed (once; later
// calls do nothing).
func (rn *runningNode) stop(t *testing.T) {
	t.Helper()
	rn.once.Do(func() {
		if err := rn.shutdown(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func nodeConfig(t *testing.T) Config {
	return Config{NodeID: "global-1", DataDir: t.TempDir(), Bootstrap: true}
}

// startNode runs a node and waits until it is Ready. With no RaftAddr it
// picks a free port, and picks another if that one was taken meanwhile;
// with one (a restart) it retries the same port until it binds.
func startNode(t *testing.T, cfg Config) *runningNode {
	t.Helper()
	pick := cfg.RaftAddr == ""
	deadline := time.Now().Add(nodeTimeout)
	for {
		if pick {
			cfg.RaftAddr = freePort(t)
		}
		n, err := New(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		rn := goRun(n)
		t.Cleanup(func() { _ = rn.shutdown() }) // also when the test fails early
		exited := false
		eventually(t, nodeTimeout, func() bool {
			select {
			case <-rn.exited:
				exited = true
				return true
			default:
				return n.Ready() == nil
			}
		}, "node on %s ready", cfg.RaftAddr)
		if !exited {
			return rn
		}
		if rn.err == nil || !strings.Contains(rn.err.Error(), "raft transport") || time.Now().After(deadline) {
			t.Fatalf("Run returned early: %v", rn.err)
		}
		t.Logf("retrying after %v", rn.err)
		<-time.After(20 * time.Millisecond) // back off before binding again
	}
}

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func TestNodeLifecycle(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the nodes' own cleanups
	ctx := context.Background()
	cfg := nodeConfig(t)
	rn := startNode(t, cfg)
	cfg.RaftAddr = rn.cfg.RaftAddr

	// Bootstrapped: default mesh and cluster identity.
	dm, err := rn.Get(ctx, key(api.TypeMesh, "", "default"), rest.ReadOptions{})
	if err != nil || dm.Revision == 0 {
		t.Fatalf("default mesh: %v, %v", dm, err)
	}
	meta, _ := rn.State().Meta()
	if !uuidRE.MatchString(meta.ClusterID) || !tokenRE.MatchString(meta.AdminToken) {
		t.Fatalf("cluster meta %+v", meta)
	}
	if id, addr := rn.Leader(); id != cfg.NodeID || addr != cfg.RaftAddr {
		t.Errorf("Leader() = %s, %s", id, addr)
	}

	// Writes and reads through rest.Store.
	var store rest.Store = rn.Node
	mesh, created, err := store.Put(ctx, fixture(t, meshYAML("demo")), rest.WriteOptions{})
	if err != nil || !created || mesh.Revision <= dm.Revision {
		t.Fatalf("Put mesh: %v %v %v", mesh, created, err)
	}
	dp, created, err := store.Put(ctx, fixture(t, dataplaneYAML("demo", "web-1", "10.0.0.1")), rest.WriteOptions{})
	if err != nil || !created || dp.Revision <= mesh.Revision || dp.CreationTime.IsZero() {
		t.Fatalf("Put dataplane: %v %v %v", dp, created, err)
	}
	for _, doc := range []string{mtpYAML("demo", "b-allow"), mtpYAML("demo", "a-allow"), mtpYAML("default", "allow"), zoneYAML("zone-1")} {
		if _, _, err := store.Put(ctx, fixture(t, doc), rest.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	upd, created, err := store.Put(ctx, fixture(t, mtpYAML("demo", "a-allow", "v", "2")), rest.WriteOptions{})
	if err != nil || created {
		t.Fatalf("update: %v %v", created, err)
	}
	if _, _, err := store.Put(ctx, fixture(t, mtpYAML("demo", "a-allow", "v", "3")), rest.WriteOptions{ExpectRevision: upd.Revision - 1}); err == nil {
		t.Error("stale ExpectRevision accepted")
	} else if ce := (*api.ConflictError)(nil); !errors.As(err, &ce) {
		t.Errorf("stale ExpectRevision: %T %v", err, err)
	}
	if _, _, err := store.Put(ctx, fixture(t, mtpYAML("nope", "x")), rest.WriteOptions{}); err == nil {
		t.Error("put into a missing mesh accepted")
	} else if ve := (*api.ValidationError)(nil); !errors.As(err, &ve) {
		t.Errorf("put into a missing mesh: %T %v", err, err)
	}

	for _, consistent := range []bool{false, true} {
		opts := rest.ReadOptions{Consistent: consistent}
		got, err := store.Get(ctx, upd.Key(), opts)
		if err != nil || got != upd {
			t.Errorf("Get(consistent=%v) = %v, %v; want %v", consistent, got, err, upd)
		}
		list, err := store.List(ctx, api.TypeMeshTrafficPermission, "", opts)
		if err != nil || fmt.Sprint(names(list)) != "[default/allow demo/a-allow demo/b-allow]" {
			t.Errorf("List(consistent=%v) = %v, %v", consistent, names(list), err)
		}
		list, err = store.List(ctx, api.TypeMeshTrafficPermission, "demo", opts)
		if err != nil || len(list) != 2 {
			t.Errorf("List(demo) = %v, %v", names(list), err)
		}
		if _, err := store.List(ctx, api.TypeMeshTrafficPermission, "nope", opts); !api.IsNotFound(err) {
			t.Errorf("List of a missing mesh: %v", err)
		}
		if _, err := store.Get(ctx, key(api.TypeMesh, "", "nope"), opts); !api.IsNotFound(err) {
			t.Errorf("Get of a missing resource: %v", err)
		}
	}

	// Deletes: refused for a mesh with dataplanes, then allowed.
	if err := store.Delete(ctx, key(api.TypeMesh, "", "demo"), rest.WriteOptions{}); err == nil {
		t.Error("deleted a mesh with a dataplane")
	} else if ce := (*api.ConflictError)(nil); !errors.As(err, &ce) {
		t.Errorf("delete of a mesh with a dataplane: %T %v", err, err)
	}
	if err := store.Delete(ctx, dp.Key(), rest.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, dp.Key(), rest.WriteOptions{}); !api.IsNotFound(err) {
		t.Errorf("second delete: %v", err)
	}
	if err := store.Delete(ctx, key(api.TypeMesh, "", "default"), rest.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, key(api.TypeMeshTrafficPermission, "default", "allow"), rest.ReadOptions{}); !api.IsNotFound(err) {
		t.Errorf("cascade left default/allow: %v", err)
	}

	before := dump(t, rn.State())
	beforeRev := rn.State().Revision()
	beforeChanges := map[uint64]string{}
	for since := uint64(0); since <= beforeRev; since++ {
		cs, _, err := rn.State().ChangesSince(since)
		beforeChanges[since] = changesText(t, cs, 0, err)
	}
	rn.stop(t)

	// Restart on the same data dir: everything is back, the default mesh
	// is not re-created, the identity is the same.
	rn2 := startNode(t, cfg)
	eventually(t, nodeTimeout, func() bool { return rn2.State().Revision() >= beforeRev }, "log replayed")
	if after := dump(t, rn2.State()); after != before {
		t.Errorf("state after restart:\n%s\nbefore:\n%s", after, before)
	}
	for since := uint64(0); since <= beforeRev; since++ {
		cs, _, err := rn2.State().ChangesSince(since)
		// The state's own revision is left out (0 in both texts): the
		// restarted leader may append entries that change nothing (its
		// no-op bootstrap proposal).
		if got := changesText(t, cs, 0, err); got != beforeChanges[since] {
			t.Errorf("ChangesSince(%d) after restart:\n%s\nbefore:\n%s", since, got, beforeChanges[since])
		}
	}
	meta2, _ := rn2.State().Meta()
	if !reflect.DeepEqual(meta2, meta) {
		t.Errorf("identity changed across restart: %+v -> %+v", meta, meta2)
	}
	if _, err := rn2.Get(ctx, key(api.TypeMesh, "", "default"), rest.ReadOptions{Consistent: true}); !api.IsNotFound(err) {
		t.Errorf("default mesh came back: %v", err)
	}
	// And it still takes writes.
	if _, created, err := rn2.Put(ctx, fixture(t, meshYAML("after-restart")), rest.WriteOptions{}); err != nil || !created {
		t.Fatalf("put after restart: %v %v", created, err)
	}
	rn2.stop(t)
}

func TestNodeSkipDefaultMesh(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the nodes' own cleanups
	cfg := nodeConfig(t)
	cfg.SkipDefaultMesh = true
	rn := startNode(t, cfg)
	if n := rn.State().Count(api.TypeMesh, ""); n != 0 {
		t.Errorf("%d meshes", n)
	}
	meta, done := rn.State().Meta()
	if !done || !uuidRE.MatchString(meta.ClusterID) || !tokenRE.MatchString(meta.AdminToken) {
		t.Errorf("meta %+v bootstrapped %v", meta, done)
	}
	rn.stop(t)
}

func TestNodeNotRunning(t *testing.T) {
	cfg := nodeConfig(t)
	cfg.RaftAddr = "127.0.0.1:1"
	n, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	unavailable := func(what string, err error) {
		t.Helper()
		var ue *api.UnavailableError
		if !errors.As(err, &ue) {
			t.Errorf("%s before Run: %T %v, want *api.UnavailableError", what, err, err)
		}
	}
	_, _, err = n.Put(ctx, fixture(t, meshYAML("demo")), rest.WriteOptions{})
	unavailable("Put", err)
	unavailable("Delete", n.Delete(ctx, key(api.TypeMesh, "", "demo"), rest.WriteOptions{}))
	_, err = n.Get(ctx, key(api.TypeMesh, "", "demo"), rest.ReadOptions{Consistent: true})
	unavailable("consistent Get", err)
	if err := n.Ready(); err == nil {
		t.Error("Ready before Run")
	}
	if _, err := n.Get(ctx, key(api.TypeMesh, "", "demo"), rest.ReadOptions{}); !api.IsNotFound(err) {
		t.Errorf("local Get before Run: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		bad  []string // substrings of the error; none: valid
	}{
		{"minimal", Config{NodeID: "n", DataDir: "/d", RaftAddr: "127.0.0.1:5690"}, nil},
		{"missing everything", Config{}, []string{"node id", "data dir", "raft address"}},
		{"unspecified advertise", Config{NodeID: "n", DataDir: "/d", RaftAddr: "0.0.0.0:5690"}, []string{"must be an IP other nodes can dial"}},
		{"explicit advertise", Config{NodeID: "n", DataDir: "/d", RaftAddr: "0.0.0.0:5690", AdvertiseAddr: "10.0.0.1:5690"}, nil},
		{"hostname advertise", Config{NodeID: "n", DataDir: "/d", RaftAddr: "127.0.0.1:5690", AdvertiseAddr: "global-1:5690"}, []string{"advertise"}},
		{"timing multiplier", Config{NodeID: "n", DataDir: "/d", RaftAddr: "127.0.0.1:5690", TimingMultiplier: 11}, []string{"timing multiplier"}},
		// A negative window would make the FSM panic on its first delete.
		{"negative tombstones", Config{NodeID: "n", DataDir: "/d", RaftAddr: "127.0.0.1:5690", MaxTombstones: -1}, []string{"max tombstones"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			if len(tt.bad) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.AdvertiseAddr == "" || cfg.TimingMultiplier != 1 || cfg.ApplyTimeout == 0 || cfg.SnapshotThreshold == 0 ||
					cfg.SnapshotInterval == 0 || cfg.TrailingLogs == 0 || cfg.MaxTombstones != DefaultMaxTombstones {
					t.Errorf("defaults not filled: %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.bad {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestNodeSnapshotAndRestart writes enough entries for the periodic check to
// take a snapshot, writes more after it, then restarts the node: the state
// comes back from the snapshot plus the log entries after it.
func TestNodeSnapshotAndRestart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the nodes' own cleanups
	ctx := context.Background()
	cfg := nodeConfig(t)
	cfg.SnapshotThreshold = 32
	cfg.SnapshotInterval = 20 * time.Millisecond
	cfg.TrailingLogs = 8
	cfg.MaxTombstones = 10
	rn := startNode(t, cfg)
	cfg.RaftAddr = rn.cfg.RaftAddr

	lastSnapshot := func(rn *runningNode) uint64 {
		v, _ := strconv.ParseUint(rn.Raft().Stats()["last_snapshot_index"], 10, 64)
		return v
	}
	if lastSnapshot(rn) != 0 {
		t.Fatal("snapshot before any write")
	}
	// Writes (creates, updates, deletes) until a snapshot has been taken.
	write := func(i int) error {
		name := fmt.Sprintf("p%d", i%20)
		if i%5 == 4 {
			err := rn.Delete(ctx, key(api.TypeMeshTrafficPermission, "default", name), rest.WriteOptions{})
			if api.IsNotFound(err) {
				err = nil
			}
			return err
		}
		_, _, err := rn.Put(ctx, fixture(t, mtpYAML("default", name, "gen", strconv.Itoa(i))), rest.WriteOptions{})
		return err
	}
	i := 0
	deadline := time.Now().Add(nodeTimeout)
	for lastSnapshot(rn) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after %d writes", i)
		}
		if err := write(i); err != nil {
			t.Fatal(err)
		}
		i++
	}
	snapAt := lastSnapshot(rn)
	// More writes after the snapshot, some of them deletes.
	for j := 0; j < 7; j++ {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
		i++
	}
	if last := rn.Raft().LastIndex(); last <= snapAt {
		t.Fatalf("no log entries after the snapshot at %d (last %d)", snapAt, last)
	}
	before, beforeRev := dump(t, rn.State()), rn.State().Revision()
	rn.stop(t)

	// The snapshot is on disk and the log before it was compacted.
	snaps, _ := filepath.Glob(filepath.Join(cfg.DataDir, "raft", "snapshots", "*", "state.bin"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot file on disk")
	}
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := bolt.FirstIndex()
	bolt.Close()
	if err != nil || first <= 1 {
		t.Fatalf("log not compacted: first index %d, %v", first, err)
	}

	rn2 := startNode(t, cfg)
	if got := lastSnapshot(rn2); got < snapAt {
		t.Errorf("restarted node's last snapshot %d, want at least %d", got, snapAt)
	}
	eventually(t, nodeTimeout, func() bool { return rn2.State().Revision() >= beforeRev }, "log after the snapshot replayed")
	if after := dump(t, rn2.State()); after != before {
		t.Errorf("state after restart:\n%s\nbefore:\n%s", after, before)
	}
	if err := checkInvariants(rn2.State()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes, snapshot at %d, log from %d, revision %d, %d snapshot files", i, snapAt, first, beforeRev, len(snaps))
	rn2.stop(t)
}
