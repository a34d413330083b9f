package generate

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/meshfed/meshfed/api"
)

// Kind is the kind of proxy a Dataplane runs.
type Kind int

const (
	// KindEnvoy is an Envoy sidecar (or delegated gateway): the default.
	KindEnvoy Kind = iota
	// KindGRPC is a proxyless gRPC application using grpc-go's xDS client
	// and xDS-enabled server.
	KindGRPC
)

func (k Kind) String() string {
	switch k {
	case KindEnvoy:
		return "envoy"
	case KindGRPC:
		return "grpc"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// LabelProxy is the Dataplane label that selects the proxy kind; the value
// ProxyGRPC makes the Dataplane a proxyless gRPC application (KindGRPC).
const (
	LabelProxy = "meshfed.io/proxy"
	ProxyGRPC  = "grpc"
)

// GRPCServerListenerTemplate is the name template of a proxyless gRPC
// server's Listener; it is the value to put in the gRPC bootstrap's
// server_listener_resource_name_template. %s is "<ip>:<port>" (IPv6 in
// brackets), as grpc-go formats it.
const GRPCServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// KindOf returns the kind of proxy dp runs, from its LabelProxy label.
func KindOf(dp *api.Resource) Kind {
	if dp != nil && dp.Labels[LabelProxy] == ProxyGRPC {
		return KindGRPC
	}
	return KindEnvoy
}

// Zone is what generation needs to know of a zone. The zero value is an
// enabled zone on a network of its own, as for api.ZoneSpec defaults.
type Zone struct {
	// Network is the zone's network; empty means the zone's own name.
	Network string
	// Disabled zones contribute no endpoints.
	Disabled bool
}

// ZoneOf converts a Zone resource's spec (nil means defaults).
func ZoneOf(s *api.ZoneSpec) Zone {
	if s == nil {
		return Zone{}
	}
	return Zone{Network: s.Network, Disabled: !s.IsEnabled()}
}

// MeshView is one Mesh as seen from one zone: everything generation reads.
// The zone builds one per Mesh per change and passes it to Compile; Compile
// does not keep or modify it (the resources are only read).
type MeshView struct {
	// Mesh is the Mesh resource (Spec *api.MeshSpec, defaults applied).
	Mesh *api.Resource
	// LocalZone is the name of the zone generating (required).
	LocalZone string
	// Zones describes the known zones by name. A zone missing from the map
	// (the local one included) is taken as Zone{}: enabled, on a network of
	// its own.
	Zones map[string]Zone
	// Dataplanes are every Dataplane of the Mesh this zone can see: its own
	// and those global fanned out from zones on the same network. A
	// Dataplane's zone is its api.LabelZone label; empty means LocalZone.
	Dataplanes []*api.Resource
	// ZoneIngresses are every ZoneIngress the zone knows (all zones, all
	// meshes: availableServices say which Mesh each service belongs to).
	ZoneIngresses []*api.Resource
	// MTLS is the Mesh's mutual TLS; nil means mTLS is off (see MTLSOf).
	// With mTLS off nothing below is generated: no TLS, no secrets, no
	// RBAC (every source is allowed).
	MTLS *MTLS
	// TrafficPermissions are the Mesh's MeshTrafficPermissions (Spec
	// *api.MeshTrafficPermissionSpec). They are enforced (as RBAC on
	// inbounds) only with mTLS on, where the source's identity is known.
	TrafficPermissions []*api.Resource
	// TrafficTraces are the Mesh's TrafficTraces (Spec
	// *api.TrafficTraceSpec): tracing, through one of the Mesh's
	// tracing.backends, on the HTTP connection managers of the Envoys they
	// select (see the package doc, "Observability").
	TrafficTraces []*api.Resource
	// TrafficLogs are the Mesh's TrafficLogs (Spec *api.TrafficLogSpec):
	// access logs, through one of the Mesh's logging.backends, on the
	// outbound listeners of the Envoys their sources select towards the
	// services their destinations select.
	TrafficLogs []*api.Resource
}

// MTLS is what generation needs of a Mesh's mutual TLS. Certificates
// themselves are made elsewhere (ca/, zone/); generation only places the
// trust bundle's bytes into the Mesh's Envoy CA secret.
type MTLS struct {
	// Mode is api.MTLSModeStrict (the default when empty) or
	// api.MTLSModePermissive (Envoy inbounds also accept plaintext).
	Mode string
	// TrustBundlePEM is the PEM of the CA certificates a proxy of the Mesh
	// trusts (the Mesh's root, and the previous one during a rotation).
	// Required: it is served to Envoys as the secret MeshCASecretName.
	TrustBundlePEM []byte
}

// MTLSOf returns the MTLS of a Mesh spec: nil when it has no enabled mTLS
// backend, else the enabled backend's mode with trustBundle.
func MTLSOf(spec *api.MeshSpec, trustBundle []byte) *MTLS {
	if spec == nil {
		return nil
	}
	b := spec.MTLSBackend()
	if b == nil {
		return nil
	}
	return &MTLS{Mode: b.Mode, TrustBundlePEM: trustBundle}
}

// permissive reports whether mode is PERMISSIVE (mode is checked by Compile).
func (t *MTLS) permissive() bool { return t != nil && t.Mode == api.MTLSModePermissive }

// ProxyOptions are a proxy's own inputs besides its Dataplane.
type ProxyOptions struct {
	// Identity is the proxy's certificate. Required for an Envoy proxy of a
	// Mesh with mTLS on (it becomes the proxy's IdentitySecretName secret).
	// A proxyless gRPC application reads its certificate from files, through
	// the bootstrap's GRPCCertProvider; given an Identity, its resources
	// carry the same two secrets for the agent that writes those files
	// (meshd dp grpc-agent, over SDS). Ignored without mTLS.
	Identity *Identity
	// AdminPort is the port of the Envoy's admin listener on 127.0.0.1
	// (its bootstrap's), which the Prometheus stats listener forwards to;
	// 0 means EnvoyAdminPort (xds/bootstrap's default).
	AdminPort uint32
}

// Identity is a proxy's certificate chain (leaf first) and private key, in
// PEM. The certificate carries the URI SANs the Mesh's RBAC matches: the
// SPIFFE ID SPIFFEID(mesh, service) of each of the proxy's services and
// KumaTagURI(tag, value) for each of its inbound tags.
type Identity struct {
	CertChainPEM []byte
	KeyPEM       []byte
}

// network returns the effective network of zone z.
func (v *MeshView) zone(z string) Zone {
	info := v.Zones[z]
	if info.Network == "" {
		info.Network = z
	}
	return info
}

// dataplaneZone returns the zone a Dataplane belongs to.
func (v *MeshView) dataplaneZone(dp *api.Resource) string {
	if z := dp.Labels[api.LabelZone]; z != "" {
		return z
	}
	return v.LocalZone
}

// dataplaneSpec returns dp's spec, validated: an error names the Dataplane
// and every field problem.
func dataplaneSpec(dp *api.Resource) (*api.DataplaneSpec, error) {
	if dp == nil {
		return nil, errors.New("nil Dataplane")
	}
	spec, ok := dp.Spec.(*api.DataplaneSpec)
	if !ok || spec == nil {
		return nil, fmt.Errorf("dataplane %s/%s: spec is %T, not *api.DataplaneSpec", dp.Mesh, dp.Name, dp.Spec)
	}
	v := &api.Validator{}
	spec.Validate(v, "")
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("dataplane %s/%s: %w", dp.Mesh, dp.Name, err)
	}
	return spec, nil
}

// endpointSpec returns dp's spec after the checks Compile relies on (a
// service tag and a valid port on every inbound). Stored Dataplanes passed
// api.Prepare already; the full validation runs in Proxy, for the one
// Dataplane, where it is cheap.
func endpointSpec(dp *api.Resource) (*api.DataplaneSpec, error) {
	spec, ok := dp.Spec.(*api.DataplaneSpec)
	if !ok || spec == nil {
		return nil, fmt.Errorf("dataplane %s/%s: spec is %T, not *api.DataplaneSpec", dp.Mesh, dp.Name, dp.Spec)
	}
	for i, in := range spec.Networking.Inbound {
		if in.Tags[api.TagService] == "" {
			return nil, fmt.Errorf("dataplane %s/%s: networking.inbound[%d].tags: must contain the %q tag", dp.Mesh, dp.Name, i, api.TagService)
		}
		if in.Port == 0 || in.Port > 65535 {
			return nil, fmt.Errorf("dataplane %s/%s: networking.inbound[%d].port: must be between 1 and 65535", dp.Mesh, dp.Name, i)
		}
	}
	return spec, nil
}

// inboundAddress returns the address an inbound listens on and is reached at.
func inboundAddress(spec *api.DataplaneSpec, in *api.DataplaneInbound) string {
	if in.Address != "" {
		return in.Address
	}
	return spec.Networking.Address
}

// workloadAddress returns the address of the application behind an inbound:
// serviceAddress, or the inbound's address (see api.DataplaneInbound).
func workloadAddress(spec *api.DataplaneSpec, in *api.DataplaneInbound) string {
	if in.ServiceAddress != "" {
		return in.ServiceAddress
	}
	return inboundAddress(spec, in)
}

// protocolOf returns the protocol of a tag set: kuma.io/protocol, tcp when
// unset. kafka and unknown values are tcp for generation.
func protocolOf(tags map[string]string) string {
	switch p := tags[api.TagProtocol]; p {
	case api.ProtocolHTTP, api.ProtocolHTTP2, api.ProtocolGRPC:
		return p
	default:
		return api.ProtocolTCP
	}
}

// isHTTP reports whether a protocol is served by the HTTP connection manager.
func isHTTP(protocol string) bool {
	return protocol == api.ProtocolHTTP || protocol == api.ProtocolHTTP2 || protocol == api.ProtocolGRPC
}

// isHTTP2 reports whether a protocol needs HTTP/2 to the upstream.
func isHTTP2(protocol string) bool {
	return protocol == api.ProtocolHTTP2 || protocol == api.ProtocolGRPC
}

// hostPort joins an address and port, bracketing IPv6.
func hostPort(ip string, port uint32) string {
	return net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
}

// isIP reports whether s is an IP address (Envoy binds and EDS endpoints
// need IPs).
func isIP(s string) bool { return net.ParseIP(s) != nil }

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
