package generate

import (
	"errors"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// meshCASecret is the Envoy secret MeshCASecretName(mesh): the trust
// bundle as a validation context.
func meshCASecret(mesh string, bundle []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: MeshCASecretName(mesh),
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inlineBytes(bundle),
		}},
	}
}

// identitySecret is an Envoy's secret IdentitySecretName(mesh): its
// certificate chain and key.
func identitySecret(mesh string, id *Identity) (*tlsv3.Secret, error) {
	if id == nil || len(id.CertChainPEM) == 0 || len(id.KeyPEM) == 0 {
		return nil, errors.New("mTLS is on: ProxyOptions.Identity (certificate chain and key) is required for an Envoy proxy")
	}
	return &tlsv3.Secret{
		Name: IdentitySecretName(mesh),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inlineBytes(id.CertChainPEM),
			PrivateKey:       inlineBytes(id.KeyPEM),
		}},
	}, nil
}

func inlineBytes(b []byte) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
}

// sdsSecret refers to a secret served on the ADS stream.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}

// uriSANMatcher matches a URI SAN exactly (Envoy's typed matcher).
func uriSANMatcher(uri string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_URI,
		Matcher: exact(uri),
	}
}

func exact(s string) *matcher.StringMatcher {
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}
}

func prefix(s string) *matcher.StringMatcher {
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: s}}
}

// alpnFor is the ALPN an HTTP/2 upstream offers: a Go TLS server (grpc-go)
// that advertises h2 accepts it; none is offered for other protocols.
func alpnFor(protocol string) []string {
	if isHTTP2(protocol) {
		return []string{"h2"}
	}
	return nil
}

// envoyUpstreamTLS is the transport socket of an Envoy cluster to service
// of mesh: the proxy's identity and the Mesh CA from SDS, the server must
// be SPIFFEID(mesh, service), and SNI ServiceSNI(service, mesh) lets a
// ZoneIngress route the connection.
func envoyUpstreamTLS(mesh, service, protocol string) (*core.TransportSocket, error) {
	return transportSocket(&tlsv3.UpstreamTlsContext{
		Sni: ServiceSNI(service, mesh),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  alpnFor(protocol),
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(IdentitySecretName(mesh))},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{uriSANMatcher(SPIFFEID(mesh, service))},
					},
					ValidationContextSdsSecretConfig: sdsSecret(MeshCASecretName(mesh)),
				},
			},
		},
	})
}

// envoyDownstreamTLS is the transport socket of an Envoy inbound of mesh:
// a client certificate signed by the Mesh CA is required; who may connect is
// the RBAC filter's business, so no SAN is matched here.
func envoyDownstreamTLS(mesh, protocol string) (*core.TransportSocket, error) {
	var alpn []string
	if isHTTP(protocol) {
		alpn = []string{"h2", "http/1.1"}
	}
	return transportSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  alpn,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(IdentitySecretName(mesh))},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsSecret(MeshCASecretName(mesh)),
			},
		},
	})
}

// grpcProvider names the bootstrap's certificate provider instance.
func grpcProvider() *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertProvider, CertificateName: GRPCCertName}
}

// grpcUpstreamTLS is the transport socket of a proxyless gRPC client's
// cluster to service of mesh: certificates from the bootstrap's provider
// (grpc-go NACKs SDS), the server must be SPIFFEID(mesh, service)
// (match_subject_alt_names: grpc-go does not read the typed matchers).
// grpc-go sends the SNI only with GRPC_EXPERIMENTAL_XDS_SNI=true, which
// cross-network calls through a ZoneIngress need.
func grpcUpstreamTLS(mesh, service string) (*core.TransportSocket, error) {
	return transportSocket(&tlsv3.UpstreamTlsContext{
		Sni: ServiceSNI(service, mesh),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: grpcProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: grpcProvider(),
					//lint:ignore SA1019 grpc-go v1.85 reads only this field, not match_typed_subject_alt_names
					MatchSubjectAltNames: []*matcher.StringMatcher{exact(SPIFFEID(mesh, service))},
				},
			},
		},
	})
}

// grpcDownstreamTLS is the transport socket of a proxyless gRPC server's
// listener: a client certificate signed by the Mesh CA is required, no SAN
// is matched (grpc-go NACKs SAN matchers on the server side).
func grpcDownstreamTLS() (*core.TransportSocket, error) {
	return transportSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: grpcProvider(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					CaCertificateProviderInstance: grpcProvider(),
				},
			},
		},
	})
}

// transportSocket wraps a TLS context as the "envoy.transport_sockets.tls"
// transport socket (grpc-go requires that name).
func transportSocket(ctx proto.Message) (*core.TransportSocket, error) {
	a, err := marshalAny(ctx)
	if err != nil {
		return nil, err
	}
	return &core.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}
