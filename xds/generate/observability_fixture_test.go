package generate

import (
	"github.com/meshfed/meshfed/api"
)

// Observability fixtures: mesh o, where web-1 (http) calls backend (http),
// db (tcp) and nowhere (served by nobody); backend-1 calls db.
var (
	webO = dataplane("o", "web-1", "10.7.0.1",
		[]api.DataplaneInbound{inbound(8080, "web", "http")},
		[]api.DataplaneOutbound{outbound(10001, "backend"), outbound(10002, "db"), outbound(10003, "nowhere")})
	backendO = dataplane("o", "backend-1", "10.7.0.2",
		[]api.DataplaneInbound{inbound(8080, "backend", "http")},
		[]api.DataplaneOutbound{outbound(10002, "db")})
	dbO = dataplane("o", "db-1", "10.7.0.3", []api.DataplaneInbound{inbound(5432, "db", "tcp")}, nil)
)

func ptr[T any](v T) *T { return &v }

// meshOSpec is mesh o's spec with every backend (defaults applied):
// metrics "prom" enabled, tracing "zipkin" (a host name, 25 %, 128-bit ids)
// the default and "zipkin-ip" (an IP, no path, httpProto), logging "file"
// the default, "custom" (a format with Kuma placeholders) and "tcp".
func meshOSpec() *api.MeshSpec {
	s := &api.MeshSpec{
		Metrics: &api.Metrics{EnabledBackend: "prom", Backends: []api.MetricsBackend{{Name: "prom", Type: api.MetricsPrometheus}}},
		Tracing: &api.Tracing{DefaultBackend: "zipkin", Backends: []api.TracingBackend{
			{Name: "zipkin", Type: api.TracingZipkin, Sampling: ptr(25.0),
				Conf: &api.ZipkinConf{URL: "http://zipkin.observability:9411/api/v2/spans", TraceID128bit: true}},
			{Name: "zipkin-ip", Type: api.TracingZipkin,
				Conf: &api.ZipkinConf{URL: "http://10.8.0.5:9411", APIVersion: api.ZipkinAPIHTTPProto}},
		}},
		Logging: &api.Logging{DefaultBackend: "file", Backends: []api.LoggingBackend{
			{Name: "file", Type: api.LoggingFile, Conf: &api.LoggingConf{Path: "/var/log/meshfed/access.log"}},
			{Name: "custom", Type: api.LoggingFile, Format: "%KUMA_MESH% %KUMA_SOURCE_SERVICE%@%KUMA_SOURCE_ADDRESS_WITHOUT_PORT% -> %KUMA_DESTINATION_SERVICE% %DURATION%ms",
				Conf: &api.LoggingConf{Path: "/var/log/meshfed/db.log"}},
			{Name: "tcp", Type: api.LoggingTCP, Conf: &api.LoggingConf{Address: "logstash.observability:5000"}},
		}},
	}
	s.Default()
	return s
}

// meshOView is mesh o's view with spec (nil: no backends at all).
func meshOView(spec *api.MeshSpec) *MeshView {
	if spec == nil {
		spec = &api.MeshSpec{}
		spec.Default()
	}
	return &MeshView{
		Mesh:       &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: "o"}, Spec: spec},
		LocalZone:  localZone,
		Dataplanes: []*api.Resource{webO, backendO, dbO},
	}
}

// withoutMetrics is spec with metrics turned off (the backend stays
// defined).
func withoutMetrics(s *api.MeshSpec) *api.MeshSpec {
	s.Metrics.EnabledBackend = ""
	return s
}

func newTrafficTrace(name, backend string, match ...map[string]string) *api.Resource {
	spec := &api.TrafficTraceSpec{}
	for _, m := range match {
		spec.Selectors = append(spec.Selectors, api.Selector{Match: m})
	}
	if backend != "" {
		spec.Conf = &api.TrafficTraceConf{Backend: backend}
	}
	return &api.Resource{Meta: api.Meta{Type: api.TypeTrafficTrace, Mesh: "o", Name: name}, Spec: spec}
}

func newTrafficLog(name, backend string, sources, destinations map[string]string) *api.Resource {
	spec := &api.TrafficLogSpec{
		Sources:      []api.Selector{{Match: sources}},
		Destinations: []api.Selector{{Match: destinations}},
	}
	if backend != "" {
		spec.Conf = &api.TrafficLogConf{Backend: backend}
	}
	return &api.Resource{Meta: api.Meta{Type: api.TypeTrafficLog, Mesh: "o", Name: name}, Spec: spec}
}

func svcTags(svc string) map[string]string { return map[string]string{api.TagService: svc} }

// withMetricsOverride is dp with a metrics override.
func withMetricsOverride(dp *api.Resource, m *api.MetricsBackend) *api.Resource {
	c := *dp
	spec := *dp.Spec.(*api.DataplaneSpec)
	spec.Metrics = m
	c.Spec = &spec
	return &c
}

// meshOTracing: the default backend for web only (backend-1 is not
// traced).
func meshOTracing() *MeshView {
	v := meshOView(withoutMetrics(meshOSpec()))
	v.TrafficTraces = []*api.Resource{newTrafficTrace("trace-web", "", svcTags("web"))}
	return v
}

// meshOLogging: web's traffic to every service in the default file
// backend, and to db (more specific) in the custom one.
func meshOLogging() *MeshView {
	v := meshOView(withoutMetrics(meshOSpec()))
	v.TrafficLogs = []*api.Resource{
		newTrafficLog("log-web", "", svcTags("web"), svcTags("*")),
		newTrafficLog("log-web-db", "custom", svcTags("web"), svcTags("db")),
	}
	return v
}

// meshOMTLS is mesh o with mTLS STRICT, allow-all and metrics, skipMTLS
// as given.
func meshOMTLS(skip bool) *MeshView {
	s := meshOSpec()
	if skip {
		s.Metrics.Backends[0].Conf.SkipMTLS = ptr(true)
	}
	v := meshOView(s)
	v.MTLS = &MTLS{Mode: api.MTLSModeStrict, TrustBundlePEM: testBundle}
	v.TrafficPermissions = []*api.Resource{allowAll("o")}
	return v
}
