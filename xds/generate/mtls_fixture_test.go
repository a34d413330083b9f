package generate

import (
	"github.com/meshfed/meshfed/api"
)

// mTLS fixtures. The PEM bytes are placeholders: generation only copies
// them into Envoy secrets.
var (
	testBundle = []byte("-----BEGIN CERTIFICATE-----\nmesh-root\n-----END CERTIFICATE-----\n")
)

func identityOf(name string) *Identity {
	return &Identity{
		CertChainPEM: []byte("-----BEGIN CERTIFICATE-----\n" + name + "\n-----END CERTIFICATE-----\n"),
		KeyPEM:       []byte("-----BEGIN PRIVATE KEY-----\n" + name + "\n-----END PRIVATE KEY-----\n"),
	}
}

func optsOf(dp *api.Resource) ProxyOptions { return ProxyOptions{Identity: identityOf(dp.Name)} }

// mtp is a MeshTrafficPermission of mesh; top nil means {kind: Mesh}.
func mtp(mesh, name string, top *api.TargetRef, from ...api.MeshTrafficPermissionFrom) *api.Resource {
	spec := &api.MeshTrafficPermissionSpec{TargetRef: top, From: from}
	spec.Default()
	return &api.Resource{Meta: api.Meta{Type: api.TypeMeshTrafficPermission, Mesh: mesh, Name: name}, Spec: spec}
}

func from(ref api.TargetRef, action string) api.MeshTrafficPermissionFrom {
	return api.MeshTrafficPermissionFrom{TargetRef: ref, Default: api.MeshTrafficPermissionConf{Action: action}}
}

var (
	refMesh = api.TargetRef{Kind: api.TargetMesh}
)

func refService(name string) api.TargetRef {
	return api.TargetRef{Kind: api.TargetMeshService, Name: name}
}

func refSubset(tags map[string]string) api.TargetRef {
	return api.TargetRef{Kind: api.TargetMeshSubset, Tags: tags}
}

func refServiceSubset(name string, tags map[string]string) api.TargetRef {
	return api.TargetRef{Kind: api.TargetMeshServiceSubset, Name: name, Tags: tags}
}

func refDataplane(name string) api.TargetRef {
	return api.TargetRef{Kind: api.TargetDataplane, Name: name}
}

// allowAll is Kuma's default policy: every Mesh identity may call anything.
func allowAll(mesh string) *api.Resource {
	return mtp(mesh, "allow-all", nil, from(refMesh, api.ActionAllow))
}

// meshAMTLS is mesh a's view with mTLS in mode and the given policies.
func meshAMTLS(mode string, policies ...*api.Resource) *MeshView {
	v := meshAView(true)
	v.MTLS = &MTLS{Mode: mode, TrustBundlePEM: testBundle}
	v.TrafficPermissions = policies
	return v
}

// Mesh s: a small mTLS Mesh to show traffic permissions. backend-1 is an
// Envoy with one HTTP inbound (version v1, team pay), no outbound.
var backendS = func() *api.Resource {
	in := inbound(8080, "backend", "http")
	in.Tags["version"] = "v1"
	in.Tags["team"] = "pay"
	return dataplane("s", "backend-1", "10.9.0.2", []api.DataplaneInbound{in}, nil)
}()

func meshSView(policies ...*api.Resource) *MeshView {
	return &MeshView{
		Mesh:      meshResource("s", false),
		LocalZone: localZone,
		Dataplanes: []*api.Resource{
			backendS,
			dataplane("s", "web-1", "10.9.0.1", []api.DataplaneInbound{inbound(8080, "web", "http")},
				[]api.DataplaneOutbound{outbound(10001, "backend")}),
		},
		MTLS:               &MTLS{Mode: api.MTLSModeStrict, TrustBundlePEM: testBundle},
		TrafficPermissions: policies,
	}
}
