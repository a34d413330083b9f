package server

import (
	"context"
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	delta "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// stream is the server's view of one ADS stream. go-control-plane calls a
// stream's request, response and close callbacks from that stream's own
// goroutine, so its fields need no lock; only the maps finding it do.
type stream struct {
	id       int64
	ctx      context.Context
	delta    bool
	node     Node // set once accepted
	accepted bool
	sent     map[string]sent // by type_url
}

// callbacks hooks go-control-plane's stream life cycle.
type callbacks struct{ s *Server }

var (
	_ sotw.Callbacks  = callbacks{}
	_ delta.Callbacks = callbacks{}
)

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.open(c.s.sotw, ctx, id, false)
	return nil
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.open(c.s.delta, ctx, id, true)
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node)      { c.s.closed(c.s.sotw, id) }
func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) { c.s.closed(c.s.delta, id) }

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	st := c.s.find(c.s.sotw, id)
	if err := c.s.admit(st, req.GetNode()); err != nil {
		return err
	}
	typeURL := req.GetTypeUrl()
	last, ok := st.sent[typeURL]
	switch classify(last, ok, req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail(), false) {
	case answerACK:
		c.s.metrics.acks.WithLabelValues(typeURL).Inc()
		c.s.observe(st, func(o Observer) { o.Acked(st.node, typeURL) })
	case answerNACK:
		c.s.onNACK(st, typeURL, last, req.GetErrorDetail())
		c.s.observe(st, func(o Observer) { o.Nacked(st.node, typeURL, req.GetErrorDetail().GetMessage()) })
		// Park: go-control-plane answers a request whose version differs
		// from the snapshot's at once, and a NACK carries the last version
		// the proxy accepted. Claiming the rejected version instead makes
		// the watch wait for the node's next change of this type.
		req.VersionInfo = last.version
	}
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.responded(c.s.sotw, id, resp.GetTypeUrl(), sent{nonce: resp.GetNonce(), version: resp.GetVersionInfo()})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	st := c.s.find(c.s.delta, id)
	if err := c.s.admit(st, req.GetNode()); err != nil {
		return err
	}
	typeURL := req.GetTypeUrl()
	last, ok := st.sent[typeURL]
	switch classify(last, ok, req.GetResponseNonce(), "", req.GetErrorDetail(), true) {
	case answerACK:
		c.s.metrics.acks.WithLabelValues(typeURL).Inc()
		c.s.observe(st, func(o Observer) { o.Acked(st.node, typeURL) })
	case answerNACK:
		c.s.observe(st, func(o Observer) { o.Nacked(st.node, typeURL, req.GetErrorDetail().GetMessage()) })
		// No parking needed: the delta subscription already records the
		// rejected versions as the proxy's, so nothing is re-sent.
		c.s.onNACK(st, typeURL, last, req.GetErrorDetail())
	}
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.responded(c.s.delta, id, resp.GetTypeUrl(), sent{nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo()})
}

func (s *Server) open(m map[int64]*stream, ctx context.Context, gcpID int64, delta bool) {
	st := &stream{id: s.streamIDs.Add(1), ctx: ctx, delta: delta, sent: make(map[string]sent)}
	s.streamsMu.Lock()
	m[gcpID] = st
	s.streamsMu.Unlock()
}

func (s *Server) find(m map[int64]*stream, gcpID int64) *stream {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return m[gcpID]
}

func (s *Server) closed(m map[int64]*stream, gcpID int64) {
	s.streamsMu.Lock()
	st := m[gcpID]
	delete(m, gcpID)
	s.streamsMu.Unlock()
	if st == nil || !st.accepted {
		return
	}
	s.metrics.streams.WithLabelValues(st.node.Kind).Dec()
	s.cfg.Registrar.Disconnect(st.node)
	s.logger.Debug("xds stream closed", "dataplane", st.node.ID, "stream", st.id, "user_agent", st.node.UserAgent)
}

func (s *Server) responded(m map[int64]*stream, gcpID int64, typeURL string, r sent) {
	s.metrics.responses.WithLabelValues(typeURL).Inc()
	if st := s.find(m, gcpID); st != nil {
		st.sent[typeURL] = r
		s.observe(st, func(o Observer) { o.Responded(st.node, typeURL) })
	}
}

// observe tells the Observer (the Registrar, when it is one) about an
// accepted stream.
func (s *Server) observe(st *stream, f func(Observer)) {
	if o, ok := s.cfg.Registrar.(Observer); ok && st != nil && st.accepted {
		f(o)
	}
}

// admit registers the stream's node on its first request; its error (a
// gRPC status) ends the stream. Later requests must not change the node id.
func (s *Server) admit(st *stream, n *core.Node) error {
	if st == nil {
		return statusFor(fmt.Errorf("%w: stream not open", ErrUnavailable))
	}
	if st.accepted {
		if n != nil && n.GetId() != st.node.ID {
			err := fmt.Errorf("%w: node.id: changed from %q to %q on one stream", ErrInvalidNode, st.node.ID, n.GetId())
			s.logger.Warn("xds stream refused", "dataplane", st.node.ID, "stream", st.id, "error", err)
			return statusFor(err)
		}
		return nil
	}
	node, err := newNode(n, st.id, st.delta)
	if err == nil {
		if err = s.cfg.Registrar.Connect(st.ctx, node); err != nil {
			err = fmt.Errorf("dataplane %s refused: %w", node.ID, err)
		}
	}
	if err != nil {
		s.logger.Warn("xds stream refused", "dataplane", n.GetId(), "stream", st.id,
			"user_agent", node.UserAgent, "error", err)
		return statusFor(err)
	}
	// The metadata (a Dataplane, a few KB) served its purpose: drop it from
	// what the stream keeps, here and in go-control-plane's copy of the
	// node (the same message), so that 10,000 streams do not hold 10,000
	// Dataplanes. Disconnect gets the node without it.
	node.Metadata = nil
	n.Metadata = nil
	st.node, st.accepted = node, true
	s.metrics.streams.WithLabelValues(node.Kind).Inc()
	s.logger.Debug("xds stream accepted", "dataplane", node.ID, "stream", st.id, "user_agent", node.UserAgent, "delta", st.delta)
	return nil
}
