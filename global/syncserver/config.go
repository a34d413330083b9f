package syncserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/meshfed/meshfed/sync/syncpb"
)

// Requests global sends a zone (the reverse of the zone's certificate
// requests): global never dials zones, so a question for a zone travels on
// the zone's stream, as a ConfigRequest the session's writer queues, and the
// zone's ConfigResponse is matched to it by request id. Only the node that
// serves a zone's stream can ask it; other nodes forward to that node.

// ErrNoSession: this global node serves no live stream of the zone (or of
// the replica asked for). Another node may: the caller forwards there.
var ErrNoSession = errors.New("no sync stream of the zone on this global node")

// ErrSessionEnded: the zone's stream ended before the zone answered; the
// zone may reconnect (to any node): ask again.
var ErrSessionEnded = errors.New("the zone's sync stream ended before it answered")

// ZoneError is a zone's refusal to answer (no such Dataplane, its proxy is
// not connected to the replica, the zone does not serve config dumps), with
// the zone's message.
type ZoneError struct {
	Zone, Replica string
	Message       string
}

func (e *ZoneError) Error() string {
	return fmt.Sprintf("zone %s (replica %s): %s", e.Zone, e.Replica, e.Message)
}

type configResult struct {
	json []byte
	err  error
}

// RequestConfig asks a live stream of zone on this node for the config dump
// of Dataplane name (the zone's own name for it) in mesh, and returns the
// zone's JSON. Errors: ErrNoSession (wrapped) when this node serves no
// stream of the zone; *ZoneError when the zone refused; ErrSessionEnded
// (wrapped) or ctx's error when no answer came.
func (s *Server) RequestConfig(ctx context.Context, zone, mesh, name string) ([]byte, error) {
	return s.RequestConfigFrom(ctx, zone, "", mesh, name)
}

// RequestConfigFrom is RequestConfig asking one replica of the zone (the
// one serving the Dataplane's proxy); replica "" means any, the newest
// stream.
func (s *Server) RequestConfigFrom(ctx context.Context, zone, replica, mesh, name string) ([]byte, error) {
	ss := s.pick(zone, replica)
	if ss == nil {
		if replica != "" {
			return nil, fmt.Errorf("zone %q replica %q: %w", zone, replica, ErrNoSession)
		}
		return nil, fmt.Errorf("zone %q: %w", zone, ErrNoSession)
	}
	id := s.cfg.NodeID + "-" + strconv.FormatUint(s.nextCall.Add(1), 10)
	done, err := ss.addCall(id)
	if err != nil {
		return nil, err
	}
	req := &syncpb.StreamResponse{Msg: &syncpb.StreamResponse_ConfigRequest{ConfigRequest: &syncpb.ConfigRequest{
		RequestId: id, Mesh: mesh, Name: name}}}
	// Straight onto the writer's queue (a channel, safe from any
	// goroutine); the session's send is its loop's alone.
	select {
	case ss.out <- req:
	case <-ss.quit:
		ss.dropCall(id)
		return nil, fmt.Errorf("zone %q replica %q: %w", zone, ss.replica, ErrSessionEnded)
	case <-ctx.Done():
		ss.dropCall(id)
		return nil, fmt.Errorf("zone %q replica %q: queueing the request: %w", zone, ss.replica, ctx.Err())
	}
	select {
	case r := <-done:
		return r.json, r.err
	case <-ctx.Done():
		ss.dropCall(id)
		return nil, fmt.Errorf("zone %q replica %q did not answer: %w", zone, ss.replica, ctx.Err())
	}
}

// pick returns the zone's live session of replica (any replica's, the
// newest, for ""), or nil.
func (s *Server) pick(zone, replica string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *session
	for ss := range s.sessions[zone] {
		if replica != "" && ss.replica != replica {
			continue
		}
		if best == nil || ss.connected.After(best.connected) {
			best = ss
		}
	}
	return best
}

func (s *Server) register(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[ss.zone]
	if set == nil {
		set = map[*session]struct{}{}
		s.sessions[ss.zone] = set
	}
	set[ss] = struct{}{}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions[ss.zone], ss)
	if len(s.sessions[ss.zone]) == 0 {
		delete(s.sessions, ss.zone)
	}
}

// addCall records a pending request; it fails once the session has ended.
func (ss *session) addCall(id string) (<-chan configResult, error) {
	ss.callsMu.Lock()
	defer ss.callsMu.Unlock()
	if ss.ended {
		return nil, fmt.Errorf("zone %q replica %q: %w", ss.zone, ss.replica, ErrSessionEnded)
	}
	if ss.calls == nil {
		ss.calls = map[string]chan configResult{}
	}
	done := make(chan configResult, 1) // buffered: nobody waits to deliver
	ss.calls[id] = done
	return done, nil
}

func (ss *session) dropCall(id string) {
	ss.callsMu.Lock()
	defer ss.callsMu.Unlock()
	delete(ss.calls, id)
}

// answered delivers the zone's answer to its caller. An answer nobody
// waits for any more (the caller gave up) is dropped.
func (ss *session) answered(resp *syncpb.ConfigResponse) {
	ss.callsMu.Lock()
	done, ok := ss.calls[resp.GetRequestId()]
	delete(ss.calls, resp.GetRequestId())
	ss.callsMu.Unlock()
	if !ok {
		ss.logger.Debug("dropping the answer to a config request nobody waits for", "request_id", resp.GetRequestId())
		return
	}
	if msg := resp.GetError(); msg != "" {
		done <- configResult{err: &ZoneError{Zone: ss.zone, Replica: ss.replica, Message: msg}}
		return
	}
	done <- configResult{json: resp.GetJson()}
}

// failCalls ends the session for callers: pending requests fail, new ones
// are refused.
func (ss *session) failCalls(cause error) {
	ss.callsMu.Lock()
	defer ss.callsMu.Unlock()
	ss.ended = true
	for id, done := range ss.calls {
		done <- configResult{err: fmt.Errorf("zone %q replica %q: %w (%v)", ss.zone, ss.replica, ErrSessionEnded, cause)}
		delete(ss.calls, id)
	}
}
