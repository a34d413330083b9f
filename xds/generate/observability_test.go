package generate

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

// A Mesh that defines backends but enables none, and has no TrafficTrace
// or TrafficLog, produces exactly what a Mesh without backends does, for
// every kind of proxy (the goldens of meshes a, b and s, which have no
// backends, are unchanged too).
func TestObservabilityNoneWithoutBackends(t *testing.T) {
	bare := mustCompile(t, meshOView(nil))
	defined := mustCompile(t, meshOView(withoutMetrics(meshOSpec())))
	if len(defined.Problems()) != 0 {
		t.Fatalf("problems: %v", defined.Problems())
	}
	for _, dp := range []*api.Resource{webO, backendO, dbO} {
		for _, kind := range []Kind{KindEnvoy, KindGRPC} {
			a, err := bare.Proxy(dp, kind)
			if err != nil {
				t.Fatal(err)
			}
			b, err := defined.Proxy(dp, kind)
			if err != nil {
				t.Fatal(err)
			}
			if ga, gb := goldenJSON(t, a), goldenJSON(t, b); !bytes.Equal(ga, gb) {
				t.Errorf("%s (%v): backends without use change the resources:\n%s\nvs\n%s", dp.Name, kind, ga, gb)
			}
			if s := string(goldenJSON(t, b)); strings.Contains(s, "prometheus") || strings.Contains(s, "tracing") || strings.Contains(s, "accessLog") {
				t.Errorf("%s (%v): observability resources without backends:\n%s", dp.Name, kind, s)
			}
		}
	}
}

// Proxyless gRPC applications get no stats listener, tracing nor access
// logs: their resources are those of a Mesh without backends.
func TestObservabilityNotForGRPC(t *testing.T) {
	bare := mustCompile(t, meshOView(nil))
	v := meshOView(meshOSpec())
	v.TrafficTraces = []*api.Resource{newTrafficTrace("all", "", svcTags("*"))}
	v.TrafficLogs = []*api.Resource{newTrafficLog("all", "", svcTags("*"), svcTags("*"))}
	full := mustCompile(t, v)
	for _, dp := range []*api.Resource{webO, backendO} {
		a, err := bare.Proxy(dp, KindGRPC)
		if err != nil {
			t.Fatal(err)
		}
		b, err := full.Proxy(dp, KindGRPC)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(goldenJSON(t, a), goldenJSON(t, b)) {
			t.Errorf("%s: a gRPC proxy's resources depend on observability", dp.Name)
		}
	}
}

func listenerNames(r *Resources) []string {
	var out []string
	for _, l := range r.Listeners {
		out = append(out, l.Name)
	}
	return out
}

func clusterByName(r *Resources, name string) bool {
	for _, c := range r.Clusters {
		if c.Name == name {
			return true
		}
	}
	return false
}

var gatewayO = func() *api.Resource {
	dp := dataplane("o", "gw-1", "gw.example", nil, []api.DataplaneOutbound{outbound(10001, "backend")})
	dp.Spec.(*api.DataplaneSpec).Networking.Gateway = &api.DataplaneGateway{Type: api.GatewayDelegated, Tags: svcTags("gw")}
	return dp
}()

func TestMetricsOverride(t *testing.T) {
	prom := func(port uint32) *api.MetricsBackend {
		return &api.MetricsBackend{Type: api.MetricsPrometheus, Conf: &api.PrometheusConf{Port: port}}
	}
	tests := []struct {
		name string
		spec *api.MeshSpec
		dp   *api.Resource
		opts ProxyOptions
		want string // stats listener; "" none
		err  string
	}{
		{name: "mesh", spec: meshOSpec(), dp: webO, want: "prometheus:10.7.0.1:5670"},
		{name: "mesh off", spec: withoutMetrics(meshOSpec()), dp: webO},
		{name: "no backends", dp: webO},
		// A Dataplane's override alone turns metrics on (defaults: /metrics).
		{name: "override without mesh", dp: withMetricsOverride(webO, prom(9100)), want: "prometheus:10.7.0.1:9100"},
		{name: "override with mesh off", spec: withoutMetrics(meshOSpec()), dp: withMetricsOverride(webO, prom(9100)), want: "prometheus:10.7.0.1:9100"},
		// A delegated gateway at a host name: bound to every address.
		{name: "host name address", spec: meshOSpec(), dp: gatewayO, want: "prometheus:0.0.0.0:5670"},
		{name: "custom admin port", spec: meshOSpec(), dp: webO, opts: ProxyOptions{AdminPort: 19000}, want: "prometheus:10.7.0.1:5670"},
		{name: "port taken by an inbound", spec: meshOSpec(), dp: withMetricsOverride(webO, prom(8080)), err: "port 8080 is taken by networking.inbound[0]"},
		// 10.7.0.1:10001 and 127.0.0.1:10001 are different sockets...
		{name: "outbound port on another address", spec: meshOSpec(), dp: withMetricsOverride(webO, prom(10001)), want: "prometheus:10.7.0.1:10001"},
		// ...but 0.0.0.0:10001 takes 127.0.0.1:10001.
		{name: "port taken by an outbound", spec: meshOSpec(), dp: withMetricsOverride(gatewayO, prom(10001)), err: "port 10001 is taken by networking.outbound[0]"},
		{name: "providedTLS", spec: func() *api.MeshSpec {
			s := meshOSpec()
			s.Metrics.Backends[0].Conf.TLS = &api.PrometheusTLS{Mode: api.PrometheusTLSProvidedTLS}
			return s
		}(), dp: webO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, meshOView(tc.spec))
			res, err := m.ProxyWith(tc.dp, KindEnvoy, tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, n := range listenerNames(res) {
				if strings.HasPrefix(n, prometheusPrefix) {
					got = n
				}
			}
			if got != tc.want {
				t.Errorf("stats listener = %q, want %q (listeners %v)", got, tc.want, listenerNames(res))
			}
			if clusterByName(res, AdminClusterName) != (tc.want != "") {
				t.Errorf("admin cluster present = %v, want %v", !(tc.want != ""), tc.want != "")
			}
			if tc.opts.AdminPort != 0 {
				for _, c := range res.Clusters {
					if c.Name == AdminClusterName {
						if p := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); p != tc.opts.AdminPort {
							t.Errorf("admin port = %d, want %d", p, tc.opts.AdminPort)
						}
					}
				}
			}
		})
	}
	// providedTLS on the Mesh is reported.
	s := meshOSpec()
	s.Metrics.Backends[0].Conf.TLS = &api.PrometheusTLS{Mode: api.PrometheusTLSProvidedTLS}
	if p := mustCompile(t, meshOView(s)).Problems(); len(p) != 1 || !strings.Contains(p[0].Error(), "providedTLS") {
		t.Errorf("problems = %v, want the providedTLS one", p)
	}
}

// Tracing: the TrafficTrace of greatest rank applies; outbound filters are
// variants shared by the proxies that need the same, and the services'
// shared filters are never modified.
func TestTracingSelectionAndSharing(t *testing.T) {
	web2 := dataplane("o", "web-2", "10.7.0.4",
		[]api.DataplaneInbound{inbound(8080, "web", "http")},
		[]api.DataplaneOutbound{outbound(10001, "backend")})
	v := meshOView(withoutMetrics(meshOSpec()))
	v.Dataplanes = append(v.Dataplanes, web2)
	v.TrafficTraces = []*api.Resource{
		newTrafficTrace("all", "", svcTags("*")),
		// More specific for web: wins over "all".
		newTrafficTrace("web-ip", "zipkin-ip", svcTags("web")),
	}
	m := mustCompile(t, v)
	shared := map[string][]byte{}
	for name, s := range m.services {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.outbound)
		if err != nil {
			t.Fatal(err)
		}
		shared[name] = b
	}
	outboundFilter := func(r *Resources, port uint32) *listener.Filter {
		for _, l := range r.Listeners {
			if l.Name == OutboundListenerName("127.0.0.1", port) {
				return l.FilterChains[0].Filters[0]
			}
		}
		t.Fatalf("no outbound listener on %d", port)
		return nil
	}
	collector := func(r *Resources) string {
		for _, c := range r.Clusters {
			if strings.HasPrefix(c.Name, tracingPrefix) {
				return c.Name
			}
		}
		return ""
	}

	var wg sync.WaitGroup
	results := make([]*Resources, 4)
	errs := make([]error, 4)
	for i, dp := range []*api.Resource{webO, web2, backendO, dbO} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = m.Proxy(dp, KindEnvoy)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	web1, web2r, backend, db := results[0], results[1], results[2], results[3]
	if got := collector(web1); got != TracingClusterName("zipkin-ip") {
		t.Errorf("web-1 traces to %q, want zipkin-ip", got)
	}
	if got := collector(backend); got != TracingClusterName("zipkin") {
		t.Errorf("backend-1 traces to %q, want zipkin", got)
	}
	// db-1 has a TCP inbound and no outbound: nothing to trace, no cluster.
	if got := collector(db); got != "" {
		t.Errorf("db-1 has tracing cluster %q", got)
	}
	a, b := outboundFilter(web1, 10001), outboundFilter(web2r, 10001)
	if a != b {
		t.Error("web-1 and web-2 do not share their traced outbound filter to backend")
	}
	if a == m.services["backend"].outbound {
		t.Error("the traced outbound filter is the service's shared one")
	}
	// TCP outbounds carry no tracing: the shared filter itself.
	if outboundFilter(web1, 10002) != m.services["db"].outbound {
		t.Error("web-1's tcp outbound to db is not the shared filter")
	}
	for name, s := range m.services {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s.outbound)
		if !bytes.Equal(b, shared[name]) {
			t.Errorf("service %q: shared outbound filter modified", name)
		}
	}

	// Without its collector's cluster the traced set is invalid.
	broken := *web1
	broken.Clusters = nil
	for _, c := range web1.Clusters {
		if !strings.HasPrefix(c.Name, tracingPrefix) {
			broken.Clusters = append(broken.Clusters, c)
		}
	}
	if err := Validate(&broken); err == nil || !strings.Contains(err.Error(), `cluster "tracing:zipkin-ip", which is not in the set`) {
		t.Errorf("Validate without the collector cluster: %v", err)
	}
	if err := Validate(web1); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestTracingBackends(t *testing.T) {
	tests := []struct {
		url, endpoint, host, typ string
		port                     uint32
		tls                      bool
	}{
		{"http://zipkin:9411/api/v2/spans", "/api/v2/spans", "zipkin", "STRICT_DNS", 9411, false},
		{"http://10.8.0.5:9411", zipkinDefaultPath, "10.8.0.5", "STATIC", 9411, false},
		{"https://collector.example/spans?x=1", "/spans?x=1", "collector.example", "STRICT_DNS", 443, true},
		{"http://[fd00::5]/z", "/z", "fd00::5", "STATIC", 80, false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			s := withoutMetrics(meshOSpec())
			s.Tracing.Backends[0].Conf.URL = tc.url
			v := meshOView(s)
			v.TrafficTraces = []*api.Resource{newTrafficTrace("all", "", svcTags("*"))}
			m := mustCompile(t, v)
			if len(m.Problems()) != 0 {
				t.Fatal(m.Problems())
			}
			res, err := m.Proxy(webO, KindEnvoy)
			if err != nil {
				t.Fatal(err)
			}
			tr := m.obs.tracers["zipkin"]
			sa := tr.cluster.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != tc.host || sa.GetPortValue() != tc.port || tr.cluster.GetType().String() != tc.typ || (tr.cluster.TransportSocket != nil) != tc.tls {
				t.Errorf("cluster %v", tr.cluster)
			}
			if s := string(goldenJSON(t, res)); !strings.Contains(s, `"collectorEndpoint": "`+tc.endpoint+`"`) {
				t.Errorf("collector endpoint %q not in %s", tc.endpoint, s)
			}
		})
	}
}

func TestObservabilityProblems(t *testing.T) {
	v := meshOView(withoutMetrics(meshOSpec()))
	v.TrafficTraces = []*api.Resource{
		newTrafficTrace("unknown-backend", "nope", svcTags("web")),
		newTrafficTrace("no-selectors", ""),
	}
	v.TrafficLogs = []*api.Resource{
		newTrafficLog("to-tcp", "tcp", svcTags("web"), svcTags("*")),
	}
	m := mustCompile(t, v)
	var text []string
	for _, p := range m.Problems() {
		text = append(text, p.Error())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		`traffic trace unknown-backend: backend "nope" is not among`,
		`traffic trace no-selectors: skipped: selectors: must not be empty`,
		`traffic log to-tcp: logging backend "tcp" of type "tcp" is not generated`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	// Skipped policies generate nothing.
	res, err := m.Proxy(webO, KindEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(goldenJSON(t, res)); strings.Contains(s, "tracing") || strings.Contains(s, "accessLog") {
		t.Errorf("skipped policies generated something:\n%s", s)
	}
	// A policy of another Mesh is a caller bug.
	v.TrafficLogs = append(v.TrafficLogs, &api.Resource{Meta: api.Meta{Type: api.TypeTrafficLog, Mesh: "other", Name: "x"}, Spec: &api.TrafficLogSpec{}})
	if _, err := Compile(v); err == nil || !strings.Contains(err.Error(), "belongs to another mesh") {
		t.Errorf("Compile with a foreign TrafficLog: %v", err)
	}
}

// Observability settings are Mesh-wide: a change re-generates every proxy
// of the Mesh (MeshWideChanged) but no service's shared protos.
func TestObservabilityMeshWide(t *testing.T) {
	// Tracing for web, web's traffic logged to the file backend.
	view := func() *MeshView {
		v := meshOTracing()
		v.TrafficLogs = []*api.Resource{newTrafficLog("l", "", svcTags("web"), svcTags("*"))}
		return v
	}
	prev := mustCompile(t, view())
	same, err := CompileFrom(view(), prev)
	if err != nil {
		t.Fatal(err)
	}
	if same.MeshWideChanged() || len(same.ChangedServices()) != 0 {
		t.Errorf("unchanged inputs: MeshWideChanged %v, ChangedServices %v", same.MeshWideChanged(), same.ChangedServices())
	}
	if same.obs.tracers["zipkin"].cluster != prev.obs.tracers["zipkin"].cluster || same.obs.admin != prev.obs.admin {
		t.Error("unchanged collector or admin cluster not reused")
	}
	tests := []struct {
		name     string
		change   func(v *MeshView)
		meshWide bool
	}{
		{"sampling", func(v *MeshView) { *v.Mesh.Spec.(*api.MeshSpec).Tracing.Backends[0].Sampling = 50 }, true},
		{"metrics on", func(v *MeshView) { v.Mesh.Spec.(*api.MeshSpec).Metrics.EnabledBackend = "prom" }, true},
		{"logging backend", func(v *MeshView) {
			v.Mesh.Spec.(*api.MeshSpec).Logging.Backends[0].Conf.Path = "/var/log/other.log"
		}, true},
		{"traffic log removed", func(v *MeshView) { v.TrafficLogs = nil }, true},
		{"traffic trace selectors", func(v *MeshView) {
			v.TrafficTraces = []*api.Resource{newTrafficTrace("trace-web", "", svcTags("backend"))}
		}, true},
		// Backends no policy uses change nothing.
		{"unused tracing backend", func(v *MeshView) {
			v.Mesh.Spec.(*api.MeshSpec).Tracing.Backends[1].Conf.URL = "http://10.8.0.6:9411"
		}, false},
		{"unused logging backend", func(v *MeshView) {
			v.Mesh.Spec.(*api.MeshSpec).Logging.Backends[1].Conf.Path = "/var/log/x.log"
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := view()
			tc.change(v)
			m, err := CompileFrom(v, prev)
			if err != nil {
				t.Fatal(err)
			}
			if m.MeshWideChanged() != tc.meshWide {
				t.Errorf("MeshWideChanged = %v, want %v", m.MeshWideChanged(), tc.meshWide)
			}
			if c := m.ChangedServices(); len(c) != 0 {
				t.Errorf("ChangedServices = %v, want none", c)
			}
		})
	}
}
