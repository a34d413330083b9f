package global

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/sync/token"
)

// This file is global's side of zones, as the sync server needs it:
// zone-token checks and zone reports written through Raft. The change feed
// is in zonefeed.go, insights in insights.go, the zone views of the API in
// zonestatus.go and the zone lifecycle rules in zonelifecycle.go.

// Authenticate implements syncserver.Authenticator: a valid, unexpired,
// unrevoked token of this cluster.
func (s *Server) Authenticate(tok string) (string, error) {
	meta, _ := s.store.State().Meta()
	if !meta.HasSecrets() {
		return "", status.Error(codes.Unavailable, "the global cluster is not initialised yet")
	}
	pub := ed25519.PrivateKey(meta.ZoneTokenKey).Public().(ed25519.PublicKey)
	claims, err := token.Verify(tok, pub, meta.ClusterID, time.Now())
	if err != nil {
		return "", status.Error(codes.Unauthenticated, err.Error())
	}
	if _, revoked := s.store.State().Get(api.Key{Type: api.TypeZoneTokenRevocation, Name: claims.ID}); revoked {
		return "", status.Errorf(codes.Unauthenticated, "zone token %s has been revoked", claims.ID)
	}
	return claims.Zone, nil
}

// zoneResourceName is the name global stores a zone's resource under: the
// zone's own name for it, qualified by the zone, so that two zones'
// "web-1" do not collide.
func zoneResourceName(zone, name string) string { return zone + "." + name }

// zoneReports implements syncserver.Reports: a zone's report becomes one
// batch command, with kuma.io/zone pinned to the authenticated zone.
type zoneReports struct{ s *Server }

func (zr zoneReports) Apply(ctx context.Context, zone string, rep *syncpb.Report) ([]*syncpb.Rejection, error) {
	var ops []store.BatchOp
	var opKeys []*syncpb.Rejection // what each op is about, for its rejection
	var rejected []*syncpb.Rejection
	reject := func(typ, mesh, name string, rev uint64, format string, args ...any) {
		rejected = append(rejected, &syncpb.Rejection{Type: typ, Mesh: mesh, Name: name, Revision: rev, Reason: fmt.Sprintf(format, args...)})
	}
	now := time.Now().UTC()
	for _, u := range rep.GetUpserts() {
		r, err := batch.Decode(u)
		if err != nil {
			reject(u.GetType(), u.GetMesh(), u.GetName(), u.GetRevision(), "%v", err)
			continue
		}
		if err := checkZoneOwned(r.Type, zone, r); err != nil {
			reject(u.GetType(), u.GetMesh(), u.GetName(), u.GetRevision(), "%v", err)
			continue
		}
		labels := map[string]string{}
		for k, v := range r.Labels {
			labels[k] = v
		}
		labels[api.LabelZone], labels[api.LabelOrigin], labels[api.LabelDisplayName] = zone, string(api.RoleZone), r.Name
		r.Labels, r.Name, r.Revision = labels, zoneResourceName(zone, r.Name), 0
		if err := api.Prepare(r); err != nil {
			reject(u.GetType(), u.GetMesh(), u.GetName(), u.GetRevision(), "%v", err)
			continue
		}
		body, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		ops = append(ops, store.BatchOp{Put: &store.PutCommand{Resource: body, Now: now}})
		opKeys = append(opKeys, &syncpb.Rejection{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName(), Revision: u.GetRevision()})
	}
	for _, d := range rep.GetDeletes() {
		if err := checkZoneOwned(d.GetType(), zone, nil); err != nil {
			reject(d.GetType(), d.GetMesh(), d.GetName(), d.GetRevision(), "%v", err)
			continue
		}
		ops = append(ops, store.BatchOp{Delete: &store.DeleteCommand{Type: d.GetType(), Mesh: d.GetMesh(), Name: zoneResourceName(zone, d.GetName())}})
		opKeys = append(opKeys, &syncpb.Rejection{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName(), Revision: d.GetRevision()})
	}
	if len(ops) == 0 {
		return rejected, nil
	}
	results, err := zr.s.store.ApplyBatch(ctx, ops)
	if err != nil {
		return nil, err
	}
	for i, res := range results {
		if res.Err == nil || (ops[i].Delete != nil && api.IsNotFound(res.Err)) {
			continue
		}
		r := opKeys[i]
		r.Reason = res.Err.Error()
		rejected = append(rejected, r)
	}
	return rejected, nil
}

// checkZoneOwned refuses reports of types zones do not own, and a
// ZoneIngress that claims another zone.
func checkZoneOwned(typ, zone string, r *api.Resource) error {
	d, err := api.Lookup(typ)
	if err != nil {
		return err
	}
	if d.Owner != api.RoleZone {
		return fmt.Errorf("%s is owned by global; zones cannot report it", typ)
	}
	if zi, ok := r.SpecIfZoneIngress(); ok && zi.Zone != zone {
		return fmt.Errorf("zone: %q, but this report comes from zone %q", zi.Zone, zone)
	}
	return nil
}
