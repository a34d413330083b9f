package generate

import (
	"github.com/meshfed/meshfed/api"
)

// Test fixture: local zone zone-1 on network net-1.
//
//	zone-2  net-1          same network: endpoints used directly
//	zone-3  net-2          another network: reached through its two ingresses
//	zone-4  net-1 disabled contributes nothing
//	zone-5  net-3 disabled its ingress contributes nothing
const localZone = "zone-1"

func zones() map[string]Zone {
	return map[string]Zone{
		"zone-1": {Network: "net-1"},
		"zone-2": {Network: "net-1"},
		"zone-3": {Network: "net-2"},
		"zone-4": {Network: "net-1", Disabled: true},
		"zone-5": {Network: "net-3", Disabled: true},
	}
}

func meshResource(name string, localityAware bool) *api.Resource {
	spec := &api.MeshSpec{}
	if localityAware {
		spec.Routing = &api.MeshRouting{LocalityAwareLoadBalancing: true}
	}
	return &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: name}, Spec: spec}
}

type dpOpt func(*api.Resource)

func grpcApp(r *api.Resource) { r.Labels[LabelProxy] = ProxyGRPC }

func inZone(zone string) dpOpt { return func(r *api.Resource) { r.Labels[api.LabelZone] = zone } }

func dataplane(mesh, name, addr string, ins []api.DataplaneInbound, outs []api.DataplaneOutbound, opts ...dpOpt) *api.Resource {
	r := &api.Resource{
		Meta: api.Meta{Type: api.TypeDataplane, Mesh: mesh, Name: name, Labels: map[string]string{}},
		Spec: &api.DataplaneSpec{Networking: api.DataplaneNetworking{Address: addr, Inbound: ins, Outbound: outs}},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func inbound(port uint32, svc, protocol string) api.DataplaneInbound {
	tags := map[string]string{api.TagService: svc}
	if protocol != "" {
		tags[api.TagProtocol] = protocol
	}
	return api.DataplaneInbound{Port: port, Tags: tags}
}

func unhealthy(in api.DataplaneInbound) api.DataplaneInbound {
	in.Health = &api.InboundHealth{Ready: false}
	return in
}

func outbound(port uint32, svc string) api.DataplaneOutbound {
	return api.DataplaneOutbound{Port: port, Tags: map[string]string{api.TagService: svc}}
}

func zoneIngress(name, zone, addr string, port uint32, advAddr string, advPort uint32, avail ...api.AvailableService) *api.Resource {
	return &api.Resource{
		Meta: api.Meta{Type: api.TypeZoneIngress, Name: name, Labels: map[string]string{api.LabelZone: zone}},
		Spec: &api.ZoneIngressSpec{
			Zone: zone,
			Networking: api.ZoneIngressNetworking{
				Address: addr, Port: port, AdvertisedAddress: advAddr, AdvertisedPort: advPort,
			},
			AvailableServices: avail,
		},
	}
}

func available(mesh, svc, protocol string, instances uint32) api.AvailableService {
	tags := map[string]string{api.TagService: svc}
	if protocol != "" {
		tags[api.TagProtocol] = protocol
	}
	return api.AvailableService{Mesh: mesh, Tags: tags, Instances: instances}
}

func ingresses() []*api.Resource {
	return []*api.Resource{
		zoneIngress("ingress-z1", "zone-1", "10.1.0.100", 10001, "", 0),
		zoneIngress("ingress-z3-a", "zone-3", "10.3.0.100", 10001, "203.0.113.3", 443,
			available("a", "backend", "http", 3),
			available("a", "reports_v1", "http", 2),
			available("b", "backend", "http", 5),
		),
		zoneIngress("ingress-z3-b", "zone-3", "10.3.0.101", 10001, "", 0,
			available("a", "backend", "http", 1),
			available("a", "gone", "http", 0),
		),
		zoneIngress("ingress-z5", "zone-5", "10.5.0.100", 10001, "", 0,
			available("a", "backend", "http", 7),
		),
	}
}

// Dataplanes of mesh a. web-1 is an Envoy sidecar calling every kind of
// service; checkout-1 and payments-1 are proxyless gRPC applications.
var (
	webA = dataplane("a", "web-1", "10.1.0.1",
		[]api.DataplaneInbound{inbound(8080, "web", "http")},
		[]api.DataplaneOutbound{
			outbound(10001, "backend"),    // http: local, zone-2 direct, zone-3 via ingress
			outbound(10002, "db"),         // tcp, local only
			outbound(10003, "payments"),   // grpc, local only
			outbound(10004, "reports_v1"), // no local endpoint: remote at priority 0
			outbound(10005, "nowhere"),    // nobody serves it
		}, inZone("zone-1"))
	dbA = func() *api.Resource {
		in := inbound(5432, "db", "tcp")
		in.ServiceAddress, in.ServicePort = "127.0.0.1", 15432
		return dataplane("a", "db-1", "10.1.0.4", []api.DataplaneInbound{in}, nil)
	}()
	checkoutA = dataplane("a", "checkout-1", "10.1.0.6",
		[]api.DataplaneInbound{inbound(9001, "checkout", "grpc")}, nil, grpcApp)
)

func meshAView(localityAware bool) *MeshView {
	return &MeshView{
		Mesh:      meshResource("a", localityAware),
		LocalZone: localZone,
		Zones:     zones(),
		Dataplanes: []*api.Resource{
			webA,
			dataplane("a", "backend-1", "10.1.0.2", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil),
			dataplane("a", "backend-2", "10.1.0.3", []api.DataplaneInbound{unhealthy(inbound(8080, "backend", "http"))}, nil),
			dbA,
			dataplane("a", "payments-1", "10.1.0.5", []api.DataplaneInbound{inbound(9000, "payments", "grpc")}, nil, grpcApp),
			checkoutA,
			dataplane("a", "backend-z2", "10.2.0.1", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil, inZone("zone-2")),
			dataplane("a", "reports-z2", "10.2.0.2", []api.DataplaneInbound{inbound(7000, "reports_v1", "http")}, nil, inZone("zone-2")),
			// On another network: must not be used directly.
			dataplane("a", "backend-z3", "10.3.0.1", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil, inZone("zone-3")),
			// Disabled zone.
			dataplane("a", "backend-z4", "10.4.0.1", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil, inZone("zone-4")),
		},
		ZoneIngresses: ingresses(),
	}
}

var webB = dataplane("b", "web-1", "10.1.1.1",
	[]api.DataplaneInbound{inbound(8080, "web", "http")},
	[]api.DataplaneOutbound{outbound(10001, "backend")})

func meshBView() *MeshView {
	return &MeshView{
		Mesh:      meshResource("b", false),
		LocalZone: localZone,
		Zones:     zones(),
		Dataplanes: []*api.Resource{
			webB,
			dataplane("b", "backend-1", "10.1.1.2", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil),
			// A Kuma-style service name: its SNI is sanitized and hashed.
			dataplane("b", "legacy-1", "10.1.1.3", []api.DataplaneInbound{inbound(8080, "legacy_svc_8080", "tcp")}, nil),
			dataplane("b", "backend-z2", "10.2.1.1", []api.DataplaneInbound{inbound(8080, "backend", "http")}, nil, inZone("zone-2")),
		},
		ZoneIngresses: ingresses(),
	}
}
