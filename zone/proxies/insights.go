package proxies

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/server"
)

// Insights (DataplaneInsight): each replica records what it sees of the
// proxies' xDS streams — connect and disconnect times, responses, ACKs and
// NACKs by type — and their certificates, and writes them as the
// Dataplane's DataplaneInsight through the inventory (reported to global,
// shared with the other replicas). A write merges into the stored insight:
// this replica replaces only its own subscriptions, so replicas serving the
// same proxy at different times do not erase each other. A change of a
// subscription or a certificate, or a NACK, is written at the next flush
// (InsightFlush, 1 s); counters alone at most every InsightCountsEvery
// (30 s): insights cost Raft writes on global.
const (
	InsightFlush       = time.Second
	InsightCountsEvery = 30 * time.Second
)

// insights is the replica's view of its proxies' streams.
type insights struct {
	p  *Proxies
	mu sync.Mutex
	// byKey holds this replica's subscriptions (and certificate) per
	// Dataplane, live or recently ended.
	byKey map[api.Key]*insight
}

type insight struct {
	subs    []api.DiscoverySubscription // this replica's, oldest first
	mtls    *api.DataplaneInsightMTLS
	urgent  bool      // a structural change to write at the next flush
	dirty   bool      // counters changed
	flushed time.Time // last write
}

func newInsights(p *Proxies) *insights { return &insights{p: p, byKey: map[api.Key]*insight{}} }

func insightKey(k api.Key) api.Key {
	return api.Key{Type: api.TypeDataplaneInsight, Mesh: k.Mesh, Name: k.Name}
}

func (in *insights) get(k api.Key) *insight {
	i := in.byKey[k]
	if i == nil {
		i = &insight{}
		in.byKey[k] = i
	}
	return i
}

// sub returns the subscription of stream id (nil when unknown).
func (i *insight) sub(id string) *api.DiscoverySubscription {
	for j := range i.subs {
		if i.subs[j].ID == id {
			return &i.subs[j]
		}
	}
	return nil
}

func streamID(n server.Node) string { return strconv.FormatInt(n.StreamID, 10) }

func dataplaneKey(n server.Node) api.Key {
	return api.Key{Type: api.TypeDataplane, Mesh: n.Mesh, Name: n.Name}
}

func (in *insights) connected(n server.Node) {
	in.mu.Lock()
	defer in.mu.Unlock()
	i := in.get(dataplaneKey(n))
	i.subs = append(i.subs, api.DiscoverySubscription{ID: streamID(n), ControlPlaneInstanceID: in.p.cfg.ReplicaID,
		ConnectTime: time.Now().UTC().Truncate(time.Millisecond), Version: n.UserAgent})
	if len(i.subs) > api.MaxDataplaneSubscriptions {
		i.subs = i.subs[len(i.subs)-api.MaxDataplaneSubscriptions:]
	}
	i.urgent = true
}

func (in *insights) disconnected(n server.Node) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if i := in.byKey[dataplaneKey(n)]; i != nil {
		if s := i.sub(streamID(n)); s != nil {
			t := time.Now().UTC().Truncate(time.Millisecond)
			s.DisconnectTime = &t
			i.urgent = true
		}
	}
}

// count updates one stream's counters.
func (in *insights) count(n server.Node, typeURL string, f func(*api.DiscoveryServiceStats, time.Time), urgent bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	i := in.byKey[dataplaneKey(n)]
	if i == nil {
		return
	}
	s := i.sub(streamID(n))
	if s == nil {
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if s.Status.ByType == nil {
		s.Status.ByType = map[string]api.DiscoveryServiceStats{}
	}
	st := s.Status.ByType[typeURL]
	f(&st, now)
	s.Status.ByType[typeURL] = st
	f(&s.Status.Total, now)
	s.Status.LastUpdateTime = &now
	i.dirty = true
	i.urgent = i.urgent || urgent
}

// certificate records a proxy's newly issued certificate.
func (in *insights) certificate(k api.Key, notAfter time.Time, backend string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	i := in.get(k)
	m := &api.DataplaneInsightMTLS{CertificateExpirationTime: notAfter.UTC(), LastCertificateRegeneration: time.Now().UTC().Truncate(time.Millisecond), IssuedBackend: backend}
	if i.mtls != nil {
		m.CertificateRegenerations = i.mtls.CertificateRegenerations + 1
	}
	i.mtls = m
	i.urgent = true
}

// forget drops a Dataplane's insight (its Dataplane is gone).
func (in *insights) forget(k api.Key) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.byKey, k)
}

// flush writes the insights that changed, merged into the stored ones, in
// one transaction; and closes the subscriptions stored for this replica
// that it no longer has (a previous process of this replica) or for a
// replica gone from the pool.
func (in *insights) flush(now time.Time) {
	inv := in.p.cfg.Inventory
	var writes []*api.Resource
	in.mu.Lock()
	keys := make([]api.Key, 0, len(in.byKey))
	for k := range in.byKey {
		keys = append(keys, k)
	}
	in.mu.Unlock()
	seen := map[api.Key]bool{}
	for _, k := range keys {
		seen[insightKey(k)] = true
		in.mu.Lock()
		i := in.byKey[k]
		due := i != nil && (i.urgent || (i.dirty && now.Sub(i.flushed) >= InsightCountsEvery))
		var mine []api.DiscoverySubscription
		var mtls *api.DataplaneInsightMTLS
		if due {
			mine = cloneSubs(i.subs)
			mtls = i.mtls
			i.urgent, i.dirty, i.flushed = false, false, now
		}
		in.mu.Unlock()
		if !due {
			continue
		}
		if _, ok := inv.Get(k); !ok {
			continue // no Dataplane (yet, or any more)
		}
		stored := storedInsight(inv, insightKey(k))
		next := mergeInsight(stored, mine, mtls, in.p.cfg.ReplicaID)
		if stored != nil && reflect.DeepEqual(stored, next) {
			continue
		}
		writes = append(writes, insightResource(k, next))
	}
	// Stored insights of Dataplanes that are gone (deleted through the
	// API, say) go too; those claiming live streams this replica does not
	// have are closed.
	for _, r := range inv.List(api.TypeDataplaneInsight, "") {
		dpKey := api.Key{Type: api.TypeDataplane, Mesh: r.Mesh, Name: r.Name}
		if _, ok := inv.Get(dpKey); !ok {
			if _, err := inv.DeleteSystem(r.Key()); err != nil && !api.IsNotFound(err) {
				in.p.logger.Warn("removing the insight of a deleted Dataplane", "dataplane", r.Mesh+"."+r.Name, "err", err)
			}
			in.forget(dpKey)
			continue
		}
		if seen[r.Key()] {
			continue
		}
		spec := r.Spec.(*api.DataplaneInsightSpec)
		if next, changed := closeStale(spec, in.p.cfg.ReplicaID, in.p.cfg.ReplicaAlive, now); changed {
			writes = append(writes, insightResource(api.Key{Type: api.TypeDataplane, Mesh: r.Mesh, Name: r.Name}, next))
		}
	}
	if len(writes) == 0 {
		return
	}
	errs, err := inv.PutSystem(writes, now)
	if err != nil {
		in.p.logger.Warn("writing dataplane insights failed", "count", len(writes), "err", err)
		return
	}
	for i, e := range errs {
		if e != nil {
			in.p.logger.Warn("a dataplane insight was refused", "dataplane", writes[i].Mesh+"."+writes[i].Name, "err", e)
		}
	}
}

func cloneSubs(in []api.DiscoverySubscription) []api.DiscoverySubscription {
	out := make([]api.DiscoverySubscription, len(in))
	for i, s := range in {
		out[i] = s
		if s.Status.ByType != nil {
			out[i].Status.ByType = make(map[string]api.DiscoveryServiceStats, len(s.Status.ByType))
			for k, v := range s.Status.ByType {
				out[i].Status.ByType[k] = v
			}
		}
	}
	return out
}

func storedInsight(inv Inventory, key api.Key) *api.DataplaneInsightSpec {
	r, ok := inv.Get(key)
	if !ok {
		return nil
	}
	spec, _ := r.Spec.(*api.DataplaneInsightSpec)
	return spec
}

// mergeInsight replaces replica's subscriptions in stored with mine.
func mergeInsight(stored *api.DataplaneInsightSpec, mine []api.DiscoverySubscription, mtls *api.DataplaneInsightMTLS, replica string) *api.DataplaneInsightSpec {
	next := &api.DataplaneInsightSpec{MTLS: mtls}
	if stored != nil {
		for _, s := range stored.Subscriptions {
			if s.ControlPlaneInstanceID != replica {
				next.Subscriptions = append(next.Subscriptions, s)
			}
		}
		if next.MTLS == nil {
			next.MTLS = stored.MTLS
		}
	}
	next.Subscriptions = append(next.Subscriptions, mine...)
	sort.SliceStable(next.Subscriptions, func(a, b int) bool {
		return next.Subscriptions[a].ConnectTime.Before(next.Subscriptions[b].ConnectTime)
	})
	// Keep the newest, the live ones first among those dropped last.
	for len(next.Subscriptions) > api.MaxDataplaneSubscriptions {
		drop := 0
		for j, s := range next.Subscriptions {
			if s.DisconnectTime != nil {
				drop = j
				break
			}
		}
		next.Subscriptions = append(next.Subscriptions[:drop], next.Subscriptions[drop+1:]...)
	}
	return next
}

// closeStale closes the live subscriptions of spec served by this replica
// (which no longer has them: a previous process) or by a replica that is
// gone from the pool.
func closeStale(spec *api.DataplaneInsightSpec, replica string, alive func(string) bool, now time.Time) (*api.DataplaneInsightSpec, bool) {
	next := *spec
	next.Subscriptions = cloneSubs(spec.Subscriptions)
	changed := false
	t := now.UTC().Truncate(time.Millisecond)
	for j := range next.Subscriptions {
		s := &next.Subscriptions[j]
		if s.DisconnectTime == nil && (s.ControlPlaneInstanceID == replica || !alive(s.ControlPlaneInstanceID)) {
			s.DisconnectTime = &t
			changed = true
		}
	}
	return &next, changed
}

// insightResource is a Dataplane's DataplaneInsight, prepared for the
// inventory (a valid insight: the zone builds it).
func insightResource(dp api.Key, spec *api.DataplaneInsightSpec) *api.Resource {
	r := &api.Resource{Meta: api.Meta{Type: api.TypeDataplaneInsight, Mesh: dp.Mesh, Name: dp.Name}, Spec: spec}
	_ = api.Prepare(r) // an invalid one is refused by PutSystem, with the reason logged
	return r
}

// The registry is the xDS server's Observer.
var _ server.Observer = (*registry)(nil)

func (r *registry) Responded(n server.Node, typeURL string) {
	r.p.insights.count(n, typeURL, func(s *api.DiscoveryServiceStats, _ time.Time) { s.ResponsesSent++ }, false)
}

func (r *registry) Acked(n server.Node, typeURL string) {
	r.p.insights.count(n, typeURL, func(s *api.DiscoveryServiceStats, now time.Time) {
		s.ResponsesAcknowledged++
		s.LastAckTime = &now
	}, false)
}

func (r *registry) Nacked(n server.Node, typeURL, message string) {
	r.p.insights.count(n, typeURL, func(s *api.DiscoveryServiceStats, _ time.Time) {
		s.ResponsesRejected++
		s.LastNackError = fmt.Sprintf("%.512s", message)
	}, true)
}
