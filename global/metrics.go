package global

import (
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
}

func newStoreCollector(node *store.Node) *storeCollector {
	return &storeCollector{
		node:      node,
		revision:  prometheus.NewDesc("meshfed_store_revision", "Raft index of the last command applied to this node's state.", nil, nil),
		resources: prometheus.NewDesc("meshfed_store_resources", "Resources held in the state, by type.", []string{"type"}, nil),
		leader:    prometheus.NewDesc("meshfed_raft_leader", "1 if this node is the Raft leader.", nil, nil),
		raftState: prometheus.NewDesc("meshfed_raft_state", "1 for this node's current Raft state.", []string{"state"}, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.revision
	ch <- c.resources
	ch <- c.leader
	ch <- c.raftState
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
