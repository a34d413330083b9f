package api

import "fmt"

// DataplaneSpec is the body of a Dataplane (Kuma's mesh.v1alpha1.Dataplane,
// inline): one proxy's addresses, inbounds (or gateway) and outbounds, and
// an optional override of the Mesh's metrics backend.
type DataplaneSpec struct {
	// Networking mirrors Kuma's Dataplane.networking.
	Networking DataplaneNetworking `json:"networking"`
	// Metrics mirrors Kuma's Dataplane.metrics: unset fields come from the
	// Mesh's enabled metrics backend (see EffectiveMetrics).
	Metrics *MetricsBackend `json:"metrics,omitempty"`
}

// DataplaneNetworking mirrors Kuma's Dataplane.Networking.
type DataplaneNetworking struct {
	// Address (required) is the IP or DNS name other proxies reach this
	// one at.
	Address string `json:"address"`
	// AdvertisedAddress is the address seen from outside (behind NAT).
	AdvertisedAddress string `json:"advertisedAddress,omitempty"`
	// Gateway makes this dataplane a gateway; it excludes Inbound.
	Gateway *DataplaneGateway `json:"gateway,omitempty"`
	// Inbound lists the services this proxy serves.
	Inbound []DataplaneInbound `json:"inbound,omitempty"`
	// Outbound lists the services this proxy's application calls.
	Outbound []DataplaneOutbound `json:"outbound,omitempty"`
}

// Protocols an inbound may declare in its kuma.io/protocol tag.
const (
	ProtocolHTTP  = "http"
	ProtocolHTTP2 = "http2"
	ProtocolGRPC  = "grpc"
	ProtocolTCP   = "tcp"
	ProtocolKafka = "kafka"
)

// DataplaneInbound mirrors Kuma's Dataplane.Networking.Inbound.
type DataplaneInbound struct {
	// Port (required) is the port the proxy listens on.
	Port uint32 `json:"port"`
	// ServicePort is the application's port; 0 means Port.
	ServicePort uint32 `json:"servicePort,omitempty"`
	// ServiceAddress is the application's IP; empty means the inbound's
	// address.
	ServiceAddress string `json:"serviceAddress,omitempty"`
	// Address overrides networking.address for this inbound.
	Address string `json:"address,omitempty"`
	// Tags (required) must contain kuma.io/service.
	Tags map[string]string `json:"tags,omitempty"`
	// Health is the inbound's health as reported by the zone.
	Health *InboundHealth `json:"health,omitempty"`
}

// InboundHealth mirrors Kuma's Inbound.Health.
type InboundHealth struct {
	Ready bool `json:"ready"`
}

// DataplaneOutbound mirrors Kuma's Dataplane.Networking.Outbound.
type DataplaneOutbound struct {
	// Address is the local address the application dials; default
	// 127.0.0.1.
	Address string `json:"address,omitempty"`
	// Port (required) is the local port the application dials.
	Port uint32 `json:"port"`
	// Tags (required) must contain kuma.io/service.
	Tags map[string]string `json:"tags,omitempty"`
}

// Gateway types.
const (
	GatewayDelegated = "DELEGATED"
	GatewayBuiltin   = "BUILTIN"
)

// DataplaneGateway mirrors Kuma's Dataplane.Networking.Gateway.
type DataplaneGateway struct {
	// Type is DELEGATED (another proxy, such as Kong, in front) or BUILTIN
	// (configured by MeshGateway); default DELEGATED.
	Type string `json:"type,omitempty"`
	// Tags (required) must contain kuma.io/service.
	Tags map[string]string `json:"tags,omitempty"`
}

// DefaultOutboundAddress is the default address of an outbound.
const DefaultOutboundAddress = "127.0.0.1"

// Default implements Spec: outbounds on 127.0.0.1, gateways DELEGATED.
func (s *DataplaneSpec) Default() {
	n := &s.Networking
	for i := range n.Outbound {
		if n.Outbound[i].Address == "" {
			n.Outbound[i].Address = DefaultOutboundAddress
		}
	}
	if n.Gateway != nil && n.Gateway.Type == "" {
		n.Gateway.Type = GatewayDelegated
	}
}

// Validate implements Spec.
func (s *DataplaneSpec) Validate(v *Validator, at Path) {
	n := &s.Networking
	np := at.Field("networking")
	validateAddress(v, np.Field("address"), n.Address, true)
	validateAddress(v, np.Field("advertisedAddress"), n.AdvertisedAddress, false)

	switch {
	case len(n.Inbound) == 0 && n.Gateway == nil:
		v.Add(np, "must have at least one inbound or a gateway")
	case len(n.Inbound) > 0 && n.Gateway != nil:
		v.Add(np.Field("gateway"), "must not be set together with inbound")
	}

	seen := map[string]bool{}
	for i, in := range n.Inbound {
		p := np.Field("inbound").Index(i)
		v.Port(p.Field("port"), in.Port)
		if in.ServicePort != 0 {
			v.Port(p.Field("servicePort"), in.ServicePort)
		}
		if in.ServiceAddress != "" && !IsIP(in.ServiceAddress) {
			v.Add(p.Field("serviceAddress"), "must be an IP address, not %q", in.ServiceAddress)
		}
		if in.Address != "" && !IsIP(in.Address) {
			v.Add(p.Field("address"), "must be an IP address, not %q", in.Address)
		}
		validateServiceTags(v, p.Field("tags"), in.Tags)
		if proto, ok := in.Tags[TagProtocol]; ok {
			v.OneOf(p.Field("tags").Key(TagProtocol), proto, false,
				ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP, ProtocolKafka)
		}
		addr := in.Address
		if addr == "" {
			addr = n.Address
		}
		key := fmt.Sprintf("%s:%d", addr, in.Port)
		if in.Port != 0 && seen[key] {
			v.Add(p.Field("port"), "duplicate inbound port %d on address %s", in.Port, addr)
		}
		seen[key] = true
	}

	seen = map[string]bool{}
	for i, out := range n.Outbound {
		p := np.Field("outbound").Index(i)
		v.Port(p.Field("port"), out.Port)
		if out.Address != "" && !IsIP(out.Address) {
			v.Add(p.Field("address"), "must be an IP address, not %q", out.Address)
		}
		validateServiceTags(v, p.Field("tags"), out.Tags)
		addr := out.Address
		if addr == "" {
			addr = DefaultOutboundAddress
		}
		key := fmt.Sprintf("%s:%d", addr, out.Port)
		if out.Port != 0 && seen[key] {
			v.Add(p.Field("port"), "duplicate outbound %s", key)
		}
		seen[key] = true
	}

	if g := n.Gateway; g != nil {
		p := np.Field("gateway")
		v.OneOf(p.Field("type"), g.Type, true, GatewayDelegated, GatewayBuiltin)
		validateServiceTags(v, p.Field("tags"), g.Tags)
	}

	if m := s.Metrics; m != nil {
		m.validate(v, at.Field("metrics"))
	}
}

// validateServiceTags checks a tag map that must name a service.
func validateServiceTags(v *Validator, p Path, tags map[string]string) {
	requireServiceTag(v, p, tags)
	ValidateTags(v, p, tags)
}

// IsGateway reports whether the dataplane is a gateway.
func (s *DataplaneSpec) IsGateway() bool { return s.Networking.Gateway != nil }

// Services returns the kuma.io/service of each inbound (of the gateway, for
// a gateway dataplane), in order, without repeats.
func (s *DataplaneSpec) Services() []string {
	var out []string
	seen := map[string]bool{}
	for _, tags := range s.Tags() {
		if svc := tags[TagService]; svc != "" && !seen[svc] {
			seen[svc] = true
			out = append(out, svc)
		}
	}
	return out
}

// Tags returns the tag sets the dataplane serves: one per inbound, or the
// gateway's. The maps are the Spec's own: do not modify them.
func (s *DataplaneSpec) Tags() []map[string]string {
	if g := s.Networking.Gateway; g != nil {
		return []map[string]string{g.Tags}
	}
	out := make([]map[string]string, 0, len(s.Networking.Inbound))
	for _, in := range s.Networking.Inbound {
		out = append(out, in.Tags)
	}
	return out
}

// WorkloadPort returns the application's port: ServicePort, or Port when
// ServicePort is unset.
func (in DataplaneInbound) WorkloadPort() uint32 {
	if in.ServicePort != 0 {
		return in.ServicePort
	}
	return in.Port
}

// EffectiveMetrics returns the metrics backend this dataplane exposes: the
// Mesh's enabled backend with the fields this dataplane's override sets
// replaced, nil when neither the Mesh nor the dataplane enables metrics.
// mesh must have had its defaults applied. The result is a new value.
func (s *DataplaneSpec) EffectiveMetrics(mesh *MeshSpec) *MetricsBackend {
	var out MetricsBackend
	if mesh != nil {
		if b := mesh.MetricsBackend(); b != nil {
			out = *b
			if b.Conf != nil {
				c := *b.Conf
				out.Conf = &c
			}
		}
	}
	o := s.Metrics
	if o == nil {
		if out.Type == "" {
			return nil
		}
		return &out
	}
	if o.Type != "" {
		out.Type = o.Type
	}
	if out.Conf == nil {
		out.Conf = &PrometheusConf{}
	}
	if oc := o.Conf; oc != nil {
		if oc.Port != 0 {
			out.Conf.Port = oc.Port
		}
		if oc.Path != "" {
			out.Conf.Path = oc.Path
		}
		if oc.Tags != nil {
			out.Conf.Tags = oc.Tags
		}
		if oc.SkipMTLS != nil {
			out.Conf.SkipMTLS = oc.SkipMTLS
		}
		if oc.TLS != nil {
			out.Conf.TLS = oc.TLS
		}
	}
	out.defaults()
	return &out
}

// DecodeDataplane decodes a Dataplane (YAML or JSON) meant for mesh and
// name — a proxy's own definition, from a file or node metadata. Its type
// must be Dataplane; a mesh or name it leaves out is filled in from the
// arguments, and one that differs is refused (naming the field); an empty
// argument takes the document's. It is then prepared (defaults,
// validation).
func DecodeDataplane(doc []byte, mesh, name string) (*Resource, error) {
	r, err := Decode(doc)
	if err != nil {
		return nil, err
	}
	v := &Validator{}
	if r.Type != TypeDataplane {
		v.Add("type", "must be %s, not %q", TypeDataplane, r.Type)
		return nil, v.Err()
	}
	for _, f := range []struct {
		field     string
		doc, want *string
	}{{"mesh", &r.Mesh, &mesh}, {"name", &r.Name, &name}} {
		switch {
		case *f.doc == "":
			*f.doc = *f.want
		case *f.want != "" && *f.doc != *f.want:
			v.Add(Path(f.field), "%q does not match the requested %s %q", *f.doc, f.field, *f.want)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := Prepare(r); err != nil {
		return nil, err
	}
	return r, nil
}
