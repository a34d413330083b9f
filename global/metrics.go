package global

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/store"
)

// storeCollector reads the store at scrape time: no bookkeeping on the apply
// path.
type storeCollector struct {
	node      *store.Node
	revision  *prometheus.Desc
	resources *prometheus.Desc
	leader    *prometheus.Desc
	raftState *prometheus.Desc
	// Raft's own counters (raft.Stats), absent before Raft starts.
	term, commitIndex, appliedIndex, lastIndex, snapshotIndex, fsmPending, peers, lastContact *prometheus.Desc
}

func newStoreCollector(node *store.Node) *storeCollector {
	return &storeCollector{
		node:      node,
		revision:  prometheus.NewDesc("meshfed_store_revision", "Raft index of the last command applied to this node's state.", nil, nil),
		resources: prometheus.NewDesc("meshfed_store_resources", "Resources held in the state, by type.", []string{"type"}, nil),
		leader:    prometheus.NewDesc("meshfed_raft_leader", "1 if this node is the Raft leader.", nil, nil),
		raftState: prometheus.NewDesc("meshfed_raft_state", "1 for this node's current Raft state.", []string{"state"}, nil),

		term:          prometheus.NewDesc("meshfed_raft_term", "This node's current Raft term.", nil, nil),
		commitIndex:   prometheus.NewDesc("meshfed_raft_commit_index", "Index of the last Raft log entry this node knows committed.", nil, nil),
		appliedIndex:  prometheus.NewDesc("meshfed_raft_applied_index", "Index of the last Raft log entry applied to this node's FSM.", nil, nil),
		lastIndex:     prometheus.NewDesc("meshfed_raft_last_index", "Index of the last entry in this node's Raft log (or snapshot).", nil, nil),
		snapshotIndex: prometheus.NewDesc("meshfed_raft_last_snapshot_index", "Index of this node's last Raft snapshot.", nil, nil),
		fsmPending:    prometheus.NewDesc("meshfed_raft_fsm_pending", "Committed Raft log entries queued for this node's FSM.", nil, nil),
		peers:         prometheus.NewDesc("meshfed_raft_peers", "Other voters in this node's latest Raft configuration.", nil, nil),
		lastContact:   prometheus.NewDesc("meshfed_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (absent on the leader and before the first contact).", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.revision
	ch <- c.resources
	ch <- c.leader
	ch <- c.raftState
	for _, d := range []*prometheus.Desc{c.term, c.commitIndex, c.appliedIndex, c.lastIndex, c.snapshotIndex, c.fsmPending, c.peers, c.lastContact} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.State()
	ch <- prometheus.MustNewConstMetric(c.revision, prometheus.GaugeValue, float64(st.Revision()))
	for _, d := range api.Types() {
		ch <- prometheus.MustNewConstMetric(c.resources, prometheus.GaugeValue, float64(st.Count(d.Name, "")), d.Name)
	}
	state := "starting"
	if r := c.node.Raft(); r != nil {
		state = r.State().String()
		c.collectRaft(ch, r)
	}
	isLeader := 0.0
	if state == raft.Leader.String() {
		isLeader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, isLeader)
	for _, s := range []string{"starting", raft.Follower.String(), raft.Candidate.String(), raft.Leader.String(), raft.Shutdown.String()} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.raftState, prometheus.GaugeValue, v, s)
	}
}

// zoneCollector exposes each zone's overview at scrape time, as the
// answering node sees it (DESIGN.md §10: sync lag per zone).
type zoneCollector struct {
	s                                        *Server
	online, replicas, lagRevs, lagSecs, rejd *prometheus.Desc
}

func newZoneCollector(s *Server) *zoneCollector {
	zone := []string{"zone"}
	return &zoneCollector{
		s:        s,
		online:   prometheus.NewDesc("meshfed_zone_online", "1 if the zone has a live sync stream.", zone, nil),
		replicas: prometheus.NewDesc("meshfed_zone_replicas", "Zone replicas with a live sync stream.", zone, nil),
		lagRevs:  prometheus.NewDesc("meshfed_zone_lag_revisions", "Revisions the zone has not acknowledged of what it receives.", zone, nil),
		lagSecs:  prometheus.NewDesc("meshfed_zone_lag_seconds", "How long the oldest change the zone has not acknowledged has waited.", zone, nil),
		rejd:     prometheus.NewDesc("meshfed_zone_rejected_resources", "Resources the zone refused.", zone, nil),
	}
}

func (c *zoneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.online, c.replicas, c.lagRevs, c.lagSecs, c.rejd} {
		ch <- d
	}
}

func (c *zoneCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, z := range c.s.store.State().List(api.TypeZone, "") {
		st := c.s.zoneOverview(z, now).Status
		online := 0.0
		if st.Online {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(c.online, prometheus.GaugeValue, online, z.Name)
		ch <- prometheus.MustNewConstMetric(c.replicas, prometheus.GaugeValue, float64(st.Replicas), z.Name)
		ch <- prometheus.MustNewConstMetric(c.lagRevs, prometheus.GaugeValue, float64(st.LagRevisions), z.Name)
		ch <- prometheus.MustNewConstMetric(c.lagSecs, prometheus.GaugeValue, st.LagSeconds, z.Name)
		ch <- prometheus.MustNewConstMetric(c.rejd, prometheus.GaugeValue, float64(len(st.Rejected)), z.Name)
	}
}

// collectRaft exposes Raft's own counters (r.Stats: one pass under Raft's
// locks, no round trip through its main loop).
func (c *storeCollector) collectRaft(ch chan<- prometheus.Metric, r *raft.Raft) {
	stats := r.Stats()
	for desc, key := range map[*prometheus.Desc]string{
		c.term: "term", c.commitIndex: "commit_index", c.appliedIndex: "applied_index", c.lastIndex: "last_log_index",
		c.snapshotIndex: "last_snapshot_index", c.fsmPending: "fsm_pending", c.peers: "num_peers",
	} {
		if v, err := strconv.ParseUint(stats[key], 10, 64); err == nil {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
		}
	}
	if r.State() != raft.Leader {
		if t := r.LastContact(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastContact, prometheus.GaugeValue, time.Since(t).Seconds())
		}
	}
}
