package generate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
