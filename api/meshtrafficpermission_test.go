package api

import "testing"

func TestMeshTrafficPermissionValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "allow all", doc: `
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`},
		{name: "backend from web, deny the rest", doc: `
type: MeshTrafficPermission
name: backend-permissions
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
  - targetRef:
      kind: MeshSubset
      tags:
        kuma.io/zone: us-east
    default:
      action: Deny
  - targetRef:
      kind: MeshServiceSubset
      name: web
      tags:
        version: v1
    default:
      action: AllowWithShadowDeny
  - targetRef:
      kind: MeshService
      name: web
    default:
      action: Allow
`},
		{name: "dataplane target", doc: `
type: MeshTrafficPermission
name: dp-permissions
mesh: default
spec:
  targetRef:
    kind: Dataplane
    name: web-01
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Deny
`},
	})
}

func TestMeshTrafficPermissionDefaults(t *testing.T) {
	got := encodeYAML(t, `
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`)
	want := `type: MeshTrafficPermission
mesh: default
name: allow-all
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`
	if got != want {
		t.Errorf("defaults:\n%s\nwant:\n%s", got, want)
	}
}

func TestMeshTrafficPermissionInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no from", doc: "type: MeshTrafficPermission\nmesh: default\nname: p\nspec: {}\n", want: []string{"spec.from"}},
		{name: "no spec at all", doc: "type: MeshTrafficPermission\nmesh: default\nname: p\n", want: []string{"spec.from"}},
		{name: "to is not allowed", doc: `
type: MeshTrafficPermission
mesh: default
name: p
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`, want: []string{"spec.to"}},
		{name: "problems in every entry", doc: `
type: MeshTrafficPermission
mesh: default
name: p
spec:
  targetRef:
    kind: MeshGateway
    name: edge
  from:
  - targetRef:
      kind: Mesh
      name: default
    default: {}
  - targetRef:
      kind: MeshSubset
    default:
      action: allow
  - targetRef:
      kind: Dataplane
      name: web-01
    default:
      action: Deny
  - default:
      action: Allow
`, want: []string{
			"spec.from[0].default.action",
			"spec.from[0].targetRef.name",
			"spec.from[1].default.action",
			"spec.from[1].targetRef.tags",
			"spec.from[2].targetRef.kind",
			"spec.from[3].targetRef.kind",
			"spec.targetRef.kind",
		}},
	})
}
