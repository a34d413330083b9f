package generate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/meshfed/meshfed/api"
)

// Name prefixes of per-proxy resources (see the package doc).
const (
	inboundPrefix  = "inbound:"
	outboundPrefix = "outbound:"
	localPrefix    = "local:"
	ingressPrefix  = "ingress:"
)

// InboundListenerName is the name of an Envoy inbound listener.
func InboundListenerName(ip string, port uint32) string { return inboundPrefix + hostPort(ip, port) }

// OutboundListenerName is the name of an Envoy outbound listener.
func OutboundListenerName(ip string, port uint32) string {
	return outboundPrefix + hostPort(ip, port)
}

// LocalClusterName is the name of the STATIC cluster of the application
// behind an inbound.
func LocalClusterName(ip string, port uint32) string { return localPrefix + hostPort(ip, port) }

// IngressListenerName is the name of a ZoneIngress listener.
func IngressListenerName(ip string, port uint32) string { return ingressPrefix + hostPort(ip, port) }

// GRPCServerListenerName is the Listener name a proxyless gRPC server
// listening on ip:port asks for (GRPCServerListenerTemplate).
func GRPCServerListenerName(ip string, port uint32) string {
	return fmt.Sprintf(GRPCServerListenerTemplate, hostPort(ip, port))
}

// ServiceSNI is the TLS server name that selects service of mesh at a
// ZoneIngress, and the name of the ingress's cluster and CLA for it:
// "<service>.<mesh>.mesh" when service is a DNS label, otherwise the
// service lowercased with every character outside [a-z0-9-] replaced by '-'
// (trimmed to 40 characters and of leading/trailing '-'), then '-' and
// the first 8 hex digits of sha256(service). The result is a valid host
// name for any service and any valid Mesh name (at most 63+5+63 characters).
func ServiceSNI(service, mesh string) string {
	if api.IsDNSLabel(service) {
		return service + "." + mesh + ".mesh"
	}
	var b strings.Builder
	for _, r := range strings.ToLower(service) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	label := strings.Trim(b.String(), "-")
	sum := sha256.Sum256([]byte(service))
	h := hex.EncodeToString(sum[:4])
	if label == "" {
		label = "svc"
	}
	return label + "-" + h + "." + mesh + ".mesh"
}

// Names of the mTLS material (see the package doc, "mTLS").
const (
	meshCAPrefix   = "mesh_ca:"
	identityPrefix = "identity_cert:"

	// GRPCCertProvider is the certificate provider instance a proxyless
	// gRPC application's TLS contexts name, for its identity and for the
	// Mesh's trust bundle: the gRPC bootstrap's certificate_providers map
	// must define it (a file_watcher over the files the zone's agent
	// writes).
	GRPCCertProvider = "meshfed"
	// GRPCCertName is the certificate_name passed to GRPCCertProvider
	// (file_watcher ignores it).
	GRPCCertName = "default"
)

// MeshCASecretName is the name of the SDS secret holding mesh's trust
// bundle (a validation context), shared by every Envoy of the Mesh.
func MeshCASecretName(mesh string) string { return meshCAPrefix + mesh }

// IdentitySecretName is the name of the SDS secret holding an Envoy's own
// certificate and key. The name is the same for every proxy of mesh, only
// the content differs per proxy: SDS resources are served per node, and the
// Mesh's clusters, which refer to the secret, stay shared.
func IdentitySecretName(mesh string) string { return identityPrefix + mesh }

// SPIFFEID is the identity (URI SAN) of service's proxies in mesh:
// "spiffe://<mesh>/<service>", the service path-escaped, as ca.SPIFFEID
// writes it into certificates.
func SPIFFEID(mesh, service string) string { return "spiffe://" + mesh + "/" + url.PathEscape(service) }

// KumaTagURI is the URI SAN that says a proxy carries the tag name=value,
// as in Kuma: "kuma://<name>/<value>", the value path-escaped, as
// ca.TagURI writes it. MeshTrafficPermission sources selected by tags are
// matched on these; certificates carry no URI for kuma.io/service (the
// SPIFFE ID says it), so a kuma.io/service tag is matched on the SPIFFE ID.
func KumaTagURI(name, value string) string { return "kuma://" + name + "/" + url.PathEscape(value) }
