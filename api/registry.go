package api

import (
	"fmt"
	"sort"
	"strings"
)

// Scope says where a type's resources live.
type Scope string

const (
	// ScopeGlobal resources have no mesh (Mesh, Zone, ZoneIngress).
	ScopeGlobal Scope = "global"
	// ScopeMesh resources belong to exactly one Mesh.
	ScopeMesh Scope = "mesh"
)

// Role is a control-plane role; each type is owned (writable) by one.
type Role string

const (
	RoleGlobal Role = "global"
	RoleZone   Role = "zone"
)

// Descriptor is a type's registry entry.
type Descriptor struct {
	// Name is the type as it appears in the body's "type" field.
	Name string `json:"name"`
	// Plural is the REST path segment: /meshes/{mesh}/{plural}/{name}.
	Plural string `json:"path"`
	// Aliases are extra names meshctl accepts for the type ("dp").
	Aliases []string `json:"-"`
	Scope   Scope    `json:"scope"`
	// Owner is the role whose API accepts writes; the other role's copy is
	// read-only.
	Owner Role `json:"owner"`
	// FanOut: the type is sent to zones (global-owned types to every zone,
	// zone-owned types to the other zones).
	FanOut bool `json:"fanOut"`
	// Inline types (Kuma's classic resources) carry their fields at the top
	// level of the body; the others carry them under "spec".
	Inline bool `json:"inline"`
	// System types are written by the control plane itself (insights); the
	// API serves them read-only.
	System bool `json:"system,omitempty"`
	// New returns an empty Spec of the type.
	New func() Spec `json:"-"`
}

func (d *Descriptor) specRoot() Path {
	if d.Inline {
		return ""
	}
	return "spec"
}

// Type names.
const (
	TypeMesh                  = "Mesh"
	TypeDataplane             = "Dataplane"
	TypeZone                  = "Zone"
	TypeZoneIngress           = "ZoneIngress"
	TypeSecret                = "Secret"
	TypeMeshGateway           = "MeshGateway"
	TypeTrafficTrace          = "TrafficTrace"
	TypeTrafficLog            = "TrafficLog"
	TypeMeshTrafficPermission = "MeshTrafficPermission"
	TypeMeshTimeout           = "MeshTimeout"
	TypeMeshRetry             = "MeshRetry"
	TypeZoneInsight           = "ZoneInsight"
	TypeDataplaneInsight      = "DataplaneInsight"
	TypeZoneTokenRevocation   = "ZoneTokenRevocation"
)

// types is the registry: one entry per type. It is never modified.
var types = []Descriptor{
	{Name: TypeMesh, Plural: "meshes", Aliases: []string{"mesh"}, Scope: ScopeGlobal, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &MeshSpec{} }},
	{Name: TypeDataplane, Plural: "dataplanes", Aliases: []string{"dataplane", "dp", "dps"}, Scope: ScopeMesh, Owner: RoleZone, FanOut: true, Inline: true,
		New: func() Spec { return &DataplaneSpec{} }},
	{Name: TypeZone, Plural: "zones", Aliases: []string{"zone"}, Scope: ScopeGlobal, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &ZoneSpec{} }},
	{Name: TypeZoneIngress, Plural: "zoneingresses", Aliases: []string{"zoneingress", "zi"}, Scope: ScopeGlobal, Owner: RoleZone, FanOut: true, Inline: true,
		New: func() Spec { return &ZoneIngressSpec{} }},
	{Name: TypeSecret, Plural: "secrets", Aliases: []string{"secret"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &SecretSpec{} }},
	{Name: TypeMeshGateway, Plural: "meshgateways", Aliases: []string{"meshgateway", "gateway", "gateways"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &MeshGatewaySpec{} }},
	{Name: TypeTrafficTrace, Plural: "traffic-traces", Aliases: []string{"traffictrace", "traffictraces", "traffic-trace"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &TrafficTraceSpec{} }},
	{Name: TypeTrafficLog, Plural: "traffic-logs", Aliases: []string{"trafficlog", "trafficlogs", "traffic-log"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true, Inline: true,
		New: func() Spec { return &TrafficLogSpec{} }},
	{Name: TypeMeshTrafficPermission, Plural: "meshtrafficpermissions", Aliases: []string{"meshtrafficpermission", "mtp"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true,
		New: func() Spec { return &MeshTrafficPermissionSpec{} }},
	{Name: TypeMeshTimeout, Plural: "meshtimeouts", Aliases: []string{"meshtimeout"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true,
		New: func() Spec { return &MeshTimeoutSpec{} }},
	{Name: TypeMeshRetry, Plural: "meshretries", Aliases: []string{"meshretry"}, Scope: ScopeMesh, Owner: RoleGlobal, FanOut: true,
		New: func() Spec { return &MeshRetrySpec{} }},
	{Name: TypeZoneInsight, Plural: "zone-insights", Aliases: []string{"zoneinsight", "zoneinsights", "zone-insight"}, Scope: ScopeGlobal, Owner: RoleGlobal, Inline: true, System: true,
		New: func() Spec { return &ZoneInsightSpec{} }},
	{Name: TypeDataplaneInsight, Plural: "dataplane-insights", Aliases: []string{"dataplaneinsight", "dataplaneinsights", "dataplane-insight"}, Scope: ScopeMesh, Owner: RoleZone, Inline: true, System: true,
		New: func() Spec { return &DataplaneInsightSpec{} }},
	{Name: TypeZoneTokenRevocation, Plural: "zonetokenrevocations", Aliases: []string{"zonetokenrevocation"}, Scope: ScopeGlobal, Owner: RoleGlobal, Inline: true,
		New: func() Spec { return &ZoneTokenRevocationSpec{} }},
}

var (
	byName   = map[string]*Descriptor{}
	byPlural = map[string]*Descriptor{}
	byAlias  = map[string]*Descriptor{}
)

func init() {
	for i := range types {
		d := &types[i]
		if byName[d.Name] != nil || byPlural[d.Plural] != nil {
			panic("api: duplicate registry entry " + d.Name)
		}
		byName[d.Name] = d
		byPlural[d.Plural] = d
		for _, n := range append([]string{strings.ToLower(d.Name), d.Plural}, d.Aliases...) {
			byAlias[n] = d
		}
	}
}

// UnknownTypeError names a type that is not in the registry.
type UnknownTypeError struct{ Name string }

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("unknown type %q (known: %s)", e.Name, strings.Join(TypeNames(), ", "))
}

// Lookup returns the descriptor of a type by its name ("Mesh").
func Lookup(name string) (*Descriptor, error) {
	if d := byName[name]; d != nil {
		return d, nil
	}
	return nil, &UnknownTypeError{Name: name}
}

// LookupPlural returns the descriptor of a type by its REST plural
// ("meshtrafficpermissions").
func LookupPlural(plural string) (*Descriptor, bool) {
	d := byPlural[plural]
	return d, d != nil
}

// LookupAny resolves what a user typed on the command line: a type name, its
// plural or an alias, case-insensitively.
func LookupAny(s string) (*Descriptor, error) {
	if d := byAlias[strings.ToLower(s)]; d != nil {
		return d, nil
	}
	return nil, &UnknownTypeError{Name: s}
}

// Types returns every descriptor in registry order.
func Types() []*Descriptor {
	out := make([]*Descriptor, len(types))
	for i := range types {
		out[i] = &types[i]
	}
	return out
}

// TypeNames returns the sorted type names.
func TypeNames() []string {
	out := make([]string, 0, len(types))
	for i := range types {
		out = append(out, types[i].Name)
	}
	sort.Strings(out)
	return out
}

// Labels Meshfed sets on resources a zone reported, as Kuma does.
const (
	// LabelZone names the zone a resource came from.
	LabelZone = "kuma.io/zone"
	// LabelOrigin is "zone" on resources a zone reported, "global" otherwise.
	LabelOrigin = "kuma.io/origin"
	// LabelDisplayName keeps a zone resource's own name when global stores it
	// under a zone-qualified one.
	LabelDisplayName = "kuma.io/display-name"
	// LabelCAKey, set to "true" on a Secret, marks it as holding a CA's
	// private key: it stays on global and never reaches a zone. Global sets
	// it on the builtin roots it creates; a provided CA's key Secret must
	// carry it from its creation.
	LabelCAKey = "meshfed.io/ca-key"
)
