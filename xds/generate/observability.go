package generate

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	fileaccesslog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/api"
)

// Metrics, tracing and access logs of Envoy proxies (see the package doc,
// "Observability").

const (
	// EnvoyAdminPort is the port of Envoy's admin listener on 127.0.0.1
	// that a stats listener forwards to when ProxyOptions.AdminPort is 0.
	// It equals xds/bootstrap.DefaultAdminPort (a test checks it; this
	// package cannot import bootstrap, which imports it).
	EnvoyAdminPort = 9901
	// AdminClusterName is the STATIC cluster of Envoy's own admin
	// listener, the stats listener's upstream.
	AdminClusterName = "meshfed_admin"
	// adminStatsPath is Envoy's admin endpoint of the Prometheus stats.
	adminStatsPath = "/stats/prometheus"
	// statsBindAddress is the stats listener's address when the
	// Dataplane's networking.address is not an IP.
	statsBindAddress = "0.0.0.0"
	// zipkinDefaultPath is the collector endpoint when the backend URL has
	// no path (Zipkin's v2 span API).
	zipkinDefaultPath = "/api/v2/spans"
)

// Name prefixes of the observability resources.
const (
	prometheusPrefix = "prometheus:"
	tracingPrefix    = "tracing:"
)

// StatsListenerName is the name of an Envoy's Prometheus stats listener.
func StatsListenerName(ip string, port uint32) string { return prometheusPrefix + hostPort(ip, port) }

// TracingClusterName is the name of the cluster of tracing backend's
// collector.
func TracingClusterName(backend string) string { return tracingPrefix + backend }

// Kuma's default access log formats, with its placeholders (substituted by
// accessLogFormat).
const (
	defaultHTTPLogFormat = `[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%" "%UPSTREAM_HOST%"`
	defaultTCPLogFormat  = `[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes`
)

// observability is a compiled Mesh's metrics, tracing and logging: the
// Mesh's backends and its TrafficTraces and TrafficLogs, read-only after
// Compile except for the variants cache.
type observability struct {
	// metrics holds only the Mesh's enabled metrics backend (a copy), the
	// base of every Dataplane's api.EffectiveMetrics; nil Metrics: none.
	metrics *api.MeshSpec
	// admin is the AdminClusterName cluster for EnvoyAdminPort.
	admin *cluster.Cluster
	// tracers are the tracing backends some usable TrafficTrace names.
	tracers map[string]*tracer
	// traces are the usable TrafficTraces, by name.
	traces []*trafficTrace
	// loggers are the logging backends some usable TrafficLog names.
	loggers map[string]*logger
	// logs are the usable TrafficLogs, by name.
	logs []*trafficLog
	// key is the canonical text of all of the above's inputs.
	key string

	// mu guards variants: outbound filters with tracing or an access log,
	// built on first use by Proxy and shared by the proxies that need the
	// same one (the service's shared filter is never modified).
	mu       sync.Mutex
	variants map[variantKey]*listener.Filter
	refsOf   map[*listener.Filter]*refs
}

// tracer is a tracing backend compiled: its collector cluster and the HCM
// tracing configuration that sends to it.
type tracer struct {
	name    string
	cluster *cluster.Cluster
	config  *hcm.HttpConnectionManager_Tracing
}

// logger is a logging backend compiled (file backends only).
type logger struct {
	name   string
	path   string
	format string // as configured; "" means Kuma's default for the protocol
}

type trafficTrace struct {
	name   string
	sels   []api.Selector
	tracer *tracer
}

type trafficLog struct {
	name    string
	sources []api.Selector
	dests   []api.Selector
	logger  *logger
}

// variantKey names an outbound filter variant: the service, the tracing
// and logging backends ("" for none) and the access log's substituted
// format (it may depend on the proxy).
type variantKey struct {
	service, tracer, logger, format string
}

// compileObservability compiles the Mesh's metrics backend, the tracing and
// logging backends its TrafficTraces and TrafficLogs use, and those
// policies. What cannot be generated is reported in m.problems and left
// out; a policy of another Mesh is an error.
func (m *Mesh) compileObservability(view *MeshView, spec *api.MeshSpec, prev *Mesh) error {
	o := &observability{
		tracers:  map[string]*tracer{},
		loggers:  map[string]*logger{},
		variants: map[variantKey]*listener.Filter{},
		refsOf:   map[*listener.Filter]*refs{},
	}
	m.obs = o
	var key strings.Builder
	keyPart := func(what string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(&key, "%s %s\n", what, b)
	}

	if b := spec.MetricsBackend(); b != nil {
		c := *b // a deep copy: Compile keeps nothing of the view
		if b.Conf != nil {
			conf := *b.Conf
			conf.Tags = maps.Clone(conf.Tags)
			if conf.SkipMTLS != nil {
				conf.SkipMTLS = new(*conf.SkipMTLS)
			}
			if conf.TLS != nil {
				conf.TLS = &api.PrometheusTLS{Mode: conf.TLS.Mode}
			}
			c.Conf = &conf
		}
		o.metrics = &api.MeshSpec{Metrics: &api.Metrics{EnabledBackend: c.Name, Backends: []api.MetricsBackend{c}}}
		keyPart("metrics", c)
		if c.Conf != nil && c.Conf.TLS != nil && c.Conf.TLS.Mode == api.PrometheusTLSProvidedTLS {
			m.problems = append(m.problems, fmt.Errorf("metrics backend %q: tls.mode %s is not generated: no stats listener", c.Name, api.PrometheusTLSProvidedTLS))
		}
	}
	// The admin cluster is the same for every Mesh and compilation.
	if prev != nil && prev.obs != nil && prev.obs.admin != nil {
		o.admin = prev.obs.admin
		m.done[o.admin] = prev.done[o.admin]
	} else {
		c, err := localCluster(AdminClusterName, "127.0.0.1", EnvoyAdminPort, api.ProtocolHTTP)
		if err != nil {
			return err
		}
		p := &problems{}
		rf := checkCluster(p, fmt.Sprintf("cluster %q", c.Name), c)
		if err := p.err(); err != nil {
			return fmt.Errorf("compile: Mesh %q: %w", m.name, err)
		}
		o.admin = c
		m.done[c] = rf
	}

	traces, err := m.policies(view.TrafficTraces, api.TypeTrafficTrace)
	if err != nil {
		return err
	}
	for _, r := range traces {
		ts, ok := r.Spec.(*api.TrafficTraceSpec)
		if !ok || ts == nil {
			m.problems = append(m.problems, fmt.Errorf("traffic trace %s: spec is %T, not *api.TrafficTraceSpec: skipped", r.Name, r.Spec))
			continue
		}
		keyPart("trace "+r.Name, ts)
		v := &api.Validator{}
		ts.Validate(v, "")
		if err := v.Err(); err != nil {
			m.problems = append(m.problems, fmt.Errorf("traffic trace %s: skipped: %w", r.Name, err))
			continue
		}
		b := spec.TracingBackend(ts.BackendName())
		if b == nil {
			m.problems = append(m.problems, fmt.Errorf("traffic trace %s: backend %q is not among the Mesh's tracing.backends: skipped", r.Name, backendOrDefault(ts.BackendName())))
			continue
		}
		t := o.tracers[b.Name]
		if t == nil {
			if t, err = m.compileTracer(b, prev); err != nil {
				m.problems = append(m.problems, fmt.Errorf("traffic trace %s: tracing backend %q: %w: skipped", r.Name, b.Name, err))
				continue
			}
			o.tracers[b.Name] = t
			keyPart("tracing backend", b)
		}
		o.traces = append(o.traces, &trafficTrace{name: r.Name, sels: cloneSelectors(ts.Selectors), tracer: t})
	}

	logs, err := m.policies(view.TrafficLogs, api.TypeTrafficLog)
	if err != nil {
		return err
	}
	for _, r := range logs {
		ls, ok := r.Spec.(*api.TrafficLogSpec)
		if !ok || ls == nil {
			m.problems = append(m.problems, fmt.Errorf("traffic log %s: spec is %T, not *api.TrafficLogSpec: skipped", r.Name, r.Spec))
			continue
		}
		keyPart("log "+r.Name, ls)
		v := &api.Validator{}
		ls.Validate(v, "")
		if err := v.Err(); err != nil {
			m.problems = append(m.problems, fmt.Errorf("traffic log %s: skipped: %w", r.Name, err))
			continue
		}
		b := spec.LoggingBackend(ls.BackendName())
		switch {
		case b == nil:
			m.problems = append(m.problems, fmt.Errorf("traffic log %s: backend %q is not among the Mesh's logging.backends: skipped", r.Name, backendOrDefault(ls.BackendName())))
			continue
		case b.Type != api.LoggingFile || b.Conf == nil || b.Conf.Path == "":
			m.problems = append(m.problems, fmt.Errorf("traffic log %s: logging backend %q of type %q is not generated (Envoy has no plain TCP access logger; only file backends are): skipped", r.Name, b.Name, b.Type))
			continue
		}
		lg := o.loggers[b.Name]
		if lg == nil {
			lg = &logger{name: b.Name, path: b.Conf.Path, format: b.Format}
			o.loggers[b.Name] = lg
			keyPart("logging backend", b)
		}
		o.logs = append(o.logs, &trafficLog{name: r.Name, sources: cloneSelectors(ls.Sources), dests: cloneSelectors(ls.Destinations), logger: lg})
	}
	o.key = key.String()
	return nil
}

func cloneSelectors(in []api.Selector) []api.Selector {
	out := make([]api.Selector, len(in))
	for i, s := range in {
		out[i] = api.Selector{Match: maps.Clone(s.Match)}
	}
	return out
}

func backendOrDefault(name string) string {
	if name == "" {
		return "(tracing/logging.defaultBackend)"
	}
	return name
}

// policies returns rs sorted by name, nil entries left out; one of another
// Mesh is a caller bug.
func (m *Mesh) policies(rs []*api.Resource, typ string) ([]*api.Resource, error) {
	out := make([]*api.Resource, 0, len(rs))
	for _, r := range rs {
		if r == nil {
			continue
		}
		if r.Mesh != m.name {
			return nil, fmt.Errorf("compile: Mesh %q: %s %s/%s belongs to another mesh", m.name, typ, r.Mesh, r.Name)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *api.Resource) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// compileTracer builds and checks a zipkin backend's collector cluster and
// tracing configuration; prev's cluster is kept when equal.
func (m *Mesh) compileTracer(b *api.TracingBackend, prev *Mesh) (*tracer, error) {
	if b.Type != api.TracingZipkin || b.Conf == nil {
		return nil, fmt.Errorf("type %q is not generated (only %s)", b.Type, api.TracingZipkin)
	}
	u, err := url.Parse(b.Conf.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("conf.url %q: must be an absolute http or https URL", b.Conf.URL)
	}
	port := uint32(80)
	if u.Scheme == "https" {
		port = 443
	}
	if ps := u.Port(); ps != "" {
		var n uint64
		if _, err := fmt.Sscan(ps, &n); err != nil || n == 0 || n > 65535 {
			return nil, fmt.Errorf("conf.url %q: bad port", b.Conf.URL)
		}
		port = uint32(n)
	}
	name := TracingClusterName(b.Name)
	c, err := collectorCluster(name, u.Hostname(), port, u.Scheme == "https")
	if err != nil {
		return nil, err
	}
	reused := false
	if prev != nil && prev.obs != nil {
		if old := prev.obs.tracers[b.Name]; old != nil && proto.Equal(old.cluster, c) {
			if rf, ok := prev.done[old.cluster]; ok {
				c, reused = old.cluster, true
				m.done[c] = rf
			}
		}
	}
	if !reused {
		p := &problems{}
		rf := checkCluster(p, fmt.Sprintf("cluster %q", name), c)
		if err := p.err(); err != nil {
			return nil, err
		}
		m.done[c] = rf
	}

	path := u.EscapedPath()
	if path == "" {
		path = zipkinDefaultPath
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	version := tracev3.ZipkinConfig_HTTP_JSON
	if b.Conf.APIVersion == api.ZipkinAPIHTTPProto {
		version = tracev3.ZipkinConfig_HTTP_PROTO
	}
	zipkin, err := marshalAny(&tracev3.ZipkinConfig{
		CollectorCluster:         name,
		CollectorEndpoint:        path,
		CollectorEndpointVersion: version,
		CollectorHostname:        u.Host,
		TraceId_128Bit:           b.Conf.TraceID128bit,
	})
	if err != nil {
		return nil, err
	}
	sampling := api.DefaultTracingSampling
	if b.Sampling != nil {
		sampling = *b.Sampling
	}
	return &tracer{
		name:    b.Name,
		cluster: c,
		config: &hcm.HttpConnectionManager_Tracing{
			RandomSampling: &typev3.Percent{Value: sampling},
			Provider: &tracev3.Tracing_Http{
				Name:       wellknown.Zipkin,
				ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: zipkin},
			},
		},
	}, nil
}

// collectorCluster is the cluster of a tracing collector at host:port:
// STATIC for an IP, STRICT_DNS for a name; over TLS (SNI the host, the
// system's trust store) for https.
func collectorCluster(name, host string, port uint32, https bool) (*cluster.Cluster, error) {
	typ := cluster.Cluster_STATIC
	if !isIP(host) {
		typ = cluster.Cluster_STRICT_DNS
	}
	c := &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
						Address: socketAddress(host, port),
					}},
				}},
			}},
		},
	}
	if https {
		sni := host
		if isIP(host) {
			sni = ""
		}
		ts, err := transportSocket(&tlsv3.UpstreamTlsContext{
			Sni: sni,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
					ValidationContext: &tlsv3.CertificateValidationContext{
						SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

// rank is how specifically a selector matched: tags matched exactly, then
// tags matched by "*" (as Kuma ranks selectors).
type rank struct{ exact, wildcard int }

func (r rank) less(o rank) bool {
	return r.exact < o.exact || (r.exact == o.exact && r.wildcard < o.wildcard)
}

func (r rank) plus(o rank) rank { return rank{r.exact + o.exact, r.wildcard + o.wildcard} }

// bestMatch returns the greatest rank of a selector of sels that matches
// one of the tag sets, and whether any matches.
func bestMatch(sels []api.Selector, tagSets []map[string]string) (rank, bool) {
	var best rank
	found := false
	for _, s := range sels {
		for _, tags := range tagSets {
			if !s.Matches(tags) {
				continue
			}
			var r rank
			for _, v := range s.Match {
				if v == "*" {
					r.wildcard++
				} else {
					r.exact++
				}
			}
			if !found || best.less(r) {
				best, found = r, true
			}
		}
	}
	return best, found
}

// tracerFor returns the tracer of the TrafficTrace that applies to a
// Dataplane with the given tag sets (its inbounds', or its gateway's): the
// one whose best selector match ranks highest, then the greatest name;
// nil when none matches.
func (o *observability) tracerFor(tagSets []map[string]string) *tracer {
	var best *trafficTrace
	var bestRank rank
	for _, t := range o.traces { // by name: a later one of equal rank wins
		r, ok := bestMatch(t.sels, tagSets)
		if ok && (best == nil || !r.less(bestRank)) {
			best, bestRank = t, r
		}
	}
	if best == nil {
		return nil
	}
	return best.tracer
}

// loggerFor returns the logger of the TrafficLog that applies to the
// traffic from a Dataplane with the given tag sets to an outbound with
// tags dest: sources must match one of the tag sets and destinations dest;
// the greatest sum of the two ranks wins, then the greatest name.
func (o *observability) loggerFor(tagSets []map[string]string, dest map[string]string) *logger {
	var best *trafficLog
	var bestRank rank
	dests := []map[string]string{dest}
	for _, l := range o.logs {
		rs, ok := bestMatch(l.sources, tagSets)
		if !ok {
			continue
		}
		rd, ok := bestMatch(l.dests, dests)
		if !ok {
			continue
		}
		if r := rs.plus(rd); best == nil || !r.less(bestRank) {
			best, bestRank = l, r
		}
	}
	if best == nil {
		return nil
	}
	return best.logger
}

// accessLogFormat is lg's format for traffic from a proxy (address and
// first service) to service dest, Kuma's placeholders substituted (Envoy
// rejects unknown %…% operators), ending with a newline.
func (m *Mesh) accessLogFormat(lg *logger, protocol string, spec *api.DataplaneSpec, dest string) string {
	format := lg.format
	if format == "" {
		format = defaultTCPLogFormat
		if isHTTP(protocol) {
			format = defaultHTTPLogFormat
		}
	}
	if strings.Contains(format, "%KUMA_") {
		source := "unknown"
		if svcs := spec.Services(); len(svcs) > 0 {
			source = svcs[0]
		}
		addr := spec.Networking.Address
		format = strings.NewReplacer(
			"%KUMA_MESH%", m.name,
			"%KUMA_SOURCE_SERVICE%", source,
			"%KUMA_DESTINATION_SERVICE%", dest,
			"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", addr,
			"%KUMA_SOURCE_ADDRESS%", addr,
		).Replace(format)
	}
	if !strings.HasSuffix(format, "\n") {
		format += "\n"
	}
	return format
}

// fileAccessLog is an envoy.access_loggers.file access log writing format
// (text) to path.
func fileAccessLog(path, format string) (*accesslog.AccessLog, error) {
	a, err := marshalAny(&fileaccesslog.FileAccessLog{
		Path: path,
		AccessLogFormat: &fileaccesslog.FileAccessLog_LogFormat{LogFormat: &core.SubstitutionFormatString{
			Format: &core.SubstitutionFormatString_TextFormatSource{TextFormatSource: &core.DataSource{
				Specifier: &core.DataSource_InlineString{InlineString: format},
			}},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &accesslog.AccessLog{Name: wellknown.FileAccessLog, ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: a}}, nil
}

// outboundVariant returns service s's outbound filter with tracing (tr,
// HTTP services only) and an access log (lg, format): built and
// deep-checked on first use, then shared with every proxy that needs the
// same. tr and lg must not both be nil.
func (m *Mesh) outboundVariant(s *service, tr *tracer, lg *logger, format string) (*listener.Filter, error) {
	k := variantKey{service: s.name}
	if tr != nil && isHTTP(s.protocol) {
		k.tracer = tr.name
	} else {
		tr = nil
	}
	if lg != nil {
		k.logger, k.format = lg.name, format
	}
	if tr == nil && lg == nil {
		return s.outbound, nil
	}
	o := m.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if f := o.variants[k]; f != nil {
		return f, nil
	}
	f, err := outboundFilter(s.name, s.protocol, tr, lg, format)
	if err != nil {
		return nil, err
	}
	p := &problems{}
	rf := &refs{}
	checkFilterChain(p, fmt.Sprintf("outbound filter %q", s.name), &listener.FilterChain{Filters: []*listener.Filter{f}}, rf)
	if err := p.err(); err != nil {
		return nil, err
	}
	o.variants[k] = f
	o.refsOf[f] = rf
	return f, nil
}

// outboundFilter is the network filter of an outbound listener to service
// (an HCM with RDS service, or a TcpProxy to it), with tracing (HTTP only)
// and an access log when set.
func outboundFilter(service, protocol string, tr *tracer, lg *logger, format string) (*listener.Filter, error) {
	var logs []*accesslog.AccessLog
	if lg != nil {
		al, err := fileAccessLog(lg.path, format)
		if err != nil {
			return nil, err
		}
		logs = append(logs, al)
	}
	if isHTTP(protocol) {
		h := &hcm.HttpConnectionManager{
			StatPrefix: service,
			RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
				ConfigSource:    adsConfigSource(),
				RouteConfigName: service,
			}},
			AccessLog: logs,
		}
		if tr != nil {
			h.Tracing = tr.config
		}
		a, err := hcmWith(h)
		if err != nil {
			return nil, err
		}
		return networkFilter(wellknown.HTTPConnectionManager, a), nil
	}
	a, err := marshalAny(&tcpproxy.TcpProxy{
		StatPrefix:       service,
		ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: service},
		AccessLog:        logs,
	})
	if err != nil {
		return nil, err
	}
	return networkFilter(wellknown.TCPProxy, a), nil
}

// filterRefs returns the references of a network filter deep-checked
// before: a service's shared outbound filter or a variant.
func (m *Mesh) filterRefs(f *listener.Filter) (*refs, bool) {
	if rf, ok := m.filters[f]; ok {
		return rf, true
	}
	o := m.obs
	if o == nil || (len(o.traces) == 0 && len(o.logs) == 0) {
		return nil, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	rf, ok := o.refsOf[f]
	return rf, ok
}

// metricsOf returns the prometheus backend a Dataplane exposes (the Mesh's
// enabled one with the Dataplane's override), nil for none.
func (o *observability) metricsOf(spec *api.DataplaneSpec) *api.MetricsBackend {
	if spec.Metrics == nil && o.metrics == nil {
		return nil
	}
	b := spec.EffectiveMetrics(o.metrics)
	if b == nil || b.Type != api.MetricsPrometheus || b.Conf == nil {
		return nil
	}
	return b
}

// statsListener returns an Envoy's Prometheus stats listener for backend b
// and the admin cluster it forwards to (the Mesh's shared one for the
// default admin port). The listener is bound to the Dataplane's
// networking.address when it is an IP, else to 0.0.0.0; it serves exactly
// b's path, rewritten to the admin's /stats/prometheus (nothing else of the
// admin is reachable). With mTLS on it requires a client certificate of
// the Mesh, unless skipMTLS or tls.mode disabled. tls.mode providedTLS
// gives no listener (nil).
func (m *Mesh) statsListener(spec *api.DataplaneSpec, b *api.MetricsBackend, adminPort uint32) (*listener.Listener, *cluster.Cluster, error) {
	conf := b.Conf
	tlsMode := api.PrometheusTLSActiveMTLSBackend
	if conf.TLS != nil && conf.TLS.Mode != "" {
		tlsMode = conf.TLS.Mode
	}
	if tlsMode == api.PrometheusTLSProvidedTLS {
		return nil, nil, nil
	}
	ip := spec.Networking.Address
	if !isIP(ip) {
		ip = statsBindAddress
	}
	name := StatsListenerName(ip, conf.Port)
	if err := checkPortFree(spec, ip, conf.Port); err != nil {
		return nil, nil, fmt.Errorf("metrics: stats listener %s: %w", name, err)
	}
	admin := m.obs.admin
	if adminPort != 0 && adminPort != EnvoyAdminPort {
		var err error
		if admin, err = localCluster(AdminClusterName, "127.0.0.1", adminPort, api.ProtocolHTTP); err != nil {
			return nil, nil, err
		}
	}
	rc := &route.RouteConfiguration{
		Name: "prometheus",
		VirtualHosts: []*route.VirtualHost{{
			Name:    "prometheus",
			Domains: []string{"*"},
			Routes: []*route.Route{{
				Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: conf.Path}},
				Action: &route.Route_Route{Route: &route.RouteAction{
					ClusterSpecifier: &route.RouteAction_Cluster{Cluster: AdminClusterName},
					PrefixRewrite:    adminStatsPath,
				}},
			}},
		}},
	}
	h, err := hcmInline("prometheus", rc)
	if err != nil {
		return nil, nil, err
	}
	l := socketListener(name, ip, conf.Port, core.TrafficDirection_INBOUND, networkFilter(wellknown.HTTPConnectionManager, h))
	plaintext := m.mtls == nil || (conf.SkipMTLS != nil && *conf.SkipMTLS) || tlsMode == api.PrometheusTLSDisabled
	if !plaintext {
		if l.FilterChains[0].TransportSocket, err = envoyDownstreamTLS(m.name, api.ProtocolHTTP); err != nil {
			return nil, nil, err
		}
	}
	return l, admin, nil
}

// checkPortFree reports an inbound or outbound listener of spec that would
// bind the same port as ip:port (the same address, or either a wildcard).
func checkPortFree(spec *api.DataplaneSpec, ip string, port uint32) error {
	overlaps := func(other string) bool {
		a, b := net.ParseIP(ip), net.ParseIP(other)
		return a == nil || b == nil || a.Equal(b) || a.IsUnspecified() || b.IsUnspecified()
	}
	for i, in := range spec.Networking.Inbound {
		if in.Port == port && overlaps(inboundAddress(spec, &in)) {
			return fmt.Errorf("port %d is taken by networking.inbound[%d]", port, i)
		}
	}
	for i, out := range spec.Networking.Outbound {
		addr := out.Address
		if addr == "" {
			addr = api.DefaultOutboundAddress
		}
		if out.Port == port && overlaps(addr) {
			return fmt.Errorf("port %d is taken by networking.outbound[%d]", port, i)
		}
	}
	return nil
}

// obsKey is the canonical text of the Mesh's observability inputs ("" for
// a Mesh without any).
func (m *Mesh) obsKey() string {
	if m == nil || m.obs == nil {
		return ""
	}
	return m.obs.key
}
