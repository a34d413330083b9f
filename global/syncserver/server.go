// Package syncserver is global's end of the sync protocol (DESIGN.md §6):
// the gRPC service every global node serves on its sync port. Each zone
// replica opens one stream; the session authenticates it, then streams the
// changes of global's replicated state since the zone's revision (or a
// chunked Reset), records the zone's acknowledgements, and writes the zone's
// reports through Raft.
//
// One session is one goroutine with one select loop (plus a receive
// goroutine feeding it). Its only state is a cursor into the store: the
// store's change feed is read when it changes, so a slow zone never delays
// the FSM or another zone, and costs no queued copies.
package syncserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// Feed is global's state as the sync server reads it.
type Feed interface {
	batch.Feed
	// Watch returns a channel closed at the next change.
	Watch() <-chan struct{}
	// ClusterID is the global cluster's id ("" before bootstrap).
	ClusterID() string
}

// Authenticator checks a zone token (signature, expiry, cluster,
// revocation) and returns the zone it was issued for.
type Authenticator interface {
	Authenticate(token string) (zone string, err error)
}

// Reports writes a zone's inventory report through Raft and returns the
// resources it refused.
type Reports interface {
	Apply(ctx context.Context, zone string, r *syncpb.Report) ([]*syncpb.Rejection, error)
}

// Signer signs a zone's intermediate CA for a Mesh (DESIGN.md §9). It
// answers with the certificate or with the reason in the response's error;
// zone is the stream's authenticated zone.
type Signer interface {
	SignIntermediate(ctx context.Context, zone string, req *syncpb.CertificateRequest) *syncpb.CertificateResponse
}

// Insights receives what the sessions learn about zones.
type Insights interface {
	Connected(zone, replica, globalNode string, at time.Time)
	Acked(zone, replica string, revision uint64, rejected []*syncpb.Rejection)
	Disconnected(zone, replica string, at time.Time, reason error)
}

// Config configures the sync server.
type Config struct {
	// NodeID is this global node's id, told to zones in Welcome.
	NodeID        string
	Feed          Feed
	Authenticator Authenticator
	Reports       Reports
	Insights      Insights
	// Signer signs zones' intermediate CAs; nil refuses every request.
	Signer Signer
	// Filter returns what a zone receives: global-owned fan-out types, and
	// other zones' fan-out resources (ZoneIngress).
	Filter func(zone string) batch.Filter
	// Admit, when set, decides whether an authenticated zone may sync: it
	// is asked after the token check and again whenever the state changes,
	// so that a zone disabled while connected is dropped. Its error (a gRPC
	// status; anything else becomes PermissionDenied) ends the stream.
	Admit func(zone string) error
	// HeartbeatInterval is how often each side speaks when idle; a peer
	// silent for three intervals is dropped. Default 5s.
	HeartbeatInterval time.Duration
	// HelloTimeout bounds the wait for Hello. Default 10s.
	HelloTimeout time.Duration
	// MaxMessageBytes bounds the resources in one message. Default
	// batch.DefaultMaxBytes.
	MaxMessageBytes int
	// KeepaliveRevisions: when the zone's cursor trails the state by more
	// than this many revisions and nothing it receives changed, an empty
	// Changes moves it forward (so that a reconnect never needs a Reset
	// because of changes it does not even receive). Default 1000.
	KeepaliveRevisions uint64
	// Metrics receives the server's metrics (NewMetrics); nil: unregistered
	// ones.
	Metrics *Metrics
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("node id must not be empty"))
	}
	if c.Feed == nil || c.Authenticator == nil || c.Reports == nil || c.Insights == nil {
		errs = append(errs, errors.New("feed, authenticator, reports and insights must be set"))
	}
	if c.Filter == nil {
		c.Filter = DefaultFilter
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = batch.DefaultMaxBytes
	}
	if c.KeepaliveRevisions == 0 {
		c.KeepaliveRevisions = 1000
	}
	if c.Metrics == nil {
		c.Metrics, _ = NewMetrics(nil) // never fails unregistered
	}
	return errors.Join(errs...)
}

// DefaultFilter sends a zone every fan-out resource owned by global, and the
// fan-out resources other zones reported (their ZoneIngress); never the
// zone's own reports back, and never a Secret holding a CA's private key
// (labelled api.LabelCAKey): zones get their intermediates signed instead.
func DefaultFilter(zone string) batch.Filter {
	return func(key api.Key, r *api.Resource) bool {
		d, err := api.Lookup(key.Type)
		if err != nil || !d.FanOut {
			return false
		}
		if r != nil && r.Labels[api.LabelCAKey] == "true" {
			return false
		}
		if d.Owner == api.RoleGlobal {
			return true
		}
		if r == nil {
			// A deletion: we no longer know whose it was; sending the
			// deletion of our own resource is harmless (the zone never
			// stores its own reports from global).
			return true
		}
		return r.Labels[api.LabelZone] != zone
	}
}

// Server implements syncpb.SyncServiceServer.
type Server struct {
	syncpb.UnimplementedSyncServiceServer
	cfg    Config
	logger *slog.Logger

	// sessions are the live (welcomed) sessions on this node, by zone, for
	// the requests global sends zones (RequestConfig).
	mu       sync.Mutex
	sessions map[string]map[*session]struct{}
	nextCall atomic.Uint64
}

// New builds the server; register it on a grpc.Server with
// syncpb.RegisterSyncServiceServer.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sync server: %w", err)
	}
	return &Server{cfg: cfg, logger: logger, sessions: map[string]map[*session]struct{}{}}, nil
}

// Stream serves one zone replica's stream.
func (s *Server) Stream(stream syncpb.SyncService_StreamServer) error {
	ctx := stream.Context()
	recv := make(chan *syncpb.StreamRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case recv <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()

	metrics := s.cfg.Metrics
	hello, err := s.awaitHello(ctx, recv, recvErr)
	if err != nil {
		if ctx.Err() == nil {
			metrics.refusals.WithLabelValues(refusedHello).Inc()
		}
		return err
	}
	zone, err := s.cfg.Authenticator.Authenticate(hello.GetToken())
	refusal := refusedToken
	if err == nil && zone != hello.GetZone() {
		err = status.Errorf(codes.PermissionDenied, "the token is for zone %q, not %q", zone, hello.GetZone())
		refusal = refusedWrongZone
	}
	if err != nil {
		metrics.refusals.WithLabelValues(refusal).Inc()
		s.logger.Warn("refused a zone", "zone", hello.GetZone(), "replica", hello.GetReplicaId(), "err", err)
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Errorf(codes.Unauthenticated, "zone %q: %v", hello.GetZone(), err)
	}
	if err := s.admit(zone); err != nil {
		metrics.refusals.WithLabelValues(refusedNotAdmitted).Inc()
		s.logger.Warn("refused a zone", "zone", zone, "replica", hello.GetReplicaId(), "err", err)
		return err
	}
	zm := metrics.forZone(zone)
	zm.received(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Hello{Hello: hello}})
	metrics.opened.WithLabelValues(zone).Inc()
	zm.streams.Inc()
	defer zm.streams.Dec()
	sess := &session{s: s, stream: stream, zone: zone, replica: hello.GetReplicaId(), metrics: zm,
		builder: &batch.Builder{Feed: s.cfg.Feed, Filter: s.cfg.Filter(zone), MaxBytes: s.cfg.MaxMessageBytes},
		logger:  s.logger.With("zone", zone, "replica", hello.GetReplicaId())}
	s.cfg.Insights.Connected(zone, sess.replica, s.cfg.NodeID, time.Now())
	sess.startWriter(ctx)
	err = sess.run(ctx, hello, recv, recvErr)
	s.unregister(sess)
	sess.failCalls(err)
	sess.stopWriter()
	zm.closed(err)
	s.cfg.Insights.Disconnected(zone, sess.replica, time.Now(), err)
	sess.logger.Info("zone stream ended", "err", err)
	return err
}

// admit applies Config.Admit.
func (s *Server) admit(zone string) error {
	if s.cfg.Admit == nil {
		return nil
	}
	err := s.cfg.Admit(zone)
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.PermissionDenied, "zone %q: %v", zone, err)
}

func (s *Server) awaitHello(ctx context.Context, recv <-chan *syncpb.StreamRequest, recvErr <-chan error) (*syncpb.Hello, error) {
	timer := time.NewTimer(s.cfg.HelloTimeout)
	defer timer.Stop()
	select {
	case msg := <-recv:
		h := msg.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message must be Hello")
		}
		if h.GetZone() == "" {
			return nil, status.Error(codes.InvalidArgument, "hello.zone: must not be empty")
		}
		return h, nil
	case err := <-recvErr:
		return nil, err
	case <-timer.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no Hello within %s", s.cfg.HelloTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type session struct {
	s       *Server
	stream  syncpb.SyncService_StreamServer
	zone    string
	replica string
	builder *batch.Builder
	logger  *slog.Logger
	metrics *zoneMetrics
	cursor  uint64 // the revision the zone has been sent up to
	// connected is when the zone was welcomed (RequestConfig prefers the
	// newest session).
	connected time.Time

	// calls are the config requests sent on this stream and not answered,
	// by request id; ended is set (and calls failed) when the session ends.
	// Callers (RequestConfig) and the loop share them under callsMu.
	callsMu sync.Mutex
	calls   map[string]chan configResult
	ended   bool

	// The writer goroutine is the only caller of stream.Send: a zone that
	// stops reading blocks it, not the session's loop, which keeps
	// watching heartbeats and ends the stream (unblocking the writer).
	out        chan *syncpb.StreamResponse
	writeErr   chan error
	quit       chan struct{}
	writerDone chan struct{}
}

// writerQueue bounds the messages waiting for a zone that reads slowly;
// when it is full for SendTimeout the zone is dropped.
const writerQueue = 64

func (ss *session) startWriter(ctx context.Context) {
	ss.out = make(chan *syncpb.StreamResponse, writerQueue)
	ss.writeErr = make(chan error, 1)
	ss.quit = make(chan struct{})
	ss.writerDone = make(chan struct{})
	go func() {
		defer close(ss.writerDone)
		write := func(m *syncpb.StreamResponse) bool {
			if err := ss.stream.Send(m); err != nil {
				ss.writeErr <- fmt.Errorf("send to zone: %w", err)
				return false
			}
			ss.metrics.sent(m)
			return true
		}
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-ss.out:
				if !write(m) {
					return
				}
			case <-ss.quit:
				// Flush what the session queued before it ended (a report
				// acknowledgement before the error that ends the stream).
				for {
					select {
					case m := <-ss.out:
						if !write(m) {
							return
						}
					default:
						return
					}
				}
			}
		}
	}()
}

// stopWriter lets the writer flush what is queued and waits for it, up to
// one heartbeat interval (at most a second): a writer blocked in Send by a
// zone that does not read is left to the stream's end, which unblocks it.
func (ss *session) stopWriter() {
	close(ss.quit)
	select {
	case <-ss.writerDone:
	case <-time.After(min(ss.s.cfg.HeartbeatInterval, time.Second)):
	}
}

func (ss *session) run(ctx context.Context, hello *syncpb.Hello, recv <-chan *syncpb.StreamRequest, recvErr <-chan error) error {
	cfg := ss.s.cfg
	clusterID := cfg.Feed.ClusterID()
	changed := cfg.Feed.Watch()
	reset := hello.GetClusterId() != clusterID && (hello.GetLastRevision() > 0 || hello.GetClusterId() != "")
	var first []*syncpb.Changes
	if !reset {
		msgs, rev, err := ss.builder.Since(hello.GetLastRevision())
		switch {
		case errors.Is(err, batch.ErrTooOld):
			reset = true
		case err != nil:
			return status.Errorf(codes.Internal, "changes since %d: %v", hello.GetLastRevision(), err)
		default:
			// A zone may be ahead of this node: it was served by a node
			// further along the same Raft log (and this one has not applied
			// those entries yet). The cursor starts at the zone's revision
			// so that the zone is never sent a revision lower than its own
			// (its replica refuses to go back).
			first, ss.cursor = msgs, max(rev, hello.GetLastRevision())
		}
	}
	welcome := &syncpb.Welcome{GlobalNode: cfg.NodeID, ClusterId: clusterID, Reset_: reset,
		HeartbeatIntervalMs: uint32(cfg.HeartbeatInterval / time.Millisecond)}
	if err := ss.send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	ss.logger.Info("zone connected", "from_revision", hello.GetLastRevision(), "reset", reset)
	// Requests to the zone may follow the Welcome on the writer's queue.
	ss.connected = time.Now()
	ss.s.register(ss)
	if !reset && hello.GetLastRevision() > 0 {
		// The zone holds this cluster's state up to its Hello's revision:
		// that is an acknowledgement (a zone resuming with nothing new to
		// receive sends no Ack of its own).
		cfg.Insights.Acked(ss.zone, ss.replica, hello.GetLastRevision(), nil)
	}
	if reset {
		if err := ss.sendReset(); err != nil {
			return err
		}
	} else if err := ss.sendChanges(first); err != nil {
		return err
	}

	heartbeat := time.NewTicker(cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	lastHeard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case err := <-ss.writeErr:
			return err
		case <-changed:
			changed = cfg.Feed.Watch()
			if err := ss.s.admit(ss.zone); err != nil {
				ss.logger.Warn("dropping a zone no longer admitted", "err", err)
				return err
			}
			if err := ss.catchUp(); err != nil {
				return err
			}
		case msg := <-recv:
			lastHeard = time.Now()
			ss.metrics.received(msg)
			if err := ss.handle(ctx, msg); err != nil {
				return err
			}
		case <-heartbeat.C:
			if silent := time.Since(lastHeard); silent > 3*cfg.HeartbeatInterval {
				return status.Errorf(codes.DeadlineExceeded, "zone silent for %s", silent.Round(time.Second))
			}
			hb := &syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Heartbeat{Heartbeat: &syncpb.Heartbeat{UnixNano: time.Now().UnixNano()}}}
			if err := ss.send(hb); err != nil {
				return err
			}
		}
	}
}

// catchUp sends what changed since the cursor (a Reset if the feed no
// longer reaches back that far).
func (ss *session) catchUp() error {
	msgs, rev, err := ss.builder.Since(ss.cursor)
	if errors.Is(err, batch.ErrTooOld) {
		return ss.sendReset()
	}
	if err != nil {
		return status.Errorf(codes.Internal, "changes since %d: %v", ss.cursor, err)
	}
	if rev <= ss.cursor {
		return nil // this node has not caught up with the zone yet
	}
	if len(msgs) == 0 && rev-ss.cursor > ss.s.cfg.KeepaliveRevisions {
		msgs = []*syncpb.Changes{{Revision: rev}}
	}
	if len(msgs) == 0 {
		return nil // nothing this zone receives; keep the cursor (cheap to re-read)
	}
	ss.cursor = rev
	return ss.sendChanges(msgs)
}

func (ss *session) sendChanges(msgs []*syncpb.Changes) error {
	for _, m := range msgs {
		if err := ss.send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Changes{Changes: m}}); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) sendReset() error {
	chunks, rev, err := ss.builder.Reset()
	if err != nil {
		return status.Errorf(codes.Internal, "reset: %v", err)
	}
	ss.logger.Info("sending a reset", "revision", rev, "chunks", len(chunks))
	ss.metrics.m.resets.WithLabelValues(ss.zone).Inc()
	for _, c := range chunks {
		if err := ss.send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Reset_{Reset_: c}}); err != nil {
			return err
		}
	}
	ss.cursor = rev
	return nil
}

func (ss *session) handle(ctx context.Context, msg *syncpb.StreamRequest) error {
	switch m := msg.GetMsg().(type) {
	case *syncpb.StreamRequest_Ack:
		if rev := m.Ack.GetRevision(); rev > ss.cursor {
			return status.Errorf(codes.InvalidArgument, "ack of revision %d, which was never sent (sent up to %d)", rev, ss.cursor)
		}
		ss.metrics.m.acks.WithLabelValues(ss.zone).Inc()
		ss.metrics.m.rejections.WithLabelValues(ss.zone).Add(float64(len(m.Ack.GetRejected())))
		ss.s.cfg.Insights.Acked(ss.zone, ss.replica, m.Ack.GetRevision(), m.Ack.GetRejected())
	case *syncpb.StreamRequest_Report:
		rejected, err := ss.s.cfg.Reports.Apply(ctx, ss.zone, m.Report)
		if err != nil {
			// Not committed: the zone sends it again after reconnecting.
			return status.Errorf(codes.Unavailable, "report %d not stored: %v", m.Report.GetSequence(), err)
		}
		ss.metrics.m.reports.WithLabelValues(ss.zone).Inc()
		ss.metrics.m.reportRejs.WithLabelValues(ss.zone).Add(float64(len(rejected)))
		ack := &syncpb.ReportAck{Sequence: m.Report.GetSequence(), Rejected: rejected}
		return ss.send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_ReportAck{ReportAck: ack}})
	case *syncpb.StreamRequest_CertificateRequest:
		req := m.CertificateRequest
		resp := &syncpb.CertificateResponse{RequestId: req.GetRequestId(), Mesh: req.GetMesh(), Backend: req.GetBackend(),
			Error: "this global node does not sign zone certificates"}
		if ss.s.cfg.Signer != nil {
			resp = ss.s.cfg.Signer.SignIntermediate(ctx, ss.zone, req)
			resp.RequestId, resp.Mesh, resp.Backend = req.GetRequestId(), req.GetMesh(), req.GetBackend()
		}
		result := "signed"
		if resp.GetError() != "" {
			result = "refused"
		}
		ss.metrics.m.certRequests.WithLabelValues(ss.zone, result).Inc()
		if resp.GetError() != "" {
			ss.logger.Warn("refused to sign a zone's intermediate CA", "mesh", req.GetMesh(), "backend", req.GetBackend(), "err", resp.GetError())
		} else {
			ss.logger.Info("signed a zone's intermediate CA", "mesh", req.GetMesh(), "backend", req.GetBackend())
		}
		return ss.send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_CertificateResponse{CertificateResponse: resp}})
	case *syncpb.StreamRequest_ConfigResponse:
		ss.answered(m.ConfigResponse)
	case *syncpb.StreamRequest_Heartbeat:
	case *syncpb.StreamRequest_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice")
	default:
		return status.Error(codes.InvalidArgument, "empty or unknown message")
	}
	return nil
}

// send queues a message for the writer. A zone that has not taken a message
// for three heartbeat intervals while the queue is full is dropped.
func (ss *session) send(m *syncpb.StreamResponse) error {
	select {
	case ss.out <- m:
		return nil
	case err := <-ss.writeErr:
		return err
	default:
	}
	timer := time.NewTimer(3 * ss.s.cfg.HeartbeatInterval)
	defer timer.Stop()
	select {
	case ss.out <- m:
		return nil
	case err := <-ss.writeErr:
		return err
	case <-timer.C:
		return status.Errorf(codes.DeadlineExceeded, "zone has not read for %s (%d messages waiting)", 3*ss.s.cfg.HeartbeatInterval, writerQueue)
	}
}
