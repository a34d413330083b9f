package generate

import (
	"fmt"
	"testing"

	"github.com/meshfed/meshfed/api"
)

// benchView is a Mesh of 500 services and 10,000 Dataplanes (20 per
// service): 7,000 in the local zone, 3,000 in a zone on the same network,
// and every service also behind the ingress of a zone on another network.
// Each Dataplane has one inbound and 5 outbounds; protocols cycle through
// http, grpc and tcp.
func benchView() *MeshView {
	const services, dataplanes = 500, 10000
	protocols := []string{"http", "grpc", "tcp"}
	svc := func(i int) string { return fmt.Sprintf("svc-%03d", i%services) }
	v := &MeshView{
		Mesh:      meshResource("bench", true),
		LocalZone: "zone-1",
		Zones:     map[string]Zone{"zone-1": {Network: "n1"}, "zone-2": {Network: "n1"}, "zone-3": {Network: "n2"}},
	}
	for i := range dataplanes {
		var outs []api.DataplaneOutbound
		for j := 1; j <= 5; j++ {
			outs = append(outs, outbound(uint32(10000+j), svc(i+j*7)))
		}
		var opts []dpOpt
		if i >= 7000 {
			opts = append(opts, inZone("zone-2"))
		}
		ip := fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256+1)
		if i%256 == 255 {
			ip = fmt.Sprintf("10.%d.%d.%d", 100+i/65536, (i/256)%256, 1)
		}
		v.Dataplanes = append(v.Dataplanes, dataplane("bench", fmt.Sprintf("dp-%05d", i), ip,
			[]api.DataplaneInbound{inbound(8080, svc(i), protocols[(i%services)%3])}, outs, opts...))
	}
	var avail []api.AvailableService
	for i := range services {
		avail = append(avail, available("bench", svc(i), protocols[i%3], 4))
	}
	v.ZoneIngresses = []*api.Resource{zoneIngress("z3", "zone-3", "10.200.0.1", 10001, "", 0, avail...)}
	return v
}

func BenchmarkCompile(b *testing.B) {
	v := benchView()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProxy(b *testing.B) {
	v := benchView()
	m := mustCompile(b, v)
	if p := m.Problems(); len(p) > 0 {
		b.Fatal(p)
	}
	for _, kind := range []Kind{KindEnvoy, KindGRPC} {
		b.Run(kind.String(), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dp := v.Dataplanes[i%7000]
				i++
				r, err := m.Proxy(dp, kind)
				if err != nil {
					b.Fatal(err)
				}
				_ = r
			}
		})
	}
	// Envoy with every observability feature: metrics, tracing of every
	// proxy, and access logs of all traffic in Kuma's default formats
	// (which name the proxy's address: one outbound variant per proxy).
	b.Run("envoy-observed", func(b *testing.B) {
		ov := *v
		spec := &api.MeshSpec{
			Routing: &api.MeshRouting{LocalityAwareLoadBalancing: true},
			Metrics: &api.Metrics{EnabledBackend: "prom", Backends: []api.MetricsBackend{{Name: "prom", Type: api.MetricsPrometheus}}},
			Tracing: &api.Tracing{DefaultBackend: "zipkin", Backends: []api.TracingBackend{
				{Name: "zipkin", Type: api.TracingZipkin, Conf: &api.ZipkinConf{URL: "http://zipkin:9411/api/v2/spans"}}}},
			Logging: &api.Logging{DefaultBackend: "file", Backends: []api.LoggingBackend{
				{Name: "file", Type: api.LoggingFile, Conf: &api.LoggingConf{Path: "/dev/stdout"}}}},
		}
		spec.Default()
		ov.Mesh = &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: "bench"}, Spec: spec}
		all := map[string]string{api.TagService: "*"}
		ov.TrafficTraces = []*api.Resource{{Meta: api.Meta{Type: api.TypeTrafficTrace, Mesh: "bench", Name: "all"},
			Spec: &api.TrafficTraceSpec{Selectors: []api.Selector{{Match: all}}}}}
		ov.TrafficLogs = []*api.Resource{{Meta: api.Meta{Type: api.TypeTrafficLog, Mesh: "bench", Name: "all"},
			Spec: &api.TrafficLogSpec{Sources: []api.Selector{{Match: all}}, Destinations: []api.Selector{{Match: all}}}}}
		om := mustCompile(b, &ov)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			dp := v.Dataplanes[i%7000]
			i++
			if _, err := om.Proxy(dp, KindEnvoy); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ingress", func(b *testing.B) {
		b.ReportAllocs()
		zi := zoneIngress("z1", "zone-1", "10.1.0.100", 10001, "", 0)
		for b.Loop() {
			if _, err := Ingress(zi, []*Mesh{m}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecompileOneChange: one new endpoint of one service, then a
// recompilation from the previous compilation (what the zone does on an
// endpoint change).
func BenchmarkRecompileOneChange(b *testing.B) {
	v := benchView()
	prev := mustCompile(b, v)
	extra := dataplane("bench", "extra", "10.250.0.1", []api.DataplaneInbound{inbound(8080, "svc-001", "grpc")}, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		next := *v
		if i%2 == 0 {
			next.Dataplanes = append(append([]*api.Resource(nil), v.Dataplanes...), extra)
		}
		i++
		m, err := CompileFrom(&next, prev)
		if err != nil {
			b.Fatal(err)
		}
		if got := len(m.ChangedServices()); got != 1 {
			b.Fatalf("%d services changed, want 1", got)
		}
		prev = m
	}
}
