package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
)

// Forwarder carries a follower's requests to the leader (global/ implements
// it over the leader's HTTP API).
type Forwarder interface {
	// Apply proposes an encoded command on the leader and returns the FSM's
	// result there.
	Apply(ctx context.Context, leaderID string, command []byte) (ApplyResult, error)
	// ReadIndex makes the leader confirm its leadership with a barrier and
	// returns the revision of its state afterwards: once this node has
	// applied that revision, a local read is linearizable.
	ReadIndex(ctx context.Context, leaderID string) (uint64, error)
}

// Server is one member of the Raft configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Started is closed once Raft is running (Run has opened the stores).
func (n *Node) Started() <-chan struct{} { return n.started }

// HadState reports whether the node had Raft state when it started (it is
// not a fresh node). Valid after Started.
func (n *Node) HadState() bool { return n.hadState.Load() }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool {
	r := n.raft.Load()
	return r != nil && r.State() == raft.Leader
}

func (n *Node) running() (*raft.Raft, error) {
	r := n.raft.Load()
	if r == nil {
		return nil, &api.UnavailableError{Reason: "raft is starting", RetryAfter: time.Second}
	}
	return r, nil
}

// BootstrapCluster starts a new cluster with the given voters. It fails if
// the node already has Raft state.
func (n *Node) BootstrapCluster(servers []Server) error {
	r, err := n.running()
	if err != nil {
		return err
	}
	conf := raft.Configuration{}
	for _, s := range servers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if err := r.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	n.hadState.Store(true)
	return nil
}

// Configuration returns the current Raft configuration.
func (n *Node) Configuration() ([]Server, error) {
	r, err := n.running()
	if err != nil {
		return nil, err
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds (or re-addresses) a voter; leader only.
func (n *Node) AddVoter(id, addr string) error {
	r, err := n.running()
	if err != nil {
		return err
	}
	if err := r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return n.raftError(err)
	}
	return nil
}

// RemoveServer removes a server from the configuration; leader only.
func (n *Node) RemoveServer(id string) error {
	r, err := n.running()
	if err != nil {
		return err
	}
	if err := r.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return n.raftError(err)
	}
	return nil
}

// TransferLeadership hands leadership to another voter and waits for it.
func (n *Node) TransferLeadership() error {
	r, err := n.running()
	if err != nil {
		return err
	}
	if r.State() != raft.Leader {
		return nil
	}
	if err := r.LeadershipTransfer().Error(); err != nil {
		return n.raftError(err)
	}
	return nil
}

// RaftStatus is this node's view of Raft.
type RaftStatus struct {
	State        string    `json:"state"`
	Term         string    `json:"term"`
	LeaderID     string    `json:"leaderId"`
	LeaderAddr   string    `json:"leaderAddress"`
	CommitIndex  uint64    `json:"commitIndex"`
	AppliedIndex uint64    `json:"appliedIndex"`
	LastIndex    uint64    `json:"lastIndex"`
	Revision     uint64    `json:"revision"`
	LastContact  time.Time `json:"lastContact,omitzero"`
	Servers      []Server  `json:"servers"`
}

// Status returns this node's Raft status.
func (n *Node) Status() RaftStatus {
	st := RaftStatus{State: "starting", Revision: n.state.Revision()}
	r := n.raft.Load()
	if r == nil {
		return st
	}
	st.State = r.State().String()
	st.LeaderID, st.LeaderAddr = n.Leader()
	stats := r.Stats()
	st.Term = stats["term"]
	st.CommitIndex = r.CommitIndex()
	st.AppliedIndex = r.AppliedIndex()
	st.LastIndex = r.LastIndex()
	if r.State() != raft.Leader {
		st.LastContact = r.LastContact()
	}
	st.Servers, _ = n.Configuration()
	return st
}

// ApplyForwarded proposes a command that a follower forwarded. Only put and
// delete may be forwarded; anything else (or a malformed entry) is refused
// before it reaches the log.
func (n *Node) ApplyForwarded(command []byte) (ApplyResult, error) {
	if err := checkForwardable(command); err != nil {
		return ApplyResult{}, err
	}
	return n.proposeRaw(command)
}

// ReadIndex is the leader's side of Forwarder.ReadIndex: a barrier, then the
// state's revision.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.barrier(ctx); err != nil {
		return 0, err
	}
	return n.state.Revision(), nil
}

// waitRevision blocks until the local state has applied rev.
func (n *Node) waitRevision(ctx context.Context, rev uint64) error {
	for {
		ch := n.state.Watch()
		if n.state.Revision() >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return &api.UnavailableError{Reason: fmt.Sprintf("this node has not caught up with revision %d yet", rev), RetryAfter: time.Second}
		case <-ch:
		}
	}
}

// checkForwardable accepts only well-formed put and delete commands.
func checkForwardable(command []byte) error {
	var c Command
	if err := json.Unmarshal(command, &c); err != nil {
		return &api.ValidationError{Errors: []api.FieldError{{Field: "command", Message: "malformed forwarded command: " + err.Error()}}}
	}
	switch c.Type {
	case CmdPut, CmdDelete, CmdBatch:
		return nil
	}
	return &api.ValidationError{Errors: []api.FieldError{{Field: "command.type", Message: fmt.Sprintf("%q may not be forwarded", c.Type)}}}
}

// HasState reports whether the node holds Raft state: it had some at start,
// bootstrapped, or has since received log entries from a leader.
func (n *Node) HasState() bool {
	if n.hadState.Load() {
		return true
	}
	r := n.raft.Load()
	return r != nil && r.LastIndex() > 0
}

// ApplyBatch proposes several puts and deletes as one log entry (forwarded
// to the leader from a follower) and returns one result per operation.
func (n *Node) ApplyBatch(ctx context.Context, ops []BatchOp) ([]ApplyResult, error) {
	res, err := n.propose(ctx, CmdBatch, BatchCommand{Ops: ops})
	if err != nil {
		return nil, err
	}
	if len(res.Batch) != len(ops) {
		return nil, fmt.Errorf("batch of %d operations answered %d results", len(ops), len(res.Batch))
	}
	return res.Batch, nil
}
