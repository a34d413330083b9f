package global_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/global/clustertest"
)

// Three fresh nodes started with bootstrap-expect 3 form one cluster: one of
// them (the lowest id) bootstraps Raft with all three as voters, and the
// replicated bootstrap command gives every node the same cluster id, admin
// token and default Mesh.
func TestBootstrapExpect(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	c.WaitConverged(10 * time.Second)
	nodes := c.Nodes()

	var bootstrapped []string
	for _, n := range nodes {
		if k := n.Logs().Count("bootstrapped the raft cluster"); k > 0 {
			bootstrapped = append(bootstrapped, n.ID()+"×"+strconv.Itoa(k))
		}
	}
	if len(bootstrapped) != 1 || bootstrapped[0] != "node-1×1" {
		t.Errorf("nodes that bootstrapped Raft: %v, want exactly node-1 once", bootstrapped)
	}

	var clusterID, token string
	for _, n := range nodes {
		servers, err := n.Store().Configuration()
		if err != nil {
			t.Fatalf("%s: configuration: %v", n.ID(), err)
		}
		if got := clustertest.Voters(servers); strings.Join(got, ",") != "node-1,node-2,node-3" {
			t.Errorf("%s sees voters %v", n.ID(), got)
		}
		for _, s := range servers {
			if want := c.Node(s.ID).RaftAddr(); s.Address != want {
				t.Errorf("%s: %s at %s, want %s", n.ID(), s.ID, s.Address, want)
			}
		}

		meshes := n.Store().State().List(api.TypeMesh, "")
		if len(meshes) != 1 || meshes[0].Name != "default" {
			t.Errorf("%s holds meshes %v, want the default mesh once", n.ID(), meshes)
		}

		info, err := n.Client().Info(context.Background())
		if err != nil {
			t.Fatalf("%s: GET /: %v", n.ID(), err)
		}
		if info.InstanceID != n.ID() {
			t.Errorf("%s: instance id %q", n.ID(), info.InstanceID)
		}
		if clusterID == "" {
			clusterID = info.ClusterID
		}
		if info.ClusterID == "" || info.ClusterID != clusterID {
			t.Errorf("%s: cluster id %q, want %q (non-empty, the same everywhere)", n.ID(), info.ClusterID, clusterID)
		}

		meta, _ := n.Store().State().Meta()
		if token == "" {
			token = meta.AdminToken
		}
		if meta.AdminToken == "" || meta.AdminToken != token {
			t.Errorf("%s: admin token differs", n.ID())
		}
		path := filepath.Join(n.DataDir(), global.AdminTokenFile)
		clustertest.Eventually(t, 5*time.Second, func() error {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if string(data) != token+"\n" {
				return os.ErrInvalid
			}
			return nil
		}, "%s holds the admin token", path)
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", path, fi.Mode().Perm(), err)
		}
		if data, err := os.ReadFile(filepath.Join(n.DataDir(), global.ClusterIDFile)); err != nil || string(data) != clusterID+"\n" {
			t.Errorf("%s: cluster id file %q (%v), want %q", n.ID(), data, err, clusterID)
		}
	}
}

// A write through a follower is forwarded to the leader and answered as the
// leader would answer it: same statuses, ETag and error bodies. A consistent
// read through any node sees a write acknowledged through another one.
func TestForwardedWritesAnswerLikeLocal(t *testing.T) {
	c := clustertest.Start(t, 3, clustertest.Options{})
	leader := c.Leader()
	followers := c.Others(leader)
	f1, f2 := followers[0], followers[1]

	// Create through a follower: 201, Location and an ETag that is the
	// stored revision.
	r := do(t, c, f1, "PUT", mtpURL(f1, "fwd"), mtpDoc("default", "fwd", "v1"))
	if r.Status != 201 || r.Header.Get("Location") != "/meshes/default/meshtrafficpermissions/fwd" {
		t.Fatalf("create through follower: %d Location=%q %s", r.Status, r.Header.Get("Location"), r.Body)
	}
	rev1 := etag(t, r)
	if got := labelValue(t, r.Body); got != "v1" {
		t.Errorf("create answered label %q", got)
	}
	// Update through the other follower: 200 and a higher ETag.
	r = do(t, c, f2, "PUT", mtpURL(f2, "fwd"), mtpDoc("default", "fwd", "v2"))
	if r.Status != 200 {
		t.Fatalf("update through follower: %d %s", r.Status, r.Body)
	}
	rev2 := etag(t, r)
	if rev2 <= rev1 {
		t.Errorf("update ETag %d, not after %d", rev2, rev1)
	}
	// Local reads agree once replicated; the leader holds it at once.
	if got, ok := leader.Store().State().Get(mtpKey("fwd")); !ok || got.Revision != rev2 {
		t.Errorf("leader holds %v after the acknowledged update, want revision %d", got, rev2)
	}

	// Errors keep their kind and body across forwarding.
	for _, tc := range []struct {
		name   string
		method string
		url    func(*clustertest.Node) string
		body   []byte
		hdr    []string
		status int
	}{
		{"stale If-Match", "PUT", func(n *clustertest.Node) string { return mtpURL(n, "fwd") }, mtpDoc("default", "fwd", "v3"), []string{"If-Match", strconv.Quote(strconv.FormatUint(rev1, 10))}, 409},
		{"invalid spec", "PUT", func(n *clustertest.Node) string { return mtpURL(n, "bad") },
			[]byte(`{"type":"MeshTrafficPermission","mesh":"default","name":"bad","spec":{"targetRef":{"kind":"Nope"}}}`), nil, 400},
		{"missing mesh", "PUT", func(n *clustertest.Node) string { return n.URL() + "/meshes/nope/meshtrafficpermissions/x" },
			mtpDoc("nope", "x", "v"), nil, 400},
		{"delete missing", "DELETE", func(n *clustertest.Node) string { return mtpURL(n, "missing") }, nil, nil, 404},
	} {
		onLeader := do(t, c, leader, tc.method, tc.url(leader), tc.body, tc.hdr...)
		onFollower := do(t, c, f1, tc.method, tc.url(f1), tc.body, tc.hdr...)
		if onLeader.Status != tc.status || onFollower.Status != tc.status {
			t.Errorf("%s: leader %d, follower %d, want %d (%s | %s)", tc.name, onLeader.Status, onFollower.Status, tc.status, onLeader.Body, onFollower.Body)
		}
		if string(onLeader.Body) != string(onFollower.Body) {
			t.Errorf("%s: the follower's answer differs from the leader's:\nleader:   %s\nfollower: %s", tc.name, onLeader.Body, onFollower.Body)
		}
	}

	// Delete through a follower.
	if r := do(t, c, f2, "DELETE", mtpURL(f2, "fwd"), nil); r.Status != 200 {
		t.Fatalf("delete through follower: %d %s", r.Status, r.Body)
	}
	if r := do(t, c, f1, "GET", mtpURL(f1, "fwd")+"?consistent=true", nil); r.Status != 404 {
		t.Errorf("consistent read after delete: %d %s", r.Status, r.Body)
	}

	// Read-your-writes across nodes: every write acknowledged through one
	// node is seen by a consistent read through the next, at once.
	nodes := c.Nodes()
	for i := range 30 {
		w, rd := nodes[i%3], nodes[(i+1)%3]
		value := "x" + strconv.Itoa(i)
		r := do(t, c, w, "PUT", mtpURL(w, "ryw"), mtpDoc("default", "ryw", value))
		if r.Status != 200 && r.Status != 201 {
			t.Fatalf("write %d through %s: %d %s", i, w.ID(), r.Status, r.Body)
		}
		rev := etag(t, r)
		got := do(t, c, rd, "GET", mtpURL(rd, "ryw")+"?consistent=true", nil)
		if got.Status != 200 || labelValue(t, got.Body) != value || etag(t, got) != rev {
			t.Fatalf("consistent read through %s after write %q (revision %d) through %s: %d ETag %s %s",
				rd.ID(), value, rev, w.ID(), got.Status, got.Header.Get("ETag"), got.Body)
		}
		// The header form works the same.
		got = do(t, c, rd, "GET", mtpURL(rd, "ryw"), nil, "X-Meshfed-Consistent", "true")
		if got.Status != 200 || labelValue(t, got.Body) != value {
			t.Fatalf("consistent read (header) through %s: %d %s", rd.ID(), got.Status, got.Body)
		}
	}
	c.WaitConverged(10 * time.Second)
	c.AssertSameState(c.Nodes()...)
}

// etag reads a numeric ETag.
func etag(t testing.TB, r rawResponse) uint64 {
	t.Helper()
	tag := strings.Trim(r.Header.Get("ETag"), `"`)
	rev, err := strconv.ParseUint(tag, 10, 64)
	if err != nil {
		t.Fatalf("ETag %q: %v (status %d %s)", r.Header.Get("ETag"), err, r.Status, r.Body)
	}
	return rev
}

// A node that has not received the cluster's identity yet (here: it waits
// to be added by a leader it cannot reach) cannot check tokens: it answers
// 503 with Retry-After, not 401, so that clients retry.
func TestNodeWithoutIdentityAnswers503(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{})
	n := c.Add(clustertest.NodeSpec{ID: "lonely", Join: []string{"127.0.0.1:1"}})
	n.Start()
	clustertest.Eventually(t, 10*time.Second, func() error {
		_, err := tryGet(n.URL()+"/", "")
		return err
	}, "the API listening")
	r, err := tryGet(n.URL()+"/meshes", "some-token")
	if err != nil {
		t.Fatal(err)
	}
	if err := isUnavailable503(r); err != nil {
		t.Errorf("GET /meshes with a token before the node knows the cluster: %v", err)
	}
	r, err = tryGet(n.URL()+"/meshes", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 401 {
		t.Errorf("GET /meshes without a token: %d %s", r.Status, r.Body)
	}
}
