package api

import (
	"fmt"
	"slices"
	"testing"
)

func res(typ, mesh, name string, rev uint64) *Resource {
	return &Resource{Meta: Meta{Type: typ, Mesh: mesh, Name: name, Revision: rev}}
}

// op is one step of an index test: a put, or a delete (del set).
type op struct {
	put *Resource
	del Key
	// wantDeleted is the revision Delete must return (0: no resource).
	wantDeleted uint64
}

// describe renders resources as type/mesh/name@revision.
func describe(rs []*Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s/%s/%s@%d", r.Type, r.Mesh, r.Name, r.Revision))
	}
	return out
}

// checkIndex verifies the index's internal maps agree with each other.
func checkIndex(t *testing.T, x *Index) {
	t.Helper()
	n := 0
	for typ, meshes := range x.byType {
		if len(meshes) == 0 {
			t.Errorf("byType[%s] is empty but present", typ)
		}
		for mesh, names := range meshes {
			if len(names) == 0 {
				t.Errorf("byType[%s][%q] is empty but present", typ, mesh)
			}
			for name, r := range names {
				n++
				k := Key{Type: typ, Mesh: mesh, Name: name}
				if r.Key() != k || x.byKey[k] != r {
					t.Errorf("byType %s holds %s, byKey %v", k, r.Key(), x.byKey[k])
				}
			}
		}
	}
	if n != len(x.byKey) || n != x.Len() {
		t.Errorf("byType holds %d, byKey %d, Len %d", n, len(x.byKey), x.Len())
	}
}

func TestIndex(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		// want: List(typ, mesh) per "typ/mesh" query.
		want map[string][]string
		// wantCount: Count(typ, mesh) per "typ/mesh" query.
		wantCount map[string]int
		// wantNames: Names(typ, mesh) per "typ/mesh" query.
		wantNames map[string][]string
		wantLen   int
	}{
		{
			name:      "empty",
			want:      map[string][]string{"Mesh/": {}, "MeshTimeout/a": {}},
			wantCount: map[string]int{"Mesh/": 0, "MeshTimeout/a": 0, "MeshTimeout/": 0},
			wantNames: map[string][]string{"MeshTimeout/a": {}},
		},
		{
			name: "put",
			ops:  []op{{put: res(TypeMesh, "", "a", 1)}, {put: res(TypeMeshTimeout, "a", "t", 2)}},
			want: map[string][]string{
				"Mesh/":          {"Mesh//a@1"},
				"MeshTimeout/":   {"MeshTimeout/a/t@2"},
				"MeshTimeout/a":  {"MeshTimeout/a/t@2"},
				"MeshTimeout/b":  {},
				"Dataplane/":     {},
				"MeshTimeout/zz": {},
			},
			wantCount: map[string]int{"Mesh/": 1, "MeshTimeout/a": 1, "MeshTimeout/b": 0},
			wantNames: map[string][]string{"MeshTimeout/a": {"t"}, "Mesh/": {"a"}},
			wantLen:   2,
		},
		{
			name: "replace",
			ops: []op{
				{put: res(TypeMeshTimeout, "a", "t", 1)},
				{put: res(TypeMeshTimeout, "a", "t", 5)},
			},
			want:      map[string][]string{"MeshTimeout/a": {"MeshTimeout/a/t@5"}},
			wantCount: map[string]int{"MeshTimeout/a": 1, "MeshTimeout/": 1},
			wantLen:   1,
		},
		{
			name: "delete",
			ops: []op{
				{put: res(TypeMeshTimeout, "a", "t", 1)},
				{put: res(TypeMeshTimeout, "a", "u", 2)},
				{del: Key{Type: TypeMeshTimeout, Mesh: "a", Name: "t"}, wantDeleted: 1},
				{del: Key{Type: TypeMeshTimeout, Mesh: "a", Name: "t"}},
				{del: Key{Type: TypeMeshTimeout, Mesh: "b", Name: "u"}},
				{del: Key{Type: TypeSecret, Mesh: "a", Name: "u"}},
			},
			want:      map[string][]string{"MeshTimeout/a": {"MeshTimeout/a/u@2"}},
			wantCount: map[string]int{"MeshTimeout/a": 1, "MeshTimeout/": 1, "Secret/a": 0},
			wantNames: map[string][]string{"MeshTimeout/a": {"u"}},
			wantLen:   1,
		},
		{
			name: "delete the last of a type",
			ops: []op{
				{put: res(TypeMeshTimeout, "a", "t", 1)},
				{del: Key{Type: TypeMeshTimeout, Mesh: "a", Name: "t"}, wantDeleted: 1},
			},
			want:      map[string][]string{"MeshTimeout/a": {}, "MeshTimeout/": {}},
			wantCount: map[string]int{"MeshTimeout/a": 0, "MeshTimeout/": 0},
			wantNames: map[string][]string{"MeshTimeout/a": {}},
		},
		{
			name: "sorted by mesh then name, mesh filter",
			ops: []op{
				{put: res(TypeMeshTimeout, "b", "x", 1)},
				{put: res(TypeMeshTimeout, "a", "z", 2)},
				{put: res(TypeMeshTimeout, "b", "a", 3)},
				{put: res(TypeMeshTimeout, "a", "m", 4)},
				{put: res(TypeMeshTimeout, "c", "b", 5)},
				{put: res(TypeSecret, "a", "s", 6)},
			},
			want: map[string][]string{
				"MeshTimeout/": {
					"MeshTimeout/a/m@4", "MeshTimeout/a/z@2",
					"MeshTimeout/b/a@3", "MeshTimeout/b/x@1",
					"MeshTimeout/c/b@5",
				},
				"MeshTimeout/a": {"MeshTimeout/a/m@4", "MeshTimeout/a/z@2"},
				"MeshTimeout/b": {"MeshTimeout/b/a@3", "MeshTimeout/b/x@1"},
				"Secret/":       {"Secret/a/s@6"},
				"Secret/b":      {},
			},
			wantCount: map[string]int{"MeshTimeout/": 5, "MeshTimeout/a": 2, "MeshTimeout/c": 1, "Secret/": 1, "Secret/a": 1},
			wantNames: map[string][]string{"MeshTimeout/a": {"m", "z"}, "MeshTimeout/b": {"a", "x"}, "Secret/b": {}},
			wantLen:   6,
		},
	}
	split := func(q string) (string, string) {
		for i := range len(q) {
			if q[i] == '/' {
				return q[:i], q[i+1:]
			}
		}
		return q, ""
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := NewIndex()
			live := map[Key]*Resource{}
			for i, o := range tt.ops {
				if o.put != nil {
					x.Put(o.put)
					live[o.put.Key()] = o.put
				} else {
					r, ok := x.Delete(o.del)
					switch {
					case o.wantDeleted == 0 && (ok || r != nil):
						t.Errorf("op %d: Delete(%s) = %v, %v; want nothing", i, o.del, r, ok)
					case o.wantDeleted != 0 && (!ok || r == nil || r.Revision != o.wantDeleted || r.Key() != o.del):
						t.Errorf("op %d: Delete(%s) = %v, %v; want revision %d", i, o.del, r, ok, o.wantDeleted)
					}
					delete(live, o.del)
				}
				checkIndex(t, x)
			}
			if x.Len() != tt.wantLen {
				t.Errorf("Len() = %d, want %d", x.Len(), tt.wantLen)
			}
			for q, want := range tt.want {
				typ, mesh := split(q)
				if got := describe(x.List(typ, mesh)); !slices.Equal(got, want) {
					t.Errorf("List(%q, %q) = %v, want %v", typ, mesh, got, want)
				}
			}
			for q, want := range tt.wantCount {
				typ, mesh := split(q)
				if got := x.Count(typ, mesh); got != want {
					t.Errorf("Count(%q, %q) = %d, want %d", typ, mesh, got, want)
				}
			}
			for q, want := range tt.wantNames {
				typ, mesh := split(q)
				if got := x.Names(typ, mesh); !slices.Equal(got, want) {
					t.Errorf("Names(%q, %q) = %v, want %v", typ, mesh, got, want)
				}
			}
			// Get and All agree with the model of live resources.
			all := x.All()
			if len(all) != len(live) {
				t.Errorf("All() holds %d, want %d", len(all), len(live))
			}
			for _, r := range all {
				if live[r.Key()] != r {
					t.Errorf("All() holds %s@%d, not the live version", r.Key(), r.Revision)
				}
			}
			for k, want := range live {
				if got, ok := x.Get(k); !ok || got != want {
					t.Errorf("Get(%s) = %v, %v; want %v", k, got, ok, want)
				}
			}
			for _, o := range tt.ops {
				if o.put == nil {
					if _, ok := x.Get(o.del); ok && live[o.del] == nil {
						t.Errorf("Get(%s) finds a deleted resource", o.del)
					}
				}
			}
		})
	}
}
