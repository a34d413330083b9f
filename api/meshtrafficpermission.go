package api

// MeshTrafficPermissionSpec is the spec of a MeshTrafficPermission (Kuma's
// meshtrafficpermission v1alpha1): which clients (from) may reach the
// dataplanes its targetRef selects. It has no "to" section.
type MeshTrafficPermissionSpec struct {
	// TargetRef selects the protected dataplanes; default {kind: Mesh}.
	// Allowed kinds: Mesh, MeshSubset, MeshService, MeshServiceSubset,
	// Dataplane.
	TargetRef *TargetRef `json:"targetRef,omitempty"`
	// From (required, non-empty) lists the clients and what they may do.
	From []MeshTrafficPermissionFrom `json:"from,omitempty"`
}

// MeshTrafficPermissionFrom mirrors Kuma's MeshTrafficPermission From
// item.
type MeshTrafficPermissionFrom struct {
	// TargetRef selects the clients. Allowed kinds: Mesh, MeshSubset,
	// MeshService, MeshServiceSubset.
	TargetRef TargetRef `json:"targetRef"`
	// Default is the configuration applied to those clients.
	Default MeshTrafficPermissionConf `json:"default"`
}

// Traffic permission actions.
const (
	ActionAllow               = "Allow"
	ActionDeny                = "Deny"
	ActionAllowWithShadowDeny = "AllowWithShadowDeny"
)

// MeshTrafficPermissionConf mirrors Kuma's MeshTrafficPermission Conf.
type MeshTrafficPermissionConf struct {
	// Action (required) is Allow, Deny or AllowWithShadowDeny.
	Action string `json:"action"`
}

// Default implements Spec: the top-level targetRef defaults to the Mesh.
func (s *MeshTrafficPermissionSpec) Default() {
	if s.TargetRef == nil {
		s.TargetRef = MeshTargetRef()
	}
}

// Validate implements Spec.
func (s *MeshTrafficPermissionSpec) Validate(v *Validator, at Path) {
	if s.TargetRef != nil {
		ValidateTargetRef(v, at.Field("targetRef"), *s.TargetRef,
			TargetMesh, TargetMeshSubset, TargetMeshService, TargetMeshServiceSubset, TargetDataplane)
	}
	fp := at.Field("from")
	if len(s.From) == 0 {
		v.Add(fp, "must not be empty")
	}
	for i, f := range s.From {
		p := fp.Index(i)
		ValidateTargetRef(v, p.Field("targetRef"), f.TargetRef,
			TargetMesh, TargetMeshSubset, TargetMeshService, TargetMeshServiceSubset)
		requiredOneOf(v, p.Field("default").Field("action"), f.Default.Action,
			ActionAllow, ActionDeny, ActionAllowWithShadowDeny)
	}
}
