package api

// TargetRefKind is the kind of object a targetRef points at.
type TargetRefKind string

// The targetRef kinds Meshfed knows. Each policy says which of them it
// accepts in each position (top level, to, from).
const (
	// TargetMesh selects every dataplane (or every destination) of the Mesh.
	TargetMesh TargetRefKind = "Mesh"
	// TargetMeshSubset selects the dataplanes whose inbound tags match tags.
	TargetMeshSubset TargetRefKind = "MeshSubset"
	// TargetMeshService selects one service by its kuma.io/service name.
	TargetMeshService TargetRefKind = "MeshService"
	// TargetMeshServiceSubset selects the instances of one service whose
	// tags match tags.
	TargetMeshServiceSubset TargetRefKind = "MeshServiceSubset"
	// TargetDataplane selects one Dataplane by name.
	TargetDataplane TargetRefKind = "Dataplane"
	// TargetMeshGateway selects one MeshGateway by name.
	TargetMeshGateway TargetRefKind = "MeshGateway"
)

var knownTargetRefKinds = []TargetRefKind{
	TargetMesh, TargetMeshSubset, TargetMeshService, TargetMeshServiceSubset, TargetDataplane, TargetMeshGateway,
}

// TargetRef points a targetRef policy (or one of its to/from entries) at a
// set of dataplanes or destinations. It mirrors Kuma's
// common.v1alpha1.TargetRef (kind, name, tags, mesh).
type TargetRef struct {
	// Kind is required; see the TargetRefKind constants.
	Kind TargetRefKind `json:"kind"`
	// Name is the service (MeshService, MeshServiceSubset), Dataplane or
	// MeshGateway name. Required for those kinds, forbidden for Mesh and
	// MeshSubset.
	Name string `json:"name,omitempty"`
	// Tags narrow the selection. Required for MeshSubset and
	// MeshServiceSubset, forbidden for Mesh and MeshService.
	Tags map[string]string `json:"tags,omitempty"`
	// Mesh optionally names the Mesh the target lives in.
	Mesh string `json:"mesh,omitempty"`
}

// MeshTargetRef returns the targetRef {kind: Mesh}, the default top-level
// targetRef of every policy.
func MeshTargetRef() *TargetRef { return &TargetRef{Kind: TargetMesh} }

// ValidateTargetRef reports every problem of ref at p: a kind not in allowed
// (the kinds this position of this policy accepts), a missing or forbidden
// name, missing or forbidden tags, invalid tags or mesh name.
func ValidateTargetRef(v *Validator, p Path, ref TargetRef, allowed ...TargetRefKind) {
	known := false
	for _, k := range knownTargetRefKinds {
		known = known || ref.Kind == k
	}
	ok := false
	for _, k := range allowed {
		ok = ok || ref.Kind == k
	}
	switch {
	case ref.Kind == "":
		v.Add(p.Field("kind"), "must not be empty")
	case !ok:
		names := make([]string, len(allowed))
		for i, k := range allowed {
			names[i] = string(k)
		}
		v.Add(p.Field("kind"), "%s", mustBeOneOf(names))
	}

	// The name and tags rules depend on the kind, so they apply only to a
	// kind Meshfed knows (allowed here or not: both problems are reported).
	if known {
		switch ref.Kind {
		case TargetMesh, TargetMeshSubset:
			if ref.Name != "" {
				v.Add(p.Field("name"), "must not be set for kind %s", ref.Kind)
			}
		case TargetMeshService, TargetMeshServiceSubset:
			switch {
			case ref.Name == "":
				v.Add(p.Field("name"), "must not be empty for kind %s", ref.Kind)
			case !IsTagValue(ref.Name):
				v.Add(p.Field("name"), "must be a service name: at most 253 printable characters without spaces")
			}
		case TargetDataplane, TargetMeshGateway:
			if ref.Name == "" {
				v.Add(p.Field("name"), "must not be empty for kind %s", ref.Kind)
			} else {
				ValidateName(v, p.Field("name"), ref.Name, 253)
			}
		}
		switch ref.Kind {
		case TargetMeshSubset, TargetMeshServiceSubset:
			if len(ref.Tags) == 0 {
				v.Add(p.Field("tags"), "must not be empty for kind %s", ref.Kind)
			}
		case TargetMesh, TargetMeshService:
			if len(ref.Tags) > 0 {
				v.Add(p.Field("tags"), "must not be set for kind %s", ref.Kind)
			}
		}
	}
	ValidateTags(v, p.Field("tags"), ref.Tags)
	if ref.Mesh != "" {
		ValidateName(v, p.Field("mesh"), ref.Mesh, 63)
	}
}
