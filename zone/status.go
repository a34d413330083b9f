package zone

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/peers"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// Status is the zone control plane's view of itself, served at
// GET /zone/status.
type Status struct {
	Zone      string `json:"zone"`
	ReplicaID string `json:"replicaId"`
	// Ready: the replica holds state from global (see /readyz).
	Ready   bool          `json:"ready"`
	Global  GlobalStatus  `json:"global"`
	Replica ReplicaStatus `json:"replica"`
	// Reports is the outbox of changes to the zone's own resources, and
	// the resources global refused.
	Reports inventory.Status `json:"reports"`
	// Peers is the pool of the zone's replicas (absent for a zone of one
	// replica).
	Peers *peers.Status `json:"peers,omitempty"`
	// XDS is the zone's xDS server.
	XDS XDSStatus `json:"xds"`
	// CA lists the zone's intermediate CAs (Meshes with mTLS on).
	CA []certs.MeshStatus `json:"ca"`
}

// XDSStatus is the zone's xDS server.
type XDSStatus struct {
	// Address is where proxies connect.
	Address string `json:"address"`
	// ConnectedProxies counts the proxies with a stream open on this
	// replica.
	ConnectedProxies int `json:"connectedProxies"`
}

// GlobalStatus is the sync connection to global.
type GlobalStatus struct {
	// Connected: a stream is open and global has welcomed the zone.
	Connected bool `json:"connected"`
	// Node and Addr are the global node serving (or last serving) the
	// stream and the address dialed.
	Node           string     `json:"node,omitempty"`
	Addr           string     `json:"addr,omitempty"`
	ConnectedSince *time.Time `json:"connectedSince,omitempty"`
	// LastError is why the last stream or attempt ended.
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
	// Refused: global refused the zone's token; only the operator can fix
	// it (a new token in the token file is picked up at the next attempt).
	Refused bool `json:"refused,omitempty"`
	// Failures counts failed attempts since the last welcomed stream.
	Failures int `json:"failures,omitempty"`
}

// ReplicaStatus is the zone's copy of global's state.
type ReplicaStatus struct {
	// Revision is the global revision applied; ClusterID the global cluster
	// it came from.
	Revision  uint64 `json:"revision"`
	ClusterID string `json:"clusterId,omitempty"`
	// Resources counts what the replica holds.
	Resources int `json:"resources"`
}

// Status returns the zone's status while Run runs; ok is false otherwise.
func (s *Server) Status() (Status, bool) {
	p := s.parts.Load()
	if p == nil {
		return Status{}, false
	}
	return s.status(p), true
}

func (s *Server) status(p *parts) Status {
	cs := p.client.Status()
	g := GlobalStatus{Connected: cs.Connected, Node: cs.GlobalNode, Addr: cs.GlobalAddr, Refused: cs.Refused, Failures: cs.Failures}
	if !cs.ConnectedSince.IsZero() {
		t := cs.ConnectedSince.UTC()
		g.ConnectedSince = &t
	}
	if cs.LastError != nil {
		t := cs.LastErrorAt.UTC()
		g.LastError, g.LastErrorAt = cs.LastError.Error(), &t
	}
	var ps *peers.Status
	if p.peers != nil {
		st := p.peers.Status()
		ps = &st
	}
	caStatus := p.certs.Status()
	if caStatus == nil {
		caStatus = []certs.MeshStatus{}
	}
	return Status{
		CA:        caStatus,
		XDS:       XDSStatus{Address: p.xdsAddr.String(), ConnectedProxies: p.proxies.Connected()},
		Peers:     ps,
		Zone:      s.cfg.Zone,
		ReplicaID: s.cfg.ReplicaID,
		Ready:     ready(p) == nil,
		Global:    g,
		Replica:   ReplicaStatus{Revision: p.rep.Revision(), ClusterID: p.rep.ClusterID(), Resources: p.rep.Len()},
		Reports:   p.inv.Status(),
	}
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request, p *parts) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.status(p))
}

// registerMetrics adds the zone's gauges, read at scrape time.
func registerMetrics(reg prometheus.Registerer, p *parts) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshfed_zone_sync_connected",
			Help: "1 while the zone has a welcomed sync stream to global.",
		}, func() float64 { return b(p.client.Status().Connected) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshfed_zone_replica_revision",
			Help: "Global revision the zone's replica has applied.",
		}, func() float64 { return float64(p.rep.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshfed_zone_reports_pending",
			Help: "Reports of the zone's own resources not yet acknowledged by global.",
		}, func() float64 { return float64(p.inv.Status().Pending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshfed_zone_reports_rejected",
			Help: "Zone resources global refused to store (see GET /zone/status).",
		}, func() float64 { return float64(len(p.inv.Status().Rejected)) }),
	)
	counter := func(name, help string, v func(syncclient.Counters) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(p.client.Counters())) })
	}
	reg.MustRegister(
		counter("meshfed_zone_sync_attempts_total", "Sync streams the zone opened or tried to open (every connection attempt).",
			func(c syncclient.Counters) uint64 { return c.Attempts }),
		counter("meshfed_zone_sync_streams_total", "Sync streams global welcomed: the first connection and every reconnection.",
			func(c syncclient.Counters) uint64 { return c.Welcomed }),
		counter("meshfed_zone_sync_messages_received_total", "Sync messages received from global.",
			func(c syncclient.Counters) uint64 { return c.MessagesReceived }),
		counter("meshfed_zone_sync_received_bytes_total", "Protobuf bytes of the sync messages received from global.",
			func(c syncclient.Counters) uint64 { return c.BytesReceived }),
		counter("meshfed_zone_sync_messages_sent_total", "Sync messages sent to global.",
			func(c syncclient.Counters) uint64 { return c.MessagesSent }),
		counter("meshfed_zone_sync_sent_bytes_total", "Protobuf bytes of the sync messages sent to global.",
			func(c syncclient.Counters) uint64 { return c.BytesSent }),
		counter("meshfed_zone_sync_changes_applied_total", "Batches of global's changes applied to the replica.",
			func(c syncclient.Counters) uint64 { return c.Changes }),
		counter("meshfed_zone_sync_resets_total", "Full states from global installed in the replica (Resets).",
			func(c syncclient.Counters) uint64 { return c.Resets }),
		counter("meshfed_zone_sync_rejections_total", "Resources from global the replica refused to apply.",
			func(c syncclient.Counters) uint64 { return c.Rejections }),
		newCACollector(p),
	)
}

// caCollector exposes the zone's certificates at scrape time: its
// intermediate CAs (zone/certs) and the proxies' certificates
// (zone/proxies). Series without a certificate behind them are absent.
type caCollector struct {
	p                                     *parts
	expiry, failing, earliest, dpEarliest *prometheus.Desc
}

func newCACollector(p *parts) *caCollector {
	return &caCollector{
		p: p,
		expiry: prometheus.NewDesc("meshfed_zone_ca_intermediate_expiry_timestamp_seconds",
			"When the zone's intermediate CA of a Mesh expires (Unix time), by mesh.", []string{"mesh"}, nil),
		failing: prometheus.NewDesc("meshfed_zone_ca_intermediate_failing",
			"1 if the last attempt to get a Mesh's intermediate CA signed failed (see GET /zone/status), by mesh.", []string{"mesh"}, nil),
		earliest: prometheus.NewDesc("meshfed_zone_ca_intermediate_earliest_expiry_seconds",
			"Seconds until the earliest of the zone's intermediate CAs expires.", nil, nil),
		dpEarliest: prometheus.NewDesc("meshfed_zone_dataplane_cert_earliest_expiry_seconds",
			"Seconds until the earliest certificate held by a proxy connected to this replica expires.", nil, nil),
	}
}

func (c *caCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.expiry, c.failing, c.earliest, c.dpEarliest} {
		ch <- d
	}
}

func (c *caCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	var earliest time.Time
	for _, st := range c.p.certs.Status() {
		failing := 0.0
		if st.LastError != "" {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, failing, st.Mesh)
		if st.NotAfter == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(st.NotAfter.UnixNano())/1e9, st.Mesh)
		if earliest.IsZero() || st.NotAfter.Before(earliest) {
			earliest = *st.NotAfter
		}
	}
	if !earliest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.earliest, prometheus.GaugeValue, earliest.Sub(now).Seconds())
	}
	if t, ok := c.p.proxies.EarliestCertExpiry(); ok {
		ch <- prometheus.MustNewConstMetric(c.dpEarliest, prometheus.GaugeValue, t.Sub(now).Seconds())
	}
}
