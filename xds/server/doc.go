// Package server is the zone's xDS server (DESIGN.md §8): it serves the
// resources the generator produced to Envoy sidecars and gateways and to
// proxyless gRPC applications over the Aggregated Discovery Service on the
// zone's xDS port (5678).
//
// Data flow:
//
//	xds/generate output → Server.SetResources(node, resources)
//	  → per-resource and per-type versions (versions.go)
//	  → go-control-plane SnapshotCache, keyed by node id
//	  → Envoy / grpc-go over ADS (state of the world or delta)
//
// Decisions:
//
//   - Both ADS flavours are served from one go-control-plane SnapshotCache:
//     StreamAggregatedResources (state of the world; the only one grpc-go
//     speaks) and DeltaAggregatedResources (Envoy may use either). No other
//     xDS service is registered.
//   - Versions are content hashes. A resource's version is a hash of its
//     deterministic proto encoding (and name); a type's version is a hash of
//     its resources' names and versions, so a type whose content did not
//     change keeps its version and is not re-sent, delta streams receive only
//     the resources whose hash changed, and SetResources with unchanged
//     content does nothing at all (it reports changed == false). Versions are
//     stable across restarts.
//   - Resources handed to SetResources must not be modified afterwards. That
//     lets the server remember each resource's hash by pointer identity, and
//     share one per-type resource set among all the nodes that receive the
//     same resources: 10,000 proxies that share 500 clusters cost one set of
//     maps, not 10,000 (see BenchmarkSetResources).
//   - The cache runs in non-ADS-consistency mode (ads=false): a request is
//     answered with the requested subset of the node's resources instead of
//     being held until it names every resource of the snapshot. Consistency
//     (every referenced route and cluster present) is the generator's job,
//     with its own checks (go-control-plane's Consistent() is wrong for API
//     listeners using RDS).
//   - NACKs are parked (nack.go). go-control-plane v0.14.0 answers a
//     state-of-the-world NACK by re-sending the rejected version at once, in
//     a loop (≈6,000 responses a second). The server rewrites a NACK's
//     version_info to the version it rejected, so the watch waits for the
//     node's next change of that type. Delta streams need no rewrite: their
//     subscription already records the rejected versions as sent. Each NACK
//     is counted; it is logged once per (dataplane, type_url, version) with
//     the proxy's error_detail.
//   - Node identity: the node id is "<mesh>.<name>". A mesh name is a DNS
//     label without dots, so the id is split at its first dot; the name may
//     contain dots. A missing or malformed id is refused (InvalidArgument,
//     naming node.id) before the Registrar is asked. On a stream's first
//     request the Registrar's Connect decides whether the proxy may stay; a
//     refusal ends only that stream, with a gRPC status carrying the reason.
//     Disconnect is called once per stream that Connect accepted, so a proxy
//     with two streams is connected twice and disconnected twice; the
//     Registrar counts if it cares. gRPC codes for this boundary are chosen
//     in one function, statusFor (node.go).
//
// Metrics (registered on Config.Metrics when set):
//
//	meshfed_xds_streams{kind}                       gauge: accepted ADS streams, kind = envoy | grpc
//	                                                (from node.user_agent_name; anything not gRPC counts as envoy)
//	meshfed_xds_responses_total{type_url}           counter: responses sent
//	meshfed_xds_acks_total{type_url}                counter: requests acknowledging the last response
//	meshfed_xds_nacks_total{type_url}               counter: requests rejecting the last response
//	meshfed_xds_set_resources_duration_seconds      histogram: SetResources latency
package server
