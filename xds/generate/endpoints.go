package generate

import (
	"cmp"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ep is one endpoint of a service before it becomes an LbEndpoint.
type ep struct {
	zone    string
	ip      string
	port    uint32
	weight  uint32
	ingress bool // a remote zone's ZoneIngress standing for the service's instances there
}

// buildCLA returns the ClusterLoadAssignment name for eps: one locality
// per zone, priorities as the package doc says, endpoints unique by
// address.
func buildCLA(name string, eps []ep, localZone string, localityAware bool) *endpoint.ClusterLoadAssignment {
	// Unique by address: first wins; ingress endpoints of one zone at the
	// same address add their weights (two ingresses behind one balancer).
	type key struct {
		ip   string
		port uint32
	}
	seen := make(map[key]int, len(eps))
	uniq := make([]ep, 0, len(eps))
	hasLocal := false
	for _, e := range eps {
		k := key{e.ip, e.port}
		if i, ok := seen[k]; ok {
			if u := &uniq[i]; u.ingress && e.ingress && u.zone == e.zone {
				u.weight += e.weight
			}
			continue
		}
		seen[k] = len(uniq)
		uniq = append(uniq, e)
		hasLocal = hasLocal || e.zone == localZone
	}
	slices.SortFunc(uniq, func(a, b ep) int {
		return cmp.Or(cmp.Compare(a.zone, b.zone), cmp.Compare(a.ip, b.ip), cmp.Compare(a.port, b.port))
	})

	priority := func(zone string) uint32 {
		if localityAware && hasLocal && zone != localZone {
			return 1
		}
		return 0
	}
	var localities []*endpoint.LocalityLbEndpoints
	for i := 0; i < len(uniq); {
		j := i
		var sum uint32
		for j < len(uniq) && uniq[j].zone == uniq[i].zone {
			sum += uniq[j].weight
			j++
		}
		lbs := make([]*endpoint.LbEndpoint, 0, j-i)
		for _, e := range uniq[i:j] {
			lbs = append(lbs, &endpoint.LbEndpoint{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: socketAddress(e.ip, e.port),
				}},
				LoadBalancingWeight: wrapperspb.UInt32(e.weight),
			})
		}
		localities = append(localities, &endpoint.LocalityLbEndpoints{
			Locality:            &core.Locality{Zone: uniq[i].zone},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(sum),
			Priority:            priority(uniq[i].zone),
		})
		i = j
	}
	slices.SortStableFunc(localities, func(a, b *endpoint.LocalityLbEndpoints) int {
		return cmp.Compare(a.Priority, b.Priority)
	})
	return &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: localities}
}

// socketAddress returns a TCP address.
func socketAddress(ip string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
