package global

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/sync/token"
)

// This file is global's side of zones, as the sync server needs it: the
// change feed over the replicated state, zone-token checks, zone reports
// written through Raft, and zone insights.

// stateFeed adapts the FSM state to syncserver.Feed.
type stateFeed struct{ st *store.State }

func (f stateFeed) ChangesSince(rev uint64) ([]batch.Change, uint64, error) {
	cs, cur, err := f.st.ChangesSince(rev)
	if errors.Is(err, store.ErrTooOld) {
		return nil, cur, batch.ErrTooOld
	}
	if err != nil {
		return nil, cur, err
	}
	out := make([]batch.Change, len(cs))
	for i, c := range cs {
		out[i] = batch.Change{Key: c.Key, Revision: c.Revision, Resource: c.Resource}
	}
	return out, cur, nil
}

func (f stateFeed) All() ([]*api.Resource, uint64) { return f.st.All() }
func (f stateFeed) Watch() <-chan struct{}         { return f.st.Watch() }
func (f stateFeed) ClusterID() string {
	m, _ := f.st.Meta()
	return m.ClusterID
}

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

// zoneInsights implements syncserver.Insights: it keeps each zone's insight
// here and writes it through Raft as a ZoneInsight, at once on connect and
// disconnect and at most every FlushInterval for acknowledgements.
type zoneInsights struct {
	s *Server

	mu    sync.Mutex
	zones map[string]*api.ZoneInsightSpec
	dirty map[string]bool
	kick  chan struct{}
}

func newZoneInsights(s *Server) *zoneInsights {
	return &zoneInsights{s: s, zones: map[string]*api.ZoneInsightSpec{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
}

func (zi *zoneInsights) current(zone string) *api.ZoneInsightSpec {
	if cur := zi.zones[zone]; cur != nil {
		return cur
	}
	spec := &api.ZoneInsightSpec{}
	if r, ok := zi.s.store.State().Get(api.Key{Type: api.TypeZoneInsight, Name: zone}); ok {
		if stored, ok := r.Spec.(*api.ZoneInsightSpec); ok {
			b, _ := json.Marshal(stored)
			_ = json.Unmarshal(b, spec) // a private copy
		}
	}
	zi.zones[zone] = spec
	return spec
}

func (zi *zoneInsights) markDirty(zone string, now bool) {
	zi.dirty[zone] = true
	if now {
		select {
		case zi.kick <- struct{}{}:
		default:
		}
	}
}

func (zi *zoneInsights) Connected(zone, replica, node string, at time.Time) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	spec := zi.current(zone)
	spec.Subscriptions = append(spec.Subscriptions, api.ZoneSubscription{GlobalInstanceID: node, ReplicaID: replica, ConnectTime: at.UTC()})
	if n := len(spec.Subscriptions); n > api.MaxZoneSubscriptions {
		spec.Subscriptions = spec.Subscriptions[n-api.MaxZoneSubscriptions:]
	}
	zi.markDirty(zone, true)
}

func (zi *zoneInsights) Acked(zone, replica string, revision uint64, rejected []*syncpb.Rejection) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	spec := zi.current(zone)
	if revision < spec.AckedRevision {
		return
	}
	now := time.Now().UTC()
	spec.AckedRevision, spec.AckTime = revision, &now
	// Rejections stay until the resource is acknowledged at a newer
	// revision without one; keep those of still-current revisions.
	byKey := map[string]api.ZoneRejection{}
	for _, r := range spec.Rejected {
		byKey[r.Type+"/"+r.Mesh+"/"+r.Name] = r
	}
	for _, r := range rejected {
		byKey[r.GetType()+"/"+r.GetMesh()+"/"+r.GetName()] = api.ZoneRejection{Type: r.GetType(), Mesh: r.GetMesh(), Name: r.GetName(), Revision: r.GetRevision(), Reason: r.GetReason()}
	}
	spec.Rejected = spec.Rejected[:0]
	for _, r := range byKey {
		if cur, ok := zi.s.store.State().Get(api.Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name}); ok && cur.Revision > r.Revision && cur.Revision <= revision {
			continue // a newer version was applied since
		}
		spec.Rejected = append(spec.Rejected, r)
	}
	zi.markDirty(zone, false)
}

func (zi *zoneInsights) Disconnected(zone, replica string, at time.Time, reason error) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	spec := zi.current(zone)
	for i := len(spec.Subscriptions) - 1; i >= 0; i-- {
		sub := &spec.Subscriptions[i]
		if sub.GlobalInstanceID == zi.s.cfg.NodeID && sub.ReplicaID == replica && sub.DisconnectTime == nil {
			t := at.UTC()
			sub.DisconnectTime = &t
			if reason != nil {
				sub.DisconnectReason = strings.TrimSpace(reason.Error())
			}
			break
		}
	}
	zi.markDirty(zone, true)
}

// run writes dirty insights through Raft every interval (or at once when
// kicked), and creates the Zone resource of a zone seen for the first time.
func (zi *zoneInsights) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-zi.kick:
		}
		zi.flush(ctx)
	}
}

func (zi *zoneInsights) flush(ctx context.Context) {
	zi.mu.Lock()
	pending := map[string][]byte{}
	for zone := range zi.dirty {
		b, err := json.Marshal(zi.zones[zone])
		if err == nil {
			pending[zone] = b
		}
	}
	zi.dirty = map[string]bool{}
	zi.mu.Unlock()
	for zone, body := range pending {
		if _, ok := zi.s.store.State().Get(api.Key{Type: api.TypeZone, Name: zone}); !ok {
			z, _ := api.New(api.TypeZone, "", zone)
			if err := api.Prepare(z); err == nil {
				if _, _, err := zi.s.store.Put(ctx, z, rest.WriteOptions{}); err != nil {
					zi.s.logger.Warn("create zone", "zone", zone, "err", err)
				}
			}
		}
		r, _ := api.New(api.TypeZoneInsight, "", zone)
		spec := r.Spec.(*api.ZoneInsightSpec)
		if err := json.Unmarshal(body, spec); err != nil {
			continue
		}
		if err := api.Prepare(r); err != nil {
			zi.s.logger.Error("invalid zone insight", "zone", zone, "err", err)
			continue
		}
		if _, _, err := zi.s.store.Put(ctx, r, rest.WriteOptions{}); err != nil {
			zi.s.logger.Warn("write zone insight; retrying", "zone", zone, "err", err)
			zi.mu.Lock()
			zi.markDirty(zone, false)
			zi.mu.Unlock()
		}
	}
}
