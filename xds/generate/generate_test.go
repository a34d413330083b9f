package generate

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

// locality is one LocalityLbEndpoints in short form.
type locality struct {
	Zone      string
	Priority  uint32
	Weight    uint32
	Endpoints []string // "ip:port/weight"
}

func localities(cla *endpoint.ClusterLoadAssignment) []locality {
	var out []locality
	for _, l := range cla.GetEndpoints() {
		x := locality{Zone: l.GetLocality().GetZone(), Priority: l.GetPriority(), Weight: l.GetLoadBalancingWeight().GetValue()}
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			x.Endpoints = append(x.Endpoints, fmt.Sprintf("%s/%d", hostPort(sa.GetAddress(), sa.GetPortValue()), e.GetLoadBalancingWeight().GetValue()))
		}
		out = append(out, x)
	}
	return out
}

func claOf(t *testing.T, m *Mesh, service string) *endpoint.ClusterLoadAssignment {
	t.Helper()
	s := m.services[service]
	if s == nil {
		t.Fatalf("mesh %s: no service %q (have %v)", m.name, service, m.Services())
	}
	return s.cla
}

func TestEndpoints(t *testing.T) {
	cases := []struct {
		name    string
		view    *MeshView
		service string
		want    []locality
	}{
		{
			// Unhealthy backend-2, zone-3's own dataplane (other network)
			// and zone-4 (disabled) and zone-5's ingress (disabled) are
			// absent; zone-3 is its two ingresses weighted 3 and 1.
			name: "locality aware", view: meshAView(true), service: "backend",
			want: []locality{
				{"zone-1", 0, 1, []string{"10.1.0.2:8080/1"}},
				{"zone-2", 1, 1, []string{"10.2.0.1:8080/1"}},
				{"zone-3", 1, 4, []string{"10.3.0.101:10001/1", "203.0.113.3:443/3"}},
			},
		},
		{
			name: "locality off", view: meshAView(false), service: "backend",
			want: []locality{
				{"zone-1", 0, 1, []string{"10.1.0.2:8080/1"}},
				{"zone-2", 0, 1, []string{"10.2.0.1:8080/1"}},
				{"zone-3", 0, 4, []string{"10.3.0.101:10001/1", "203.0.113.3:443/3"}},
			},
		},
		{
			name: "no local endpoint: remote at priority 0", view: meshAView(true), service: "reports_v1",
			want: []locality{
				{"zone-2", 0, 1, []string{"10.2.0.2:7000/1"}},
				{"zone-3", 0, 2, []string{"203.0.113.3:443/2"}},
			},
		},
		{
			name: "listed with no instance", view: meshAView(true), service: "gone",
			want: nil,
		},
		{
			name: "mesh b reads only its own availableServices", view: meshBView(), service: "backend",
			want: []locality{
				{"zone-1", 0, 1, []string{"10.1.1.2:8080/1"}},
				{"zone-2", 0, 1, []string{"10.2.1.1:8080/1"}},
				{"zone-3", 0, 5, []string{"203.0.113.3:443/5"}},
			},
		},
		{
			name: "zone on another network via ingress only; same address ingresses add up",
			view: &MeshView{
				Mesh: meshResource("a", true), LocalZone: "zone-1", Zones: map[string]Zone{"zone-3": {Network: "net-2"}},
				ZoneIngresses: []*api.Resource{
					zoneIngress("i1", "zone-3", "10.3.0.1", 1000, "198.51.100.1", 443, available("a", "x", "", 2)),
					zoneIngress("i2", "zone-3", "10.3.0.2", 1000, "198.51.100.1", 443, available("a", "x", "", 3)),
				},
				Dataplanes: []*api.Resource{dataplane("a", "x-1", "10.1.0.9", []api.DataplaneInbound{inbound(80, "x", "")}, nil)},
			},
			service: "x",
			want: []locality{
				{"zone-1", 0, 1, []string{"10.1.0.9:80/1"}},
				{"zone-3", 1, 5, []string{"198.51.100.1:443/5"}},
			},
		},
		{
			// Zones missing from the map: own networks, enabled.
			name: "unknown zones are networks of their own",
			view: &MeshView{
				Mesh: meshResource("a", true), LocalZone: "zone-1",
				ZoneIngresses: []*api.Resource{zoneIngress("i9", "zone-9", "10.9.0.1", 1000, "", 0, available("a", "x", "", 1))},
				Dataplanes: []*api.Resource{
					dataplane("a", "x-9", "10.9.0.2", []api.DataplaneInbound{inbound(80, "x", "")}, nil, inZone("zone-9")),
				},
			},
			service: "x",
			want:    []locality{{"zone-9", 0, 1, []string{"10.9.0.1:1000/1"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, tc.view)
			got := localities(claOf(t, m, tc.service))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("localities of %s:\n got %v\nwant %v", tc.service, got, tc.want)
			}
		})
	}
}

// TestIsolation: whatever mesh a's proxies get names nothing of mesh b, and
// the views refuse to mix meshes.
func TestIsolation(t *testing.T) {
	a := mustCompile(t, meshAView(true))
	b := mustCompile(t, meshBView())
	bOnly := []string{"10.1.1.", "10.2.1.", `"loadBalancingWeight":5`, "legacy", ".b.mesh"}
	for _, tc := range []struct {
		dp   *api.Resource
		kind Kind
	}{{webA, KindEnvoy}, {dbA, KindEnvoy}, {checkoutA, KindGRPC}} {
		res, err := a.Proxy(tc.dp, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		js := string(compactJSON(t, res))
		for _, s := range bOnly {
			if strings.Contains(js, s) {
				t.Errorf("%s (%s) of mesh a contains %q from mesh b", tc.dp.Name, tc.kind, s)
			}
		}
	}
	if _, err := a.Proxy(webB, KindEnvoy); err == nil || !strings.Contains(err.Error(), "not in Mesh") {
		t.Errorf("mesh a generated for a Dataplane of mesh b: err = %v", err)
	}
	v := meshAView(true)
	v.Dataplanes = append(v.Dataplanes, webB)
	if _, err := Compile(v); err == nil || !strings.Contains(err.Error(), "another mesh") {
		t.Errorf("Compile accepted a Dataplane of mesh b in mesh a's view: err = %v", err)
	}
	for _, s := range b.Services() {
		if s == "web" || s == "backend" || s == "legacy_svc_8080" {
			continue
		}
		t.Errorf("mesh b has service %q, which only mesh a has", s)
	}
}

func compactJSON(t *testing.T, r *Resources) []byte {
	t.Helper()
	var all []json.RawMessage
	for _, m := range toMessages(r.Listeners) {
		all = append(all, mustProtoJSON(t, m))
	}
	for _, m := range toMessages(r.Routes) {
		all = append(all, mustProtoJSON(t, m))
	}
	for _, m := range toMessages(r.Clusters) {
		all = append(all, mustProtoJSON(t, m))
	}
	for _, m := range toMessages(r.Endpoints) {
		all = append(all, mustProtoJSON(t, m))
	}
	b, err := json.Marshal(all) // compacts
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustProtoJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSharing: the per-service protos are compiled once and shared by
// pointer by every proxy of the Mesh, Envoy and gRPC alike.
func TestSharing(t *testing.T) {
	m := mustCompile(t, meshAView(true))
	web, err := m.Proxy(webA, KindEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	other := dataplane("a", "web-2", "10.1.0.7", []api.DataplaneInbound{inbound(8080, "web", "http")},
		[]api.DataplaneOutbound{outbound(20001, "backend")})
	web2, err := m.Proxy(other, KindEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	grpc, err := m.Proxy(checkoutA, KindGRPC)
	if err != nil {
		t.Fatal(err)
	}
	find := func(r *Resources, name string) (any, any, any) {
		var c, e, rc any
		for _, x := range r.Clusters {
			if x.GetName() == name {
				c = x
			}
		}
		for _, x := range r.Endpoints {
			if x.GetClusterName() == name {
				e = x
			}
		}
		for _, x := range r.Routes {
			if x.GetName() == name {
				rc = x
			}
		}
		return c, e, rc
	}
	c1, e1, r1 := find(web, "backend")
	c2, e2, r2 := find(web2, "backend")
	c3, e3, r3 := find(grpc, "backend")
	if c1 == nil || e1 == nil || r1 == nil {
		t.Fatal("web-1 has no backend cluster, CLA or route")
	}
	if c1 != c2 || c1 != c3 || e1 != e2 || e1 != e3 || r1 != r2 || r1 != r3 {
		t.Errorf("backend's Cluster/CLA/route are not the same objects in two proxies: %p %p %p / %p %p %p / %p %p %p",
			c1, c2, c3, e1, e2, e3, r1, r2, r3)
	}
	// The gRPC client side is the Mesh's, not a copy.
	g2, err := m.Proxy(dataplane("a", "payments-1", "10.1.0.5", []api.DataplaneInbound{inbound(9000, "payments", "grpc")}, nil, grpcApp), KindGRPC)
	if err != nil {
		t.Fatal(err)
	}
	if g2.Listeners[0] != grpc.Listeners[0] {
		t.Errorf("API listener %q is not shared", g2.Listeners[0].GetName())
	}
}

// TestInvalidInput: bad input gives an error naming it, never a panic.
func TestInvalidInput(t *testing.T) {
	m := mustCompile(t, meshAView(true))
	noService := dataplane("a", "bad-1", "10.1.0.50", []api.DataplaneInbound{{Port: 80, Tags: map[string]string{"version": "1"}}}, nil)
	hostname := dataplane("a", "host-1", "host.example", []api.DataplaneInbound{inbound(80, "h", "http")}, nil)
	cases := []struct {
		name string
		gen  func() (*Resources, error)
		want string
	}{
		{"nil dataplane", func() (*Resources, error) { return m.Proxy(nil, KindEnvoy) }, "nil Dataplane"},
		{"no service tag", func() (*Resources, error) { return m.Proxy(noService, KindEnvoy) }, `dataplane a/bad-1: networking.inbound[0].tags: must contain the "kuma.io/service" tag`},
		{"wrong spec", func() (*Resources, error) {
			return m.Proxy(&api.Resource{Meta: api.Meta{Mesh: "a", Name: "x"}, Spec: &api.MeshSpec{}}, KindEnvoy)
		}, "not *api.DataplaneSpec"},
		{"hostname inbound (envoy)", func() (*Resources, error) { return m.Proxy(hostname, KindEnvoy) }, `networking.inbound[0]: address "host.example" must be an IP`},
		{"hostname inbound (grpc)", func() (*Resources, error) { return m.Proxy(hostname, KindGRPC) }, `networking.inbound[0]: address "host.example" must be an IP`},
		{"other zone", func() (*Resources, error) {
			return m.Proxy(dataplane("a", "z", "10.2.0.9", []api.DataplaneInbound{inbound(80, "z", "")}, nil, inZone("zone-2")), KindEnvoy)
		}, `is in zone "zone-2"`},
		{"unknown kind", func() (*Resources, error) { return m.Proxy(webA, Kind(7)) }, "unknown proxy kind"},
		{"builtin gateway", func() (*Resources, error) {
			gw := dataplane("a", "gw", "10.1.0.60", nil, nil)
			gw.Spec.(*api.DataplaneSpec).Networking.Gateway = &api.DataplaneGateway{Type: api.GatewayBuiltin, Tags: map[string]string{api.TagService: "gw"}}
			return m.Proxy(gw, KindEnvoy)
		}, "BUILTIN"},
		{"ingress of another zone", func() (*Resources, error) { return Ingress(ingresses()[1], []*Mesh{m}) }, `compiled for zone "zone-1", not the ingress's zone "zone-3"`},
		{"ingress nil", func() (*Resources, error) { return Ingress(nil, []*Mesh{m}) }, "nil resource"},
		{"compile nil", func() (*Resources, error) { _, err := Compile(&MeshView{}); return nil, err }, "MeshView.Mesh must be set"},
		{"compile no zone", func() (*Resources, error) {
			_, err := Compile(&MeshView{Mesh: meshResource("a", false)})
			return nil, err
		}, "LocalZone must be set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.gen()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if res != nil {
				t.Errorf("resources returned with an error")
			}
		})
	}

	// Compile skips (and reports) invalid Dataplanes and non-IP endpoints.
	v := meshAView(true)
	v.Dataplanes = append(v.Dataplanes, noService, hostname)
	mm := mustCompile(t, v)
	probs := fmt.Sprint(mm.Problems())
	for _, want := range []string{"dataplane a/bad-1", `dataplane a/host-1: networking.inbound[0]: address "host.example" is not an IP`} {
		if !strings.Contains(probs, want) {
			t.Errorf("Problems() = %s, want it to mention %q", probs, want)
		}
	}
}

func TestKindOf(t *testing.T) {
	if k := KindOf(checkoutA); k != KindGRPC {
		t.Errorf("KindOf(grpc-labelled) = %v", k)
	}
	if k := KindOf(webA); k != KindEnvoy {
		t.Errorf("KindOf(unlabelled) = %v", k)
	}
	if k := KindOf(nil); k != KindEnvoy {
		t.Errorf("KindOf(nil) = %v", k)
	}
}

func TestServiceSNI(t *testing.T) {
	cases := []struct{ service, mesh, want string }{
		{"backend", "default", "backend.default.mesh"},
		{"backend_kuma-demo_svc_8080", "default", "backend-kuma-demo-svc-8080-"},
		{"Backend", "m", "backend-"},
		{"___", "m", "svc-"},
		{strings.Repeat("x_", 200), "prod.eu", "x-x-x-"},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		got := ServiceSNI(tc.service, tc.mesh)
		if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "."+tc.mesh+".mesh") {
			t.Errorf("ServiceSNI(%q, %q) = %q, want prefix %q", tc.service, tc.mesh, got, tc.want)
		}
		if !api.IsDNSSubdomain(got, 253) {
			t.Errorf("ServiceSNI(%q, %q) = %q is not a valid host name", tc.service, tc.mesh, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("ServiceSNI collision: %q and %q", prev, tc.service)
		}
		seen[got] = tc.service
	}
	if ServiceSNI("a_b", "m") == ServiceSNI("a-b_", "m") {
		t.Error("different services share an SNI")
	}
}

// TestConcurrentProxies: a compiled Mesh serves proxies concurrently, and
// the shared protos can be marshalled concurrently (as the xDS server does).
func TestConcurrentProxies(t *testing.T) {
	m := mustCompile(t, meshAView(true))
	done := make(chan error)
	for i := range 8 {
		go func() {
			dp, kind := webA, KindEnvoy
			if i%2 == 1 {
				dp, kind = checkoutA, KindGRPC
			}
			r, err := m.Proxy(dp, kind)
			if err == nil {
				for _, x := range r.ByType() {
					for _, res := range x {
						if _, err = proto.Marshal(res); err != nil {
							break
						}
					}
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestCompileFrom: a recompilation keeps the protos of unchanged services
// (same pointers) and names the services that changed.
func TestCompileFrom(t *testing.T) {
	view := meshAView(true)
	first := mustCompile(t, view)
	if len(first.ChangedServices()) != len(first.Services()) {
		t.Errorf("a first compilation changes every service: %v of %v", first.ChangedServices(), first.Services())
	}
	same, err := CompileFrom(meshAView(true), first)
	if err != nil {
		t.Fatal(err)
	}
	if got := same.ChangedServices(); len(got) != 0 {
		t.Errorf("recompiling the same view changed %v", got)
	}
	p1, _ := first.Proxy(webA, KindEnvoy)
	p2, _ := same.Proxy(webA, KindEnvoy)
	served := map[string]bool{}
	for _, name := range first.Services() {
		served[name] = true
	}
	for i := range p1.Clusters {
		if served[p1.Clusters[i].GetName()] && p1.Clusters[i] != p2.Clusters[i] {
			t.Errorf("cluster %s is a new object after an unchanged recompilation", p1.Clusters[i].GetName())
		}
	}

	// One more backend endpoint: only backend changes.
	changed := meshAView(true)
	changed.Dataplanes = append(changed.Dataplanes, dataplane("a", "backend-9", "10.1.0.99", []api.DataplaneInbound{inbound(7070, "backend", "http")}, nil))
	next, err := CompileFrom(changed, same)
	if err != nil {
		t.Fatal(err)
	}
	if got := next.ChangedServices(); len(got) != 1 || got[0] != "backend" {
		t.Errorf("ChangedServices = %v, want [backend]", got)
	}
	if !next.ServiceChanged("backend") || next.ServiceChanged("web") {
		t.Error("ServiceChanged disagrees with ChangedServices")
	}
	// Removing a service's only Dataplanes: it is a change too.
	var fewer []*api.Resource
	for _, dp := range meshAView(true).Dataplanes {
		if dp.Name != "checkout-1" {
			fewer = append(fewer, dp)
		}
	}
	removed := meshAView(true)
	removed.Dataplanes = fewer
	after, err := CompileFrom(removed, first)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ServiceChanged("checkout") {
		t.Errorf("a service whose instances left is not changed: %v", after.ChangedServices())
	}
}

// TestOutboundListenersShared: two proxies with the same outbound (address,
// port, service) get the same listener object.
func TestOutboundListenersShared(t *testing.T) {
	m := mustCompile(t, meshAView(true))
	a := dataplane("a", "web-7", "10.1.0.70", []api.DataplaneInbound{inbound(8080, "web", "http")}, []api.DataplaneOutbound{outbound(20001, "backend")})
	b := dataplane("a", "web-8", "10.1.0.80", []api.DataplaneInbound{inbound(8080, "web", "http")}, []api.DataplaneOutbound{outbound(20001, "backend")})
	ra, err := m.Proxy(a, KindEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := m.Proxy(b, KindEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	find := func(r *Resources) any {
		for _, l := range r.Listeners {
			if l.GetName() == OutboundListenerName("127.0.0.1", 20001) {
				return l
			}
		}
		return nil
	}
	if la, lb := find(ra), find(rb); la == nil || la != lb {
		t.Errorf("outbound listeners %p and %p: want one shared object", la, lb)
	}
}
