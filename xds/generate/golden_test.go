package generate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenJSON renders resources as stable, indented JSON: protojson per
// resource (its whitespace is deliberately unstable, so it is compacted and
// re-indented), grouped by type in the slices' (sorted) order.
func goldenJSON(t *testing.T, r *Resources) []byte {
	t.Helper()
	group := func(msgs []proto.Message) []json.RawMessage {
		out := []json.RawMessage{}
		for _, m := range msgs {
			b, err := protojson.Marshal(m)
			if err != nil {
				t.Fatalf("protojson: %v", err)
			}
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, c.Bytes())
		}
		return out
	}
	doc := struct {
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
		// Secrets only when there are (goldens without mTLS have none).
		Secrets []json.RawMessage `json:"secrets,omitempty"`
	}{
		Listeners: group(toMessages(r.Listeners)),
		Routes:    group(toMessages(r.Routes)),
		Clusters:  group(toMessages(r.Clusters)),
		Endpoints: group(toMessages(r.Endpoints)),
	}
	if len(r.Secrets) > 0 {
		doc.Secrets = group(toMessages(r.Secrets))
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func toMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func mustCompile(t testing.TB, v *MeshView) *Mesh {
	t.Helper()
	m, err := Compile(v)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

func TestGolden(t *testing.T) {
	meshA := mustCompile(t, meshAView(true))
	meshAOff := mustCompile(t, meshAView(false))
	meshB := mustCompile(t, meshBView())
	zi := ingresses()[0] // zone-1's own
	strict := mustCompile(t, meshAMTLS(api.MTLSModeStrict, allowAll("a")))
	permissive := mustCompile(t, meshAMTLS(api.MTLSModePermissive, allowAll("a")))
	meshS := func(policies ...*api.Resource) func() (*Resources, error) {
		return func() (*Resources, error) {
			return mustCompile(t, meshSView(policies...)).ProxyWith(backendS, KindEnvoy, optsOf(backendS))
		}
	}

	cases := []struct {
		name string
		gen  func() (*Resources, error)
	}{
		// Sidecar: http inbound; http (local + same-network zone + ingress
		// zone), tcp, grpc, remote-only and unknown outbounds; locality on.
		{"envoy-a-web", func() (*Resources, error) { return meshA.Proxy(webA, KindEnvoy) }},
		// The same with routing.localityAwareLoadBalancing off.
		{"envoy-a-web-locality-off", func() (*Resources, error) { return meshAOff.Proxy(webA, KindEnvoy) }},
		// Sidecar: tcp inbound with serviceAddress and servicePort.
		{"envoy-a-db", func() (*Resources, error) { return meshA.Proxy(dbA, KindEnvoy) }},
		// Proxyless gRPC: every service's client side, one server listener.
		{"grpc-a-checkout", func() (*Resources, error) { return meshA.Proxy(checkoutA, KindOf(checkoutA)) }},
		// Mesh b: nothing of mesh a.
		{"envoy-b-web", func() (*Resources, error) { return meshB.Proxy(webB, KindEnvoy) }},
		// zone-1's ingress over meshes a and b.
		{"ingress-zone-1", func() (*Resources, error) { return Ingress(zi, []*Mesh{meshA, meshB}) }},

		// mTLS STRICT, allow-all: TLS inbound with RBAC, TLS clusters
		// (SDS, SAN, SNI), the Mesh CA and the proxy's identity secrets.
		{"envoy-a-web-mtls-strict", func() (*Resources, error) { return strict.ProxyWith(webA, KindEnvoy, optsOf(webA)) }},
		// PERMISSIVE: TLS inspector, a TLS chain with RBAC and a plaintext
		// chain without.
		{"envoy-a-web-mtls-permissive", func() (*Resources, error) { return permissive.ProxyWith(webA, KindEnvoy, optsOf(webA)) }},
		// TCP inbound: the RBAC network filter before tcp_proxy.
		{"envoy-a-db-mtls-strict", func() (*Resources, error) { return strict.ProxyWith(dbA, KindEnvoy, optsOf(dbA)) }},
		// Proxyless gRPC, client and server: certificate providers, RBAC
		// HTTP filter on the server listener.
		{"grpc-a-checkout-mtls-strict", func() (*Resources, error) { return strict.Proxy(checkoutA, KindGRPC) }},
		// PERMISSIVE is STRICT for a gRPC server (see grpcProxy).
		{"grpc-a-checkout-mtls-permissive", func() (*Resources, error) { return permissive.Proxy(checkoutA, KindGRPC) }},

		// MeshTrafficPermission → RBAC of mesh s's backend-1.
		{"mtp-allow-all", meshS(allowAll("s"))},
		// Mesh-wide allow, web denied (the more specific source wins).
		{"mtp-deny-service", meshS(allowAll("s"), mtp("s", "deny-web", nil, from(refService("web"), api.ActionDeny)))},
		// The v1 instances of any service may call backend, except those of
		// team "legacy" (a later from[] of the same kind wins); web's
		// "canary" instances may in any case (a more specific source).
		{"mtp-subset", meshS(
			mtp("s", "backend-v1", &api.TargetRef{Kind: api.TargetMeshService, Name: "backend"},
				from(refSubset(map[string]string{"version": "v1"}), api.ActionAllow),
				from(refServiceSubset("web", map[string]string{"track": "canary"}), api.ActionAllowWithShadowDeny),
				from(refSubset(map[string]string{"team": "legacy"}), api.ActionDeny)),
		)},
		// No policy: mTLS on, nobody is allowed.
		{"mtp-none", meshS()},

		// The Mesh's prometheus backend: a stats listener on the
		// Dataplane's address, port 5670, /metrics → the admin cluster.
		{"metrics-mesh", func() (*Resources, error) {
			return mustCompile(t, meshOView(meshOSpec())).Proxy(webO, KindEnvoy)
		}},
		// The Dataplane's override (port and path) over the Mesh's.
		{"metrics-dataplane-override", func() (*Resources, error) {
			dp := withMetricsOverride(webO, &api.MetricsBackend{Type: api.MetricsPrometheus, Conf: &api.PrometheusConf{Port: 9102, Path: "/stats"}})
			return mustCompile(t, meshOView(meshOSpec())).Proxy(dp, KindEnvoy)
		}},
		// mTLS on: the stats listener requires a client certificate of
		// the Mesh (the inbounds' SDS secrets).
		{"metrics-mtls", func() (*Resources, error) {
			return mustCompile(t, meshOMTLS(false)).ProxyWith(webO, KindEnvoy, optsOf(webO))
		}},
		// mTLS on, skipMTLS: a plaintext stats listener.
		{"metrics-skip-mtls", func() (*Resources, error) {
			return mustCompile(t, meshOMTLS(true)).ProxyWith(webO, KindEnvoy, optsOf(webO))
		}},
		// metrics.enabledBackend empty: no stats listener, no admin cluster.
		{"metrics-off", func() (*Resources, error) {
			return mustCompile(t, meshOView(withoutMetrics(meshOSpec()))).Proxy(webO, KindEnvoy)
		}},
		// TrafficTrace selecting web: zipkin on the inbound and HTTP
		// outbound HCMs, and the collector's cluster.
		{"tracing-web", func() (*Resources, error) { return mustCompile(t, meshOTracing()).Proxy(webO, KindEnvoy) }},
		// The same Mesh: backend-1 is not selected, nothing of tracing.
		{"tracing-backend-untraced", func() (*Resources, error) { return mustCompile(t, meshOTracing()).Proxy(backendO, KindEnvoy) }},
		// TrafficLogs: file access logs on web's outbounds, Kuma's default
		// formats (HTTP, TCP) and a custom one for db.
		{"logging-file", func() (*Resources, error) { return mustCompile(t, meshOLogging()).Proxy(webO, KindEnvoy) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.gen()
			if err != nil {
				t.Fatal(err)
			}
			got := goldenJSON(t, res)
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./xds/generate -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generated resources; run go test ./xds/generate -update and review the diff\ngot:\n%s", path, got)
			}
		})
	}
}
