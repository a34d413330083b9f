package zone

import (
	"sort"
	"sync"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/replica"
)

// view is the zone's state as one: global's replica and the zone's
// inventory. Zone-owned types come from the inventory (this zone's, under
// their own names) and from the replica (other zones', fanned out by
// global under zone-qualified names); the others from the replica. The
// zone API (store) and xDS generation (zone/proxies) both read it.
type view struct {
	rep *replica.Replica
	inv *inventory.Inventory

	mu      sync.Mutex
	changed chan struct{}
}

func newView(rep *replica.Replica, inv *inventory.Inventory) *view {
	return &view{rep: rep, inv: inv, changed: make(chan struct{})}
}

// Get returns the resource under key.
func (v *view) Get(key api.Key) (*api.Resource, bool) {
	if d, err := api.Lookup(key.Type); err == nil && d.Owner == api.RoleZone {
		if r, ok := v.inv.Get(key); ok {
			return r, true
		}
	}
	return v.rep.Get(key)
}

// List returns the resources of a type in mesh ("" for all), sorted by
// mesh then name.
func (v *view) List(typ, mesh string) []*api.Resource {
	fromGlobal := v.rep.List(typ, mesh)
	if d, err := api.Lookup(typ); err != nil || d.Owner != api.RoleZone {
		return fromGlobal
	}
	out := append(v.inv.List(typ, mesh), fromGlobal...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Mesh != out[j].Mesh {
			return out[i].Mesh < out[j].Mesh
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Changed returns a channel closed at the next change of either store.
func (v *view) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// follow turns the two stores' notifications into Changed's, until done
// is closed.
func (v *view) follow(done <-chan struct{}) {
	for {
		// Insights (system types) change with every proxy's stream; nothing
		// generated from the view reads them.
		a, b := v.rep.Watch(), v.inv.SpecChanged()
		select {
		case <-done:
			return
		case <-a:
		case <-b:
		}
		v.mu.Lock()
		close(v.changed)
		v.changed = make(chan struct{})
		v.mu.Unlock()
	}
}
