package api

import (
	"fmt"
	"strings"
)

// MeshGatewaySpec is the body of a MeshGateway (Kuma's
// mesh.v1alpha1.MeshGateway, inline): the listeners of the builtin gateway
// dataplanes its selectors match.
type MeshGatewaySpec struct {
	// Selectors (required, non-empty) pick the gateway dataplanes.
	Selectors []Selector `json:"selectors,omitempty"`
	// Tags are added to every listener's tags.
	Tags map[string]string `json:"tags,omitempty"`
	// Conf holds the listeners.
	Conf MeshGatewayConf `json:"conf"`
}

// MeshGatewayConf mirrors Kuma's MeshGateway.Conf.
type MeshGatewayConf struct {
	// Listeners (required, non-empty); (port, hostname) is unique.
	Listeners []MeshGatewayListener `json:"listeners,omitempty"`
}

// Listener protocols and TLS modes.
const (
	GatewayProtocolHTTP  = "HTTP"
	GatewayProtocolHTTPS = "HTTPS"
	GatewayProtocolTCP   = "TCP"
	GatewayProtocolTLS   = "TLS"

	GatewayTLSTerminate   = "TERMINATE"
	GatewayTLSPassthrough = "PASSTHROUGH"
)

// MeshGatewayListener mirrors Kuma's MeshGateway.Listener.
type MeshGatewayListener struct {
	// Hostname is "*" (default), a DNS name, or "*." and a DNS name.
	Hostname string `json:"hostname,omitempty"`
	// Port (required) is the listening port.
	Port uint32 `json:"port"`
	// Protocol (required) is HTTP, HTTPS, TCP or TLS.
	Protocol string `json:"protocol"`
	// TLS is required for HTTPS and TLS and forbidden for HTTP and TCP.
	TLS *MeshGatewayTLS `json:"tls,omitempty"`
	// Tags are the listener's tags (routes select listeners by them).
	Tags map[string]string `json:"tags,omitempty"`
	// CrossMesh lets clients from other Meshes use the listener (HTTP and
	// HTTPS only). It cannot share its port with a non-cross-mesh
	// listener.
	CrossMesh bool `json:"crossMesh,omitempty"`
	// Resources limits the listener.
	Resources *MeshGatewayResources `json:"resources,omitempty"`
}

// MeshGatewayTLS mirrors Kuma's MeshGateway.TLS.Conf.
type MeshGatewayTLS struct {
	// Mode is TERMINATE (default) or PASSTHROUGH.
	Mode string `json:"mode,omitempty"`
	// Certificates to present when terminating; at least one for
	// TERMINATE, none for PASSTHROUGH.
	Certificates []DataSource `json:"certificates,omitempty"`
}

// MeshGatewayResources mirrors Kuma's MeshGateway.Listener.Resources.
type MeshGatewayResources struct {
	// ConnectionLimit caps concurrent connections; 0 means no limit.
	ConnectionLimit uint32 `json:"connectionLimit,omitempty"`
}

// Default implements Spec: listeners answer every hostname ("*"), and TLS
// terminates.
func (s *MeshGatewaySpec) Default() {
	for i := range s.Conf.Listeners {
		l := &s.Conf.Listeners[i]
		if l.Hostname == "" {
			l.Hostname = "*"
		}
		if l.TLS != nil && l.TLS.Mode == "" {
			l.TLS.Mode = GatewayTLSTerminate
		}
	}
}

// Validate implements Spec.
func (s *MeshGatewaySpec) Validate(v *Validator, at Path) {
	validateSelectors(v, at.Field("selectors"), s.Selectors)
	ValidateTags(v, at.Field("tags"), s.Tags)

	lp := at.Field("conf").Field("listeners")
	if len(s.Conf.Listeners) == 0 {
		v.Add(lp, "must not be empty")
	}
	type portInfo struct {
		protocol  string
		crossMesh bool
	}
	ports := map[uint32]portInfo{} // first listener on each port
	seen := map[string]bool{}      // port/hostname pairs
	for i, l := range s.Conf.Listeners {
		p := lp.Index(i)
		v.Port(p.Field("port"), l.Port)
		requiredOneOf(v, p.Field("protocol"), l.Protocol,
			GatewayProtocolHTTP, GatewayProtocolHTTPS, GatewayProtocolTCP, GatewayProtocolTLS)
		validateGatewayHostname(v, p.Field("hostname"), l.Hostname)
		ValidateTags(v, p.Field("tags"), l.Tags)

		if l.CrossMesh && l.Protocol != GatewayProtocolHTTP && l.Protocol != GatewayProtocolHTTPS {
			v.Add(p.Field("crossMesh"), "is only allowed with protocol HTTP or HTTPS")
		}

		host := l.Hostname
		if host == "" {
			host = "*"
		}
		key := fmt.Sprintf("%d/%s", l.Port, strings.ToLower(host))
		if l.Port != 0 {
			if seen[key] {
				v.Add(p.Field("hostname"), "duplicate listener for port %d and hostname %q", l.Port, host)
			}
			seen[key] = true
			if first, ok := ports[l.Port]; ok {
				if first.crossMesh != l.CrossMesh {
					v.Add(p.Field("port"), "cross-mesh and non-cross-mesh listeners cannot share port %d", l.Port)
				}
				if first.protocol != l.Protocol {
					v.Add(p.Field("protocol"), "listeners on port %d must all use protocol %s", l.Port, first.protocol)
				}
			} else {
				ports[l.Port] = portInfo{protocol: l.Protocol, crossMesh: l.CrossMesh}
			}
		}

		tp := p.Field("tls")
		switch l.Protocol {
		case GatewayProtocolHTTPS, GatewayProtocolTLS:
			if l.TLS == nil {
				v.Add(tp, "must be set for protocol %s", l.Protocol)
			}
		case GatewayProtocolHTTP, GatewayProtocolTCP:
			if l.TLS != nil {
				v.Add(tp, "must not be set for protocol %s", l.Protocol)
			}
		}
		if t := l.TLS; t != nil {
			v.OneOf(tp.Field("mode"), t.Mode, true, GatewayTLSTerminate, GatewayTLSPassthrough)
			switch t.Mode {
			case GatewayTLSTerminate, "":
				if len(t.Certificates) == 0 {
					v.Add(tp.Field("certificates"), "must not be empty when mode is TERMINATE")
				}
			case GatewayTLSPassthrough:
				if l.Protocol == GatewayProtocolHTTPS {
					v.Add(tp.Field("mode"), "must be TERMINATE for protocol HTTPS")
				}
				if len(t.Certificates) > 0 {
					v.Add(tp.Field("certificates"), "must be empty when mode is PASSTHROUGH")
				}
			}
			for j := range t.Certificates {
				validateDataSource(v, tp.Field("certificates").Index(j), &t.Certificates[j])
			}
		}
	}
}

// validateGatewayHostname accepts "" (defaulted to "*"), "*", a DNS name,
// or "*." followed by a DNS name.
func validateGatewayHostname(v *Validator, p Path, h string) {
	if h == "" || h == "*" {
		return
	}
	if !IsHostname(strings.TrimPrefix(h, "*.")) {
		v.Add(p, "must be \"*\", a DNS name, or \"*.\" followed by a DNS name")
	}
}
