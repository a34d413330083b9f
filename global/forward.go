package global

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/store"
)

// Global nodes talk to each other over their HTTP APIs, under /_internal/,
// authenticated with the cluster's admin token:
//
//	POST /_internal/raft/apply       a follower's write, proposed by the leader
//	POST /_internal/raft/read-index  the leader's barrier for a follower's consistent read
//	POST /_internal/raft/leave       a node leaving gracefully asks the leader to remove it
//	GET  /_internal/status           this node's own Raft view
//	POST /_internal/zones/config     a Dataplane's config dump, asked of a zone whose stream this node serves
//
// The leader's API address comes from gossip metadata.

// httpForwarder implements store.Forwarder.
type httpForwarder struct{ s *Server }

func (f httpForwarder) Apply(ctx context.Context, leaderID string, command []byte) (store.ApplyResult, error) {
	var w store.WireResult
	if err := f.s.callPeer(ctx, http.MethodPost, leaderID, "/_internal/raft/apply", command, &w); err != nil {
		return store.ApplyResult{}, err
	}
	return w.Decode()
}

func (f httpForwarder) ReadIndex(ctx context.Context, leaderID string) (uint64, error) {
	var w store.WireResult
	if err := f.s.callPeer(ctx, http.MethodPost, leaderID, "/_internal/raft/read-index", nil, &w); err != nil {
		return 0, err
	}
	if w.Error != nil {
		return 0, w.Error.Err()
	}
	return w.Revision, nil
}

// callPeer sends a request to another node's internal API and decodes its
// JSON answer into out. Any failure to reach it is a 503 for our caller: the
// request may be retried.
func (s *Server) callPeer(ctx context.Context, method, nodeID, path string, body []byte, out any) error {
	m, ok := s.members.Member(nodeID)
	if !ok || m.Meta.APIAddr == "" {
		return &api.UnavailableError{Reason: fmt.Sprintf("the address of node %q is not known yet", nodeID), RetryAfter: time.Second}
	}
	meta, _ := s.store.State().Meta()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.Meta.APIAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+meta.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return &api.UnavailableError{Reason: fmt.Sprintf("node %s at %s: %v", nodeID, m.Meta.APIAddr, err), RetryAfter: time.Second}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &api.UnavailableError{Reason: fmt.Sprintf("node %s: %v", nodeID, err), RetryAfter: time.Second}
	}
	if resp.StatusCode != http.StatusOK {
		return &api.UnavailableError{Reason: fmt.Sprintf("node %s answered %s: %s", nodeID, resp.Status, strings.TrimSpace(string(data))), RetryAfter: time.Second}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("node %s: malformed answer: %w", nodeID, err)
	}
	return nil
}

// internal wraps an internal endpoint: admin-token auth, JSON answer.
func (s *Server) internal(h func(r *http.Request, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authenticate(bearer(r)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(rest.ErrorBody{Title: "Unauthorized", Details: "cluster-internal calls need the cluster's admin token (is the caller in the same cluster?)"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes+64<<10))
		if err != nil {
			rest.WriteError(w, r, s.logger, &api.ValidationError{Errors: []api.FieldError{{Field: "body", Message: err.Error()}}})
			return
		}
		out, err := h(r, body)
		if err != nil {
			rest.WriteError(w, r, s.logger, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func (s *Server) handleApply(r *http.Request, body []byte) (any, error) {
	res, err := s.store.ApplyForwarded(body)
	return store.EncodeResult(res, err), nil
}

func (s *Server) handleReadIndex(r *http.Request, _ []byte) (any, error) {
	rev, err := s.store.ReadIndex(r.Context())
	if err != nil {
		return store.WireResult{Error: store.EncodeError(err)}, nil
	}
	return store.WireResult{Revision: rev}, nil
}

type leaveRequest struct {
	ID string `json:"id"`
}

func (s *Server) handleLeave(r *http.Request, body []byte) (any, error) {
	var req leaveRequest
	if err := json.Unmarshal(body, &req); err != nil || req.ID == "" {
		return nil, &api.ValidationError{Errors: []api.FieldError{{Field: "id", Message: "must name the leaving node"}}}
	}
	if req.ID == s.cfg.NodeID {
		return nil, &api.ConflictError{Reason: "the leader cannot remove itself; transfer leadership first"}
	}
	s.logger.Info("removing a node that leaves gracefully", "node", req.ID)
	s.noteLeaving(req.ID)
	if err := s.store.RemoveServer(req.ID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) handleLocalStatus(r *http.Request, _ []byte) (any, error) {
	return s.raftView(), nil
}

func (s *Server) raftView() api.RaftView {
	st := s.store.Status()
	return api.RaftView{
		Role: strings.ToLower(st.State), Term: st.Term, Leader: st.LeaderID,
		AppliedIndex: st.AppliedIndex, CommitIndex: st.CommitIndex, LastIndex: st.LastIndex,
		Revision: st.Revision, LastContact: st.LastContact,
	}
}
