package certs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/test/harness"
)

// fakeMeshes is the replica's Meshes.
type fakeMeshes struct {
	mu     sync.Mutex
	meshes map[string]*api.Resource
	ch     chan struct{}
}

func (f *fakeMeshes) List(string, string) []*api.Resource {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*api.Resource
	for _, m := range f.meshes {
		out = append(out, m)
	}
	return out
}

func (f *fakeMeshes) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *fakeMeshes) set(t *testing.T, name, enabled string) {
	t.Helper()
	doc := fmt.Sprintf("type: Mesh\nname: %s\nmtls:\n  enabledBackend: %q\n  backends:\n  - {name: ca-1, type: builtin}\n  - {name: ca-2, type: builtin}\n", name, enabled)
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.meshes[name] = r
	close(f.ch)
	f.ch = make(chan struct{})
	f.mu.Unlock()
}

// fakeGlobal signs with one root per Mesh, for a short validity.
type fakeGlobal struct {
	roots    map[string]ca.KeyPair
	validity time.Duration
	down     atomic.Bool
	calls    atomic.Int32
}

func (g *fakeGlobal) SignIntermediate(_ context.Context, req *syncpb.CertificateRequest) (*syncpb.CertificateResponse, error) {
	g.calls.Add(1)
	if g.down.Load() {
		return nil, errors.New("no stream to global")
	}
	root := g.roots[req.GetMesh()]
	cert, err := ca.SignIntermediate(root, req.GetCsrPem(), ca.IntermediateOptions{Mesh: req.GetMesh(), Zone: "zone-1", Validity: g.validity})
	if err != nil {
		return &syncpb.CertificateResponse{Error: err.Error()}, nil
	}
	return &syncpb.CertificateResponse{CertificatePem: cert, TrustBundlePem: root.CertPEM}, nil
}

func run(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestManager(t *testing.T) {
	root, err := ca.NewMeshRoot("secure", ca.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGlobal{roots: map[string]ca.KeyPair{"secure": root}, validity: 3 * time.Second}
	meshes := &fakeMeshes{meshes: map[string]*api.Resource{}, ch: make(chan struct{})}
	meshes.set(t, "plain", "")
	meshes.set(t, "secure", "ca-1")
	dir := t.TempDir()
	cfg := Config{Zone: "zone-1", Dir: dir, Meshes: meshes, Signer: g, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	harness.Eventually(t, 10*time.Second, "secure's intermediate", func() bool { return m.Authority("secure") != nil })
	if m.Authority("plain") != nil {
		t.Error("an intermediate for a Mesh without mTLS")
	}
	a := m.Authority("secure")
	leaf, err := a.Issuer.IssueLeaf(ca.LeafOptions{Mesh: "secure", Service: "web", Validity: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := ca.VerifyLeaf(leaf.CertChainPEM, a.TrustBundle, time.Now()); err != nil || id != "spiffe://secure/web" {
		t.Fatalf("a leaf of the zone's intermediate: %q %v", id, err)
	}

	// Renewed at half its life (1.5 s), with a new key and certificate;
	// not before.
	calls := g.calls.Load()
	harness.Eventually(t, 10*time.Second, "the renewal", func() bool { return m.Authority("secure") != a })
	if took := time.Since(a.Issuer.NotBefore().Add(ca.ClockSkew)); took < 1400*time.Millisecond {
		t.Errorf("renewed %s after issuance, before half its life", took)
	}
	if n := g.calls.Load() - calls; n != 1 {
		t.Errorf("%d requests for one renewal", n)
	}

	// Global down: the intermediate keeps serving; failures are retried
	// and shown.
	g.down.Store(true)
	before := g.calls.Load()
	harness.Eventually(t, 10*time.Second, "retries", func() bool { return g.calls.Load() > before+1 })
	if st := m.Status(); len(st) != 1 || st[0].LastError == "" {
		t.Errorf("status %+v: want the failure shown", st)
	}
	if m.Authority("secure") == nil {
		t.Error("the intermediate was dropped while global is down")
	}
	g.down.Store(false)

	// A restart loads it from its file.
	m2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Authority("secure"); got == nil || got.Backend != "ca-1" {
		t.Fatalf("after a restart: %+v", got)
	}

	// mTLS off: dropped (and its file).
	meshes.set(t, "secure", "")
	harness.Eventually(t, 10*time.Second, "the intermediate dropped", func() bool { return m.Authority("secure") == nil })
	if m3, _ := New(cfg, nil); m3.Authority("secure") != nil {
		t.Error("the dropped intermediate's file remains")
	}
}
