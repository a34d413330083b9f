package api

import "time"

// GlobalStatus is the answer of GET /global/status: the global cluster as
// the answering node sees it, with each reachable member's own Raft view.
type GlobalStatus struct {
	// Node is the id of the node that answered.
	Node      string `json:"node"`
	ClusterID string `json:"clusterId"`
	// Leader is the Raft leader's id ("" during an election).
	Leader  string         `json:"leader"`
	Members []GlobalMember `json:"members"`
}

// GlobalMember is one global node: its gossip state, its place in the Raft
// configuration and, when it answered, its own Raft view.
type GlobalMember struct {
	ID          string    `json:"id"`
	GossipAddr  string    `json:"gossipAddress,omitempty"`
	RaftAddr    string    `json:"raftAddress,omitempty"`
	APIAddr     string    `json:"apiAddress,omitempty"`
	GossipState string    `json:"gossipState"` // alive, dead, left, unknown
	GossipSince time.Time `json:"gossipSince,omitzero"`
	// Voter: the node is a voter in the Raft configuration; InRaft: it is in
	// the configuration at all.
	InRaft bool `json:"inRaft"`
	Voter  bool `json:"voter"`
	// Raft is the member's own view, absent when it could not be asked.
	Raft *RaftView `json:"raft,omitempty"`
	// Error says why the member could not be asked.
	Error string `json:"error,omitempty"`
}

// RaftView is one node's own Raft state.
type RaftView struct {
	// Role is leader, follower, candidate, shutdown or starting.
	Role         string    `json:"role"`
	Term         string    `json:"term,omitempty"`
	Leader       string    `json:"leader"`
	AppliedIndex uint64    `json:"appliedIndex"`
	CommitIndex  uint64    `json:"commitIndex"`
	LastIndex    uint64    `json:"lastIndex"`
	Revision     uint64    `json:"revision"`
	LastContact  time.Time `json:"lastContact,omitzero"`
}
