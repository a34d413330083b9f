package global

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/membership"
	"github.com/meshfed/meshfed/global/store"
)

// meta is what this node advertises in gossip.
func (s *Server) meta() membership.Meta {
	cm, _ := s.store.State().Meta()
	if cm.ClusterID == "" {
		// Restarting: the log is not replayed yet, but the node must not
		// pass for a fresh one of no cluster.
		cm.ClusterID, _ = s.savedClusterID.Load().(string)
	}
	return membership.Meta{
		RaftAddr:  s.cfg.RaftAddr,
		APIAddr:   s.cfg.APIAddr,
		ClusterID: cm.ClusterID,
		HasState:  s.store.HasState(),
		Version:   s.cfg.Version,
	}
}

// announceIdentity re-broadcasts gossip metadata when this node learns its
// cluster id (after bootstrap, or when it first receives the log).
func (s *Server) announceIdentity(ctx context.Context) {
	st := s.store.State()
	for {
		changed := st.Watch()
		if _, ok := st.Meta(); ok {
			if err := s.members.UpdateMeta(); err != nil {
				s.logger.Warn("gossip metadata update", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// bootstrapExpect waits until BootstrapExpect fresh nodes (no Raft state)
// see each other in gossip; then the one with the lowest id bootstraps Raft
// with all of them as voters. The others wait to receive the log. Nobody
// bootstraps once any live node has state: that cluster's leader adds new
// nodes itself (autopilot).
func (s *Server) bootstrapExpect(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-s.store.Started():
	}
	if s.expect() <= 1 || s.store.HadState() {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := s.members.Watch()
		if s.store.HasState() {
			return
		}
		var fresh []membership.Member
		existing := false
		for _, m := range s.members.Members() {
			if m.State != membership.Alive {
				continue
			}
			if m.Meta.HasState {
				existing = true
			} else if m.Meta.RaftAddr != "" {
				fresh = append(fresh, m)
			}
		}
		if existing {
			s.logger.Info("a live node already holds Raft state; waiting to be added by its leader")
			return
		}
		if len(fresh) >= s.expect() && fresh[0].ID == s.cfg.NodeID { // Members is sorted by id
			var servers []store.Server
			for _, m := range fresh {
				servers = append(servers, store.Server{ID: m.ID, Address: m.Meta.RaftAddr, Voter: true})
			}
			if err := s.store.BootstrapCluster(servers); err != nil {
				// Retried at the next tick (HasState ends the loop once
				// some bootstrap, ours or a leader's log, took effect).
				s.logger.Error("bootstrap with expected nodes; retrying", "err", err)
			} else {
				s.logger.Info("bootstrapped the raft cluster", "voters", len(servers))
				_ = s.members.UpdateMeta()
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// expect is the effective --bootstrap-expect: 0 on a node that only joins.
func (s *Server) expect() int {
	if s.cfg.BootstrapExpect == 0 && len(s.cfg.Join) == 0 {
		return 1
	}
	return s.cfg.BootstrapExpect
}

// autopilot runs on every node and acts on the leader: it adds live gossip
// members missing from the Raft configuration as voters (or updates their
// address after a replacement), removes members that left gracefully, and
// removes members dead for longer than DeadServerThreshold as long as the
// voters stay at or above MinQuorum.
func (s *Server) autopilot(ctx context.Context) {
	tick := time.NewTicker(s.cfg.AutopilotInterval)
	defer tick.Stop()
	for {
		changed := s.members.Watch()
		if s.store.IsLeader() {
			s.reconcile()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (s *Server) reconcile() {
	servers, err := s.store.Configuration()
	if err != nil {
		return
	}
	cm, _ := s.store.State().Meta()
	members := s.members.Members()
	inRaft := map[string]store.Server{}
	voters := 0
	for _, srv := range servers {
		inRaft[srv.ID] = srv
		if srv.Voter {
			voters++
		}
	}
	for _, m := range members {
		if m.ID == s.cfg.NodeID || m.State != membership.Alive || m.Meta.RaftAddr == "" {
			continue
		}
		if m.Meta.ClusterID != "" && cm.ClusterID != "" && m.Meta.ClusterID != cm.ClusterID {
			continue // gossip refuses it too; never give it a vote
		}
		if srv, ok := inRaft[m.ID]; ok && srv.Address == m.Meta.RaftAddr {
			continue
		}
		if m.Meta.HasState && m.Meta.ClusterID == "" {
			// Raft state of a cluster it does not name (yet): it may be
			// another cluster's; replicating our log to it would destroy it.
			s.logger.Debug("autopilot: not adding a node with Raft state of an unknown cluster", "node", m.ID)
			continue
		}
		if m.Meta.Leaving || s.isLeaving(m) {
			continue // leaving gracefully: it asked to be removed
		}
		s.logger.Info("autopilot: adding a voter", "node", m.ID, "raft", m.Meta.RaftAddr)
		if err := s.store.AddVoter(m.ID, m.Meta.RaftAddr); err != nil {
			s.logger.Warn("autopilot: add voter", "node", m.ID, "err", err)
		}
	}
	byID := map[string]membership.Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	for _, srv := range servers {
		m, ok := byID[srv.ID]
		if !ok || srv.ID == s.cfg.NodeID {
			continue
		}
		remove := false
		switch {
		case m.State == membership.Left:
			remove = true
		case m.State == membership.Dead && time.Since(m.Since) > s.cfg.DeadServerThreshold:
			remove = !srv.Voter || voters-1 >= s.cfg.MinQuorum
		}
		if !remove {
			continue
		}
		s.logger.Info("autopilot: removing a server", "node", srv.ID, "gossip", m.State, "since", m.Since)
		if err := s.store.RemoveServer(srv.ID); err != nil {
			s.logger.Warn("autopilot: remove server", "node", srv.ID, "err", err)
			continue
		}
		if srv.Voter {
			voters--
		}
	}
}

// noteLeaving remembers that a node asked this leader to remove it.
func (s *Server) noteLeaving(id string) {
	s.leavingMu.Lock()
	defer s.leavingMu.Unlock()
	if s.leaving == nil {
		s.leaving = map[string]time.Time{}
	}
	s.leaving[id] = time.Now()
}

// isLeaving: m asked to be removed and has not left and come back since
// (its gossip state has not changed since the request).
func (s *Server) isLeaving(m membership.Member) bool {
	s.leavingMu.Lock()
	defer s.leavingMu.Unlock()
	at, ok := s.leaving[m.ID]
	if ok && (m.Since.After(at) || time.Since(at) > leavingMemory) {
		delete(s.leaving, m.ID) // it went and came back: a new member
		return false
	}
	return ok
}

// leavingMemory bounds how long a leader keeps a node that asked to leave
// out of Raft while gossip still shows it alive (its leave broadcast lost,
// or it restarted at once).
const leavingMemory = 30 * time.Second

// leave is the graceful part of a shutdown: hand leadership over, have the
// leader remove this node from Raft, then leave gossip.
func (s *Server) leave() {
	servers, err := s.store.Configuration()
	if err != nil || len(servers) <= 1 {
		return // alone (or not running): nothing to hand over
	}
	if s.store.IsLeader() {
		if err := s.store.TransferLeadership(); err != nil {
			s.logger.Warn("leadership transfer before leaving", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		leaderID, _ := s.store.Leader()
		if leaderID != "" && leaderID != s.cfg.NodeID {
			body, _ := json.Marshal(leaveRequest{ID: s.cfg.NodeID})
			var out struct{}
			if err := s.callPeer(ctx, http.MethodPost, leaderID, "/_internal/raft/leave", body, &out); err == nil {
				s.logger.Info("left the raft cluster", "leader", leaderID)
				break
			} else {
				s.logger.Warn("asking the leader to remove this node", "err", err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := s.members.Leave(2 * time.Second); err != nil {
		s.logger.Warn("gossip leave", "err", err)
	}
}

// status builds GET /global/status: gossip members and Raft servers merged,
// each reachable member asked for its own Raft view (in parallel, briefly).
func (s *Server) status(ctx context.Context) api.GlobalStatus {
	cm, _ := s.store.State().Meta()
	leader, _ := s.store.Leader()
	out := api.GlobalStatus{Node: s.cfg.NodeID, ClusterID: cm.ClusterID, Leader: leader}
	byID := map[string]*api.GlobalMember{}
	get := func(id string) *api.GlobalMember {
		if m := byID[id]; m != nil {
			return m
		}
		m := &api.GlobalMember{ID: id, GossipState: "unknown"}
		byID[id] = m
		return m
	}
	for _, m := range s.members.Members() {
		g := get(m.ID)
		g.GossipAddr, g.RaftAddr, g.APIAddr = m.GossipAddr, m.Meta.RaftAddr, m.Meta.APIAddr
		g.GossipState, g.GossipSince = string(m.State), m.Since
	}
	servers, _ := s.store.Configuration()
	for _, srv := range servers {
		g := get(srv.ID)
		g.InRaft, g.Voter = true, srv.Voter
		if g.RaftAddr == "" {
			g.RaftAddr = srv.Address
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for id, g := range byID {
		if id == s.cfg.NodeID {
			v := s.raftView()
			g.Raft = &v
			continue
		}
		if g.GossipState != string(membership.Alive) {
			continue
		}
		wg.Add(1)
		go func(id string, g *api.GlobalMember) {
			defer wg.Done()
			var v api.RaftView
			err := s.callPeer(ctx, http.MethodGet, id, "/_internal/status", nil, &v)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				g.Error = err.Error()
				return
			}
			g.Raft = &v
		}(id, g)
	}
	wg.Wait()
	for _, g := range byID {
		out.Members = append(out.Members, *g)
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].ID < out.Members[j].ID })
	return out
}
