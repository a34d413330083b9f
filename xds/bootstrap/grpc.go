package bootstrap

import (
	"encoding/json"
	"fmt"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/generate"
)

// GRPCOptions describe a proxyless gRPC application's bootstrap.
type GRPCOptions struct {
	Node
	// XDSAddress (required) is the zone's xDS server, host:port
	// (e.g. "127.0.0.1:5678"; IPv6 in brackets).
	XDSAddress string
	// CertificateProviders is the hook for mTLS (a later issue): grpc-go's
	// bootstrap certificate_providers, by instance name, e.g.
	// {"default": {PluginName: "file_watcher", Config: {"certificate_file": ...,
	// "private_key_file": ..., "ca_certificate_file": ..., "refresh_interval": "600s"}}}.
	// The xDS credentials of google.golang.org/grpc/credentials/xds use
	// the instances the Listener and Cluster resources name. Empty: none.
	CertificateProviders map[string]CertificateProvider
}

// CertificateProvider is one certificate provider instance of a gRPC
// bootstrap.
type CertificateProvider struct {
	// PluginName (required) is the provider plugin, e.g. "file_watcher".
	PluginName string `json:"plugin_name"`
	// Config is the plugin's configuration, a JSON object.
	Config json.RawMessage `json:"config,omitempty"`
}

// Validate checks the options, naming each field that is wrong.
func (o *GRPCOptions) Validate() error {
	v := &api.Validator{}
	o.Node.validate(v)
	checkHostPort(v, "xdsAddress", o.XDSAddress)
	for _, k := range sortedKeys(o.CertificateProviders) {
		p := api.Path("certificateProviders").Key(k)
		cp := o.CertificateProviders[k]
		if k == "" {
			v.Add(p, "instance name must not be empty")
		}
		v.Required(p.Field("pluginName"), cp.PluginName)
		if len(cp.Config) > 0 {
			checkObject(v, p.Field("config"), cp.Config)
		}
	}
	return v.Err()
}

// The grpc-go bootstrap (google.golang.org/grpc/internal/xds/bootstrap,
// configJSON), in the order written.
type grpcBootstrap struct {
	XDSServers                         []grpcServer                   `json:"xds_servers"`
	Node                               grpcNode                       `json:"node"`
	ServerListenerResourceNameTemplate string                         `json:"server_listener_resource_name_template"`
	CertificateProviders               map[string]CertificateProvider `json:"certificate_providers,omitempty"`
}

type grpcServer struct {
	ServerURI      string            `json:"server_uri"`
	ChannelCreds   []grpcChannelCred `json:"channel_creds"`
	ServerFeatures []string          `json:"server_features"`
}

type grpcChannelCred struct {
	Type   string          `json:"type"`
	Config json.RawMessage `json:"config,omitempty"`
}

type grpcNode struct {
	ID       string                     `json:"id"`
	Locality *grpcLocality              `json:"locality,omitempty"`
	Metadata map[string]json.RawMessage `json:"metadata,omitempty"`
}

type grpcLocality struct {
	Zone string `json:"zone,omitempty"`
}

// GRPC returns the grpc-go xDS bootstrap (the file GRPC_XDS_BOOTSTRAP
// names) of a proxyless gRPC application, as indented JSON.
func GRPC(opts GRPCOptions) ([]byte, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	b := grpcBootstrap{
		XDSServers: []grpcServer{{
			ServerURI:      opts.XDSAddress,
			ChannelCreds:   []grpcChannelCred{{Type: "insecure"}},
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: grpcNode{
			ID:       NodeID(opts.Mesh, opts.Name),
			Metadata: opts.metadata(),
		},
		ServerListenerResourceNameTemplate: generate.GRPCServerListenerTemplate,
	}
	if opts.Zone != "" {
		b.Node.Locality = &grpcLocality{Zone: opts.Zone}
	}
	if len(opts.CertificateProviders) > 0 {
		b.CertificateProviders = make(map[string]CertificateProvider, len(opts.CertificateProviders))
		for k, cp := range opts.CertificateProviders {
			if len(cp.Config) > 0 {
				cp.Config = compact(cp.Config)
			}
			b.CertificateProviders[k] = cp
		}
	}
	out, err := marshalIndent(b)
	if err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	return out, nil
}
