package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	fileaccesslog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/api"
)

const (
	// XDSCluster is the name of the Envoy bootstrap's static cluster of the
	// zone's xDS server.
	XDSCluster = "meshfed_xds"
	// DefaultAdminPort is Envoy's admin port when EnvoyOptions.AdminPort is 0.
	DefaultAdminPort = 9901
	// DefaultConnectTimeout is the xDS cluster's connect timeout when
	// EnvoyOptions.ConnectTimeout is 0.
	DefaultConnectTimeout = time.Second

	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	fileAccessLogName      = "envoy.access_loggers.file"
)

// EnvoyOptions describe an Envoy sidecar's (or gateway's) bootstrap.
type EnvoyOptions struct {
	Node
	// XDSAddress (required) is the zone's xDS server, host:port. An IP makes
	// the xDS cluster STATIC, a host name STRICT_DNS.
	XDSAddress string
	// Service is the node's cluster (Envoy's service cluster name): the
	// Dataplane's service. Empty means Name.
	Service string
	// AdminPort is the admin listener's port on 127.0.0.1; 0 means
	// DefaultAdminPort.
	AdminPort uint32
	// ConnectTimeout bounds a connection to the xDS server; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// Validate checks the options, naming each field that is wrong.
func (o *EnvoyOptions) Validate() error {
	v := &api.Validator{}
	o.validate(v)
	return v.Err()
}

func (o *EnvoyOptions) validate(v *api.Validator) (host string, port uint32) {
	o.Node.validate(v)
	host, port = checkHostPort(v, "xdsAddress", o.XDSAddress)
	if o.AdminPort > 65535 {
		v.Add("adminPort", "must be between 1 and 65535 (0 means %d)", DefaultAdminPort)
	}
	if o.ConnectTimeout < 0 {
		v.Add("connectTimeout", "must not be negative")
	}
	if o.Service != "" && !api.IsTagValue(o.Service) {
		v.Add("service", "%q is not a valid service name", o.Service)
	}
	return host, port
}

// Envoy returns the Envoy bootstrap (envoy.config.bootstrap.v3.Bootstrap)
// as indented protojson with the proto field names (snake_case, as in
// Envoy's documentation), validated with ValidateAll (every Any unpacked and
// validated too).
func Envoy(opts EnvoyOptions) ([]byte, error) {
	b, err := EnvoyProto(opts)
	if err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	// protojson's white space is deliberately unstable: compact it and
	// indent it ourselves so the output is byte-stable.
	var c, out bytes.Buffer
	if err := json.Compact(&c, j); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	if err := json.Indent(&out, c.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// EnvoyProto is Envoy's bootstrap as a proto, validated.
func EnvoyProto(opts EnvoyOptions) (*bootstrapv3.Bootstrap, error) {
	v := &api.Validator{}
	host, port := opts.validate(v)
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	b, err := envoyBootstrap(opts, host, port)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	if err := ValidateEnvoy(b); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return b, nil
}

func envoyBootstrap(opts EnvoyOptions, host string, port uint32) (*bootstrapv3.Bootstrap, error) {
	service := opts.Service
	if service == "" {
		service = opts.Name
	}
	adminPort := opts.AdminPort
	if adminPort == 0 {
		adminPort = DefaultAdminPort
	}
	timeout := opts.ConnectTimeout
	if timeout == 0 {
		timeout = DefaultConnectTimeout
	}

	node := &core.Node{Id: NodeID(opts.Mesh, opts.Name), Cluster: service}
	if opts.Zone != "" {
		node.Locality = &core.Locality{Zone: opts.Zone}
	}
	if md := opts.metadata(); md != nil {
		raw, err := json.Marshal(md)
		if err != nil {
			return nil, fmt.Errorf("node.metadata: %w", err)
		}
		node.Metadata = &structpb.Struct{}
		if err := protojson.Unmarshal(raw, node.Metadata); err != nil {
			return nil, fmt.Errorf("node.metadata: %w", err)
		}
	}

	fileLog, err := anypb.New(&fileaccesslog.FileAccessLog{Path: "/dev/null"})
	if err != nil {
		return nil, err
	}
	http2, err := anypb.New(&upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}

	discovery := cluster.Cluster_STATIC
	if !api.IsIP(host) {
		discovery = cluster.Cluster_STRICT_DNS
	}
	xds := &cluster.Cluster{
		Name:                          XDSCluster,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: discovery},
		ConnectTimeout:                durationpb.New(timeout),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: http2},
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: XDSCluster,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
						Address: socketAddress(host, port),
					}},
				}},
			}},
		},
	}
	ads := &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
	return &bootstrapv3.Bootstrap{
		Node: node,
		Admin: &bootstrapv3.Admin{
			Address: socketAddress("127.0.0.1", adminPort),
			AccessLog: []*accesslog.AccessLog{{
				Name:       fileAccessLogName,
				ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: fileLog},
			}},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:             core.ApiConfigSource_GRPC,
				TransportApiVersion: core.ApiVersion_V3,
				GrpcServices: []*core.GrpcService{{
					TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
				}},
				// The node (with its possibly large Dataplane) is sent once
				// per stream; xds/server reads it from the first request.
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads,
			CdsConfig: proto.Clone(ads).(*core.ConfigSource),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*cluster.Cluster{xds},
		},
	}, nil
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

// ValidateEnvoy runs the bootstrap's ValidateAll and validates the typed
// configs inside its Anys (admin access logs, static clusters' protocol
// options), which ValidateAll does not look into.
func ValidateEnvoy(b *bootstrapv3.Bootstrap) error {
	if err := b.ValidateAll(); err != nil {
		return err
	}
	for i, l := range b.GetAdmin().GetAccessLog() {
		if err := validateAny(fmt.Sprintf("admin.access_log[%d].typed_config", i), l.GetTypedConfig()); err != nil {
			return err
		}
	}
	for i, c := range b.GetStaticResources().GetClusters() {
		opts := c.GetTypedExtensionProtocolOptions()
		for _, k := range sortedKeys(opts) {
			if err := validateAny(fmt.Sprintf("static_resources.clusters[%d].typed_extension_protocol_options[%q]", i, k), opts[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateAny(at string, a *anypb.Any) error {
	if a == nil {
		return fmt.Errorf("%s: missing", at)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	va, ok := m.(interface{ ValidateAll() error })
	if !ok {
		return fmt.Errorf("%s: %s has no validation", at, a.GetTypeUrl())
	}
	if err := va.ValidateAll(); err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	return nil
}
