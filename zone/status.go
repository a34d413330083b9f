package zone

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/peers"
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
}
