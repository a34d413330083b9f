// Package bootstrap builds the bootstrap files that point a dataplane at its
// zone's xDS server: grpc-go's xDS bootstrap JSON for proxyless gRPC
// applications (GRPC) and an Envoy v3 Bootstrap for sidecars and gateways
// (Envoy). It is pure: options in, JSON out; no network, no files.
//
// # Where it sits
//
//	meshctl generate grpc-bootstrap|envoy-bootstrap
//	  → zone API GET /meshes/{mesh}/dataplanes/{name}/_bootstrap?format=grpc|envoy
//	  → bootstrap.GRPC / bootstrap.Envoy (this package)
//	  → file read by the proxy (GRPC_XDS_BOOTSTRAP, envoy -c)
//	  → proxy dials the zone's xDS port with node id "<mesh>.<name>"
//	  → xds/server Registrar (the Dataplane in node.metadata["dataplane"]
//	    registers the proxy, DESIGN.md §7) → xds/generate resources.
//
// Both formats carry the same node identity: id NodeID(mesh, name), the
// optional locality zone, and optional metadata; the Dataplane definition,
// when given, sits in node.metadata under MetadataDataplane as a JSON object
// (the Kuma universal format of the resource) so the proxy self-registers.
// WithDataplane adds it to a bootstrap made without one (meshctl does that
// with a local --dataplane-file).
//
// # gRPC
//
// The xds_servers entry is the zone (server_uri host:port, channel_creds
// insecure, server_features ["xds_v3"]), and
// server_listener_resource_name_template is generate.GRPCServerListenerTemplate,
// so an xDS-enabled gRPC server asks for the Listener the generator names
// after its listening address. mTLS is a later issue: the hook is
// GRPCOptions.CertificateProviders (grpc-go's certificate_providers, e.g. the
// file_watcher plugin), which the server and client credentials of
// google.golang.org/grpc/credentials/xds refer to by instance name; the
// channel to the zone stays insecure until the zone's xDS port serves TLS.
//
// # Envoy
//
// ADS over gRPC (state of the world, v3) to a static cluster XDSCluster
// (STATIC for an IP, STRICT_DNS for a host name; HTTP/2 through
// typed_extension_protocol_options), LDS and CDS from ADS, and an admin
// listener on 127.0.0.1:AdminPort whose access log goes to /dev/null. The
// result passes ValidateAll with every Any unpacked and validated.
package bootstrap
