package rest_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
)

// fakeStore is an in-memory rest.Store: a map under a mutex, a revision
// counter, the mesh-exists check, ExpectRevision conflicts, the Mesh delete
// rules, and a switch that makes the next calls unavailable.
type fakeStore struct {
	mu          sync.Mutex
	rev         uint64
	items       map[api.Key]*api.Resource
	unavailable int // the next this-many calls fail with *api.UnavailableError
	calls       map[string]int
	lastRead    rest.ReadOptions
}

var _ rest.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{items: map[api.Key]*api.Resource{}, calls: map[string]int{}}
}

// failUnavailable makes the next n calls fail with *api.UnavailableError.
func (s *fakeStore) failUnavailable(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = n
}

func (s *fakeStore) callCount(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *fakeStore) lastReadOptions() rest.ReadOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRead
}

// raw returns the stored (unredacted) resource.
func (s *fakeStore) raw(k api.Key) *api.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[k]
}

func (s *fakeStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// enter counts the call and applies the unavailability switch; s.mu held.
func (s *fakeStore) enter(method string) error {
	s.calls[method]++
	if s.unavailable > 0 {
		s.unavailable--
		return &api.UnavailableError{Reason: "no Raft leader", RetryAfter: 300 * time.Millisecond}
	}
	return nil
}

func (s *fakeStore) Get(_ context.Context, key api.Key, opts rest.ReadOptions) (*api.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Get"); err != nil {
		return nil, err
	}
	s.lastRead = opts
	r, ok := s.items[key]
	if !ok {
		return nil, api.ErrNotFound
	}
	return r, nil
}

func (s *fakeStore) List(_ context.Context, typ, mesh string, opts rest.ReadOptions) ([]*api.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("List"); err != nil {
		return nil, err
	}
	s.lastRead = opts
	var out []*api.Resource
	for k, r := range s.items {
		if k.Type == typ && (mesh == "" || k.Mesh == mesh) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *api.Resource) int {
		return cmp.Or(cmp.Compare(a.Mesh, b.Mesh), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

func (s *fakeStore) Put(_ context.Context, r *api.Resource, opts rest.WriteOptions) (*api.Resource, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Put"); err != nil {
		return nil, false, err
	}
	d, err := api.Lookup(r.Type)
	if err != nil {
		return nil, false, err
	}
	if d.Scope == api.ScopeMesh {
		if _, ok := s.items[api.Key{Type: api.TypeMesh, Name: r.Mesh}]; !ok {
			return nil, false, fmt.Errorf("mesh %q: %w", r.Mesh, api.ErrNotFound)
		}
	}
	existing := s.items[r.Key()]
	if err := checkRevision(r.Key(), existing, opts.ExpectRevision); err != nil {
		return nil, false, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	s.rev++
	m := r.Meta
	m.Revision = s.rev
	m.ModificationTime = now
	m.CreationTime = now
	if existing != nil {
		m.CreationTime = existing.CreationTime
	}
	stored := r.WithMeta(m)
	s.items[r.Key()] = stored
	return stored, existing == nil, nil
}

func (s *fakeStore) Delete(_ context.Context, key api.Key, opts rest.WriteOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter("Delete"); err != nil {
		return err
	}
	existing, ok := s.items[key]
	if !ok {
		return api.ErrNotFound
	}
	if err := checkRevision(key, existing, opts.ExpectRevision); err != nil {
		return err
	}
	if key.Type == api.TypeMesh {
		for k := range s.items {
			if k.Type == api.TypeDataplane && k.Mesh == key.Name {
				return &api.ConflictError{Reason: fmt.Sprintf("mesh %q still has dataplanes", key.Name)}
			}
		}
		for k := range s.items {
			if k.Mesh == key.Name {
				delete(s.items, k)
			}
		}
	}
	s.rev++
	delete(s.items, key)
	return nil
}

func checkRevision(key api.Key, existing *api.Resource, expect uint64) error {
	switch {
	case expect == 0:
		return nil
	case existing == nil:
		return &api.ConflictError{Reason: fmt.Sprintf("%s does not exist (expected revision %d)", key, expect)}
	case existing.Revision != expect:
		return &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, not %d", key, existing.Revision, expect)}
	}
	return nil
}
