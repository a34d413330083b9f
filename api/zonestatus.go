package api

import "time"

// The documents below are global's computed views of zones (GET
// /zones/{name}/_overview, GET /zones+insights) and of one resource across
// zones (GET .../{name}/_status). They are not resources: nothing stores
// them; the answering global node computes them from the replicated state,
// its live sync streams and its gossip view.

// TypeZoneOverview is the "type" of a ZoneOverview document (Kuma's name).
const TypeZoneOverview = "ZoneOverview"

// ZoneOverview is one zone as global sees it: the Zone resource, its
// ZoneInsight (the stored sync history, merged with what the answering node
// knows first-hand) and the computed Status. Its shape follows Kuma's
// ZoneOverview (type, name, times, zone, zoneInsight); status is Meshfed's.
type ZoneOverview struct {
	Type             string            `json:"type"`
	Name             string            `json:"name"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Labels           map[string]string `json:"labels,omitempty"`
	// Zone is the Zone resource's body (enabled, network).
	Zone ZoneSpec `json:"zone"`
	// ZoneInsight is the zone's sync history: subscriptions (each with its
	// replica's acknowledged revision), acknowledgement, rejections.
	ZoneInsight ZoneInsightSpec `json:"zoneInsight"`
	// Status is computed at the time of the answer.
	Status ZoneStatus `json:"status"`
}

// ZoneStatus is what a zone's overview computes.
type ZoneStatus struct {
	// Online: at least one replica of the zone has a live sync stream (a
	// subscription without a disconnect time, served by a global node that
	// is a live gossip member; the answering node checks its own streams
	// first-hand).
	Online bool `json:"online"`
	// Enabled is the Zone's enabled flag (a disabled zone cannot connect).
	Enabled bool `json:"enabled"`
	// Network is the zone's effective network (its name when unset).
	Network string `json:"network"`
	// OfflineReason says why an offline zone is offline (the last stream's
	// disconnect reason, a dead global node, never connected, disabled).
	OfflineReason string `json:"offlineReason,omitempty"`
	// GlobalNode is the global node serving the most recent live stream;
	// GlobalNodes lists every node serving one (replicas may be spread).
	GlobalNode  string   `json:"globalNode,omitempty"`
	GlobalNodes []string `json:"globalNodes,omitempty"`
	// ConnectTime is when the most recent live stream connected.
	ConnectTime *time.Time `json:"connectTime,omitempty"`
	// Replicas counts the distinct zone replicas with a live stream.
	Replicas int `json:"replicas"`
	// ReplicaStatus lists the live streams, one per replica.
	ReplicaStatus []ZoneReplicaStatus `json:"replicaStatus,omitempty"`
	// AckedRevision is the revision the zone as a whole has applied: the
	// lowest acknowledged revision among its live replicas (a change is
	// applied in the zone once every replica has it), or, offline, the last
	// one it acknowledged. AckTime is when.
	AckedRevision uint64     `json:"ackedRevision"`
	AckTime       *time.Time `json:"ackTime,omitempty"`
	// LatestRevision is the revision the zone is to reach: the newest
	// revision of anything it receives, or AckedRevision when nothing newer
	// is pending.
	LatestRevision uint64 `json:"latestRevision"`
	// LagRevisions is LatestRevision minus AckedRevision, floored at 0.
	LagRevisions uint64 `json:"lagRevisions"`
	// LagSeconds is how long the oldest change the zone has not
	// acknowledged has been waiting (0 when it is caught up). A pending
	// deletion carries no time of its own; when only deletions are pending
	// the zone's last acknowledgement time bounds it from above.
	LagSeconds float64 `json:"lagSeconds"`
	// Rejected lists the resources the zone refused, with reasons (the
	// same as ZoneInsight.Rejected, pruned of resources since deleted).
	Rejected []ZoneRejection `json:"rejected"`
}

// ZoneReplicaStatus is one live stream of one zone replica.
type ZoneReplicaStatus struct {
	ReplicaID     string     `json:"replicaId"`
	GlobalNode    string     `json:"globalNode"`
	ConnectTime   time.Time  `json:"connectTime"`
	AckedRevision uint64     `json:"ackedRevision"`
	AckTime       *time.Time `json:"ackTime,omitempty"`
}

// ZoneResourceState is a resource's state in one zone.
type ZoneResourceState string

const (
	// ResourceApplied: the zone acknowledged a revision at or after the
	// resource's and did not reject it.
	ResourceApplied ZoneResourceState = "applied"
	// ResourcePending: sent (or to be sent) but not acknowledged yet.
	ResourcePending ZoneResourceState = "pending"
	// ResourceRejected: the zone refused this version; Reason says why.
	ResourceRejected ZoneResourceState = "rejected"
	// ResourceNotSent: the zone does not receive it (the type does not fan
	// out, it is the zone's own report, the zone or its origin zone is
	// disabled); Reason says which.
	ResourceNotSent ZoneResourceState = "not-sent"
)

// ResourceStatus answers "is my change live everywhere?" for one resource:
// its current revision and, for every known zone (Zone resources), whether
// the zone has applied it.
type ResourceStatus struct {
	Type             string    `json:"type"`
	Mesh             string    `json:"mesh,omitempty"`
	Name             string    `json:"name"`
	Revision         uint64    `json:"revision"`
	ModificationTime time.Time `json:"modificationTime"`
	// Summary counts the zones by state.
	Summary ResourceStatusSummary `json:"summary"`
	// Zones has one entry per Zone, sorted by name.
	Zones []ZoneResourceStatus `json:"zones"`
}

// ResourceStatusSummary counts zones by state. AppliedEverywhere: every
// zone that receives the resource has applied it (true when none does).
type ResourceStatusSummary struct {
	Applied           int  `json:"applied"`
	Pending           int  `json:"pending"`
	Rejected          int  `json:"rejected"`
	NotSent           int  `json:"notSent"`
	AppliedEverywhere bool `json:"appliedEverywhere"`
}

// ZoneResourceStatus is one resource's state in one zone.
type ZoneResourceStatus struct {
	Zone   string            `json:"zone"`
	Status ZoneResourceState `json:"status"`
	// Online and Enabled are the zone's (see ZoneStatus).
	Online  bool `json:"online"`
	Enabled bool `json:"enabled"`
	// AckedRevision is the zone's applied revision (ZoneStatus.AckedRevision).
	AckedRevision uint64 `json:"ackedRevision"`
	// Reason explains rejected and not-sent.
	Reason string `json:"reason,omitempty"`
}
