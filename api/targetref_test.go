package api

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestValidateTargetRef(t *testing.T) {
	all := knownTargetRefKinds
	tags := map[string]string{"version": "v1"}
	cases := []struct {
		name    string
		ref     TargetRef
		allowed []TargetRefKind
		want    []string
	}{
		{"mesh", TargetRef{Kind: TargetMesh}, all, nil},
		{"mesh subset", TargetRef{Kind: TargetMeshSubset, Tags: tags}, all, nil},
		{"mesh service", TargetRef{Kind: TargetMeshService, Name: "backend_kuma-demo_svc_8080"}, all, nil},
		{"mesh service subset", TargetRef{Kind: TargetMeshServiceSubset, Name: "backend", Tags: tags}, all, nil},
		{"dataplane", TargetRef{Kind: TargetDataplane, Name: "web-01", Mesh: "default"}, all, nil},
		{"mesh gateway with tags", TargetRef{Kind: TargetMeshGateway, Name: "edge", Tags: tags}, all, nil},
		{"empty kind", TargetRef{}, all, []string{"r.kind"}},
		{"unknown kind", TargetRef{Kind: "MeshHTTPRoute", Name: "x"}, all, []string{"r.kind"}},
		{"kind not allowed here", TargetRef{Kind: TargetDataplane, Name: "dp"}, []TargetRefKind{TargetMesh}, []string{"r.kind"}},
		{"kind not allowed and its own rules broken", TargetRef{Kind: TargetMeshSubset, Name: "x"}, []TargetRefKind{TargetMesh},
			[]string{"r.kind", "r.name", "r.tags"}},
		{"mesh with name and tags", TargetRef{Kind: TargetMesh, Name: "x", Tags: tags}, all, []string{"r.name", "r.tags"}},
		{"mesh subset without tags", TargetRef{Kind: TargetMeshSubset}, all, []string{"r.tags"}},
		{"mesh service without name, with tags", TargetRef{Kind: TargetMeshService, Tags: tags}, all, []string{"r.name", "r.tags"}},
		{"mesh service subset without anything", TargetRef{Kind: TargetMeshServiceSubset}, all, []string{"r.name", "r.tags"}},
		{"dataplane without name", TargetRef{Kind: TargetDataplane}, all, []string{"r.name"}},
		{"dataplane with a bad name", TargetRef{Kind: TargetDataplane, Name: "Web_01"}, all, []string{"r.name"}},
		{"service name with a space", TargetRef{Kind: TargetMeshService, Name: "a b"}, all, []string{"r.name"}},
		{"bad tag and bad mesh", TargetRef{Kind: TargetMeshSubset, Tags: map[string]string{"v": ""}, Mesh: "Mesh!"}, all,
			[]string{`r.tags["v"]`, "r.mesh"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &Validator{}
			ValidateTargetRef(v, "r", tc.ref, tc.allowed...)
			var got []string
			for _, fe := range v.errs {
				got = append(got, fe.Field)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("paths (-want +got):\n%s\n%v", diff, v.Err())
			}
		})
	}
}
