package generate

import (
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// grpcServerRouteName names the inline route of a gRPC server listener.
const grpcServerRouteName = "grpc/server"

// serviceRoute is the RouteConfiguration S shared by Envoy outbound
// listeners and gRPC API listeners of service S: every host ("*" also
// matches the xds:///S target), every path, to cluster S.
func serviceRoute(service string) *route.RouteConfiguration {
	return &route.RouteConfiguration{
		Name:         service,
		VirtualHosts: []*route.VirtualHost{clusterVirtualHost(service, service)},
	}
}

// inboundRoute is the inline route of an Envoy inbound HTTP listener: every
// request to the local application's cluster.
func inboundRoute(service, localCluster string) *route.RouteConfiguration {
	return &route.RouteConfiguration{
		Name:         inboundPrefix + service,
		VirtualHosts: []*route.VirtualHost{clusterVirtualHost(service, localCluster)},
	}
}

func clusterVirtualHost(name, clusterName string) *route.VirtualHost {
	return &route.VirtualHost{
		Name:    name,
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName},
			}},
		}},
	}
}

// grpcServerRoute is the inline route of a gRPC server listener: grpc-go
// requires a route whose action is NonForwardingAction.
func grpcServerRoute() *route.RouteConfiguration {
	return &route.RouteConfiguration{
		Name: grpcServerRouteName,
		VirtualHosts: []*route.VirtualHost{{
			Name:    "inbound",
			Domains: []string{"*"},
			Routes: []*route.Route{{
				Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_NonForwardingAction{NonForwardingAction: &route.NonForwardingAction{}},
			}},
		}},
	}
}
