package proxies

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
)

// staticCerts is one Mesh's authority, fixed.
type staticCerts struct{ auth *certs.Authority }

func (c staticCerts) Authority(string) *certs.Authority { return c.auth }
func (c staticCerts) Changed() <-chan struct{}          { return nil }

// BenchmarkRotate10k measures a zone renewing the certificates of 10,000
// connected proxies of an mTLS Mesh at once (the worst case: every
// renewal due in one pass): issuing the leaves and regenerating the
// proxies' resources (xDS server excluded: a recording pusher). One op is
// one rotation of all 10,000; ns/op is the time to rotate them.
func BenchmarkRotate10k(b *testing.B) {
	const proxies, services = 10000, 500
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := inventory.Open(filepath.Join(b.TempDir(), "inv.db"), logger, inventory.Options{Zone: testZone, ReplicaID: "r1"})
	if err != nil {
		b.Fatal(err)
	}
	defer inv.Close()
	state := &fakeState{inv: inv, res: map[api.Key]*api.Resource{}, ch: make(chan struct{})}
	state.put(b, "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca\n  backends: [{name: ca, type: builtin}]\n")
	state.put(b, "type: MeshTrafficPermission\nmesh: default\nname: allow\nspec:\n  targetRef: {kind: Mesh}\n  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n")
	root, err := ca.NewMeshRoot("default", ca.RootOptions{})
	if err != nil {
		b.Fatal(err)
	}
	csr, key, err := ca.NewIntermediateRequest("default", testZone, ca.KeyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.SignIntermediate(root, csr, ca.IntermediateOptions{Mesh: "default", Zone: testZone})
	if err != nil {
		b.Fatal(err)
	}
	iss, err := ca.NewIssuer(ca.KeyPair{CertPEM: cert, KeyPEM: key})
	if err != nil {
		b.Fatal(err)
	}
	auth := &certs.Authority{Mesh: "default", Backend: "ca", Issuer: iss, TrustBundle: root.CertPEM}
	var dps []*api.Resource
	for i := range proxies {
		doc := fmt.Sprintf("type: Dataplane\nmesh: default\nname: dp-%d\nnetworking:\n  address: 10.%d.%d.%d\n  inbound: [{port: 8080, tags: {kuma.io/service: svc-%d, kuma.io/protocol: http}}]\n  outbound: [{port: 10001, tags: {kuma.io/service: svc-%d}}]\n",
			i, i/65536, (i/256)%256, i%256, i%services, (i+1)%services)
		r, err := api.Decode([]byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		if err := api.Prepare(r); err != nil {
			b.Fatal(err)
		}
		dps = append(dps, r)
	}
	if _, err := inv.PutBatch(dps, time.Now()); err != nil {
		b.Fatal(err)
	}
	pusher := &countingPusher{}
	p, err := New(Config{Zone: testZone, ReplicaID: "r1", State: state, Inventory: inv, Pusher: pusher, Certs: staticCerts{auth}}, logger)
	if err != nil {
		b.Fatal(err)
	}
	for _, dp := range dps {
		id := "default." + dp.Name
		p.reg.nodes[id] = &node{id: id, key: dp.Key(), streams: 1, fresh: true}
	}
	p.gen.pass() // first certificates and resources
	if pusher.sets != proxies {
		b.Fatalf("%d proxies served, want %d", pusher.sets, proxies)
	}
	b.ResetTimer()
	for range b.N {
		for _, nd := range p.reg.nodes {
			nd.renewAt = time.Now().Add(-time.Second) // every renewal due
		}
		p.gen.pass()
	}
	b.StopTimer()
	b.ReportMetric(float64(proxies)*float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// countingPusher counts SetResources calls.
type countingPusher struct {
	mu   sync.Mutex
	sets int
}

func (c *countingPusher) SetResources(string, map[string][]types.Resource) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets++
	return true, nil
}

func (c *countingPusher) Clear(string) {}
