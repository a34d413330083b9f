package generate

import (
	"cmp"
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Resources is one proxy's xDS resources, each slice sorted by name. The
// protos may be shared with other proxies' Resources: read-only.
type Resources struct {
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	Clusters  []*cluster.Cluster
	Endpoints []*endpoint.ClusterLoadAssignment
	// Secrets are an Envoy's SDS secrets with mTLS on: the Mesh's CA
	// (MeshCASecretName, shared by every proxy of the Mesh) and the proxy's
	// identity (IdentitySecretName, its own). Proxyless gRPC applications
	// have none (they read certificates from files).
	Secrets []*tlsv3.Secret
}

// ByType returns the resources keyed by type URL, as
// go-control-plane's cache.NewSnapshot takes them. Every type is present,
// possibly empty, so a snapshot also removes what a proxy no longer has.
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ListenerType: asResources(r.Listeners),
		resource.RouteType:    asResources(r.Routes),
		resource.ClusterType:  asResources(r.Clusters),
		resource.EndpointType: asResources(r.Endpoints),
		resource.SecretType:   asResources(r.Secrets),
	}
}

// Len is the number of resources.
func (r *Resources) Len() int {
	return len(r.Listeners) + len(r.Routes) + len(r.Clusters) + len(r.Endpoints) + len(r.Secrets)
}

func asResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, x := range in {
		out[i] = x
	}
	return out
}

type named interface{ GetName() string }

// sortByName sorts every slice by name (CLAs by cluster name).
func (r *Resources) sort() {
	byName := func(a, b named) int { return cmp.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(r.Listeners, func(a, b *listener.Listener) int { return byName(a, b) })
	slices.SortFunc(r.Routes, func(a, b *route.RouteConfiguration) int { return byName(a, b) })
	slices.SortFunc(r.Clusters, func(a, b *cluster.Cluster) int { return byName(a, b) })
	slices.SortFunc(r.Secrets, func(a, b *tlsv3.Secret) int { return byName(a, b) })
	slices.SortFunc(r.Endpoints, func(a, b *endpoint.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
}
