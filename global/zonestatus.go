package global

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/membership"
	"github.com/meshfed/meshfed/global/syncserver"
)

// Global's views of zones, served beside the resource routes
// (rest.Config.Routes, so with the admin token, the API's error shape and
// its metrics):
//
//	GET /zones/{name}/_overview                 one zone's api.ZoneOverview
//	GET /zones+insights                         every zone's, in the API's list shape (paged, filters)
//	GET /zones+insights/{name}                  as /zones/{name}/_overview (Kuma's path)
//	GET /meshes/{mesh}/{plural}/{name}/_status  api.ResourceStatus: the resource in every zone
//	GET /meshes/{name}/_status                  the same for a Mesh
//	GET /{plural}/{name}/_status                the same for the other global-scoped types
//	GET /meshes/{mesh}/dataplanes/{name}/_config a Dataplane's config dump, asked of its zone (zoneconfig.go)
//
// They are computed by the answering node from its replicated state, its
// own sync streams (first-hand) and its gossip view (for streams other
// nodes serve).

func (s *Server) zoneRoutes() []rest.Route {
	routes := []rest.Route{
		{Pattern: "GET /zones/{name}/_overview", Handler: s.handleZoneOverview},
		{Pattern: "GET /zones+insights/{name}", Handler: s.handleZoneOverview},
		{Pattern: "GET /zones+insights", Handler: s.handleZoneOverviews},
		{Pattern: "GET /meshes/{mesh}/{plural}/{name}/_status", Handler: s.handleResourceStatus},
		{Pattern: "GET /meshes/{name}/_status", Handler: s.handleResourceStatus},
		{Pattern: "GET /global-insight", Handler: s.handleGlobalInsight},
		{Pattern: "GET /meshes/{mesh}/dataplanes/{name}/_config", Handler: s.handleDataplaneConfig},
	}
	for _, d := range api.Types() {
		if d.Scope == api.ScopeGlobal && d.Name != api.TypeMesh {
			// One literal pattern per type: "/{plural}/{name}/_status" would
			// conflict with "/meshes/{mesh}/{plural}".
			routes = append(routes, rest.Route{Pattern: "GET /" + d.Plural + "/{name}/_status", Handler: s.handleResourceStatus})
		}
	}
	return routes
}

func (s *Server) handleZoneOverview(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	z, ok := s.store.State().Get(api.Key{Type: api.TypeZone, Name: name})
	if !ok {
		return fmt.Errorf("zone %q: %w", name, api.ErrNotFound)
	}
	ov := s.zoneOverview(z, time.Now())
	return rest.WriteValue(w, r, http.StatusOK, ov)
}

func (s *Server) handleZoneOverviews(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	zones := s.store.State().List(api.TypeZone, "")
	items := make([]rest.ListItem, 0, len(zones))
	for _, z := range zones {
		// Every zone's overview is computed, also those the filters or the
		// page leave out: it costs O(changes since the zone's revision).
		ov := s.zoneOverview(z, now)
		items = append(items, rest.ListItem{Name: z.Name, Labels: z.Labels, Revision: z.Revision, Value: ov})
	}
	return rest.WriteList(w, r, items)
}

func (s *Server) handleResourceStatus(w http.ResponseWriter, r *http.Request) error {
	mesh, name := r.PathValue("mesh"), r.PathValue("name")
	plural := r.PathValue("plural")
	if plural == "" { // a literal route: /meshes/{name}/_status or /{plural}/{name}/_status
		plural = r.Pattern[len("GET /"):]
		plural = plural[:len(plural)-len("/{name}/_status")]
	}
	d, ok := api.LookupPlural(plural)
	if !ok {
		return fmt.Errorf("unknown resource type %q in the path (GET /_resources lists the types): %w", plural, api.ErrNotFound)
	}
	if mesh != "" && d.Scope != api.ScopeMesh {
		return fmt.Errorf("%s (%s) are not mesh-scoped: use /%s/%s/_status: %w", plural, d.Name, plural, name, api.ErrNotFound)
	}
	key := api.Key{Type: d.Name, Mesh: mesh, Name: name}
	res, ok := s.store.State().Get(key)
	if !ok {
		if mesh != "" {
			return fmt.Errorf("%s %q in mesh %q: %w", d.Name, name, mesh, api.ErrNotFound)
		}
		return fmt.Errorf("%s %q: %w", d.Name, name, api.ErrNotFound)
	}
	st := s.resourceStatus(res, time.Now())
	return rest.WriteValue(w, r, http.StatusOK, st)
}

// zoneState is a zone's liveness and applied revision, without its lag.
type zoneState struct {
	zone    *api.Resource
	spec    *api.ZoneSpec
	insight *api.ZoneInsightSpec
	status  api.ZoneStatus
}

// zoneState computes what the answering node knows of zone z.
func (s *Server) zoneState(z *api.Resource, now time.Time) zoneState {
	spec, ok := z.Spec.(*api.ZoneSpec)
	if !ok {
		spec = &api.ZoneSpec{}
	}
	ins := s.insights.view(z.Name, now)
	zs := zoneState{zone: z, spec: spec, insight: ins}
	st := &zs.status
	st.Enabled, st.Network = spec.IsEnabled(), spec.NetworkOr(z.Name)
	st.Rejected = ins.Rejected
	if st.Rejected == nil {
		st.Rejected = []api.ZoneRejection{}
	}

	live := map[string]api.ZoneSubscription{} // replica → its newest live stream
	var newest *api.ZoneSubscription
	offlineReason := "the zone has never connected"
	for i, sub := range ins.Subscriptions { // oldest first
		ok, why := s.subscriptionLive(z.Name, sub)
		if !ok {
			offlineReason = why
			continue
		}
		if cur, seen := live[sub.ReplicaID]; !seen || sub.ConnectTime.After(cur.ConnectTime) {
			live[sub.ReplicaID] = sub
		}
		if newest == nil || !sub.ConnectTime.Before(newest.ConnectTime) {
			newest = &ins.Subscriptions[i]
		}
	}
	st.Online = len(live) > 0
	if !st.Online {
		if !st.Enabled {
			offlineReason = "the zone is disabled (enabled: false): global refuses its streams"
		}
		st.OfflineReason = offlineReason
		st.AckedRevision, st.AckTime = ins.AckedRevision, ins.AckTime
		return zs
	}
	t := newest.ConnectTime
	st.GlobalNode, st.ConnectTime, st.Replicas = newest.GlobalInstanceID, &t, len(live)
	nodes := map[string]bool{}
	first := true
	for _, sub := range live {
		nodes[sub.GlobalInstanceID] = true
		st.ReplicaStatus = append(st.ReplicaStatus, api.ZoneReplicaStatus{ReplicaID: sub.ReplicaID, GlobalNode: sub.GlobalInstanceID,
			ConnectTime: sub.ConnectTime, AckedRevision: sub.AckedRevision, AckTime: sub.AckTime})
		// The zone has applied what every live replica has.
		if first || sub.AckedRevision < st.AckedRevision {
			st.AckedRevision, st.AckTime = sub.AckedRevision, sub.AckTime
			first = false
		}
	}
	sort.Slice(st.ReplicaStatus, func(i, j int) bool { return st.ReplicaStatus[i].ReplicaID < st.ReplicaStatus[j].ReplicaID })
	for n := range nodes {
		st.GlobalNodes = append(st.GlobalNodes, n)
	}
	sort.Strings(st.GlobalNodes)
	return zs
}

// subscriptionLive reports whether a zone stream is live, or why not. This
// node's own streams are checked first-hand; another node's stream is live
// while it has no disconnect time and the node is a live gossip member (a
// node that died could not record the end of its streams; a live one drops
// and records a zone that goes silent within three heartbeats).
func (s *Server) subscriptionLive(zone string, sub api.ZoneSubscription) (bool, string) {
	if sub.DisconnectTime != nil {
		reason := sub.DisconnectReason
		if reason == "" {
			reason = "disconnected"
		}
		return false, fmt.Sprintf("the last stream (replica %s, global node %s) ended at %s: %s",
			sub.ReplicaID, sub.GlobalInstanceID, sub.DisconnectTime.UTC().Format(time.RFC3339), reason)
	}
	if sub.GlobalInstanceID == s.cfg.NodeID {
		if s.insights.live(zone, sub) {
			return true, ""
		}
		return false, fmt.Sprintf("the last stream (replica %s) ended on this node", sub.ReplicaID)
	}
	m, ok := s.members.Member(sub.GlobalInstanceID)
	switch {
	case !ok:
		return false, fmt.Sprintf("global node %s, which served the last stream (replica %s), is not a known member", sub.GlobalInstanceID, sub.ReplicaID)
	case m.State != membership.Alive:
		return false, fmt.Sprintf("global node %s, which served the last stream (replica %s), is %s", sub.GlobalInstanceID, sub.ReplicaID, m.State)
	}
	return true, ""
}

// zoneOverview is a zone's overview: its state plus its lag.
func (s *Server) zoneOverview(z *api.Resource, now time.Time) api.ZoneOverview {
	zs := s.zoneState(z, now)
	st := zs.status
	latest, oldest := s.pendingFor(z.Name, st.AckedRevision)
	st.LatestRevision = latest
	if latest > st.AckedRevision {
		st.LagRevisions = latest - st.AckedRevision
		switch {
		case !oldest.IsZero():
			st.LagSeconds = max(now.Sub(oldest).Seconds(), 0)
		case st.AckTime != nil:
			st.LagSeconds = max(now.Sub(*st.AckTime).Seconds(), 0)
		}
	}
	return api.ZoneOverview{
		Type: api.TypeZoneOverview, Name: z.Name, CreationTime: z.CreationTime, ModificationTime: z.ModificationTime,
		Labels: z.Labels, Zone: *zs.spec, ZoneInsight: *zs.insight, Status: st,
	}
}

// pendingFor returns the revision zone is to reach: the newest revision of
// anything it receives (through the same feed and filter its stream uses),
// or acked when nothing newer is pending; and the time of the oldest
// pending change whose time is known.
func (s *Server) pendingFor(zone string, acked uint64) (latest uint64, oldest time.Time) {
	feed := stateFeed{st: s.store.State()}
	filter := syncserver.DefaultFilter(zone)
	changes, cur, err := feed.changesSince(acked)
	if err != nil {
		// Deletions since acked were forgotten: the zone gets a Reset at
		// the current revision. Its live resources still date the lag.
		all, _ := feed.All()
		for _, r := range all {
			if r.Revision > acked && filter(r.Key(), r) && (oldest.IsZero() || r.ModificationTime.Before(oldest)) {
				oldest = r.ModificationTime
			}
		}
		return cur, oldest
	}
	for _, c := range changes {
		if !filter(c.Key, c.Resource) {
			continue
		}
		latest = max(latest, c.Revision)
		if !c.at.IsZero() && (oldest.IsZero() || c.at.Before(oldest)) {
			oldest = c.at
		}
	}
	if latest <= acked {
		return acked, time.Time{} // caught up: its target is what it has
	}
	return latest, oldest
}

// sendsTo reports whether zone receives res, or why not. disabled names
// the disabled zones.
func sendsTo(zone string, zoneEnabled bool, res *api.Resource, disabled map[string]bool) (bool, string) {
	d, err := api.Lookup(res.Type)
	if err != nil {
		return false, err.Error()
	}
	switch {
	case !zoneEnabled:
		return false, "the zone is disabled (enabled: false)"
	case d.System:
		return false, fmt.Sprintf("%s is kept on global only", d.Name)
	case !d.FanOut:
		return false, fmt.Sprintf("%s resources are not sent to zones", d.Name)
	}
	if origin := reportedBy(res); origin != "" {
		switch {
		case origin == zone:
			return false, "reported by this zone"
		case disabled[origin]:
			return false, fmt.Sprintf("its zone %q is disabled", origin)
		}
	}
	if !syncserver.DefaultFilter(zone)(res.Key(), res) {
		return false, "not sent to this zone"
	}
	return true, ""
}

// resourceStatus computes res's state in every known zone.
func (s *Server) resourceStatus(res *api.Resource, now time.Time) api.ResourceStatus {
	st := s.store.State()
	out := api.ResourceStatus{Type: res.Type, Mesh: res.Mesh, Name: res.Name, Revision: res.Revision,
		ModificationTime: res.ModificationTime, Zones: []api.ZoneResourceStatus{}}
	disabled := disabledZones(st)
	key := res.Key()
	for _, z := range st.List(api.TypeZone, "") {
		zs := s.zoneState(z, now)
		e := api.ZoneResourceStatus{Zone: z.Name, Online: zs.status.Online, Enabled: zs.status.Enabled, AckedRevision: zs.status.AckedRevision}
		sent, why := sendsTo(z.Name, zs.status.Enabled, res, disabled)
		rej := rejection(zs.insight, key, res.Revision)
		switch {
		case !sent:
			e.Status, e.Reason = api.ResourceNotSent, why
			out.Summary.NotSent++
		case rej != nil:
			e.Status, e.Reason = api.ResourceRejected, rej.Reason
			out.Summary.Rejected++
		case e.AckedRevision >= res.Revision:
			e.Status = api.ResourceApplied
			out.Summary.Applied++
		default:
			e.Status = api.ResourcePending
			if e.Online {
				e.Reason = fmt.Sprintf("the zone has acknowledged revision %d so far", e.AckedRevision)
			} else {
				e.Reason = "the zone is offline; it receives the change when it reconnects"
			}
			out.Summary.Pending++
		}
		out.Zones = append(out.Zones, e)
	}
	out.Summary.AppliedEverywhere = out.Summary.Pending == 0 && out.Summary.Rejected == 0
	return out
}

// rejection returns the zone's rejection of key at revision, if any.
func rejection(ins *api.ZoneInsightSpec, key api.Key, revision uint64) *api.ZoneRejection {
	for i, r := range ins.Rejected {
		if r.Type == key.Type && r.Mesh == key.Mesh && r.Name == key.Name && r.Revision == revision {
			return &ins.Rejected[i]
		}
	}
	return nil
}

// GlobalInsight sums up the federation (Kuma's GlobalInsight), computed on
// read: GET /global-insight.
type GlobalInsight struct {
	Type       string                  `json:"type"`
	CreatedAt  time.Time               `json:"createdAt"`
	Meshes     InsightCount            `json:"meshes"`
	Zones      InsightOnlineCount      `json:"zones"`
	Dataplanes InsightOnlineCount      `json:"dataplanes"`
	Resources  map[string]InsightCount `json:"resources"`
}

// InsightCount is a total.
type InsightCount struct {
	Total int `json:"total"`
}

// InsightOnlineCount is a total and how many are online.
type InsightOnlineCount struct {
	Total   int `json:"total"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

func (s *Server) handleGlobalInsight(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	st := s.store.State()
	gi := GlobalInsight{Type: "GlobalInsight", CreatedAt: now.UTC(), Resources: map[string]InsightCount{}}
	for _, d := range api.Types() {
		if n := st.Count(d.Name, ""); n > 0 {
			gi.Resources[d.Name] = InsightCount{Total: n}
		}
	}
	gi.Meshes.Total = st.Count(api.TypeMesh, "")
	for _, z := range st.List(api.TypeZone, "") {
		gi.Zones.Total++
		if s.zoneState(z, now).status.Online {
			gi.Zones.Online++
		} else {
			gi.Zones.Offline++
		}
	}
	for _, dp := range st.List(api.TypeDataplane, "") {
		gi.Dataplanes.Total++
		online := false
		if ins, ok := st.Get(api.Key{Type: api.TypeDataplaneInsight, Mesh: dp.Mesh, Name: dp.Name}); ok {
			spec, _ := ins.Spec.(*api.DataplaneInsightSpec)
			online = spec != nil && spec.Online()
		}
		if online {
			gi.Dataplanes.Online++
		} else {
			gi.Dataplanes.Offline++
		}
	}
	return rest.WriteValue(w, r, http.StatusOK, gi)
}
