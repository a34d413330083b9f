package generate

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

// maxEndpointWeight caps an ingress endpoint's weight (its instance count),
// so locality sums stay far below grpc-go's uint32 limit.
const maxEndpointWeight = 1 << 16

// Mesh is a compiled MeshView: every service's shared protos, built and
// validated once. It is read-only after Compile and safe for concurrent use.
type Mesh struct {
	name      string
	localZone string
	services  map[string]*service
	problems  []error
	done      checked
	// filters are the services' outbound filters, deep-checked once, with
	// their references (Proxy does not unpack them again).
	filters map[*listener.Filter]*refs
	grpc    Resources // every service's API listener, route, cluster and CLA, sorted
	// changed names the services whose protos differ from the previous
	// compilation's (all of them without one), removed ones included.
	changed map[string]bool
	// outbounds are the Envoy outbound listeners built so far, shared by
	// the proxies that have the same one (the only state Proxy writes:
	// guarded by outMu).
	outMu     sync.Mutex
	outbounds map[outboundKey]*listener.Listener

	mtls     *MTLS         // nil: mTLS off
	caSecret *tlsv3.Secret // the Envoys' MeshCASecretName secret (mTLS on)
	perms    []*mtpRule    // MeshTrafficPermission rules, weakest first
	permsKey string        // canonical text of mtls and perms
	meshWide bool          // permsKey or obsKey differs from the previous compilation's

	obs *observability // metrics, tracing and logging (never nil after Compile)
}

// service holds one service's shared protos.
type service struct {
	name        string
	protocol    string
	cluster     *cluster.Cluster // Envoy's (SDS certificates with mTLS on)
	grpcCluster *cluster.Cluster // proxyless gRPC's (certificate providers); cluster with mTLS off
	cla         *endpoint.ClusterLoadAssignment
	route       *route.RouteConfiguration
	apiListener *listener.Listener
	// outbound is the network filter of an Envoy outbound listener to the
	// service: the HCM (RDS route S) for HTTP protocols, else a TcpProxy.
	outbound *listener.Filter

	// The ZoneIngress side, set when the service has an inbound in the
	// local zone: SNI, cluster and CLA (local endpoints only), filter chain.
	sni            string
	ingressCluster *cluster.Cluster
	ingressCLA     *endpoint.ClusterLoadAssignment
	ingressChain   *listener.FilterChain

	eps       []ep
	localEps  []ep
	protocols map[string]bool
	hasLocal  bool
	// inputs is the canonical text of everything build reads (the
	// service's endpoints and protocols, and the Mesh-wide settings): a
	// recompilation with the same inputs reuses the service as it is.
	inputs string
}

// Name is the Mesh's name.
func (m *Mesh) Name() string { return m.name }

// LocalZone is the zone the Mesh was compiled for.
func (m *Mesh) LocalZone() string { return m.localZone }

// Services returns the names of the Mesh's services, sorted.
func (m *Mesh) Services() []string { return sortedKeys(m.services) }

// Problems returns what Compile skipped, and why: invalid Dataplanes and
// ZoneIngresses, endpoints without an IP address, services whose protos
// failed validation. The zone should log them (keys mesh, dataplane).
func (m *Mesh) Problems() []error { return slices.Clone(m.problems) }

// Compile builds the shared protos of view's Mesh: per service, its Cluster,
// ClusterLoadAssignment, RouteConfiguration and proxyless API Listener (and
// its ZoneIngress cluster, CLA and filter chain), and validates them. An
// error means the view itself is unusable (no Mesh, no local zone, a
// Dataplane of another Mesh); a bad Dataplane or ZoneIngress is only
// skipped and reported in Problems.
func Compile(view *MeshView) (*Mesh, error) { return CompileFrom(view, nil) }

// CompileFrom is Compile that reuses prev's protos (the previous
// compilation of the same Mesh; nil for none) for every service whose protos
// come out equal, so that unchanged services keep their pointers — the xDS
// server recognizes them without hashing — and ChangedServices says which
// services changed.
func CompileFrom(view *MeshView, prev *Mesh) (*Mesh, error) {
	if view == nil || view.Mesh == nil {
		return nil, errors.New("compile: MeshView.Mesh must be set")
	}
	spec, ok := view.Mesh.Spec.(*api.MeshSpec)
	if !ok || spec == nil {
		return nil, fmt.Errorf("compile: Mesh %q: spec is %T, not *api.MeshSpec", view.Mesh.Name, view.Mesh.Spec)
	}
	if view.Mesh.Name == "" {
		return nil, errors.New("compile: Mesh name must be set")
	}
	if view.LocalZone == "" {
		return nil, errors.New("compile: MeshView.LocalZone must be set")
	}
	m := &Mesh{
		name:      view.Mesh.Name,
		localZone: view.LocalZone,
		services:  map[string]*service{},
		done:      checked{},
		filters:   map[*listener.Filter]*refs{},
		outbounds: map[outboundKey]*listener.Listener{},
		changed:   map[string]bool{},
	}
	if prev != nil && (prev.name != m.name || prev.localZone != m.localZone) {
		prev = nil
	}
	if err := m.compileSecurity(view, prev); err != nil {
		return nil, err
	}
	if err := m.compileObservability(view, spec, prev); err != nil {
		return nil, err
	}
	m.meshWide = m.meshWide || prev.obsKey() != m.obsKey()
	get := func(name string) *service {
		s := m.services[name]
		if s == nil {
			s = &service{name: name, protocols: map[string]bool{}}
			m.services[name] = s
		}
		return s
	}
	localNet := view.zone(view.LocalZone).Network
	// reachesDirectly reports whether zone z's endpoints are used as they are.
	reachesDirectly := func(z string) bool {
		if z == view.LocalZone {
			return true
		}
		info := view.zone(z)
		return !info.Disabled && info.Network == localNet
	}

	dps := slices.Clone(view.Dataplanes)
	slices.SortFunc(dps, func(a, b *api.Resource) int {
		if a == nil || b == nil {
			return cmp.Compare(nilLast(a), nilLast(b))
		}
		return cmp.Or(strings.Compare(view.dataplaneZone(a), view.dataplaneZone(b)), strings.Compare(a.Name, b.Name))
	})
	for _, dp := range dps {
		if dp == nil {
			continue
		}
		if dp.Mesh != m.name {
			return nil, fmt.Errorf("compile: Mesh %q: dataplane %s/%s belongs to another mesh", m.name, dp.Mesh, dp.Name)
		}
		zone := view.dataplaneZone(dp)
		if !reachesDirectly(zone) {
			continue // another network (reached through its ingress) or disabled
		}
		dspec, err := endpointSpec(dp)
		if err != nil {
			m.problems = append(m.problems, fmt.Errorf("skipped: %w", err))
			continue
		}
		if dspec.IsGateway() {
			continue
		}
		for i := range dspec.Networking.Inbound {
			in := &dspec.Networking.Inbound[i]
			s := get(in.Tags[api.TagService])
			s.protocols[protocolOf(in.Tags)] = true
			s.hasLocal = s.hasLocal || zone == view.LocalZone
			if in.Health != nil && !in.Health.Ready {
				continue
			}
			ip := inboundAddress(dspec, in)
			if !isIP(ip) {
				m.problems = append(m.problems, fmt.Errorf("dataplane %s/%s: networking.inbound[%d]: address %q is not an IP: endpoint skipped", dp.Mesh, dp.Name, i, ip))
				continue
			}
			e := ep{zone: zone, ip: ip, port: in.Port, weight: 1}
			s.eps = append(s.eps, e)
			if zone == view.LocalZone {
				s.localEps = append(s.localEps, e)
			}
		}
	}

	zis := slices.Clone(view.ZoneIngresses)
	slices.SortFunc(zis, func(a, b *api.Resource) int {
		if a == nil || b == nil {
			return cmp.Compare(nilLast(a), nilLast(b))
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, r := range zis {
		zi, ok := r.SpecIfZoneIngress()
		if !ok || zi == nil {
			if r != nil {
				m.problems = append(m.problems, fmt.Errorf("zone ingress %s: spec is %T, not *api.ZoneIngressSpec: skipped", r.Name, r.Spec))
			}
			continue
		}
		if reachesDirectly(zi.Zone) || view.zone(zi.Zone).Disabled {
			continue // same network: endpoints are used directly
		}
		ip, port := zi.AdvertisedAddressPort()
		if !isIP(ip) || port == 0 || port > 65535 {
			m.problems = append(m.problems, fmt.Errorf("zone ingress %s: address %s is not an IP and port: skipped", r.Name, hostPort(ip, port)))
			continue
		}
		for _, as := range zi.AvailableServices {
			name := as.Tags[api.TagService]
			if as.Mesh != m.name || as.ExternalService || name == "" {
				continue
			}
			s := get(name)
			s.protocols[protocolOf(as.Tags)] = true
			if as.Instances == 0 {
				continue
			}
			s.eps = append(s.eps, ep{zone: zi.Zone, ip: ip, port: port, weight: min(as.Instances, maxEndpointWeight), ingress: true})
		}
	}

	localityAware := spec.Routing != nil && spec.Routing.LocalityAwareLoadBalancing
	meshInputs := fmt.Sprintf("%s %s %t", m.name, m.localZone, localityAware)
	if m.mtls != nil {
		meshInputs += fmt.Sprintf(" mtls %s %x", m.mtls.Mode, sha256.Sum256(m.mtls.TrustBundlePEM))
	}
	for _, name := range sortedKeys(m.services) {
		s := m.services[name]
		s.inputs = s.inputText(meshInputs)
		if old := prev.service(name); old != nil && old.inputs == s.inputs {
			// Nothing it is built from changed: no build, no comparison.
			m.services[name] = old
			for _, x := range old.protos() {
				m.done[x] = prev.done[x]
			}
			m.filters[old.outbound] = prev.filters[old.outbound]
			m.grpc.Listeners = append(m.grpc.Listeners, old.apiListener)
			m.grpc.Routes = append(m.grpc.Routes, old.route)
			m.grpc.Clusters = append(m.grpc.Clusters, old.grpcCluster)
			m.grpc.Endpoints = append(m.grpc.Endpoints, old.cla)
			continue
		}
		if err := m.build(s, localityAware); err != nil {
			delete(m.services, name)
			m.problems = append(m.problems, fmt.Errorf("service %q: skipped: %w", name, err))
			continue
		}
		s.eps, s.localEps, s.protocols = nil, nil, nil
		if old := prev.service(name); old != nil && old.equal(s) {
			delete(m.filters, s.outbound)
			s = old
			m.services[name] = old
			for _, x := range old.protos() {
				m.done[x] = prev.done[x]
			}
			m.filters[old.outbound] = prev.filters[old.outbound]
		} else {
			m.changed[name] = true
		}
		m.grpc.Listeners = append(m.grpc.Listeners, s.apiListener)
		m.grpc.Routes = append(m.grpc.Routes, s.route)
		m.grpc.Clusters = append(m.grpc.Clusters, s.grpcCluster)
		m.grpc.Endpoints = append(m.grpc.Endpoints, s.cla)
	}
	if prev != nil {
		for name := range prev.services {
			if m.services[name] == nil {
				m.changed[name] = true
			}
		}
	}
	// The gRPC client set is every proxyless proxy's base: check it as a
	// whole once, so Proxy only checks what it adds.
	if err := validateSet(&m.grpc, m.lookup); err != nil {
		return nil, fmt.Errorf("compile: Mesh %q: gRPC client resources: %w", m.name, err)
	}
	return m, nil
}

// compileSecurity checks and keeps view's mTLS, builds the Mesh CA secret
// and compiles the traffic permissions.
func (m *Mesh) compileSecurity(view *MeshView, prev *Mesh) error {
	if t := view.MTLS; t != nil {
		mode := t.Mode
		switch mode {
		case "":
			mode = api.MTLSModeStrict
		case api.MTLSModeStrict, api.MTLSModePermissive:
		default:
			return fmt.Errorf("compile: Mesh %q: MTLS.Mode %q must be %s or %s", m.name, t.Mode, api.MTLSModeStrict, api.MTLSModePermissive)
		}
		if len(t.TrustBundlePEM) == 0 {
			return fmt.Errorf("compile: Mesh %q: mTLS is on: MTLS.TrustBundlePEM must be set", m.name)
		}
		m.mtls = &MTLS{Mode: mode, TrustBundlePEM: slices.Clone(t.TrustBundlePEM)}
		m.caSecret = meshCASecret(m.name, m.mtls.TrustBundlePEM)
		if prev != nil && prev.caSecret != nil && proto.Equal(prev.caSecret, m.caSecret) {
			m.caSecret = prev.caSecret
		}
		p := &problems{}
		checkSecret(p, fmt.Sprintf("secret %q", m.caSecret.Name), m.caSecret)
		if err := p.err(); err != nil {
			return fmt.Errorf("compile: Mesh %q: %w", m.name, err)
		}
		m.done[m.caSecret] = nil
	}
	perms, probs, err := compilePermissions(m.name, view.TrafficPermissions)
	if err != nil {
		return err
	}
	m.problems = append(m.problems, probs...)
	m.perms = perms
	var b strings.Builder
	if m.mtls != nil {
		fmt.Fprintf(&b, "mtls %s %x\n", m.mtls.Mode, m.mtls.TrustBundlePEM)
	}
	for _, r := range perms {
		b.WriteString(r.key())
	}
	m.permsKey = b.String()
	m.meshWide = prev == nil || prev.permsKey != m.permsKey
	return nil
}

// MeshWideChanged reports whether something every proxy of the Mesh
// depends on differs from the previous compilation's (CompileFrom; always
// true without one): the mTLS settings or trust bundle, the traffic
// permissions, or the Mesh's metrics, tracing and logging (its backends,
// TrafficTraces and TrafficLogs). Then every proxy needs new resources,
// whatever ChangedServices says.
func (m *Mesh) MeshWideChanged() bool { return m.meshWide }

// MTLS returns the Mesh's mTLS as compiled (mode defaulted), nil when off.
func (m *Mesh) MTLS() *MTLS {
	if m.mtls == nil {
		return nil
	}
	c := *m.mtls
	return &c
}

// build makes and validates one service's shared protos.
func (m *Mesh) build(s *service, localityAware bool) error {
	s.protocol = api.ProtocolTCP
	if len(s.protocols) == 1 {
		for p := range s.protocols {
			s.protocol = p
		}
	}
	var err error
	if s.cluster, err = edsCluster(s.name, s.protocol); err != nil {
		return err
	}
	s.grpcCluster = s.cluster
	if m.mtls != nil {
		if s.cluster.TransportSocket, err = envoyUpstreamTLS(m.name, s.name, s.protocol); err != nil {
			return err
		}
		if s.grpcCluster, err = edsCluster(s.name, s.protocol); err != nil {
			return err
		}
		if s.grpcCluster.TransportSocket, err = grpcUpstreamTLS(m.name, s.name); err != nil {
			return err
		}
	}
	s.cla = buildCLA(s.name, s.eps, m.localZone, localityAware)
	s.route = serviceRoute(s.name)
	h, err := hcmRDS(s.name, s.name)
	if err != nil {
		return err
	}
	s.apiListener = apiListener(s.name, h)
	if isHTTP(s.protocol) {
		s.outbound = networkFilter(wellknown.HTTPConnectionManager, h)
	} else {
		t, err := tcpProxy(s.name, s.name)
		if err != nil {
			return err
		}
		s.outbound = networkFilter(wellknown.TCPProxy, t)
	}

	p := &problems{}
	set := &Resources{
		Listeners: []*listener.Listener{s.apiListener},
		Routes:    []*route.RouteConfiguration{s.route},
		Clusters:  []*cluster.Cluster{s.cluster},
		Endpoints: []*endpoint.ClusterLoadAssignment{s.cla},
	}
	got := checked{
		s.apiListener: checkListener(p, fmt.Sprintf("listener %q", s.name), s.apiListener),
		s.route:       checkRouteConfiguration(p, fmt.Sprintf("route configuration %q", s.name), s.route, true),
		s.cluster:     checkCluster(p, fmt.Sprintf("cluster %q", s.name), s.cluster),
	}
	if s.grpcCluster != s.cluster {
		// Checked alone: it has the Envoy cluster's name and references
		// (its CLA), and Compile checks the gRPC set's references.
		got[s.grpcCluster] = checkCluster(p, fmt.Sprintf("cluster %q (gRPC)", s.name), s.grpcCluster)
	}
	if m.mtls != nil {
		// The Envoy cluster refers to the Mesh's secrets: the CA (checked
		// by Compile) and each proxy's identity (a placeholder here).
		set.Secrets = []*tlsv3.Secret{m.caSecret, {Name: IdentitySecretName(m.name)}}
	}
	checkCLA(p, fmt.Sprintf("cluster load assignment %q", s.name), s.cla)
	got[s.cla] = &refs{}
	outRefs := &refs{}
	checkFilterChain(p, "outbound filter", &listener.FilterChain{Filters: []*listener.Filter{s.outbound}}, outRefs)
	m.filters[s.outbound] = outRefs

	if s.hasLocal {
		s.sni = ServiceSNI(s.name, m.name)
		if s.ingressCluster, err = edsCluster(s.sni, api.ProtocolTCP); err != nil {
			return err
		}
		s.ingressCLA = buildCLA(s.sni, s.localEps, m.localZone, false)
		t, err := tcpProxy(s.sni, s.sni)
		if err != nil {
			return err
		}
		s.ingressChain = &listener.FilterChain{
			FilterChainMatch: &listener.FilterChainMatch{
				ServerNames:       []string{s.sni},
				TransportProtocol: "tls",
			},
			Filters: []*listener.Filter{networkFilter(wellknown.TCPProxy, t)},
		}
		got[s.ingressCluster] = checkCluster(p, fmt.Sprintf("cluster %q", s.sni), s.ingressCluster)
		checkCLA(p, fmt.Sprintf("cluster load assignment %q", s.sni), s.ingressCLA)
		got[s.ingressCLA] = &refs{}
		checkFilterChain(p, "ingress filter chain "+s.sni, s.ingressChain, &refs{})
		set.Clusters = append(set.Clusters, s.ingressCluster)
		set.Endpoints = append(set.Endpoints, s.ingressCLA)
	}
	if err := p.err(); err != nil {
		return err
	}
	// References of the service's own set (route → cluster → CLA,
	// secrets); the secrets are not the service's to check.
	if err := validateSet(set, func(x proto.Message) (*refs, bool) {
		if _, ok := x.(*tlsv3.Secret); ok {
			return nil, true
		}
		r, ok := got[x]
		return r, ok
	}); err != nil {
		return err
	}
	for k, v := range got {
		m.done[k] = v
	}
	return nil
}

// outboundKey identifies an outbound listener: the same address, port and
// (shared) filter make the same listener, whatever proxy it is for.
type outboundKey struct {
	ip     string
	port   uint32
	filter *listener.Filter
}

// outboundListener returns the outbound listener on ip:port with filter f,
// shared by every proxy of the Mesh that has it (proxies calling a service
// on the same local port hold one object, and the xDS server recognizes it
// by pointer).
func (m *Mesh) outboundListener(ip string, port uint32, f *listener.Filter) *listener.Listener {
	k := outboundKey{ip, port, f}
	m.outMu.Lock()
	defer m.outMu.Unlock()
	if l := m.outbounds[k]; l != nil {
		return l
	}
	l := socketListener(OutboundListenerName(ip, port), ip, port, core.TrafficDirection_OUTBOUND, f)
	m.outbounds[k] = l
	return l
}

// service returns the named service of m (nil for a nil Mesh).
func (m *Mesh) service(name string) *service {
	if m == nil {
		return nil
	}
	return m.services[name]
}

// ChangedServices returns the services whose protos differ from the
// previous compilation's (CompileFrom), removed services included, sorted:
// the proxies that use none of them, and whose own Dataplane did not
// change, need no new resources.
func (m *Mesh) ChangedServices() []string { return sortedKeys(m.changed) }

// ServiceChanged reports whether service name is among ChangedServices.
func (m *Mesh) ServiceChanged(name string) bool { return m.changed[name] }

// inputText is the canonical text of what build reads for s, after
// meshInputs (the Mesh-wide part).
func (s *service) inputText(meshInputs string) string {
	var b strings.Builder
	b.WriteString(meshInputs)
	for _, p := range sortedKeys(s.protocols) {
		b.WriteString(" p:")
		b.WriteString(p)
	}
	fmt.Fprintf(&b, " local:%t", s.hasLocal)
	for _, list := range [][]ep{s.eps, s.localEps} {
		b.WriteString(" |")
		for _, e := range list {
			fmt.Fprintf(&b, " %s/%s/%d/%d/%t", e.zone, e.ip, e.port, e.weight, e.ingress)
		}
	}
	return b.String()
}

// protos returns the service's shared protos (nil ones left out).
func (s *service) protos() []proto.Message {
	out := []proto.Message{s.cluster, s.cla, s.route, s.apiListener}
	if s.grpcCluster != s.cluster {
		out = append(out, s.grpcCluster)
	}
	if s.ingressCluster != nil {
		out = append(out, s.ingressCluster, s.ingressCLA)
	}
	return out
}

// equal reports whether two compilations of a service built equal protos.
func (s *service) equal(o *service) bool {
	return s.protocol == o.protocol && s.sni == o.sni && s.hasLocal == o.hasLocal &&
		proto.Equal(s.cluster, o.cluster) && proto.Equal(s.grpcCluster, o.grpcCluster) && proto.Equal(s.cla, o.cla) &&
		proto.Equal(s.route, o.route) && proto.Equal(s.apiListener, o.apiListener) &&
		proto.Equal(s.outbound, o.outbound) && proto.Equal(s.ingressCluster, o.ingressCluster) &&
		proto.Equal(s.ingressCLA, o.ingressCLA) && proto.Equal(s.ingressChain, o.ingressChain)
}

// lookup returns the refs of protos Compile checked.
func (m *Mesh) lookup(x proto.Message) (*refs, bool) {
	r, ok := m.done[x]
	return r, ok
}

// Proxy returns the resources of dp, a Dataplane of this Mesh in this zone,
// as a proxy of the given kind: shared protos of the Mesh plus the proxy's
// own, validated (see Validate). An invalid Dataplane gives an error naming
// it and its fields. It is ProxyWith with no options, enough for a Mesh
// without mTLS and for proxyless gRPC applications.
func (m *Mesh) Proxy(dp *api.Resource, kind Kind) (*Resources, error) {
	return m.ProxyWith(dp, kind, ProxyOptions{})
}

// ProxyWith is Proxy with the proxy's own inputs: an Envoy of a Mesh with
// mTLS on needs opts.Identity.
func (m *Mesh) ProxyWith(dp *api.Resource, kind Kind, opts ProxyOptions) (*Resources, error) {
	if dp == nil {
		return nil, errors.New("proxy: nil Dataplane")
	}
	if dp.Mesh != m.name {
		return nil, fmt.Errorf("proxy: dataplane %s/%s is not in Mesh %q", dp.Mesh, dp.Name, m.name)
	}
	if z := dp.Labels[api.LabelZone]; z != "" && z != m.localZone {
		return nil, fmt.Errorf("proxy: dataplane %s/%s is in zone %q, not in this zone %q", dp.Mesh, dp.Name, z, m.localZone)
	}
	spec, err := dataplaneSpec(dp)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var res *Resources
	switch kind {
	case KindEnvoy:
		if res, err = m.envoy(dp.Name, spec, opts); err == nil {
			res.sort()
			err = validateSetWith(res, m.lookup, m.filterRefs)
		}
	case KindGRPC:
		if res, err = m.grpcProxy(dp.Name, spec); err == nil && m.mtls != nil && opts.Identity != nil {
			// Not for grpc-go (it reads certificate files): for the
			// proxy's agent, which fetches them over SDS and writes them.
			var id *tlsv3.Secret
			if id, err = identitySecret(m.name, opts.Identity); err == nil {
				own := &Resources{Secrets: []*tlsv3.Secret{m.caSecret, id}}
				if err = validateSet(own, m.lookup); err == nil {
					res.Secrets = own.Secrets
				}
			}
		}
	default:
		err = fmt.Errorf("unknown proxy kind %v", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("proxy: dataplane %s/%s (%s): %w", dp.Mesh, dp.Name, kind, err)
	}
	return res, nil
}

// envoy builds an Envoy sidecar's (or delegated gateway's) resources.
func (m *Mesh) envoy(name string, spec *api.DataplaneSpec, opts ProxyOptions) (*Resources, error) {
	if g := spec.Networking.Gateway; g != nil && g.Type == api.GatewayBuiltin {
		return nil, errors.New("networking.gateway.type: BUILTIN gateways are not generated yet")
	}
	res := &Resources{}
	if m.mtls != nil {
		id, err := identitySecret(m.name, opts.Identity)
		if err != nil {
			return nil, err
		}
		res.Secrets = []*tlsv3.Secret{m.caSecret, id}
	}
	// Tracing and access logs (see the package doc, "Observability"):
	// nothing is matched in a Mesh without TrafficTraces and TrafficLogs.
	o := m.obs
	var tagSets []map[string]string
	var tr *tracer
	traced := false // some HTTP connection manager uses tr
	if len(o.traces) > 0 || len(o.logs) > 0 {
		tagSets = spec.Tags()
		if len(o.traces) > 0 {
			tr = o.tracerFor(tagSets)
		}
	}
	clusters := map[string]bool{}
	for i := range spec.Networking.Inbound {
		in := &spec.Networking.Inbound[i]
		at := fmt.Sprintf("networking.inbound[%d]", i)
		ip := inboundAddress(spec, in)
		if !isIP(ip) {
			return nil, fmt.Errorf("%s: address %q must be an IP: Envoy binds the inbound listener to it", at, ip)
		}
		wip := workloadAddress(spec, in)
		if !isIP(wip) {
			return nil, fmt.Errorf("%s.serviceAddress: %q must be an IP", at, wip)
		}
		protocol := protocolOf(in.Tags)
		local := LocalClusterName(wip, in.WorkloadPort())
		if !clusters[local] {
			clusters[local] = true
			c, err := localCluster(local, wip, in.WorkloadPort(), protocol)
			if err != nil {
				return nil, err
			}
			res.Clusters = append(res.Clusters, c)
		}
		l, err := m.envoyInbound(InboundListenerName(ip, in.Port), name, in, ip, local, tr)
		if err != nil {
			return nil, err
		}
		traced = traced || (tr != nil && isHTTP(protocol))
		res.Listeners = append(res.Listeners, l)
	}
	for i := range spec.Networking.Outbound {
		out := &spec.Networking.Outbound[i]
		ip := out.Address
		if ip == "" {
			ip = api.DefaultOutboundAddress
		}
		svc := out.Tags[api.TagService]
		s := m.services[svc]
		var lg *logger
		var format string
		if len(o.logs) > 0 {
			if lg = o.loggerFor(tagSets, out.Tags); lg != nil {
				protocol := api.ProtocolTCP
				if s != nil {
					protocol = s.protocol
				}
				format = m.accessLogFormat(lg, protocol, spec, svc)
			}
		}
		var f *listener.Filter
		if s != nil {
			f = s.outbound
			if lg != nil || (tr != nil && isHTTP(s.protocol)) {
				var err error
				if f, err = m.outboundVariant(s, tr, lg, format); err != nil {
					return nil, err
				}
				traced = traced || (tr != nil && isHTTP(s.protocol))
			}
			if !clusters[svc] {
				res.Clusters = append(res.Clusters, s.cluster)
				res.Endpoints = append(res.Endpoints, s.cla)
				if isHTTP(s.protocol) {
					res.Routes = append(res.Routes, s.route)
				}
			}
		} else {
			// A service nobody in view serves: a TCP cluster with no
			// endpoints, the proxy's own, so the listener resolves.
			var err error
			if f, err = outboundFilter(svc, api.ProtocolTCP, nil, lg, format); err != nil {
				return nil, err
			}
			if !clusters[svc] {
				c, err := edsCluster(svc, api.ProtocolTCP)
				if err != nil {
					return nil, err
				}
				if m.mtls != nil {
					if c.TransportSocket, err = envoyUpstreamTLS(m.name, svc, api.ProtocolTCP); err != nil {
						return nil, err
					}
				}
				res.Clusters = append(res.Clusters, c)
				res.Endpoints = append(res.Endpoints, &endpoint.ClusterLoadAssignment{ClusterName: svc})
			}
		}
		clusters[svc] = true
		res.Listeners = append(res.Listeners, m.outboundListener(ip, out.Port, f))
	}
	if traced {
		res.Clusters = append(res.Clusters, tr.cluster)
	}
	if b := o.metricsOf(spec); b != nil {
		l, admin, err := m.statsListener(spec, b, opts.AdminPort)
		if err != nil {
			return nil, err
		}
		if l != nil {
			res.Listeners = append(res.Listeners, l)
			res.Clusters = append(res.Clusters, admin)
		}
	}
	return res, nil
}

// envoyInbound is an Envoy inbound listener named name, on ip and the
// inbound's port, to the local cluster: plaintext with mTLS off; with
// mTLS, TLS with the RBAC of the inbound (STRICT), or a TLS chain with
// RBAC and a plaintext chain without, told apart by the TLS inspector
// (PERMISSIVE). tr (nil: none) traces an HTTP inbound.
func (m *Mesh) envoyInbound(name string, dp string, in *api.DataplaneInbound, ip, local string, tr *tracer) (*listener.Listener, error) {
	svc, protocol := in.Tags[api.TagService], protocolOf(in.Tags)
	filters := func(rules *rbac.RBAC) ([]*listener.Filter, error) {
		if isHTTP(protocol) {
			var hf []*hcm.HttpFilter
			if rules != nil {
				f, err := rbacHTTPFilter(rules)
				if err != nil {
					return nil, err
				}
				hf = append(hf, f)
			}
			h := &hcm.HttpConnectionManager{
				StatPrefix:     statPrefix(name),
				RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: inboundRoute(svc, local)},
			}
			if tr != nil {
				h.Tracing = tr.config
			}
			a, err := hcmWith(h, hf...)
			if err != nil {
				return nil, err
			}
			return []*listener.Filter{networkFilter(wellknown.HTTPConnectionManager, a)}, nil
		}
		var out []*listener.Filter
		if rules != nil {
			f, err := rbacNetworkFilter(statPrefix(name), rules)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
		t, err := tcpProxy(statPrefix(name), local)
		if err != nil {
			return nil, err
		}
		return append(out, networkFilter(wellknown.TCPProxy, t)), nil
	}
	if m.mtls == nil {
		fs, err := filters(nil)
		if err != nil {
			return nil, err
		}
		return socketListener(name, ip, in.Port, core.TrafficDirection_INBOUND, fs[0]), nil
	}
	fs, err := filters(inboundRBAC(m.perms, dp, in.Tags))
	if err != nil {
		return nil, err
	}
	ts, err := envoyDownstreamTLS(m.name, protocol)
	if err != nil {
		return nil, err
	}
	l := &listener.Listener{
		Name:             name,
		Address:          socketAddress(ip, in.Port),
		TrafficDirection: core.TrafficDirection_INBOUND,
		FilterChains:     []*listener.FilterChain{{Filters: fs, TransportSocket: ts}},
	}
	if m.mtls.permissive() {
		plain, err := filters(nil)
		if err != nil {
			return nil, err
		}
		tls, err := tlsInspector()
		if err != nil {
			return nil, err
		}
		l.ListenerFilters = []*listener.ListenerFilter{tls}
		l.FilterChains[0].Name = "mtls"
		l.FilterChains[0].FilterChainMatch = &listener.FilterChainMatch{TransportProtocol: "tls"}
		l.FilterChains = append(l.FilterChains, &listener.FilterChain{
			Name:             "plaintext",
			FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "raw_buffer"},
			Filters:          plain,
		})
	}
	return l, nil
}

// grpcProxy builds a proxyless gRPC application's resources: every
// service's client side, and a server listener per inbound (at the
// inbound's address and port, where the application itself listens).
// With mTLS on, the server listeners require TLS with a client
// certificate and carry the inbound's RBAC, in PERMISSIVE mode too: grpc-go
// drops filter chains that match transport_protocol "tls" and does not
// sniff, so one listener cannot accept both.
func (m *Mesh) grpcProxy(name string, spec *api.DataplaneSpec) (*Resources, error) {
	own := &Resources{}
	for i := range spec.Networking.Inbound {
		in := &spec.Networking.Inbound[i]
		ip := inboundAddress(spec, in)
		if !isIP(ip) {
			return nil, fmt.Errorf("networking.inbound[%d]: address %q must be an IP: the gRPC server listener is named after it", i, ip)
		}
		var ts *core.TransportSocket
		var rules *rbac.RBAC
		if m.mtls != nil {
			var err error
			if ts, err = grpcDownstreamTLS(); err != nil {
				return nil, err
			}
			rules = inboundRBAC(m.perms, name, in.Tags)
		}
		l, err := grpcServerListener(ip, in.Port, ts, rules)
		if err != nil {
			return nil, err
		}
		if m.services[l.Name] != nil {
			return nil, fmt.Errorf("networking.inbound[%d]: server listener %q has the name of a service's API listener", i, l.Name)
		}
		own.Listeners = append(own.Listeners, l)
	}
	// The client side (m.grpc) was validated as a whole by Compile; the
	// server listeners refer to nothing, so checking them alone suffices.
	own.sort()
	if err := validateSet(own, nil); err != nil {
		return nil, err
	}
	res := &Resources{
		Listeners: make([]*listener.Listener, 0, len(m.grpc.Listeners)+len(own.Listeners)),
		Routes:    slices.Clone(m.grpc.Routes),
		Clusters:  slices.Clone(m.grpc.Clusters),
		Endpoints: slices.Clone(m.grpc.Endpoints),
	}
	res.Listeners = append(append(res.Listeners, m.grpc.Listeners...), own.Listeners...)
	slices.SortFunc(res.Listeners, func(a, b *listener.Listener) int { return strings.Compare(a.Name, b.Name) })
	return res, nil
}

func nilLast(r *api.Resource) int {
	if r == nil {
		return 1
	}
	return 0
}

// statPrefix turns a resource name into an Envoy stat prefix.
func statPrefix(name string) string {
	return strings.NewReplacer(":", "_", "[", "", "]", "").Replace(name)
}
