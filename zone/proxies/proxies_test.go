package proxies

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/test/harness"
	"github.com/meshfed/meshfed/xds/server"
	"github.com/meshfed/meshfed/zone/inventory"
)

const testZone = "zone-1"

// fakeState is global's side (Meshes, Zones, other zones' resources) in
// memory, over a real inventory for the zone's own.
type fakeState struct {
	inv *inventory.Inventory
	mu  sync.Mutex
	res map[api.Key]*api.Resource
	ch  chan struct{}
	rev uint64
}

func (s *fakeState) Get(key api.Key) (*api.Resource, bool) {
	if r, ok := s.inv.Get(key); ok {
		return r, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.res[key]
	return r, ok
}

func (s *fakeState) List(typ, mesh string) []*api.Resource {
	out := s.inv.List(typ, mesh)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.res {
		if k.Type == typ && (mesh == "" || k.Mesh == mesh) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out
}

// Changed merges the fake's own changes with the inventory's.
func (s *fakeState) Changed() <-chan struct{} {
	s.mu.Lock()
	mine := s.ch
	s.mu.Unlock()
	out := make(chan struct{})
	invCh := s.inv.Changed()
	go func() {
		select {
		case <-mine:
		case <-invCh:
		case <-time.After(time.Second): // a bounded wait keeps the test's goroutines bounded
		}
		close(out)
	}()
	return out
}

func (s *fakeState) put(t testing.TB, doc string) {
	t.Helper()
	r := prepared(t, doc)
	s.mu.Lock()
	s.rev++
	r.Revision = s.rev
	s.res[r.Key()] = r
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func prepared(t testing.TB, doc string) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// fakePusher records what each node was given.
type fakePusher struct {
	mu   sync.Mutex
	sets map[string]int
	last map[string]map[string][]types.Resource
}

func (p *fakePusher) SetResources(id string, res map[string][]types.Resource) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sets[id]++
	p.last[id] = res
	return true, nil
}

func (p *fakePusher) Clear(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, id)
}

func (p *fakePusher) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sets[id]
}

// endpoints returns the endpoint addresses node id was given for cluster.
func (p *fakePusher) endpoints(id, clusterName string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, r := range p.last[id][resource.EndpointType] {
		cla := r.(*endpoint.ClusterLoadAssignment)
		if cla.GetClusterName() != clusterName {
			continue
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			}
		}
	}
	return out
}

type fixture struct {
	state  *fakeState
	inv    *inventory.Inventory
	pusher *fakePusher
	p      *Proxies
	cancel func()
}

func newFixture(t *testing.T, grace time.Duration) *fixture {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := inventory.Open(filepath.Join(t.TempDir(), "inv.db"), logger, inventory.Options{Zone: testZone, ReplicaID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	f := &fixture{
		state:  &fakeState{inv: inv, res: map[api.Key]*api.Resource{}, ch: make(chan struct{})},
		inv:    inv,
		pusher: &fakePusher{sets: map[string]int{}, last: map[string]map[string][]types.Resource{}},
	}
	f.state.put(t, "type: Mesh\nname: default\n")
	f.state.put(t, "type: Zone\nname: zone-1\n")
	f.p, err = New(Config{Zone: testZone, ReplicaID: "r1", State: f.state, Inventory: inv, Pusher: f.pusher,
		GracePeriod: grace, Debounce: time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.p.Run(ctx) }()
	f.cancel = func() { cancel(); <-done }
	t.Cleanup(f.cancel)
	return f
}

// dpMeta is node metadata carrying a Dataplane as a JSON object.
func dpMeta(t *testing.T, doc string) *structpb.Struct {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var obj structpb.Struct
	if err := obj.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{MetadataDataplane: structpb.NewStructValue(&obj)}}
}

func dpDoc(name, addr string, port int, service, outbound string) string {
	doc := fmt.Sprintf("type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: %s\n  inbound: [{port: %d, tags: {kuma.io/service: %s, kuma.io/protocol: http}}]\n", name, addr, port, service)
	if outbound != "" {
		doc += fmt.Sprintf("  outbound: [{port: 10001, tags: {kuma.io/service: %s}}]\n", outbound)
	}
	return doc
}

func connect(f *fixture, name string, meta *structpb.Struct) (server.Node, error) {
	n := server.Node{ID: "default." + name, Mesh: "default", Name: name, Metadata: meta, Kind: "envoy", StreamID: time.Now().UnixNano()}
	return n, f.p.Registrar().Connect(context.Background(), n)
}

func TestRegistration(t *testing.T) {
	f := newFixture(t, time.Minute)
	// Self-registration from metadata: stored with the replica's label,
	// served at once.
	if _, err := connect(f, "web-1", dpMeta(t, dpDoc("web-1", "10.0.0.1", 8080, "web", "backend"))); err != nil {
		t.Fatal(err)
	}
	dp, ok := f.inv.Get(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "web-1"})
	if !ok || dp.Labels[LabelRegisteredBy] != "r1" {
		t.Fatalf("registered Dataplane = %v", dp)
	}
	harness.Eventually(t, 5*time.Second, "web-1's resources", func() bool { return f.pusher.count("default.web-1") == 1 })

	// The same definition as text: accepted, nothing changes.
	text := &structpb.Struct{Fields: map[string]*structpb.Value{MetadataDataplane: structpb.NewStringValue(dpDoc("web-1", "10.0.0.1", 8080, "web", "backend"))}}
	if _, err := connect(f, "web-1", text); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, node string
		meta       *structpb.Struct
		mesh       string
		want       error
		says       []string
	}{
		{"invalid Dataplane", "bad-1", dpMeta(t, "type: Dataplane\nname: bad-1\nnetworking:\n  address: 10.0.0.9\n  inbound: [{port: 0, tags: {kuma.io/service: web}}]\n"), "default",
			server.ErrInvalidNode, []string{"node.metadata.dataplane", "networking.inbound[0].port"}},
		{"name differs from the node id", "bad-2", dpMeta(t, dpDoc("other", "10.0.0.9", 80, "web", "")), "default",
			server.ErrInvalidNode, []string{"name", `"other"`}},
		{"not a Dataplane", "bad-3", &structpb.Struct{Fields: map[string]*structpb.Value{MetadataDataplane: structpb.NewStringValue("type: Mesh\nname: x\n")}}, "default",
			server.ErrInvalidNode, []string{"type: must be Dataplane"}},
		{"wrong metadata kind", "bad-4", &structpb.Struct{Fields: map[string]*structpb.Value{MetadataDataplane: structpb.NewNumberValue(3)}}, "default",
			server.ErrInvalidNode, []string{"object or a string"}},
		{"no Dataplane at all", "ghost", nil, "default", server.ErrInvalidNode, []string{"create it through the zone API"}},
		{"unknown Mesh", "web-9", dpMeta(t, strings.Replace(dpDoc("web-9", "10.0.0.9", 80, "web", ""), "mesh: default", "mesh: nope", 1)), "nope",
			server.ErrUnavailable, []string{`mesh "nope" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := server.Node{ID: c.mesh + "." + c.node, Mesh: c.mesh, Name: c.node, Metadata: c.meta}
			err := f.p.Registrar().Connect(context.Background(), n)
			if !errors.Is(err, c.want) {
				t.Fatalf("Connect = %v, want %v", err, c.want)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%v: does not say %q", err, s)
				}
			}
			if _, ok := f.inv.Get(api.Key{Type: api.TypeDataplane, Mesh: c.mesh, Name: c.node}); ok {
				t.Error("a refused proxy's Dataplane was stored")
			}
		})
	}
	// An API-created Dataplane: a proxy connects without metadata; one
	// that disagrees with it is refused.
	if _, _, err := f.inv.Put(prepared(t, dpDoc("api-1", "10.0.0.5", 8080, "web", "")), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(f, "api-1", nil); err != nil {
		t.Fatalf("a proxy of an API-created Dataplane: %v", err)
	}
	if _, err := connect(f, "api-1", dpMeta(t, dpDoc("api-1", "10.0.0.6", 8080, "web", ""))); !errors.Is(err, server.ErrInvalidNode) {
		t.Fatalf("a proxy disagreeing with its API-created Dataplane: %v", err)
	}
	if f.p.Connected() != 2 {
		t.Errorf("Connected = %d, want 2 (web-1, api-1)", f.p.Connected())
	}
}

// TestOnlyAffectedProxiesRegenerate: a change to one service's endpoints
// regenerates the proxies that call it, not the others.
func TestOnlyAffectedProxiesRegenerate(t *testing.T) {
	f := newFixture(t, time.Minute)
	for _, d := range []string{
		dpDoc("web-1", "10.0.0.1", 8080, "web", "backend"),
		dpDoc("web-2", "10.0.0.2", 8080, "web", "db"),
		dpDoc("backend-1", "10.0.1.1", 7070, "backend", ""),
		dpDoc("db-1", "10.0.2.1", 5432, "db", ""),
	} {
		r := prepared(t, d)
		if _, err := connect(f, r.Name, dpMeta(t, d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"web-1", "web-2", "backend-1", "db-1"} {
		harness.Eventually(t, 5*time.Second, n+" served", func() bool { return f.pusher.count("default."+n) >= 1 })
	}
	// Each proxy was served by a pass that followed its own registration,
	// so the last one's pass compiled all four: later passes find nothing
	// new.
	before := map[string]int{}
	for _, n := range []string{"web-1", "web-2", "backend-1", "db-1"} {
		before[n] = f.pusher.count("default." + n)
	}
	// A second backend instance (registered through the API).
	if _, _, err := f.inv.Put(prepared(t, dpDoc("backend-2", "10.0.1.2", 7070, "backend", "")), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 5*time.Second, "web-1 sees backend-2", func() bool {
		return len(f.pusher.endpoints("default.web-1", "backend")) == 2
	})
	if got := f.pusher.count("default.web-2"); got != before["web-2"] {
		t.Errorf("web-2 (calls db only) was regenerated: %d → %d", before["web-2"], got)
	}
	if got := f.pusher.count("default.db-1"); got != before["db-1"] {
		t.Errorf("db-1 (calls nothing) was regenerated: %d → %d", before["db-1"], got)
	}
}

// TestLifecycle: a self-registered Dataplane goes after its proxy has been
// gone for the grace period; one created through the API stays; a proxy
// back within the grace period keeps its Dataplane.
func TestLifecycle(t *testing.T) {
	f := newFixture(t, time.Hour) // the sweep is driven by hand below
	n, err := connect(f, "web-1", dpMeta(t, dpDoc("web-1", "10.0.0.1", 8080, "web", "")))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.inv.Put(prepared(t, dpDoc("api-1", "10.0.0.5", 8080, "web", "")), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := connect(f, "api-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := f.p.reg
	key := api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "web-1"}
	f.p.Registrar().Disconnect(n)
	f.p.Registrar().Disconnect(a)
	now := time.Now()
	reg.sweep(now.Add(30 * time.Minute))
	if _, ok := f.inv.Get(key); !ok {
		t.Fatal("removed before the grace period")
	}
	// Back within the grace period: it stays, however long it then lives.
	n, err = connect(f, "web-1", dpMeta(t, dpDoc("web-1", "10.0.0.1", 8080, "web", "")))
	if err != nil {
		t.Fatal(err)
	}
	reg.sweep(now.Add(3 * time.Hour))
	if _, ok := f.inv.Get(key); !ok {
		t.Fatal("removed while connected")
	}
	f.p.Registrar().Disconnect(n)
	reg.sweep(time.Now().Add(2 * time.Hour))
	if _, ok := f.inv.Get(key); ok {
		t.Fatal("still there after the grace period")
	}
	if _, ok := f.inv.Get(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "api-1"}); !ok {
		t.Fatal("an API-created Dataplane was removed")
	}
}

func TestAvailableServices(t *testing.T) {
	f := newFixture(t, time.Minute)
	if _, _, err := f.inv.Put(prepared(t, "type: ZoneIngress\nname: ingress\nzone: zone-1\nnetworking:\n  address: 10.0.9.1\n  port: 10001\n"), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dpDoc("web-1", "10.0.0.1", 8080, "web", ""), dpDoc("web-2", "10.0.0.2", 8080, "web", ""), dpDoc("db-1", "10.0.2.1", 5432, "db", "")} {
		if _, _, err := f.inv.Put(prepared(t, d), inventory.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 5*time.Second, "availableServices", func() bool {
		zi, _ := f.inv.Get(api.Key{Type: api.TypeZoneIngress, Name: "ingress"})
		as := zi.Spec.(*api.ZoneIngressSpec).AvailableServices
		return len(as) == 2 && as[0].Tags[api.TagService] == "db" && as[0].Instances == 1 && as[1].Tags[api.TagService] == "web" && as[1].Instances == 2
	})
}

// TestInsights: a proxy's streams and certificate become its
// DataplaneInsight: online while connected, counts by type, a NACK's
// message, offline after its stream ends; a stream this replica no longer
// has (a previous process) is closed.
func TestInsights(t *testing.T) {
	f := newFixture(t, time.Minute)
	n, err := connect(f, "web-1", dpMeta(t, dpDoc("web-1", "10.0.0.1", 8080, "web", "")))
	if err != nil {
		t.Fatal(err)
	}
	reg := f.p.reg
	reg.Responded(n, "type.googleapis.com/envoy.config.cluster.v3.Cluster")
	reg.Acked(n, "type.googleapis.com/envoy.config.cluster.v3.Cluster")
	reg.Responded(n, "type.googleapis.com/envoy.config.listener.v3.Listener")
	reg.Nacked(n, "type.googleapis.com/envoy.config.listener.v3.Listener", "bad listener")
	key := api.Key{Type: api.TypeDataplaneInsight, Mesh: "default", Name: "web-1"}
	insight := func() *api.DataplaneInsightSpec {
		r, ok := f.inv.Get(key)
		if !ok {
			return nil
		}
		return r.Spec.(*api.DataplaneInsightSpec)
	}
	harness.Eventually(t, 5*time.Second, "an online insight with the NACK", func() bool {
		i := insight()
		return i != nil && i.Online() && len(i.Subscriptions) == 1 &&
			i.Subscriptions[0].Status.Total.ResponsesRejected == 1 &&
			i.Subscriptions[0].Status.ByType["type.googleapis.com/envoy.config.listener.v3.Listener"].LastNackError == "bad listener"
	})
	if s := insight().Subscriptions[0]; s.ControlPlaneInstanceID != "r1" || s.Status.Total.ResponsesSent != 2 {
		t.Errorf("subscription %+v", s)
	}
	f.p.Registrar().Disconnect(n)
	harness.Eventually(t, 5*time.Second, "offline", func() bool { i := insight(); return i != nil && !i.Online() })

	// A live stream stored for this replica but unknown to it (it
	// restarted): closed.
	if _, _, err := f.inv.Put(prepared(t, dpDoc("ghost", "10.0.0.9", 8080, "web", "")), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := &api.DataplaneInsightSpec{Subscriptions: []api.DiscoverySubscription{{ID: "9", ControlPlaneInstanceID: "r1", ConnectTime: time.Now()}}}
	if _, err := f.inv.PutSystem([]*api.Resource{insightResource(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "ghost"}, stale)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ghost := api.Key{Type: api.TypeDataplaneInsight, Mesh: "default", Name: "ghost"}
	harness.Eventually(t, 5*time.Second, "the stale stream closed", func() bool {
		r, ok := f.inv.Get(ghost)
		return ok && !r.Spec.(*api.DataplaneInsightSpec).Online()
	})
	// Its Dataplane deleted (through the API): the insight goes too.
	if _, err := f.inv.Delete(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "ghost"}, 0); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 5*time.Second, "the deleted Dataplane's insight removed", func() bool {
		_, ok := f.inv.Get(ghost)
		return !ok
	})
}
