package generate

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
)

func secretNamed(r *Resources, name string) *tlsv3.Secret {
	for _, s := range r.Secrets {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// TestMTLSSharing: with mTLS on, the per-service clusters stay shared by
// every proxy of a kind (they name the identity secret, not a proxy), the
// Mesh CA secret is one object, and each Envoy has its own identity under
// the same name.
func TestMTLSSharing(t *testing.T) {
	m := mustCompile(t, meshAMTLS(api.MTLSModeStrict, allowAll("a")))
	web2dp := dataplane("a", "web-2", "10.1.0.7", []api.DataplaneInbound{inbound(8080, "web", "http")},
		[]api.DataplaneOutbound{outbound(20001, "backend")})
	web, err := m.ProxyWith(webA, KindEnvoy, optsOf(webA))
	if err != nil {
		t.Fatal(err)
	}
	web2, err := m.ProxyWith(web2dp, KindEnvoy, optsOf(web2dp))
	if err != nil {
		t.Fatal(err)
	}
	g1, err := m.Proxy(checkoutA, KindGRPC)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := m.Proxy(dataplane("a", "payments-1", "10.1.0.5", []api.DataplaneInbound{inbound(9000, "payments", "grpc")}, nil, grpcApp), KindGRPC)
	if err != nil {
		t.Fatal(err)
	}
	cluster := func(r *Resources, name string) any {
		for _, c := range r.Clusters {
			if c.GetName() == name {
				return c
			}
		}
		t.Fatalf("no cluster %q", name)
		return nil
	}
	if cluster(web, "backend") != cluster(web2, "backend") {
		t.Error("Envoy proxies do not share the backend cluster")
	}
	if cluster(g1, "backend") != cluster(g2, "backend") {
		t.Error("gRPC proxies do not share the backend cluster")
	}
	if cluster(web, "backend") == cluster(g1, "backend") {
		t.Error("Envoy and gRPC proxies share a cluster although their TLS differs")
	}

	ca1, ca2 := secretNamed(web, MeshCASecretName("a")), secretNamed(web2, MeshCASecretName("a"))
	if ca1 == nil || ca1 != ca2 {
		t.Errorf("the Mesh CA secret is not one shared object: %p %p", ca1, ca2)
	}
	id1, id2 := secretNamed(web, IdentitySecretName("a")), secretNamed(web2, IdentitySecretName("a"))
	if id1 == nil || id2 == nil || id1 == id2 || proto.Equal(id1, id2) {
		t.Errorf("identity secrets are not per proxy: %v / %v", id1, id2)
	}
	if !bytes.Contains(id2.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), []byte("web-2")) {
		t.Error("web-2's identity secret does not hold web-2's certificate")
	}
	if len(web.Secrets) != 2 || len(g1.Secrets) != 0 {
		t.Errorf("secrets: Envoy %d (want 2), gRPC %d (want 0)", len(web.Secrets), len(g1.Secrets))
	}
	if n := len(web.ByType()[resource.SecretType]); n != 2 {
		t.Errorf("ByType has %d secrets", n)
	}

	// A recompilation with the same inputs keeps every shared pointer.
	again, err := CompileFrom(meshAMTLS(api.MTLSModeStrict, allowAll("a")), m)
	if err != nil {
		t.Fatal(err)
	}
	if again.MeshWideChanged() || len(again.ChangedServices()) > 0 {
		t.Errorf("an unchanged recompilation changed: mesh-wide %v, services %v", again.MeshWideChanged(), again.ChangedServices())
	}
	web3, err := again.ProxyWith(webA, KindEnvoy, optsOf(webA))
	if err != nil {
		t.Fatal(err)
	}
	if cluster(web3, "backend") != cluster(web, "backend") || secretNamed(web3, MeshCASecretName("a")) != ca1 {
		t.Error("an unchanged recompilation made new cluster or CA secret objects")
	}
}

// TestMeshWideChanged: mTLS and traffic permissions concern every proxy;
// a CA rotation changes no cluster (clusters name the secrets).
func TestMeshWideChanged(t *testing.T) {
	first := mustCompile(t, meshAMTLS(api.MTLSModeStrict, allowAll("a")))
	if !first.MeshWideChanged() {
		t.Error("a first compilation is a mesh-wide change")
	}
	cases := []struct {
		name     string
		view     *MeshView
		services bool // services change too
	}{
		{"new policy", meshAMTLS(api.MTLSModeStrict, allowAll("a"), mtp("a", "deny-web", nil, from(refService("web"), api.ActionDeny))), false},
		{"policy action", meshAMTLS(api.MTLSModeStrict, mtp("a", "allow-all", nil, from(refMesh, api.ActionDeny))), false},
		{"mode", meshAMTLS(api.MTLSModePermissive, allowAll("a")), false},
		{"trust bundle", func() *MeshView {
			v := meshAMTLS(api.MTLSModeStrict, allowAll("a"))
			v.MTLS.TrustBundlePEM = []byte("-----BEGIN CERTIFICATE-----\nnew-root\n-----END CERTIFICATE-----\n")
			return v
		}(), false},
		{"mTLS off", meshAView(true), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next, err := CompileFrom(tc.view, first)
			if err != nil {
				t.Fatal(err)
			}
			if !next.MeshWideChanged() {
				t.Error("MeshWideChanged = false")
			}
			if got := len(next.ChangedServices()) > 0; got != tc.services {
				t.Errorf("ChangedServices = %v", next.ChangedServices())
			}
		})
	}
}

// TestMTLSProtocolRules: what grpc-go NACKs never reaches a gRPC proxy,
// and Envoy never gets plaintext outbounds in an mTLS Mesh.
func TestMTLSProtocolRules(t *testing.T) {
	m := mustCompile(t, meshAMTLS(api.MTLSModePermissive, allowAll("a")))
	g, err := m.Proxy(checkoutA, KindGRPC)
	if err != nil {
		t.Fatal(err)
	}
	js := string(compactJSON(t, g))
	for _, banned := range []string{"SdsSecretConfig", "tlsCertificates", "matchTypedSubjectAltNames", "transportProtocol"} {
		if strings.Contains(js, banned) {
			t.Errorf("gRPC resources contain %s", banned)
		}
	}
	for _, c := range g.Clusters {
		if c.GetTransportSocket() == nil {
			t.Errorf("gRPC cluster %s has no TLS", c.GetName())
		}
	}
	// Server side: no SAN matcher (NACK), client certificate required.
	for _, l := range g.Listeners {
		if l.GetApiListener() != nil {
			continue
		}
		ts := l.GetFilterChains()[0].GetTransportSocket()
		d := &tlsv3.DownstreamTlsContext{}
		if err := ts.GetTypedConfig().UnmarshalTo(d); err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 the field grpc-go reads (and a server must not set)
		if !d.GetRequireClientCertificate().GetValue() || len(d.GetCommonTlsContext().GetValidationContext().GetMatchSubjectAltNames()) > 0 {
			t.Errorf("server listener %s: %v", l.GetName(), d)
		}
	}

	e, err := m.ProxyWith(webA, KindEnvoy, optsOf(webA))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Clusters {
		local := strings.HasPrefix(c.GetName(), localPrefix)
		if (c.GetTransportSocket() == nil) != local {
			t.Errorf("cluster %s: TLS %v", c.GetName(), c.GetTransportSocket() != nil)
		}
		if !local {
			u := &tlsv3.UpstreamTlsContext{}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(u); err != nil {
				t.Fatal(err)
			}
			if u.GetSni() != ServiceSNI(c.GetName(), "a") {
				t.Errorf("cluster %s: SNI %q", c.GetName(), u.GetSni())
			}
		}
	}
}

func TestMTLSInvalidInput(t *testing.T) {
	strict := mustCompile(t, meshAMTLS(api.MTLSModeStrict))
	cases := []struct {
		name string
		gen  func() (any, error)
		want string
	}{
		{"Envoy without identity", func() (any, error) { return strict.Proxy(webA, KindEnvoy) }, "ProxyOptions.Identity"},
		{"Envoy with an empty key", func() (any, error) {
			return strict.ProxyWith(webA, KindEnvoy, ProxyOptions{Identity: &Identity{CertChainPEM: []byte("x")}})
		}, "ProxyOptions.Identity"},
		{"unknown mode", func() (any, error) { return Compile(meshAMTLS("LAX")) }, `MTLS.Mode "LAX"`},
		{"no trust bundle", func() (any, error) {
			v := meshAMTLS(api.MTLSModeStrict)
			v.MTLS.TrustBundlePEM = nil
			return Compile(v)
		}, "TrustBundlePEM must be set"},
		{"policy of another mesh", func() (any, error) { return Compile(meshAMTLS(api.MTLSModeStrict, allowAll("b"))) }, "belongs to another mesh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.gen()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// gRPC needs no identity; an invalid policy is skipped and reported.
	if _, err := strict.Proxy(checkoutA, KindGRPC); err != nil {
		t.Error(err)
	}
	bad := mtp("a", "bad", nil)
	m := mustCompile(t, meshAMTLS(api.MTLSModeStrict, bad))
	if p := fmt.Sprint(m.Problems()); !strings.Contains(p, "MeshTrafficPermission a/bad") {
		t.Errorf("Problems() = %s", p)
	}
}

// TestValidateSecrets: SDS references must resolve to secrets of the set.
func TestValidateSecrets(t *testing.T) {
	m := mustCompile(t, meshAMTLS(api.MTLSModeStrict, allowAll("a")))
	r, err := m.ProxyWith(webA, KindEnvoy, optsOf(webA))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(r); err != nil {
		t.Fatal(err)
	}
	missing := *r
	missing.Secrets = []*tlsv3.Secret{secretNamed(r, MeshCASecretName("a"))}
	err = Validate(&missing)
	if err == nil || !strings.Contains(err.Error(), `refers to SDS secret "identity_cert:a"`) {
		t.Errorf("err = %v", err)
	}
	empty := *r
	empty.Secrets = []*tlsv3.Secret{secretNamed(r, MeshCASecretName("a")), {Name: IdentitySecretName("a")}}
	if err := Validate(&empty); err == nil || !strings.Contains(err.Error(), "must be tls_certificate or validation_context") {
		t.Errorf("err = %v", err)
	}
}

func TestMTLSOf(t *testing.T) {
	spec := &api.MeshSpec{MTLS: &api.MTLS{EnabledBackend: "ca-1", Backends: []api.MTLSBackend{{Name: "ca-1", Type: api.MTLSBuiltin}}}}
	spec.Default()
	if got := MTLSOf(spec, testBundle); got == nil || got.Mode != api.MTLSModeStrict || !bytes.Equal(got.TrustBundlePEM, testBundle) {
		t.Errorf("MTLSOf = %+v", got)
	}
	spec.MTLS.EnabledBackend = ""
	if got := MTLSOf(spec, testBundle); got != nil {
		t.Errorf("MTLSOf(disabled) = %+v", got)
	}
	if MTLSOf(nil, nil) != nil {
		t.Error("MTLSOf(nil) != nil")
	}
}

// TestGRPCIdentitySecrets: a proxyless gRPC proxy given an identity carries
// the two secrets its agent fetches over SDS; without one, none.
func TestGRPCIdentitySecrets(t *testing.T) {
	m := mustCompile(t, meshAMTLS(api.MTLSModeStrict, allowAll("a")))
	res, err := m.ProxyWith(checkoutA, KindGRPC, optsOf(checkoutA))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Secrets) != 2 || res.Secrets[0].GetName() != MeshCASecretName("a") || res.Secrets[1].GetName() != IdentitySecretName("a") {
		t.Fatalf("secrets %v", res.Secrets)
	}
	bare, err := m.Proxy(checkoutA, KindGRPC)
	if err != nil || len(bare.Secrets) != 0 {
		t.Fatalf("without an identity: %v, %v", bare.Secrets, err)
	}
}
