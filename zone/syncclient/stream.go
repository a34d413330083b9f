package syncclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/sync/syncpb"
)

// errProtocol marks global breaking the protocol (the stream is dropped).
var errProtocol = errors.New("protocol violation by global")

// stream is one connection attempt: one gRPC stream to one global node.
// Its fields belong to the select loop's goroutine.
type stream struct {
	c        *Client
	addr     string
	interval time.Duration // heartbeat interval: the client's, then global's

	welcome    *syncpb.Welcome
	welcomedAt time.Time
	node       string

	out   chan *syncpb.StreamRequest // the writer's queue
	parts []*syncpb.Changes          // a chunked Changes being received
	reset []*syncpb.Reset            // Reset chunks being received

	// certCalls are the certificate requests sent on this stream and not
	// answered, by request id.
	certCalls map[string]*certCall
	nextCall  uint64

	// Global's config requests being answered: each runs in a goroutine
	// (counted in wg, bounded by sctx) that hands its answer to the loop on
	// configAnswers; configDumps counts them.
	sctx          context.Context
	wg            *sync.WaitGroup
	configAnswers chan *syncpb.ConfigResponse
	configDumps   int

	reportsWatch <-chan struct{}
	inFlight     map[uint64]bool // reports sent on this stream, not acknowledged
	sentAny      bool            // a report was sent on this stream,
	sentUpTo     uint64          // the last one's sequence
}

// run dials, says Hello and serves the stream until it ends; the error says
// why. Only a cancelled ctx ends it without global or the network failing.
func (st *stream) run(ctx context.Context) error {
	cfg := &st.c.cfg
	token := cfg.Token
	if cfg.TokenFunc != nil {
		t, err := cfg.TokenFunc()
		if err != nil {
			return fmt.Errorf("%w: %w", errToken, err)
		}
		token = t
	}
	st.c.counters.attempts.Add(1)
	cc, err := grpc.NewClient(st.addr, cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", st.addr, err)
	}
	defer cc.Close()

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Until the Welcome, the wait is bounded as a silent peer's would be
	// (opening the stream blocks while the connection is being made).
	noWelcome := time.AfterFunc(silentIntervals*st.interval, func() {
		cancel(status.Errorf(codes.DeadlineExceeded, "no Welcome from %s within %s", st.addr, silentIntervals*st.interval))
	})
	defer noWelcome.Stop()

	s, err := syncpb.NewSyncServiceClient(cc).Stream(sctx)
	if err != nil {
		return cause(sctx, err)
	}

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, so run first)
	defer cancel(nil)
	st.sctx, st.wg, st.configAnswers = sctx, &wg, make(chan *syncpb.ConfigResponse)

	// The receive goroutine: everything global sends, to the loop.
	recv := make(chan *syncpb.StreamResponse)
	recvErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := s.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case recv <- m:
			case <-sctx.Done():
				return
			}
		}
	}()

	// The writer: the only goroutine that sends.
	st.out = make(chan *syncpb.StreamRequest, outboxSize)
	writeErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case m := <-st.out:
				if err := s.Send(m); err != nil {
					if !errors.Is(err, io.EOF) {
						writeErr <- err
					}
					// io.EOF: global ended the stream; Recv returns why.
					return
				}
				st.c.counters.msgsSent.Add(1)
				st.c.counters.bytesSent.Add(uint64(proto.Size(m)))
			case <-sctx.Done():
				return
			}
		}
	}()

	hello := &syncpb.Hello{Zone: cfg.Zone, ReplicaId: cfg.ReplicaID, Token: token,
		ClusterId: cfg.Replica.ClusterID(), LastRevision: cfg.Replica.Revision(), Capabilities: cfg.Capabilities}
	if err := st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Hello{Hello: hello}}); err != nil {
		return err
	}

	ticker := time.NewTicker(st.interval)
	defer ticker.Stop()
	st.certCalls = map[string]*certCall{}
	defer func() {
		for _, call := range st.certCalls {
			call.done <- certResult{err: fmt.Errorf("the stream to %s ended before global answered", st.addr)}
		}
	}()
	lastHeard := time.Now()
	for {
		// Certificate requests wait for the Welcome (nil channel until then).
		var calls chan *certCall
		if st.welcome != nil {
			calls = st.c.certCalls
		}
		select {
		case call := <-calls:
			st.nextCall++
			id := fmt.Sprintf("%s-%d", st.c.cfg.ReplicaID, st.nextCall)
			req := proto.Clone(call.req).(*syncpb.CertificateRequest)
			req.RequestId = id
			st.certCalls[id] = call
			if err := st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_CertificateRequest{CertificateRequest: req}}); err != nil {
				return err
			}
		case resp := <-st.configAnswers:
			st.configDumps--
			if err := st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_ConfigResponse{ConfigResponse: resp}}); err != nil {
				return err
			}
		case <-sctx.Done():
			return context.Cause(sctx)
		case err := <-recvErr:
			return cause(sctx, err)
		case err := <-writeErr:
			return cause(sctx, fmt.Errorf("send to global: %w", err))
		case m := <-recv:
			lastHeard = time.Now()
			st.c.counters.msgsRecv.Add(1)
			st.c.counters.bytesRecv.Add(uint64(proto.Size(m)))
			wasWelcomed := st.welcome != nil
			if err := st.handle(m); err != nil {
				return err
			}
			if !wasWelcomed && st.welcome != nil {
				noWelcome.Stop()
				ticker.Reset(st.interval)
			}
		case <-ticker.C:
			if silent := time.Since(lastHeard); silent > silentIntervals*st.interval {
				return status.Errorf(codes.DeadlineExceeded, "global silent for %s", silent.Round(time.Millisecond))
			}
			hb := &syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Heartbeat{Heartbeat: &syncpb.Heartbeat{UnixNano: time.Now().UnixNano()}}}
			if err := st.send(hb); err != nil {
				return err
			}
		case <-st.reportsWatch:
			st.reportsWatch = cfg.Reports.Watch()
			if err := st.sendReports(); err != nil {
				return err
			}
		}
	}
}

// cause prefers the reason the stream's context was cancelled for (no
// Welcome in time) over the gRPC error it caused.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// send queues m for the writer.
func (st *stream) send(m *syncpb.StreamRequest) error {
	select {
	case st.out <- m:
		return nil
	default:
		return status.Errorf(codes.Unavailable, "global is not reading: %d messages queued", outboxSize)
	}
}

func (st *stream) handle(m *syncpb.StreamResponse) error {
	if w := m.GetWelcome(); w != nil {
		return st.handleWelcome(w)
	}
	if st.welcome == nil {
		return fmt.Errorf("%w: %T before Welcome", errProtocol, m.GetMsg())
	}
	switch msg := m.GetMsg().(type) {
	case *syncpb.StreamResponse_Changes:
		if len(st.reset) > 0 {
			return fmt.Errorf("%w: Changes in the middle of a Reset", errProtocol)
		}
		st.parts = append(st.parts, msg.Changes)
		if msg.Changes.GetMore() {
			return nil
		}
		parts := st.parts
		st.parts = nil
		return st.applyChanges(parts)
	case *syncpb.StreamResponse_Reset_:
		if len(st.parts) > 0 {
			// A Reset replaces everything: the partial batch is moot.
			st.c.logger.Warn("reset in the middle of a chunked Changes; dropping the partial batch", "parts", len(st.parts))
			st.parts = nil
		}
		if len(st.reset) > 0 && msg.Reset_.GetRevision() != st.reset[0].GetRevision() {
			return fmt.Errorf("%w: Reset chunks at revisions %d and %d", errProtocol, st.reset[0].GetRevision(), msg.Reset_.GetRevision())
		}
		st.reset = append(st.reset, msg.Reset_)
		if !msg.Reset_.GetLast() {
			return nil
		}
		chunks := st.reset
		st.reset = nil
		return st.applyReset(chunks)
	case *syncpb.StreamResponse_ReportAck:
		seq := msg.ReportAck.GetSequence()
		delete(st.inFlight, seq)
		if st.c.cfg.Reports != nil {
			st.c.cfg.Reports.Acked(seq, msg.ReportAck.GetRejected())
		}
		for _, r := range msg.ReportAck.GetRejected() {
			st.c.logger.Warn("global refused a reported resource", "sequence", seq, "type", r.GetType(),
				"mesh", r.GetMesh(), "name", r.GetName(), "reason", r.GetReason())
		}
		return st.sendReports()
	case *syncpb.StreamResponse_CertificateResponse:
		resp := msg.CertificateResponse
		call, ok := st.certCalls[resp.GetRequestId()]
		if !ok {
			return fmt.Errorf("%w: an answer to certificate request %q, which is not pending", errProtocol, resp.GetRequestId())
		}
		delete(st.certCalls, resp.GetRequestId())
		call.done <- certResult{resp: resp}
		return nil
	case *syncpb.StreamResponse_ConfigRequest:
		return st.serveConfig(msg.ConfigRequest)
	case *syncpb.StreamResponse_Heartbeat:
		return nil
	default:
		// A message of a newer protocol: not for us.
		st.c.logger.Debug("ignoring an unknown message from global", "msg", fmt.Sprintf("%T", m.GetMsg()))
		return nil
	}
}

func (st *stream) handleWelcome(w *syncpb.Welcome) error {
	if st.welcome != nil {
		return fmt.Errorf("%w: a second Welcome", errProtocol)
	}
	st.welcome, st.welcomedAt, st.node = w, time.Now(), w.GetGlobalNode()
	st.c.counters.welcomed.Add(1)
	if ms := w.GetHeartbeatIntervalMs(); ms > 0 {
		st.interval = time.Duration(ms) * time.Millisecond
	}
	rev := st.c.cfg.Replica.Revision()
	st.c.update(func(s *Status) {
		s.Connected, s.GlobalNode, s.GlobalAddr, s.ConnectedSince = true, st.node, st.addr, st.welcomedAt
		s.Refused, s.Failures = false, 0
	})
	st.c.logger.Info("connected to global", "global", st.node, "addr", st.addr, "revision", rev,
		"cluster_id", w.GetClusterId(), "reset", w.GetReset_())
	if st.c.cfg.Reports != nil {
		st.inFlight = map[uint64]bool{}
		st.reportsWatch = st.c.cfg.Reports.Watch()
		return st.sendReports()
	}
	return nil
}

func (st *stream) applyChanges(parts []*syncpb.Changes) error {
	rep := st.c.cfg.Replica
	rev := parts[len(parts)-1].GetRevision()
	current := rep.Revision()
	if rev < current {
		st.c.logger.Warn("ignoring changes older than the replica (global node behind the zone)",
			"revision", rev, "replica_revision", current)
		return nil
	}
	var upserts []*syncpb.Resource
	var deletes []*syncpb.Deletion
	for _, p := range parts {
		upserts = append(upserts, p.GetUpserts()...)
		deletes = append(deletes, p.GetDeletes()...)
	}
	var rejected []*syncpb.Rejection
	var err error
	if cluster := st.welcome.GetClusterId(); current == 0 && rep.ClusterID() == "" && cluster != "" {
		// The first state of an empty replica: install it with its cluster
		// id (Changes from revision 0 hold every resource; nothing to delete).
		rejected, err = rep.Reset(upserts, rev, cluster)
	} else {
		rejected, err = rep.ApplyChanges(upserts, deletes, rev)
	}
	if err != nil {
		return fmt.Errorf("apply changes at revision %d: %w", rev, err)
	}
	st.c.counters.changes.Add(1)
	st.c.counters.rejections.Add(uint64(len(rejected)))
	st.c.logger.Debug("applied changes", "revision", rev, "upserts", len(upserts), "deletes", len(deletes),
		"parts", len(parts), "rejected", len(rejected))
	return st.ack(rev, rejected)
}

func (st *stream) applyReset(chunks []*syncpb.Reset) error {
	rev := chunks[0].GetRevision()
	var resources []*syncpb.Resource
	for _, c := range chunks {
		resources = append(resources, c.GetResources()...)
	}
	rejected, err := st.c.cfg.Replica.Reset(resources, rev, st.welcome.GetClusterId())
	if err != nil {
		return fmt.Errorf("reset at revision %d: %w", rev, err)
	}
	st.c.counters.resets.Add(1)
	st.c.counters.rejections.Add(uint64(len(rejected)))
	st.c.logger.Info("replica reset by global", "revision", rev, "resources", len(resources),
		"chunks", len(chunks), "rejected", len(rejected))
	return st.ack(rev, rejected)
}

func (st *stream) ack(rev uint64, rejected []*syncpb.Rejection) error {
	return st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Ack{Ack: &syncpb.Ack{Revision: rev, Rejected: rejected}}})
}

// sendReports sends pending reports not yet sent on this stream, in
// sequence order, while fewer than maxInFlightReports are unacknowledged.
func (st *stream) sendReports() error {
	reports := st.c.cfg.Reports
	if reports == nil || st.welcome == nil {
		return nil
	}
	room := maxInFlightReports - len(st.inFlight)
	if room <= 0 {
		return nil
	}
	var after uint64
	if st.sentAny {
		after = st.sentUpTo // sent on this stream already (perhaps acked since)
	}
	for _, r := range reports.PendingAfter(after, room) {
		seq := r.GetSequence()
		if err := st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Report{Report: r}}); err != nil {
			return err
		}
		st.inFlight[seq] = true
		st.sentAny, st.sentUpTo = true, seq
	}
	return nil
}

// serveConfig answers global's ConfigRequest with Config.ConfigDumper's
// dump, in a goroutine: the dump is the zone's own work and must not stall
// the stream. The goroutine hands the answer to the loop (which alone
// sends); it answers by the timeout even if the dumper has not returned.
func (st *stream) serveConfig(req *syncpb.ConfigRequest) error {
	id, mesh, name := req.GetRequestId(), req.GetMesh(), req.GetName()
	dumper := st.c.cfg.ConfigDumper
	if dumper == nil || st.configDumps >= maxConfigDumps {
		resp := &syncpb.ConfigResponse{RequestId: id, Error: "this zone does not serve config dumps"}
		if dumper != nil {
			resp.Error = fmt.Sprintf("zone %s replica %s is busy with %d config dumps; ask again", st.c.cfg.Zone, st.c.cfg.ReplicaID, st.configDumps)
		}
		return st.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_ConfigResponse{ConfigResponse: resp}})
	}
	st.configDumps++
	sctx, answers, timeout := st.sctx, st.configAnswers, st.c.cfg.ConfigDumpTimeout
	logger := st.c.logger
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		ctx, cancel := context.WithTimeout(sctx, timeout)
		defer cancel()
		type result struct {
			json []byte
			err  error
		}
		// The dumper runs in its own goroutine so that a dumper ignoring
		// ctx delays neither the answer nor the stream's end.
		done := make(chan result, 1)
		go func() {
			b, err := dumper(ctx, mesh, name)
			done <- result{b, err}
		}()
		resp := &syncpb.ConfigResponse{RequestId: id}
		select {
		case r := <-done:
			switch {
			case r.err != nil:
				resp.Error = r.err.Error()
			case len(r.json) == 0:
				resp.Error = "the zone's config dump is empty"
			default:
				resp.Json = r.json
			}
		case <-ctx.Done():
			resp.Error = fmt.Sprintf("the zone's config dump did not finish within %s", timeout)
		}
		if resp.Error != "" {
			logger.Debug("config dump for global failed", "mesh", mesh, "dataplane", name, "err", resp.Error)
		}
		select {
		case answers <- resp:
		case <-sctx.Done():
		}
	}()
	return nil
}
