package generate

import (
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// validSet is a small consistent set: an outbound HTTP listener (RDS "svc"),
// its route, EDS cluster and CLA, and a tcp listener to the same cluster.
func validSet(t *testing.T) *Resources {
	t.Helper()
	h, err := hcmRDS("svc", "svc")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tcpProxy("svc", "svc")
	if err != nil {
		t.Fatal(err)
	}
	c, err := edsCluster("svc", "grpc")
	if err != nil {
		t.Fatal(err)
	}
	return &Resources{
		Listeners: []*listener.Listener{
			socketListener("outbound:127.0.0.1:1", "127.0.0.1", 1, core.TrafficDirection_OUTBOUND, networkFilter(wellknown.HTTPConnectionManager, h)),
			socketListener("outbound:127.0.0.1:2", "127.0.0.1", 2, core.TrafficDirection_OUTBOUND, networkFilter(wellknown.TCPProxy, tp)),
		},
		Routes:   []*route.RouteConfiguration{serviceRoute("svc")},
		Clusters: []*cluster.Cluster{c},
		Endpoints: []*endpoint.ClusterLoadAssignment{buildCLA("svc", []ep{
			{zone: "z1", ip: "10.0.0.1", port: 80, weight: 1},
			{zone: "z2", ip: "10.0.0.2", port: 80, weight: 2},
		}, "z1", true)},
	}
}

// setHCM replaces the first listener's HCM.
func setHCM(t *testing.T, r *Resources, edit func(*hcm.HttpConnectionManager)) {
	t.Helper()
	f := r.Listeners[0].FilterChains[0].Filters[0]
	h := &hcm.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	a, err := anypb.New(h)
	if err != nil {
		t.Fatal(err)
	}
	f.ConfigType = &listener.Filter_TypedConfig{TypedConfig: a}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, r *Resources)
		want    []string // substrings of the error; none means valid
	}{
		{"valid", func(*testing.T, *Resources) {}, nil},
		// Only visible by unpacking the Any and checking its filters.
		{"HCM without router", func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcm.HttpConnectionManager) { h.HttpFilters = nil })
		}, []string{`listener "outbound:127.0.0.1:1": filter_chains[0].filters[0] (envoy.filters.network.http_connection_manager)`, "must end with the router filter"}},
		{"router not last", func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcm.HttpConnectionManager) { h.HttpFilters = append(h.HttpFilters, h.HttpFilters[0]) })
		}, []string{"http_filters[0] (envoy.filters.http.router): the router filter must be last"}},
		// Only visible by running ValidateAll on the unpacked HCM.
		{"HCM without stat_prefix", func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcm.HttpConnectionManager) { h.StatPrefix = "" })
		}, []string{"HttpConnectionManager", "StatPrefix"}},
		{"RDS not over ADS", func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcm.HttpConnectionManager) {
				h.GetRds().ConfigSource = &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_PathConfigSource{PathConfigSource: &core.PathConfigSource{Path: "/etc/r.yaml"}}}
			})
		}, []string{"rds.config_source: must be ads or self"}},
		{"RDS name missing", func(t *testing.T, r *Resources) { r.Routes = nil },
			[]string{`listener "outbound:127.0.0.1:1": refers to route configuration "svc", which is not in the set`}},
		{"cluster missing", func(t *testing.T, r *Resources) { r.Clusters = nil }, []string{
			`listener "outbound:127.0.0.1:2": refers to cluster "svc"`,
			`route configuration "svc": refers to cluster "svc"`,
		}},
		{"CLA missing", func(t *testing.T, r *Resources) { r.Endpoints = nil },
			[]string{`cluster "svc": EDS refers to cluster load assignment "svc", which is not in the set`}},
		{"unknown Any", func(t *testing.T, r *Resources) {
			r.Listeners[1].FilterChains[0].Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}
		}, []string{`filters[0] (envoy.filters.network.tcp_proxy): typed_config (type.googleapis.com/no.such.Type): cannot unpack`}},
		{"tcp_proxy without stat_prefix", func(t *testing.T, r *Resources) {
			a, _ := tcpProxy("", "svc")
			r.Listeners[1].FilterChains[0].Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: a}
		}, []string{"TcpProxy", "StatPrefix"}},
		{"listener ValidateAll", func(t *testing.T, r *Resources) { r.Listeners[0].Address.GetSocketAddress().Address = "" },
			[]string{`listener "outbound:127.0.0.1:1"`, "Address"}},
		{"duplicate names", func(t *testing.T, r *Resources) { r.Listeners[1].Name = r.Listeners[0].Name },
			[]string{`listener "outbound:127.0.0.1:1": duplicate name`}},
		{"locality without weight", func(t *testing.T, r *Resources) { r.Endpoints[0].Endpoints[0].LoadBalancingWeight = nil },
			[]string{`cluster load assignment "svc": endpoints[0]: load_balancing_weight: must be > 0`}},
		{"priority gap", func(t *testing.T, r *Resources) { r.Endpoints[0].Endpoints[1].Priority = 2 },
			[]string{"priority 1 is missing"}},
		{"duplicate endpoint", func(t *testing.T, r *Resources) {
			r.Endpoints[0].Endpoints[1].LbEndpoints = append(r.Endpoints[0].Endpoints[1].LbEndpoints, r.Endpoints[0].Endpoints[0].LbEndpoints[0])
		}, []string{"duplicate endpoint address 10.0.0.1:80"}},
		{"zero endpoint weight", func(t *testing.T, r *Resources) {
			r.Endpoints[0].Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
		}, []string{"LoadBalancingWeight"}},
		{"cluster protocol options", func(t *testing.T, r *Resources) {
			r.Clusters[0].TypedExtensionProtocolOptions[httpProtocolOptionsKey] = &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}
		}, []string{`cluster "svc": typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`}},
		{"api listener not an HCM", func(t *testing.T, r *Resources) {
			a, _ := tcpProxy("svc", "svc")
			r.Listeners = append(r.Listeners, &listener.Listener{Name: "svc", ApiListener: &listener.ApiListener{ApiListener: a}})
		}, []string{`listener "svc": api_listener.api_listener: must be an HttpConnectionManager`}},
		{"socket listener without filter chains", func(t *testing.T, r *Resources) { r.Listeners[1].FilterChains = nil },
			[]string{"filter_chains: must not be empty"}},
		{"inline route to a missing cluster", func(t *testing.T, r *Resources) {
			setHCM(t, r, func(h *hcm.HttpConnectionManager) {
				h.RouteSpecifier = &hcm.HttpConnectionManager_RouteConfig{RouteConfig: inboundRoute("svc", "local:127.0.0.1:9")}
			})
		}, []string{`refers to cluster "local:127.0.0.1:9"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := validSet(t)
			tc.breakIt(t, r)
			err := Validate(r)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it; want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestGeneratedValidate: every golden proxy passes the full Validate too
// (Proxy skips the deep checks of the shared protos).
func TestGeneratedValidate(t *testing.T) {
	a := mustCompile(t, meshAView(true))
	b := mustCompile(t, meshBView())
	for _, gen := range []func() (*Resources, error){
		func() (*Resources, error) { return a.Proxy(webA, KindEnvoy) },
		func() (*Resources, error) { return a.Proxy(checkoutA, KindGRPC) },
		func() (*Resources, error) { return b.Proxy(webB, KindEnvoy) },
		func() (*Resources, error) { return Ingress(ingresses()[0], []*Mesh{a, b}) },
	} {
		r, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(r); err != nil {
			t.Error(err)
		}
		if got := len(r.ByType()); got != 5 { // listeners, routes, clusters, endpoints, secrets
			t.Errorf("ByType has %d types", got)
		}
	}
}
