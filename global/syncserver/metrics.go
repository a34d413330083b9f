package syncserver

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/sync/syncpb"
)

// Refusal reasons (meshfed_sync_refusals_total{reason}): a stream ended
// before the zone was authenticated and admitted. The zone is not a label
// there: before the token is checked it is whatever the peer said.
const (
	refusedHello       = "hello"        // no Hello, or an invalid one, in time
	refusedToken       = "token"        // the token failed (signature, expiry, cluster, revocation)
	refusedWrongZone   = "wrong_zone"   // a valid token of another zone
	refusedNotAdmitted = "not_admitted" // Config.Admit said no (zone disabled)
)

// Metrics are the sync server's metrics (docs/metrics.md). Labels are
// bounded: zone is an authenticated zone (one the operator issued a token
// for), type one of the protocol's message kinds, code a gRPC code, reason
// one of the refusal reasons above, result signed or refused.
//
// Build them once per registry (NewMetrics) and pass them to every server
// built over it (Config.Metrics): a node that restarts its sync port keeps
// its counters.
type Metrics struct {
	streams      *prometheus.GaugeVec
	opened       *prometheus.CounterVec
	closed       *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	sentMsgs     *prometheus.CounterVec
	sentBytes    *prometheus.CounterVec
	recvMsgs     *prometheus.CounterVec
	recvBytes    *prometheus.CounterVec
	acks         *prometheus.CounterVec
	rejections   *prometheus.CounterVec
	resets       *prometheus.CounterVec
	reports      *prometheus.CounterVec
	reportRejs   *prometheus.CounterVec
	certRequests *prometheus.CounterVec
}

// NewMetrics builds the sync server's metrics and registers them on reg
// (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	zone := []string{"zone"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshfed_sync_streams",
			Help: "Sync streams of zone replicas open on this global node, by zone.",
		}, zone),
		opened: counter("meshfed_sync_streams_opened_total",
			"Sync streams this node accepted (authenticated and admitted), by zone: a zone's first connection and every reconnection.", zone...),
		closed: counter("meshfed_sync_streams_closed_total",
			"Accepted sync streams that ended on this node, by zone and the gRPC code of the reason (Canceled: the zone or this node went away).", "zone", "code"),
		refusals: counter("meshfed_sync_refusals_total",
			"Sync streams refused before the zone was admitted, by reason (hello, token, wrong_zone, not_admitted).", "reason"),
		sentMsgs: counter("meshfed_sync_messages_sent_total",
			"Messages sent to zones, by zone and message type.", "zone", "type"),
		sentBytes: counter("meshfed_sync_sent_bytes_total",
			"Protobuf bytes of the messages sent to zones, by zone.", zone...),
		recvMsgs: counter("meshfed_sync_messages_received_total",
			"Messages received from zones (once authenticated), by zone and message type.", "zone", "type"),
		recvBytes: counter("meshfed_sync_received_bytes_total",
			"Protobuf bytes of the messages received from zones (once authenticated), by zone.", zone...),
		acks: counter("meshfed_sync_acks_total",
			"Acknowledgements of applied revisions received from zones, by zone.", zone...),
		rejections: counter("meshfed_sync_rejections_total",
			"Resources zones refused to apply (reported in their acknowledgements), by zone.", zone...),
		resets: counter("meshfed_sync_resets_total",
			"Full-state Resets sent to zones (their revision was unknown or too old), by zone.", zone...),
		reports: counter("meshfed_sync_reports_total",
			"Inventory reports from zones written through Raft, by zone.", zone...),
		reportRejs: counter("meshfed_sync_report_rejections_total",
			"Resources in zones' reports that global refused to store, by zone.", zone...),
		certRequests: counter("meshfed_sync_certificate_requests_total",
			"Zones' requests to sign their intermediate CA, by zone and result (signed, refused).", "zone", "result"),
	}
	for _, r := range []string{refusedHello, refusedToken, refusedWrongZone, refusedNotAdmitted} {
		m.refusals.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("sync server metrics: %w (build them once per registerer)", err)
			}
			return nil, fmt.Errorf("sync server metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streams, m.opened, m.closed, m.refusals, m.sentMsgs, m.sentBytes, m.recvMsgs,
		m.recvBytes, m.acks, m.rejections, m.resets, m.reports, m.reportRejs, m.certRequests}
}

// Forget drops a zone's series (the zone was deleted).
func (m *Metrics) Forget(zone string) {
	l := prometheus.Labels{"zone": zone}
	for _, c := range m.collectors() {
		switch v := c.(type) {
		case *prometheus.CounterVec:
			v.DeletePartialMatch(l)
		case *prometheus.GaugeVec:
			v.DeletePartialMatch(l)
		}
	}
}

// zoneMetrics are one session's series, resolved once.
type zoneMetrics struct {
	m                   *Metrics
	zone                string
	streams             prometheus.Gauge
	sentBytes, recvByte prometheus.Counter
}

func (m *Metrics) forZone(zone string) *zoneMetrics {
	return &zoneMetrics{m: m, zone: zone, streams: m.streams.WithLabelValues(zone),
		sentBytes: m.sentBytes.WithLabelValues(zone), recvByte: m.recvBytes.WithLabelValues(zone)}
}

func (zm *zoneMetrics) sent(msg *syncpb.StreamResponse) {
	zm.m.sentMsgs.WithLabelValues(zm.zone, responseType(msg)).Inc()
	zm.sentBytes.Add(float64(proto.Size(msg)))
}

func (zm *zoneMetrics) received(msg *syncpb.StreamRequest) {
	zm.m.recvMsgs.WithLabelValues(zm.zone, requestType(msg)).Inc()
	zm.recvByte.Add(float64(proto.Size(msg)))
}

func (zm *zoneMetrics) closed(err error) {
	zm.m.closed.WithLabelValues(zm.zone, status.Code(err).String()).Inc()
}

func responseType(m *syncpb.StreamResponse) string {
	switch m.GetMsg().(type) {
	case *syncpb.StreamResponse_Welcome:
		return "welcome"
	case *syncpb.StreamResponse_Changes:
		return "changes"
	case *syncpb.StreamResponse_Reset_:
		return "reset"
	case *syncpb.StreamResponse_ReportAck:
		return "report_ack"
	case *syncpb.StreamResponse_CertificateResponse:
		return "certificate_response"
	case *syncpb.StreamResponse_ConfigRequest:
		return "config_request"
	case *syncpb.StreamResponse_Heartbeat:
		return "heartbeat"
	}
	return "other"
}

func requestType(m *syncpb.StreamRequest) string {
	switch m.GetMsg().(type) {
	case *syncpb.StreamRequest_Hello:
		return "hello"
	case *syncpb.StreamRequest_Ack:
		return "ack"
	case *syncpb.StreamRequest_Report:
		return "report"
	case *syncpb.StreamRequest_CertificateRequest:
		return "certificate_request"
	case *syncpb.StreamRequest_ConfigResponse:
		return "config_response"
	case *syncpb.StreamRequest_Heartbeat:
		return "heartbeat"
	}
	return "other"
}
