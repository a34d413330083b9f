package store

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// via labels a proposal: applied through this node's Raft (it is the
// leader) or forwarded to the leader.
const (
	viaLeader  = "leader"
	viaForward = "forward"
)

// metrics time the write path (global/metrics.go reads Raft's state at
// scrape time):
//
//	meshfed_raft_apply_duration_seconds{via}  histogram: a proposal until the FSM's answer
//	meshfed_raft_apply_failures_total{via}    counter: proposals without an answer
type metrics struct {
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// newMetrics registers the store's metrics on reg; nil reg: a node
// without metrics (observe is then a no-op).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshfed_raft_apply_duration_seconds",
			Help:    "Time from proposing a command until the FSM's answer, by path: leader (Raft apply on this node, the leader) or forward (sent to the leader by this follower).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"via"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfed_raft_apply_failures_total",
			Help: "Proposals that got no answer from the FSM (no leader, leadership lost, timeout, shutdown), by path.",
		}, []string{"via"}),
	}
	for _, v := range []string{viaLeader, viaForward} {
		m.duration.WithLabelValues(v)
		m.failures.WithLabelValues(v)
	}
	for _, c := range []prometheus.Collector{m.duration, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("store metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one proposal that started at start; err is the Raft or
// forwarding error (nil when the FSM answered, whatever its answer).
func (m *metrics) observe(via string, start time.Time, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failures.WithLabelValues(via).Inc()
		return
	}
	m.duration.WithLabelValues(via).Observe(time.Since(start).Seconds())
}
