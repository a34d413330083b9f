package global

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/store"
)

// Zone lifecycle rules on global:
//
//   - A Zone with enabled: false may not sync: its stream is refused with
//     PermissionDenied (and a live one is dropped when the Zone is
//     disabled), and what it reported is hidden from the other zones
//     (stateFeed).
//   - Deleting an online Zone is refused (409): online is a live property
//     (streams, gossip), not replicated state, so the check runs in the API
//     store, before the delete, and not in the FSM.
//   - Deleting an offline Zone deletes, in one batch command, the Zone, its
//     ZoneInsight and everything it reported (resources labeled
//     kuma.io/zone=<name> and kuma.io/origin=zone).

// admitZone implements syncserver.Config.Admit.
func (s *Server) admitZone(zone string) error {
	if zoneEnabled(s.store.State(), zone) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "zone %q is disabled on global (its Zone has enabled: false); enable it to let the zone sync", zone)
}

// apiStore is the store the global API writes through: the Raft store, with
// the zone deletion rules above.
type apiStore struct {
	*store.Node
	s *Server
}

// Delete implements rest.Store.
func (a apiStore) Delete(ctx context.Context, key api.Key, opts rest.WriteOptions) error {
	switch key.Type {
	case api.TypeZone:
		return a.s.deleteZone(ctx, key.Name, opts)
	case api.TypeSecret:
		if err := secretInUse(a.s.store.State(), key); err != nil {
			return err
		}
	}
	return a.Node.Delete(ctx, key, opts)
}

// deleteZone deletes an offline zone and what it reported.
func (s *Server) deleteZone(ctx context.Context, name string, opts rest.WriteOptions) error {
	st := s.store.State()
	key := api.Key{Type: api.TypeZone, Name: name}
	z, ok := st.Get(key)
	if !ok {
		return fmt.Errorf("%s: %w", key, api.ErrNotFound)
	}
	if opts.ExpectRevision != 0 && z.Revision != opts.ExpectRevision {
		return &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, expected %d", key, z.Revision, opts.ExpectRevision)}
	}
	zs := s.zoneState(z, time.Now())
	if zs.status.Online {
		return &api.ConflictError{Reason: fmt.Sprintf(
			"zone %q is online (%d replica(s) connected, to global node %s since %s): stop the zone's control plane, "+
				"or disable the zone (enabled: false) to drop its streams, then delete it",
			name, zs.status.Replicas, zs.status.GlobalNode, zs.status.ConnectTime.Format(time.RFC3339))}
	}
	ops := []store.BatchOp{{Delete: &store.DeleteCommand{Type: api.TypeZone, Name: name, ExpectRevision: z.Revision}}}
	if _, ok := st.Get(api.Key{Type: api.TypeZoneInsight, Name: name}); ok {
		ops = append(ops, store.BatchOp{Delete: &store.DeleteCommand{Type: api.TypeZoneInsight, Name: name}})
	}
	for _, r := range reportedByZone(st, name) {
		ops = append(ops, store.BatchOp{Delete: &store.DeleteCommand{Type: r.Type, Mesh: r.Mesh, Name: r.Name}})
	}
	results, err := s.store.ApplyBatch(ctx, ops)
	if err != nil {
		return err
	}
	if err := results[0].Err; err != nil {
		// The Zone changed in the instant between the check above and the
		// batch (the operations of a batch are independent).
		return err
	}
	var errs []error
	for i, res := range results[1:] {
		if res.Err != nil && !api.IsNotFound(res.Err) {
			d := ops[i+1].Delete
			errs = append(errs, fmt.Errorf("%s: %w", api.Key{Type: d.Type, Mesh: d.Mesh, Name: d.Name}, res.Err))
		}
	}
	s.insights.forget(name)
	s.syncMetrics.Forget(name)
	s.logger.Info("deleted an offline zone and what it reported", "zone", name, "resources", len(ops)-1)
	if len(errs) > 0 {
		return fmt.Errorf("zone %q deleted, but not everything it reported: %w", name, errors.Join(errs...))
	}
	return nil
}

// reportedByZone returns every resource zone reported (zone-owned types
// labeled kuma.io/zone=<zone> and kuma.io/origin=zone).
func reportedByZone(st *store.State, zone string) []*api.Resource {
	var out []*api.Resource
	for _, d := range api.Types() {
		if d.Owner != api.RoleZone {
			continue
		}
		for _, r := range st.List(d.Name, "") {
			if r.Labels[api.LabelZone] == zone && r.Labels[api.LabelOrigin] == string(api.RoleZone) {
				out = append(out, r)
			}
		}
	}
	return out
}
