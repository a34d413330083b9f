package api

import "time"

// DataplaneInsightSpec is the body of a DataplaneInsight (Kuma's
// DataplaneInsight, inline): what the zone knows of one Dataplane's proxy —
// its xDS streams and its certificate. The zone maintains it under the
// Dataplane's name and reports it to global like the Dataplane; the API
// serves it read-only (GET /meshes/{mesh}/dataplanes+insights).
type DataplaneInsightSpec struct {
	// Subscriptions are the proxy's recent xDS streams, oldest first (at
	// most MaxDataplaneSubscriptions); one without a disconnect time is
	// live.
	Subscriptions []DiscoverySubscription `json:"subscriptions,omitempty"`
	// MTLS is the proxy's certificate, in a Mesh with mTLS on.
	MTLS *DataplaneInsightMTLS `json:"mTLS,omitempty"`
}

// MaxDataplaneSubscriptions bounds the history kept in a DataplaneInsight.
const MaxDataplaneSubscriptions = 5

// DiscoverySubscription is one xDS stream of a proxy to a zone replica.
type DiscoverySubscription struct {
	// ID is the stream's id on the zone replica.
	ID string `json:"id"`
	// ControlPlaneInstanceID is the zone replica serving the stream.
	ControlPlaneInstanceID string     `json:"controlPlaneInstanceId"`
	ConnectTime            time.Time  `json:"connectTime"`
	DisconnectTime         *time.Time `json:"disconnectTime,omitempty"`
	// Status counts the responses by type URL, and in total.
	Status DiscoveryStatus `json:"status"`
	// Version is the proxy's user agent ("envoy/1.34.1", "gRPC Go/1.85.0").
	Version string `json:"version,omitempty"`
}

// DiscoveryStatus is a stream's response counts.
type DiscoveryStatus struct {
	// LastUpdateTime is the stream's last ACK or NACK.
	LastUpdateTime *time.Time            `json:"lastUpdateTime,omitempty"`
	Total          DiscoveryServiceStats `json:"total"`
	// ByType holds the counts per type URL.
	ByType map[string]DiscoveryServiceStats `json:"byType,omitempty"`
}

// DiscoveryServiceStats counts one type's (or all) responses.
type DiscoveryServiceStats struct {
	ResponsesSent         uint64 `json:"responsesSent,omitempty"`
	ResponsesAcknowledged uint64 `json:"responsesAcknowledged,omitempty"`
	ResponsesRejected     uint64 `json:"responsesRejected,omitempty"`
	// LastAckTime is the last ACK; LastNackError the last NACK's message.
	LastAckTime   *time.Time `json:"lastAckTime,omitempty"`
	LastNackError string     `json:"lastNackError,omitempty"`
}

// DataplaneInsightMTLS is a proxy's certificate.
type DataplaneInsightMTLS struct {
	CertificateExpirationTime   time.Time `json:"certificateExpirationTime"`
	LastCertificateRegeneration time.Time `json:"lastCertificateRegeneration"`
	CertificateRegenerations    uint32    `json:"certificateRegenerations"`
	IssuedBackend               string    `json:"issuedBackend,omitempty"`
}

// Default implements Spec.
func (s *DataplaneInsightSpec) Default() {}

// Validate implements Spec.
func (s *DataplaneInsightSpec) Validate(v *Validator, at Path) {
	if len(s.Subscriptions) > MaxDataplaneSubscriptions {
		v.Add(at.Field("subscriptions"), "must hold at most %d entries", MaxDataplaneSubscriptions)
	}
	for i, sub := range s.Subscriptions {
		p := at.Field("subscriptions").Index(i)
		v.Required(p.Field("id"), sub.ID)
		v.Required(p.Field("controlPlaneInstanceId"), sub.ControlPlaneInstanceID)
		if sub.ConnectTime.IsZero() {
			v.Add(p.Field("connectTime"), "must be set")
		}
	}
}

// Online reports whether the proxy has a live stream.
func (s *DataplaneInsightSpec) Online() bool {
	for _, sub := range s.Subscriptions {
		if sub.DisconnectTime == nil {
			return true
		}
	}
	return false
}

// DataplaneOverview is a Dataplane with its insight, as
// GET /meshes/{mesh}/dataplanes+insights lists them (Kuma's shape).
type DataplaneOverview struct {
	Type             string                `json:"type"`
	Mesh             string                `json:"mesh"`
	Name             string                `json:"name"`
	CreationTime     time.Time             `json:"creationTime"`
	ModificationTime time.Time             `json:"modificationTime"`
	Labels           map[string]string     `json:"labels,omitempty"`
	Dataplane        *DataplaneSpec        `json:"dataplane"`
	DataplaneInsight *DataplaneInsightSpec `json:"dataplaneInsight,omitempty"`
	// Online: the proxy has a live xDS stream (as its zone last reported).
	Online bool `json:"online"`
}

// TypeDataplaneOverview is the "type" of a DataplaneOverview document.
const TypeDataplaneOverview = "DataplaneOverview"
