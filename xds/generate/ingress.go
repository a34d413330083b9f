package generate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

// Ingress returns the resources of a ZoneIngress proxy of the zone the
// meshes were compiled for: one listener on the ingress's address and port
// with a TLS inspector and, per Mesh and per service with an inbound in the
// zone, a filter chain matching ServiceSNI(service, mesh) that passes the
// TLS connection through (tcp_proxy) to the cluster of the same name, whose
// CLA holds only the zone's own endpoints. Clusters, CLAs and filter chains
// are the meshes' shared protos. With no service to expose the result is
// empty (Envoy refuses a listener without filter chains).
func Ingress(zi *api.Resource, meshes []*Mesh) (*Resources, error) {
	res, err := ingress(zi, meshes)
	if err != nil {
		name := "<nil>"
		if zi != nil {
			name = zi.Name
		}
		return nil, fmt.Errorf("ingress: zone ingress %s: %w", name, err)
	}
	return res, nil
}

func ingress(zi *api.Resource, meshes []*Mesh) (*Resources, error) {
	spec, ok := zi.SpecIfZoneIngress()
	if !ok || spec == nil {
		if zi == nil {
			return nil, errors.New("nil resource")
		}
		return nil, fmt.Errorf("spec is %T, not *api.ZoneIngressSpec", zi.Spec)
	}
	ip, port := spec.Networking.Address, spec.Networking.Port
	if !isIP(ip) {
		return nil, fmt.Errorf("networking.address: %q must be an IP: Envoy binds the ingress listener to it", ip)
	}
	meshes = slices.Clone(meshes)
	slices.SortFunc(meshes, func(a, b *Mesh) int { return strings.Compare(a.name, b.name) })
	res := &Resources{}
	var chains []*listener.FilterChain
	snis := map[string]string{}
	for i, m := range meshes {
		if i > 0 && meshes[i-1].name == m.name {
			return nil, fmt.Errorf("mesh %q given twice", m.name)
		}
		if m.localZone != spec.Zone {
			return nil, fmt.Errorf("mesh %q was compiled for zone %q, not the ingress's zone %q", m.name, m.localZone, spec.Zone)
		}
		for _, name := range sortedKeys(m.services) {
			s := m.services[name]
			if s.ingressChain == nil {
				continue
			}
			if prev, dup := snis[s.sni]; dup {
				return nil, fmt.Errorf("services %s and %s/%s share the SNI %q", prev, m.name, name, s.sni)
			}
			snis[s.sni] = m.name + "/" + name
			chains = append(chains, s.ingressChain)
			res.Clusters = append(res.Clusters, s.ingressCluster)
			res.Endpoints = append(res.Endpoints, s.ingressCLA)
		}
	}
	if len(chains) > 0 {
		tls, err := tlsInspector()
		if err != nil {
			return nil, err
		}
		res.Listeners = []*listener.Listener{{
			Name:             IngressListenerName(ip, port),
			Address:          socketAddress(ip, port),
			TrafficDirection: core.TrafficDirection_INBOUND,
			ListenerFilters:  []*listener.ListenerFilter{tls},
			FilterChains:     chains,
		}}
	}
	res.sort()
	err := validateSet(res, func(x proto.Message) (*refs, bool) {
		for _, m := range meshes {
			if r, ok := m.done[x]; ok {
				return r, true
			}
		}
		return nil, false
	})
	return res, err
}
