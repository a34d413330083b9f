package global

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// zoneInsights implements syncserver.Insights. Each global node keeps what
// it learns first-hand about the zones it serves: its own streams (one
// subscription each) with their replicas' acknowledgements, and the
// rejections they report. It writes them through Raft as the zone's
// ZoneInsight, merged with what the stored insight holds from other nodes
// (mergeInsight): at once on connect and disconnect, at most every flush
// interval for acknowledgements. The write is conditional on the stored
// revision it merged with, so two nodes serving replicas of one zone never
// overwrite each other's streams; a conflict is merged again and retried.
//
// Readers (zone overviews, per-resource status) use the same merge: the
// node serving a zone answers first-hand, the others are at most one flush
// behind.
type zoneInsights struct {
	s *Server

	mu    sync.Mutex
	zones map[string]*localInsight
	kick  chan struct{}
}

// localInsight is this node's first-hand knowledge of one zone.
type localInsight struct {
	// subs are this node's streams of the zone, oldest first; ended ones
	// stay (as history) until trimmed.
	subs []api.ZoneSubscription
	// acked is the newest revision any replica acknowledged here.
	acked   uint64
	ackTime *time.Time
	// rejected are the rejections reported here, by resource.
	rejected map[api.Key]api.ZoneRejection
	dirty    bool
}

// restartedReason closes a stream that a previous run of this node served.
const restartedReason = "the global node serving this stream restarted"

func newZoneInsights(s *Server) *zoneInsights {
	return &zoneInsights{s: s, zones: map[string]*localInsight{}, kick: make(chan struct{}, 1)}
}

// local returns zone's entry, created empty. Call with mu held.
func (zi *zoneInsights) local(zone string) *localInsight {
	li := zi.zones[zone]
	if li == nil {
		li = &localInsight{rejected: map[api.Key]api.ZoneRejection{}}
		zi.zones[zone] = li
	}
	return li
}

// markDirty schedules a flush of zone; now flushes at once. Call with mu held.
func (zi *zoneInsights) markDirty(zone string, now bool) {
	zi.local(zone).dirty = true
	if now {
		select {
		case zi.kick <- struct{}{}:
		default:
		}
	}
}

// liveSub returns the index of replica's newest (or oldest) live stream on
// this node, or -1. A replica that reconnects may have its new stream
// recorded before the end of the old one: acknowledgements go to the
// newest, an end to the oldest.
func (li *localInsight) liveSub(replica string, newest bool) int {
	found := -1
	for i, sub := range li.subs {
		if sub.ReplicaID == replica && sub.DisconnectTime == nil {
			found = i
			if !newest {
				break
			}
		}
	}
	return found
}

// has reports whether sub (by replica and connect time) is one of this
// node's streams of this run.
func (li *localInsight) has(sub api.ZoneSubscription) bool {
	for _, l := range li.subs {
		if l.ReplicaID == sub.ReplicaID && l.ConnectTime.Equal(sub.ConnectTime) {
			return true
		}
	}
	return false
}

func (zi *zoneInsights) Connected(zone, replica, node string, at time.Time) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	li := zi.local(zone)
	li.subs = trimSubscriptions(append(li.subs, api.ZoneSubscription{GlobalInstanceID: node, ReplicaID: replica, ConnectTime: at.UTC()}))
	zi.markDirty(zone, true)
}

func (zi *zoneInsights) Acked(zone, replica string, revision uint64, rejected []*syncpb.Rejection) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	li := zi.local(zone)
	now := time.Now().UTC()
	if i := li.liveSub(replica, true); i >= 0 && revision >= li.subs[i].AckedRevision {
		li.subs[i].AckedRevision, li.subs[i].AckTime = revision, &now
	}
	if revision >= li.acked {
		li.acked, li.ackTime = revision, &now
	}
	for _, r := range rejected {
		key := api.Key{Type: r.GetType(), Mesh: r.GetMesh(), Name: r.GetName()}
		if old, ok := li.rejected[key]; ok && old.Revision > r.GetRevision() {
			continue
		}
		li.rejected[key] = api.ZoneRejection{Type: r.GetType(), Mesh: r.GetMesh(), Name: r.GetName(), Revision: r.GetRevision(), Reason: r.GetReason()}
	}
	zi.markDirty(zone, false)
}

func (zi *zoneInsights) Disconnected(zone, replica string, at time.Time, reason error) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	li := zi.local(zone)
	if i := li.liveSub(replica, false); i >= 0 {
		t := at.UTC()
		li.subs[i].DisconnectTime = &t
		if reason != nil {
			li.subs[i].DisconnectReason = strings.TrimSpace(reason.Error())
		}
	}
	zi.markDirty(zone, true)
}

// forget drops what this node knows of zone (the zone was deleted).
func (zi *zoneInsights) forget(zone string) {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	delete(zi.zones, zone)
}

// live reports whether sub is a live stream of this node.
func (zi *zoneInsights) live(zone string, sub api.ZoneSubscription) bool {
	zi.mu.Lock()
	defer zi.mu.Unlock()
	li := zi.zones[zone]
	if li == nil {
		return false
	}
	for _, l := range li.subs {
		if l.ReplicaID == sub.ReplicaID && l.ConnectTime.Equal(sub.ConnectTime) {
			return l.DisconnectTime == nil
		}
	}
	return false
}

// stored returns a private copy of zone's stored insight (nil when there is
// none) and its revision.
func (zi *zoneInsights) stored(zone string) (*api.ZoneInsightSpec, uint64) {
	r, ok := zi.s.store.State().Get(api.Key{Type: api.TypeZoneInsight, Name: zone})
	if !ok {
		return nil, 0
	}
	stored, ok := r.Spec.(*api.ZoneInsightSpec)
	if !ok {
		return nil, r.Revision
	}
	cp := &api.ZoneInsightSpec{}
	b, _ := json.Marshal(stored)
	_ = json.Unmarshal(b, cp)
	return cp, r.Revision
}

// view returns zone's insight as this node knows it: the stored one merged
// with this node's first-hand knowledge.
func (zi *zoneInsights) view(zone string, now time.Time) *api.ZoneInsightSpec {
	stored, _ := zi.stored(zone)
	zi.mu.Lock()
	defer zi.mu.Unlock()
	return mergeInsight(stored, zi.zones[zone], zi.s.cfg.NodeID, now, zi.s.store.State().Get)
}

// mergeInsight combines a stored insight (nil when none) with one node's
// first-hand knowledge (nil when none): the node's streams replace their
// stored copies, and a stored stream of that node it does not know (served
// by a previous run of the node) is closed; other nodes' streams are kept;
// the newest acknowledgement wins; rejections are united, and pruned of
// resources deleted since or accepted at a newer revision (get reads the
// current state).
func mergeInsight(stored *api.ZoneInsightSpec, li *localInsight, self string, now time.Time,
	get func(api.Key) (*api.Resource, bool)) *api.ZoneInsightSpec {
	out := &api.ZoneInsightSpec{}
	rejected := map[api.Key]api.ZoneRejection{}
	if stored != nil {
		for _, sub := range stored.Subscriptions {
			if sub.GlobalInstanceID == self {
				if li != nil && li.has(sub) {
					continue // the local copy replaces it
				}
				if sub.DisconnectTime == nil {
					t := now.UTC()
					sub.DisconnectTime, sub.DisconnectReason = &t, restartedReason
				}
			}
			out.Subscriptions = append(out.Subscriptions, sub)
		}
		out.AckedRevision, out.AckTime = stored.AckedRevision, stored.AckTime
		for _, r := range stored.Rejected {
			rejected[api.Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name}] = r
		}
	}
	if li != nil {
		for _, sub := range li.subs {
			if sub.AckTime != nil {
				t := *sub.AckTime
				sub.AckTime = &t
			}
			if sub.DisconnectTime != nil {
				t := *sub.DisconnectTime
				sub.DisconnectTime = &t
			}
			out.Subscriptions = append(out.Subscriptions, sub)
		}
		if li.acked > out.AckedRevision {
			t := *li.ackTime
			out.AckedRevision, out.AckTime = li.acked, &t
		}
		for k, r := range li.rejected {
			if old, ok := rejected[k]; !ok || r.Revision >= old.Revision {
				rejected[k] = r
			}
		}
	}
	sort.SliceStable(out.Subscriptions, func(i, j int) bool {
		return out.Subscriptions[i].ConnectTime.Before(out.Subscriptions[j].ConnectTime)
	})
	out.Subscriptions = trimSubscriptions(out.Subscriptions)
	for k, r := range rejected {
		cur, ok := get(k)
		if !ok || (cur.Revision > r.Revision && cur.Revision <= out.AckedRevision) {
			continue // deleted since, or a newer version was applied
		}
		out.Rejected = append(out.Rejected, r)
	}
	sort.Slice(out.Rejected, func(i, j int) bool {
		a, b := out.Rejected[i], out.Rejected[j]
		return api.Key{Type: a.Type, Mesh: a.Mesh, Name: a.Name}.String() < api.Key{Type: b.Type, Mesh: b.Mesh, Name: b.Name}.String()
	})
	return out
}

// trimSubscriptions keeps at most api.MaxZoneSubscriptions, oldest first,
// dropping the oldest ended streams before any live one.
func trimSubscriptions(subs []api.ZoneSubscription) []api.ZoneSubscription {
	for len(subs) > api.MaxZoneSubscriptions {
		drop := 0
		for i, s := range subs {
			if s.DisconnectTime != nil {
				drop = i
				break
			}
		}
		subs = append(subs[:drop:drop], subs[drop+1:]...)
	}
	return subs
}

// run writes dirty insights through Raft every interval (or at once when
// kicked), creates the Zone resource of a zone seen for the first time, and
// closes stored streams of a previous run of this node.
func (zi *zoneInsights) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			zi.sweep()
		case <-zi.kick:
		}
		zi.flush(ctx)
	}
}

// sweep marks dirty every zone whose stored insight shows a live stream of
// this node that this run does not serve: a previous run of the node
// served it and could not record its end. The flush closes it.
func (zi *zoneInsights) sweep() {
	insights := zi.s.store.State().List(api.TypeZoneInsight, "")
	zi.mu.Lock()
	defer zi.mu.Unlock()
	for _, r := range insights {
		spec, ok := r.Spec.(*api.ZoneInsightSpec)
		if !ok {
			continue
		}
		for _, sub := range spec.Subscriptions {
			if sub.GlobalInstanceID != zi.s.cfg.NodeID || sub.DisconnectTime != nil {
				continue
			}
			if li := zi.zones[r.Name]; li == nil || !li.has(sub) {
				zi.markDirty(r.Name, false)
				break
			}
		}
	}
}

func (zi *zoneInsights) flush(ctx context.Context) {
	zi.mu.Lock()
	var zones []string
	for zone, li := range zi.zones {
		if li.dirty {
			zones = append(zones, zone)
			li.dirty = false
		}
	}
	zi.mu.Unlock()
	sort.Strings(zones)
	for _, zone := range zones {
		if err := zi.write(ctx, zone); err != nil {
			var ce *api.ConflictError
			retryNow := errors.As(err, &ce) // another node wrote it meanwhile: merge again
			if !retryNow {
				zi.s.logger.Warn("write zone insight; retrying", "zone", zone, "err", err)
			}
			zi.mu.Lock()
			if zi.zones[zone] != nil {
				zi.markDirty(zone, retryNow)
			}
			zi.mu.Unlock()
		}
	}
}

// write merges zone's insight and writes it if the stored one is still the
// one it merged with.
func (zi *zoneInsights) write(ctx context.Context, zone string) error {
	st := zi.s.store.State()
	if _, ok := st.Get(api.Key{Type: api.TypeZone, Name: zone}); !ok {
		z, _ := api.New(api.TypeZone, "", zone)
		if err := api.Prepare(z); err == nil {
			if _, _, err := zi.s.store.Put(ctx, z, rest.WriteOptions{}); err != nil {
				zi.s.logger.Warn("create zone", "zone", zone, "err", err)
			}
		}
	}
	stored, rev := zi.stored(zone)
	zi.mu.Lock()
	merged := mergeInsight(stored, zi.zones[zone], zi.s.cfg.NodeID, time.Now(), st.Get)
	zi.mu.Unlock()
	r, _ := api.New(api.TypeZoneInsight, "", zone)
	r.Spec = merged
	if err := api.Prepare(r); err != nil {
		zi.s.logger.Error("invalid zone insight", "zone", zone, "err", err)
		return nil // retrying would not help
	}
	_, _, err := zi.s.store.Put(ctx, r, rest.WriteOptions{ExpectRevision: rev})
	return err
}
