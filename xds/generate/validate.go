package generate

import (
	"errors"
	"fmt"
	"strconv"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	fileaccesslog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Validate checks a proxy's resources the way the proxies will: each
// resource's ValidateAll, every Any inside unpacked and validated
// (listener filters, network filters, HTTP filters, api listeners, cluster
// protocol options, per-filter configs), grpc-go's rules (router filter
// present and last, ADS config sources, locality weights > 0, priorities
// contiguous from 0, endpoint addresses unique) and references (every RDS
// name is a RouteConfiguration of r, every cluster named by a listener or
// route is a Cluster of r, every EDS cluster has its CLA, names unique per
// type). The error joins one error per problem, each naming the resource and
// the field.
func Validate(r *Resources) error { return validateSet(r, nil) }

// refs are the names one resource refers to.
type refs struct {
	routes   []string // RDS route configuration names
	clusters []string // clusters (tcp_proxy, route actions)
	cla      string   // EDS clusters: the CLA name
	secrets  []string // SDS secrets of TLS transport sockets
}

// add appends o's references to rf's.
func (rf *refs) add(o *refs) {
	rf.routes = append(rf.routes, o.routes...)
	rf.clusters = append(rf.clusters, o.clusters...)
	rf.secrets = append(rf.secrets, o.secrets...)
	if o.cla != "" {
		rf.cla = o.cla
	}
}

// checked holds resources already deep-checked (by Compile), with their
// references: validateSet then only checks the references.
type checked map[proto.Message]*refs

// lookup returns the refs of a resource deep-checked before.
type lookup func(proto.Message) (*refs, bool)

// problems collects errors, each prefixed with the resource. filters
// returns the references of network filters deep-checked before (a Mesh's
// shared outbound filters and their variants): checkFilterChain does not
// unpack them again.
type problems struct {
	errs    []error
	filters func(*listener.Filter) (*refs, bool)
}

func (p *problems) add(what, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", what, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// validateSet validates r, skipping the deep checks of resources in done.
func validateSet(r *Resources, done lookup) error { return validateSetWith(r, done, nil) }

// validateSetWith is validateSet that also skips the deep checks of the
// network filters filters knows (nil: none).
func validateSetWith(r *Resources, done lookup, filters func(*listener.Filter) (*refs, bool)) error {
	if done == nil {
		done = func(proto.Message) (*refs, bool) { return nil, false }
	}
	p := &problems{filters: filters}
	// The names of each type; a resource's description is only formatted
	// when it is deep-checked or wrong (a gRPC proxy has thousands).
	const (
		kListener = iota
		kRoute
		kCluster
		kCLA
		kSecret
	)
	kinds := [...]string{"listener", "route configuration", "cluster", "cluster load assignment", "secret"}
	names := [5]map[string]bool{
		make(map[string]bool, len(r.Listeners)), make(map[string]bool, len(r.Routes)),
		make(map[string]bool, len(r.Clusters)), make(map[string]bool, len(r.Endpoints)),
		make(map[string]bool, len(r.Secrets)),
	}
	describe := func(kind int, name string) string { return fmt.Sprintf("%s %q", kinds[kind], name) }
	type ref struct {
		fromKind int
		from     string
		rf       *refs
	}
	var uses []ref
	add := func(kind int, name string, m proto.Message, check func(what string) *refs) {
		if names[kind][name] {
			p.add(describe(kind, name), "duplicate name")
		}
		names[kind][name] = true
		rf, ok := done(m)
		if !ok {
			rf = check(describe(kind, name))
		}
		if rf != nil {
			uses = append(uses, ref{kind, name, rf})
		}
	}
	for _, l := range r.Listeners {
		add(kListener, l.GetName(), l, func(what string) *refs { return checkListener(p, what, l) })
	}
	for _, rc := range r.Routes {
		add(kRoute, rc.GetName(), rc, func(what string) *refs { return checkRouteConfiguration(p, what, rc, true) })
	}
	for _, c := range r.Clusters {
		add(kCluster, c.GetName(), c, func(what string) *refs { return checkCluster(p, what, c) })
	}
	for _, cla := range r.Endpoints {
		add(kCLA, cla.GetClusterName(), cla, func(what string) *refs { checkCLA(p, what, cla); return nil })
	}
	for _, sc := range r.Secrets {
		add(kSecret, sc.GetName(), sc, func(what string) *refs { checkSecret(p, what, sc); return nil })
	}
	for _, u := range uses {
		for _, n := range u.rf.routes {
			if !names[kRoute][n] {
				p.add(describe(u.fromKind, u.from), "refers to route configuration %q, which is not in the set", n)
			}
		}
		for _, n := range u.rf.clusters {
			if !names[kCluster][n] {
				p.add(describe(u.fromKind, u.from), "refers to cluster %q, which is not in the set", n)
			}
		}
		for _, n := range u.rf.secrets {
			if !names[kSecret][n] {
				p.add(describe(u.fromKind, u.from), "refers to SDS secret %q, which is not in the set", n)
			}
		}
		if n := u.rf.cla; n != "" && !names[kCLA][n] {
			p.add(describe(u.fromKind, u.from), "EDS refers to cluster load assignment %q, which is not in the set", n)
		}
	}
	return p.err()
}

// validateAll runs a message's generated ValidateAll, if it has one.
func validateAll(p *problems, what string, m proto.Message) {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			p.add(what, "%v", err)
		}
	}
}

// unpack unmarshals and validates an Any; nil when it cannot.
func unpack(p *problems, what string, a *anypb.Any) proto.Message {
	if a == nil {
		p.add(what, "typed_config: must be set")
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		p.add(what, "typed_config (%s): cannot unpack: %v", a.GetTypeUrl(), err)
		return nil
	}
	validateAll(p, fmt.Sprintf("%s (%s)", what, a.GetTypeUrl()), m)
	return m
}

func checkListener(p *problems, what string, l *listener.Listener) *refs {
	rf := &refs{}
	validateAll(p, what, l)
	for i, lf := range l.GetListenerFilters() {
		unpack(p, fmt.Sprintf("%s: listener_filters[%d]", what, i), lf.GetTypedConfig())
	}
	if al := l.GetApiListener(); al != nil {
		at := what + ": api_listener.api_listener"
		m := unpack(p, at, al.GetApiListener())
		if m != nil {
			h, ok := m.(*hcm.HttpConnectionManager)
			if !ok {
				p.add(at, "must be an HttpConnectionManager, not %T", m)
			} else {
				checkHCM(p, at, h, rf)
			}
		}
		return rf
	}
	if l.GetAddress() == nil {
		p.add(what, "address: must be set (or api_listener)")
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		p.add(what, "filter_chains: must not be empty")
	}
	for i, fc := range l.GetFilterChains() {
		checkFilterChain(p, fmt.Sprintf("%s: filter_chains[%d]", what, i), fc, rf)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		checkFilterChain(p, what+": default_filter_chain", fc, rf)
	}
	return rf
}

func checkFilterChain(p *problems, what string, fc *listener.FilterChain, rf *refs) {
	if len(fc.GetFilters()) == 0 {
		p.add(what, "filters: must not be empty")
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		checkTransportSocket(p, what+": transport_socket", ts, rf)
	}
	for i, f := range fc.GetFilters() {
		if p.filters != nil {
			if known, ok := p.filters(f); ok {
				rf.add(known)
				continue
			}
		}
		at := fmt.Sprintf("%s.filters[%d] (%s)", what, i, f.GetName())
		switch m := unpack(p, at, f.GetTypedConfig()).(type) {
		case *hcm.HttpConnectionManager:
			checkHCM(p, at, m, rf)
		case *tcpproxy.TcpProxy:
			checkAccessLogs(p, at, m.GetAccessLog())
			if c := m.GetCluster(); c != "" {
				rf.clusters = append(rf.clusters, c)
			}
			for _, wc := range m.GetWeightedClusters().GetClusters() {
				rf.clusters = append(rf.clusters, wc.GetName())
			}
		}
	}
}

// checkHCM checks an unpacked (and ValidateAll'ed) HttpConnectionManager:
// HTTP filters, the router last, the route source.
func checkHCM(p *problems, what string, h *hcm.HttpConnectionManager, rf *refs) {
	filters := h.GetHttpFilters()
	if len(filters) == 0 {
		p.add(what, "http_filters: must end with the router filter (%s), none configured", routerTypeURL)
	}
	for i, f := range filters {
		at := fmt.Sprintf("%s: http_filters[%d] (%s)", what, i, f.GetName())
		m := unpack(p, at, f.GetTypedConfig())
		_, isRouter := m.(*router.Router)
		switch last := i == len(filters)-1; {
		case last && !isRouter && m != nil:
			p.add(at, "the last HTTP filter must be the router (%s), not %s", routerTypeURL, f.GetTypedConfig().GetTypeUrl())
		case !last && isRouter:
			p.add(at, "the router filter must be last")
		}
	}
	checkAccessLogs(p, what, h.GetAccessLog())
	if pr := h.GetTracing().GetProvider(); pr != nil {
		at := what + ": tracing.provider"
		switch m := unpack(p, at, pr.GetTypedConfig()).(type) {
		case *tracev3.ZipkinConfig:
			if pr.GetName() != wellknown.Zipkin {
				p.add(at, "name: must be %s for a ZipkinConfig, not %q", wellknown.Zipkin, pr.GetName())
			}
			if c := m.GetCollectorCluster(); c != "" {
				rf.clusters = append(rf.clusters, c)
			} else {
				p.add(at, "collector_cluster: must be set")
			}
			if m.GetCollectorEndpoint() == "" {
				p.add(at, "collector_endpoint: must be set with collector_cluster")
			}
		case nil:
		default:
			p.add(at, "typed_config: %T is not generated nor checked", m)
		}
	}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcm.HttpConnectionManager_Rds:
		if !adsOrSelf(rs.Rds.GetConfigSource()) {
			p.add(what, "rds.config_source: must be ads or self")
		}
		rf.routes = append(rf.routes, rs.Rds.GetRouteConfigName())
	case *hcm.HttpConnectionManager_RouteConfig:
		inner := checkRouteConfiguration(p, what+": route_config", rs.RouteConfig, false)
		rf.clusters = append(rf.clusters, inner.clusters...)
	default:
		p.add(what, "route_specifier: must be rds or route_config, not %T", rs)
	}
}

// checkAccessLogs unpacks and validates access loggers (file loggers are
// the only ones generated) and their filters.
func checkAccessLogs(p *problems, what string, logs []*accesslog.AccessLog) {
	for i, l := range logs {
		at := fmt.Sprintf("%s: access_log[%d] (%s)", what, i, l.GetName())
		switch m := unpack(p, at, l.GetTypedConfig()).(type) {
		case *fileaccesslog.FileAccessLog:
			if l.GetName() != wellknown.FileAccessLog {
				p.add(at, "name: must be %s for a FileAccessLog", wellknown.FileAccessLog)
			}
		case nil:
		default:
			p.add(at, "typed_config: %T is not generated nor checked", m)
		}
		if f := l.GetFilter(); f != nil {
			p.add(at, "filter: access log filters are not generated nor checked")
		}
	}
}

var routerTypeURL = "type.googleapis.com/" + string(proto.MessageName(&router.Router{}))

// checkRouteConfiguration checks a route configuration's per-filter configs
// and collects the clusters its routes name. top runs ValidateAll (an inline
// route was validated with its HCM).
func checkRouteConfiguration(p *problems, what string, rc *route.RouteConfiguration, top bool) *refs {
	rf := &refs{}
	if top {
		validateAll(p, what, rc)
	}
	perFilter := func(at string, m map[string]*anypb.Any) {
		for _, k := range sortedKeys(m) {
			unpack(p, fmt.Sprintf("%s.typed_per_filter_config[%q]", at, k), m[k])
		}
	}
	perFilter(what, rc.GetTypedPerFilterConfig())
	for i, vh := range rc.GetVirtualHosts() {
		vat := fmt.Sprintf("%s: virtual_hosts[%d]", what, i)
		perFilter(vat, vh.GetTypedPerFilterConfig())
		for j, r := range vh.GetRoutes() {
			rat := vat + ".routes[" + strconv.Itoa(j) + "]"
			perFilter(rat, r.GetTypedPerFilterConfig())
			a := r.GetRoute()
			if a == nil {
				continue
			}
			switch cs := a.GetClusterSpecifier().(type) {
			case *route.RouteAction_Cluster:
				rf.clusters = append(rf.clusters, cs.Cluster)
			case *route.RouteAction_WeightedClusters:
				for _, wc := range cs.WeightedClusters.GetClusters() {
					rf.clusters = append(rf.clusters, wc.GetName())
				}
			default:
				p.add(rat, "route.cluster_specifier: %T is not generated nor checked", cs)
			}
		}
	}
	return rf
}

func checkCluster(p *problems, what string, c *cluster.Cluster) *refs {
	rf := &refs{}
	validateAll(p, what, c)
	for _, k := range sortedKeys(c.GetTypedExtensionProtocolOptions()) {
		unpack(p, fmt.Sprintf("%s: typed_extension_protocol_options[%q]", what, k), c.GetTypedExtensionProtocolOptions()[k])
	}
	if ts := c.GetTransportSocket(); ts != nil {
		checkTransportSocket(p, what+": transport_socket", ts, rf)
	}
	if c.GetType() == cluster.Cluster_EDS {
		eds := c.GetEdsClusterConfig()
		if !adsOrSelf(eds.GetEdsConfig()) {
			p.add(what, "eds_cluster_config.eds_config: must be ads or self")
		}
		rf.cla = eds.GetServiceName()
		if rf.cla == "" {
			rf.cla = c.GetName()
		}
	}
	if la := c.GetLoadAssignment(); la != nil {
		checkCLA(p, what+": load_assignment", la)
	}
	return rf
}

// checkCLA checks what grpc-go and Envoy require of endpoints beyond
// ValidateAll: localities named and weighted, priorities contiguous from 0,
// addresses unique.
func checkCLA(p *problems, what string, cla *endpoint.ClusterLoadAssignment) {
	validateAll(p, what, cla)
	priorities := map[uint32]bool{}
	addrs := map[string]bool{}
	for i, l := range cla.GetEndpoints() {
		at := fmt.Sprintf("%s: endpoints[%d]", what, i)
		priorities[l.GetPriority()] = true
		if l.GetLoadBalancingWeight().GetValue() == 0 && l.GetLocality() != nil {
			p.add(at, "load_balancing_weight: must be > 0 (grpc-go ignores the locality otherwise)")
		}
		for j, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			a := hostPort(sa.GetAddress(), sa.GetPortValue())
			if addrs[a] {
				p.add(fmt.Sprintf("%s.lb_endpoints[%d]", at, j), "duplicate endpoint address %s", a)
			}
			addrs[a] = true
		}
	}
	for i := range uint32(len(priorities)) {
		if !priorities[i] {
			p.add(what, "priorities must be contiguous from 0, priority %d is missing", i)
			break
		}
	}
}

func adsOrSelf(cs *core.ConfigSource) bool {
	return cs.GetAds() != nil || cs.GetSelf() != nil
}

// checkTransportSocket checks a TLS transport socket (the name grpc-go
// requires, the context unpacked and validated) and collects the SDS
// secrets it refers to, whose config sources must be ADS.
func checkTransportSocket(p *problems, what string, ts *core.TransportSocket, rf *refs) {
	if ts.GetName() != wellknown.TransportSocketTLS {
		p.add(what, "name: must be %s, not %q", wellknown.TransportSocketTLS, ts.GetName())
	}
	var common *tlsv3.CommonTlsContext
	switch m := unpack(p, what, ts.GetTypedConfig()).(type) {
	case *tlsv3.UpstreamTlsContext:
		common = m.GetCommonTlsContext()
	case *tlsv3.DownstreamTlsContext:
		common = m.GetCommonTlsContext()
	case nil:
		return
	default:
		p.add(what, "typed_config: %T is not generated nor checked", m)
		return
	}
	sds := append([]*tlsv3.SdsSecretConfig{}, common.GetTlsCertificateSdsSecretConfigs()...)
	if v := common.GetValidationContextSdsSecretConfig(); v != nil {
		sds = append(sds, v)
	}
	if v := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); v != nil {
		sds = append(sds, v)
	}
	for _, s := range sds {
		if !adsOrSelf(s.GetSdsConfig()) {
			p.add(what, "SDS secret %q: sds_config must be ads or self", s.GetName())
		}
		rf.secrets = append(rf.secrets, s.GetName())
	}
}

// checkSecret checks an SDS secret: ValidateAll, and a certificate and key
// or a trusted CA present.
func checkSecret(p *problems, what string, s *tlsv3.Secret) {
	validateAll(p, what, s)
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		if len(t.TlsCertificate.GetCertificateChain().GetInlineBytes()) == 0 || len(t.TlsCertificate.GetPrivateKey().GetInlineBytes()) == 0 {
			p.add(what, "tls_certificate: certificate_chain and private_key must be inline bytes")
		}
	case *tlsv3.Secret_ValidationContext:
		if len(t.ValidationContext.GetTrustedCa().GetInlineBytes()) == 0 {
			p.add(what, "validation_context.trusted_ca: must be inline bytes")
		}
	default:
		p.add(what, "type: must be tls_certificate or validation_context, not %T", t)
	}
}
