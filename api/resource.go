package api

import (
	"fmt"
	"time"
)

// Spec is the type-specific body of a resource. Every registered type has one
// Spec implementation (a pointer to a struct with JSON tags).
type Spec interface {
	// Default fills unset fields with their defaults, in place. It is called
	// on every write before Validate, so defaults are stored and visible on
	// read.
	Default()
	// Validate reports every problem it finds to v, with field paths rooted
	// at at (the envelope root for inline types, "spec" for the others).
	Validate(v *Validator, at Path)
}

// Key identifies a resource. Mesh is empty for global-scoped types; for the
// Mesh type itself Mesh is empty and Name is the mesh's name.
type Key struct {
	Type string
	Mesh string
	Name string
}

func (k Key) String() string {
	if k.Mesh == "" {
		return k.Type + "/" + k.Name
	}
	return k.Type + "/" + k.Mesh + "/" + k.Name
}

// Meta is the envelope every resource carries.
type Meta struct {
	Type             string
	Mesh             string
	Name             string
	Labels           map[string]string
	CreationTime     time.Time
	ModificationTime time.Time
	// Revision is the global Raft log index at which this version was
	// written (0 before it is stored). It is not part of the Kuma body; the
	// HTTP API carries it in the ETag header.
	Revision uint64
}

// Resource is one resource: its envelope and its type's Spec. A stored
// Resource is never modified; see the package doc.
type Resource struct {
	Meta
	Spec Spec
}

// Key returns the resource's key.
func (r *Resource) Key() Key { return Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name} }

// Descriptor returns the registry entry of the resource's type.
func (r *Resource) Descriptor() (*Descriptor, error) { return Lookup(r.Type) }

// WithMeta returns a shallow copy of r with meta replaced; the Spec is shared,
// which is safe because stored resources are immutable.
func (r *Resource) WithMeta(m Meta) *Resource { return &Resource{Meta: m, Spec: r.Spec} }

// New returns an empty resource of the named type with defaults not yet
// applied, or an error if the type is unknown.
func New(typ, mesh, name string) (*Resource, error) {
	d, err := Lookup(typ)
	if err != nil {
		return nil, err
	}
	return &Resource{Meta: Meta{Type: d.Name, Mesh: mesh, Name: name}, Spec: d.New()}, nil
}

// Prepare applies defaults to r's Spec and validates the whole resource:
// envelope (type, name, mesh, labels) and Spec. It returns a *ValidationError
// listing every problem, or nil. r is modified in place (defaults), so call it
// on a resource that no store holds yet.
func Prepare(r *Resource) error {
	v := &Validator{}
	d, err := Lookup(r.Type)
	if err != nil {
		v.Add("type", "%s", err)
		return v.Err()
	}
	validateMeta(v, d, &r.Meta)
	if r.Spec == nil {
		r.Spec = d.New()
	}
	r.Spec.Default()
	r.Spec.Validate(v, d.specRoot())
	return v.Err()
}

func validateMeta(v *Validator, d *Descriptor, m *Meta) {
	maxName := 253
	if d.Name == TypeMesh || d.Name == TypeZone {
		maxName = 63
	}
	ValidateName(v, "name", m.Name, maxName)
	switch d.Scope {
	case ScopeMesh:
		ValidateName(v, "mesh", m.Mesh, 63)
	case ScopeGlobal:
		if m.Mesh != "" {
			v.Add("mesh", "must be empty: %s is not mesh-scoped", d.Name)
		}
	}
	for k, val := range m.Labels {
		ValidateLabel(v, Path("labels").Key(k), k, val)
	}
}

// String is a short form for logs: "Type/mesh/name@revision".
func (r *Resource) String() string { return fmt.Sprintf("%s@%d", r.Key(), r.Revision) }

// Redactor is implemented by Specs that hold secret data (Secret). Reads
// through the API return the redacted form; the store keeps the real one.
type Redactor interface {
	Redacted() Spec
}

// Redact returns r with its secret data removed, or r itself when its Spec
// holds none.
func Redact(r *Resource) *Resource {
	if red, ok := r.Spec.(Redactor); ok {
		return &Resource{Meta: r.Meta, Spec: red.Redacted()}
	}
	return r
}
