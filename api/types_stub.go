package api

// Placeholder Specs so the registry compiles; each is replaced by its full
// definition in its own file (mesh.go, dataplane.go, ...).

type stubSpec struct{}

func (*stubSpec) Default()                       {}
func (*stubSpec) Validate(v *Validator, at Path) {}

type MeshSpec struct{ stubSpec }
type DataplaneSpec struct{ stubSpec }
type ZoneSpec struct{ stubSpec }
type ZoneIngressSpec struct{ stubSpec }
type SecretSpec struct{ stubSpec }
type MeshGatewaySpec struct{ stubSpec }
type TrafficTraceSpec struct{ stubSpec }
type TrafficLogSpec struct{ stubSpec }
type MeshTrafficPermissionSpec struct{ stubSpec }
type MeshTimeoutSpec struct{ stubSpec }
type MeshRetrySpec struct{ stubSpec }
