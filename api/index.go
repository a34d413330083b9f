package api

import "sort"

// Index is an in-memory index of resources: by key, and by type → mesh →
// name, so that a type's resources in one mesh (or all meshes) are listed
// without a scan of everything.
//
// There is no locking inside: the owner guards it (global's State, the
// zone's replica and inventory call it under their own locks). Stored
// resources are immutable: the index hands them out without copying, and
// callers must not modify them.
type Index struct {
	byKey  map[Key]*Resource
	byType map[string]map[string]map[string]*Resource // type → mesh → name
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		byKey:  map[Key]*Resource{},
		byType: map[string]map[string]map[string]*Resource{},
	}
}

// Put stores r under its key, replacing any resource there.
func (x *Index) Put(r *Resource) {
	x.byKey[r.Key()] = r
	meshes := x.byType[r.Type]
	if meshes == nil {
		meshes = map[string]map[string]*Resource{}
		x.byType[r.Type] = meshes
	}
	names := meshes[r.Mesh]
	if names == nil {
		names = map[string]*Resource{}
		meshes[r.Mesh] = names
	}
	names[r.Name] = r
}

// Delete removes the resource under key and returns it; false when there was
// none.
func (x *Index) Delete(key Key) (*Resource, bool) {
	r, ok := x.byKey[key]
	if !ok {
		return nil, false
	}
	delete(x.byKey, key)
	meshes := x.byType[key.Type]
	if names := meshes[key.Mesh]; names != nil {
		delete(names, key.Name)
		if len(names) == 0 {
			delete(meshes, key.Mesh)
		}
	}
	if len(meshes) == 0 {
		delete(x.byType, key.Type)
	}
	return r, true
}

// Get returns the resource under key.
func (x *Index) Get(key Key) (*Resource, bool) {
	r, ok := x.byKey[key]
	return r, ok
}

// List returns the resources of a type, in one mesh or (mesh "") all meshes,
// sorted by mesh then name.
func (x *Index) List(typ, mesh string) []*Resource {
	var out []*Resource
	if meshes := x.byType[typ]; meshes != nil {
		if mesh != "" {
			out = appendValues(out, meshes[mesh])
		} else {
			for _, names := range meshes {
				out = appendValues(out, names)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Mesh != out[j].Mesh {
			return out[i].Mesh < out[j].Mesh
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Names returns the names of the resources of a type in one mesh, sorted (so
// that, e.g., a cascade delete runs in a deterministic order).
func (x *Index) Names(typ, mesh string) []string {
	names := x.byType[typ][mesh]
	out := make([]string, 0, len(names))
	for name := range names {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Count returns the number of resources of a type in a mesh ("" = all
// meshes).
func (x *Index) Count(typ, mesh string) int {
	meshes := x.byType[typ]
	if mesh != "" {
		return len(meshes[mesh])
	}
	n := 0
	for _, names := range meshes {
		n += len(names)
	}
	return n
}

// Len returns the number of resources held.
func (x *Index) Len() int { return len(x.byKey) }

// All returns every resource held, in no particular order.
func (x *Index) All() []*Resource {
	out := make([]*Resource, 0, len(x.byKey))
	for _, r := range x.byKey {
		out = append(out, r)
	}
	return out
}

func appendValues(out []*Resource, m map[string]*Resource) []*Resource {
	for _, r := range m {
		out = append(out, r)
	}
	return out
}
