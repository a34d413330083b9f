package api

import "time"

// ZoneInsightSpec is the body of a ZoneInsight (Kuma's ZoneInsight, inline):
// what global knows of one zone's sync streams. Global maintains it; the API
// serves it read-only. Its name is the zone's.
type ZoneInsightSpec struct {
	// Subscriptions are the zone's recent streams, oldest first (at most
	// MaxZoneSubscriptions); one without a disconnect time is live.
	Subscriptions []ZoneSubscription `json:"subscriptions,omitempty"`
	// AckedRevision is the newest global revision the zone has applied.
	AckedRevision uint64 `json:"ackedRevision,omitempty"`
	// AckTime is when it acknowledged it.
	AckTime *time.Time `json:"ackTime,omitempty"`
	// Rejected lists the resources the zone refused at AckedRevision or
	// before, and why.
	Rejected []ZoneRejection `json:"rejected,omitempty"`
}

// MaxZoneSubscriptions bounds the history kept in a ZoneInsight.
const MaxZoneSubscriptions = 5

// ZoneSubscription is one stream of one zone replica to one global node.
type ZoneSubscription struct {
	GlobalInstanceID string     `json:"globalInstanceId"`
	ReplicaID        string     `json:"replicaId"`
	ConnectTime      time.Time  `json:"connectTime"`
	DisconnectTime   *time.Time `json:"disconnectTime,omitempty"`
	// DisconnectReason is why the stream ended, when it did.
	DisconnectReason string `json:"disconnectReason,omitempty"`
	// AckedRevision is the newest revision this stream's replica has
	// applied (its Hello's revision when it resumed, then its Acks), and
	// AckTime when it said so. Meshfed's addition: a zone's change is
	// applied once every live replica has acknowledged it.
	AckedRevision uint64     `json:"ackedRevision,omitempty"`
	AckTime       *time.Time `json:"ackTime,omitempty"`
}

// ZoneRejection is a resource a zone refused.
type ZoneRejection struct {
	Type     string `json:"type"`
	Mesh     string `json:"mesh,omitempty"`
	Name     string `json:"name"`
	Revision uint64 `json:"revision"`
	Reason   string `json:"reason"`
}

// Default implements Spec.
func (s *ZoneInsightSpec) Default() {}

// Validate implements Spec.
func (s *ZoneInsightSpec) Validate(v *Validator, at Path) {
	for i, sub := range s.Subscriptions {
		p := at.Field("subscriptions").Index(i)
		v.Required(p.Field("globalInstanceId"), sub.GlobalInstanceID)
		if sub.ConnectTime.IsZero() {
			v.Add(p.Field("connectTime"), "must be set")
		}
	}
	if len(s.Subscriptions) > MaxZoneSubscriptions {
		v.Add(at.Field("subscriptions"), "must hold at most %d entries", MaxZoneSubscriptions)
	}
	for i, r := range s.Rejected {
		p := at.Field("rejected").Index(i)
		v.Required(p.Field("type"), r.Type)
		v.Required(p.Field("name"), r.Name)
	}
}

// Online reports whether the zone has a live stream.
func (s *ZoneInsightSpec) Online() bool {
	for _, sub := range s.Subscriptions {
		if sub.DisconnectTime == nil {
			return true
		}
	}
	return false
}

// ZoneTokenRevocationSpec is the body of a ZoneTokenRevocation: a zone token
// that global refuses from now on. Its name is the token's id.
type ZoneTokenRevocationSpec struct {
	// Zone is the zone the token was issued for (informational).
	Zone string `json:"zone,omitempty"`
	// Reason is free text for operators.
	Reason string `json:"reason,omitempty"`
}

// Default implements Spec.
func (s *ZoneTokenRevocationSpec) Default() {}

// Validate implements Spec.
func (s *ZoneTokenRevocationSpec) Validate(v *Validator, at Path) {
	if s.Zone != "" && !IsDNSSubdomain(s.Zone, 63) {
		v.Add(at.Field("zone"), "must be a zone name (an RFC 1123 subdomain of at most 63 characters)")
	}
	if len(s.Reason) > 1024 {
		v.Add(at.Field("reason"), "must be at most 1024 characters")
	}
}
