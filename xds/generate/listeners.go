package generate

import (
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// marshalAny wraps m; marshalling a freshly built message only fails on a
// programming error, which is returned, not panicked.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, anyMarshalOptions); err != nil {
		return nil, err
	}
	return a, nil
}

// anyMarshalOptions makes Any bytes deterministic, so equal inputs give equal
// bytes (and equal snapshot versions downstream).
var anyMarshalOptions = proto.MarshalOptions{Deterministic: true}

// routerFilter is the HCM's last HTTP filter (grpc-go requires it last).
func routerFilter() (*hcm.HttpFilter, error) {
	a, err := marshalAny(&router.Router{})
	if err != nil {
		return nil, err
	}
	return &hcm.HttpFilter{Name: wellknown.Router, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// hcmRDS is an HttpConnectionManager taking route rds from ADS.
func hcmRDS(statPrefix, rds string) (*anypb.Any, error) {
	return hcmWith(&hcm.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: rds,
		}},
	})
}

// hcmInline is an HttpConnectionManager with an inline route; filters run
// before the router.
func hcmInline(statPrefix string, rc *route.RouteConfiguration, filters ...*hcm.HttpFilter) (*anypb.Any, error) {
	return hcmWith(&hcm.HttpConnectionManager{
		StatPrefix:     statPrefix,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: rc},
	}, filters...)
}

// hcmWith completes h (codec AUTO, filters then the router as its HTTP
// filters) and wraps it.
func hcmWith(h *hcm.HttpConnectionManager, filters ...*hcm.HttpFilter) (*anypb.Any, error) {
	rf, err := routerFilter()
	if err != nil {
		return nil, err
	}
	h.CodecType = hcm.HttpConnectionManager_AUTO
	h.HttpFilters = append(slices.Clip(filters), rf)
	return marshalAny(h)
}

// tcpProxy is a TcpProxy to clusterName.
func tcpProxy(statPrefix, clusterName string) (*anypb.Any, error) {
	return marshalAny(&tcpproxy.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: clusterName},
	})
}

// networkFilter wraps an HCM or TcpProxy Any as a listener filter chain's
// filter.
func networkFilter(name string, cfg *anypb.Any) *listener.Filter {
	return &listener.Filter{Name: name, ConfigType: &listener.Filter_TypedConfig{TypedConfig: cfg}}
}

// socketListener is a listener on ip:port with one filter chain holding
// filter.
func socketListener(name, ip string, port uint32, dir core.TrafficDirection, filter *listener.Filter) *listener.Listener {
	return &listener.Listener{
		Name:             name,
		Address:          socketAddress(ip, port),
		TrafficDirection: dir,
		FilterChains:     []*listener.FilterChain{{Filters: []*listener.Filter{filter}}},
	}
}

// apiListener is a proxyless gRPC client's Listener for service: an
// api_listener wrapping the service's HCM (RDS route service).
func apiListener(service string, hcmAny *anypb.Any) *listener.Listener {
	return &listener.Listener{
		Name:        service,
		ApiListener: &listener.ApiListener{ApiListener: hcmAny},
	}
}

// grpcServerListener is a proxyless gRPC server's Listener for one
// inbound; with mTLS (ts set) its filter chain has the TLS context and rules
// is its RBAC HTTP filter.
func grpcServerListener(ip string, port uint32, ts *core.TransportSocket, rules *rbac.RBAC) (*listener.Listener, error) {
	var filters []*hcm.HttpFilter
	if rules != nil {
		f, err := rbacHTTPFilter(rules)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	h, err := hcmInline("grpc_server", grpcServerRoute(), filters...)
	if err != nil {
		return nil, err
	}
	l := socketListener(GRPCServerListenerName(ip, port), ip, port, core.TrafficDirection_INBOUND,
		networkFilter(wellknown.HTTPConnectionManager, h))
	l.FilterChains[0].TransportSocket = ts
	return l, nil
}

// tlsInspector is the listener filter that reads the SNI.
func tlsInspector() (*listener.ListenerFilter, error) {
	a, err := marshalAny(&tlsinspector.TlsInspector{})
	if err != nil {
		return nil, err
	}
	return &listener.ListenerFilter{
		Name:       wellknown.TlsInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: a},
	}, nil
}
