package zone

import (
	"context"
	"fmt"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/replica"
)

// store is the zone API's rest.Store over the zone's view: global-owned
// types read-only (api/rest refuses their writes before asking), zone-owned
// types writable when they are this zone's (the inventory) and read-only
// when another zone's (fanned out by global).
type store struct {
	zone string
	view *view
	rep  *replica.Replica
	inv  *inventory.Inventory
}

var _ rest.Store = (*store)(nil)

func (s *store) Get(_ context.Context, key api.Key, _ rest.ReadOptions) (*api.Resource, error) {
	if _, err := api.Lookup(key.Type); err != nil {
		return nil, err
	}
	if r, ok := s.view.Get(key); ok {
		return r, nil
	}
	return nil, api.ErrNotFound
}

func (s *store) List(_ context.Context, typ, mesh string, _ rest.ReadOptions) ([]*api.Resource, error) {
	if _, err := api.Lookup(typ); err != nil {
		return nil, err
	}
	return s.view.List(typ, mesh), nil
}

func (s *store) Put(_ context.Context, r *api.Resource, opts rest.WriteOptions) (*api.Resource, bool, error) {
	d, err := api.Lookup(r.Type)
	if err != nil {
		return nil, false, err
	}
	if d.Owner != api.RoleZone || d.System {
		return nil, false, &api.ReadOnlyError{Type: d.Name, Owner: d.Owner, System: d.System}
	}
	if d.Scope == api.ScopeMesh {
		if _, ok := s.rep.Get(api.Key{Type: api.TypeMesh, Name: r.Mesh}); !ok {
			v := &api.Validator{}
			v.Add("mesh", "mesh %q does not exist in zone %q: Meshes are created on global, and this zone has not received one by that name", r.Mesh, s.zone)
			return nil, false, v.Err()
		}
	}
	if err := s.notOtherZones(r.Key(), "changed"); err != nil {
		return nil, false, err
	}
	return s.inv.Put(r, inventory.PutOptions{ExpectRevision: opts.ExpectRevision, Now: time.Now()})
}

func (s *store) Delete(_ context.Context, key api.Key, opts rest.WriteOptions) error {
	_, err := s.inv.Delete(key, opts.ExpectRevision)
	if api.IsNotFound(err) {
		if err := s.notOtherZones(key, "deleted"); err != nil {
			return err
		}
	}
	return err
}

// notOtherZones refuses to touch a resource another zone reported, which
// this zone holds because global fanned it out.
func (s *store) notOtherZones(key api.Key, verb string) error {
	other, ok := s.rep.Get(key)
	if !ok {
		return nil
	}
	from := other.Labels[api.LabelZone]
	return &api.ConflictError{Reason: fmt.Sprintf("%s belongs to zone %q and reaches this zone through global: it can only be %s in zone %q", key, from, verb, from)}
}
