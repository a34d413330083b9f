// Package syncclient is the zone's end of the sync protocol (DESIGN.md §6,
// §7): it dials a global node, keeps one stream open, applies global's
// Changes and Resets to the zone's replica, acknowledges each applied
// revision with the resources the replica rejected, and sends the zone's
// inventory reports up.
//
// Where it sits in the data flow (DESIGN.md §3): global's sync server
// (global/syncserver) streams what changed since the replica's revision; the
// client writes it to the replica (zone/replica), from which the zone's API
// and xDS read. Zones always dial out; global never dials a zone.
//
// One connection attempt is one stream: Hello (zone, replica, token, the
// replica's cluster id and revision), Welcome, then one select loop fed by a
// receive goroutine, with one writer goroutine sending what the loop queues
// (so that the loop keeps reading while global is busy, and the two ends can
// never both block in Send). On any error the client reconnects with
// jittered exponential backoff to the next global address, and resumes from
// the replica's revision; only global decides when a Reset is needed.
//
// Decisions:
//
//   - The parts of a chunked Changes (more = true) are accumulated and
//     applied in one ApplyChanges call at the final revision, then acked
//     once: the replica (and the xDS built from it) never shows half a
//     batch, and a batch costs one disk sync. A batch is bounded by what
//     global built for it in memory, like a Reset.
//   - Reset chunks are accumulated until last = true and applied in one
//     Reset call.
//   - The replica learns global's cluster id only through Reset. An empty
//     replica (revision 0, no cluster id) is sent Changes from revision 0,
//     which hold the whole state: the client installs them with Reset and
//     the Welcome's cluster id, so that the next Hello carries it and the
//     zone resumes instead of being reset on its next connection.
//   - Changes at a revision lower than the replica's (a global node behind
//     the zone) are ignored, not acknowledged: that node's state is a prefix
//     of what the zone already holds.
//   - Reports: after every (re)connection all pending ones are sent again,
//     in sequence order, at most maxInFlightReports unacknowledged at a
//     time; new ones when Reports.Watch fires.
//   - Global refusing the zone (Unauthenticated, PermissionDenied) is
//     logged as an error at every attempt and retried at the maximum
//     backoff: the operator may fix the token. Status shows it.
package syncclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/sync/syncpb"
)

const (
	// maxInFlightReports bounds the reports sent and not yet acknowledged
	// on one stream.
	maxInFlightReports = 32
	// outboxSize bounds the messages queued for the writer; a global that
	// lets it fill up is not reading and the stream is dropped.
	outboxSize = 256
	// silentIntervals: global silent for this many heartbeat intervals is
	// dropped.
	silentIntervals = 3
	// maxConfigDumps bounds the ConfigDumper calls running for one stream;
	// global's requests beyond it are answered "busy" at once.
	maxConfigDumps = 4
)

// Status is what the client knows of its connection, for the zone's API.
type Status struct {
	// Connected: a stream is open and global has welcomed the zone.
	Connected bool
	// GlobalNode is the global node serving the stream (from Welcome), and
	// GlobalAddr the address dialed; both kept after a disconnection.
	GlobalNode string
	GlobalAddr string
	// ConnectedSince is when the current (or last) stream was welcomed.
	ConnectedSince time.Time
	// Revision is the global revision the replica has applied.
	Revision uint64
	// LastError is why the last stream or attempt ended (nil if none has),
	// at LastErrorAt.
	LastError   error
	LastErrorAt time.Time
	// Refused: LastError is global refusing the zone (an invalid, expired,
	// revoked or other zone's token). Only the operator can fix it; the
	// client keeps retrying at the maximum backoff.
	Refused bool
	// Failures counts the attempts that failed since the last stream that
	// was welcomed.
	Failures int
}

// Client is the zone's sync client.
type Client struct {
	cfg     Config
	logger  *slog.Logger
	running atomic.Bool

	mu     sync.Mutex
	status Status

	// certCalls carries SignIntermediate's requests to the stream loop.
	certCalls chan *certCall

	counters counters
}

// Counters are running totals since the client was built, for the zone's
// metrics (docs/metrics.md).
type Counters struct {
	// Attempts counts connection attempts (streams opened or tried);
	// Welcomed those global welcomed: the first connection and every
	// reconnection.
	Attempts, Welcomed uint64
	// MessagesReceived and BytesReceived count what global sent (protobuf
	// size); MessagesSent and BytesSent what the client sent.
	MessagesReceived, BytesReceived uint64
	MessagesSent, BytesSent         uint64
	// Changes counts the batches of changes applied, Resets the full
	// states installed, Rejections the resources the replica refused in
	// either.
	Changes, Resets, Rejections uint64
}

type counters struct {
	attempts, welcomed                       atomic.Uint64
	msgsRecv, bytesRecv, msgsSent, bytesSent atomic.Uint64
	changes, resets, rejections              atomic.Uint64
}

// Counters returns the client's running totals.
func (c *Client) Counters() Counters {
	k := &c.counters
	return Counters{
		Attempts: k.attempts.Load(), Welcomed: k.welcomed.Load(),
		MessagesReceived: k.msgsRecv.Load(), BytesReceived: k.bytesRecv.Load(),
		MessagesSent: k.msgsSent.Load(), BytesSent: k.bytesSent.Load(),
		Changes: k.changes.Load(), Resets: k.resets.Load(), Rejections: k.rejections.Load(),
	}
}

// certCall is one SignIntermediate waiting for global's answer.
type certCall struct {
	req  *syncpb.CertificateRequest
	done chan certResult // buffered: the loop never waits on it
}

type certResult struct {
	resp *syncpb.CertificateResponse
	err  error
}

// SignIntermediate asks global, over the current stream (waiting for one
// when there is none), to sign the zone's intermediate CA for a Mesh, and
// returns global's answer: the certificate, or in its Error why global
// refused. An error means no answer came (the stream ended, ctx ended): ask
// again.
func (c *Client) SignIntermediate(ctx context.Context, req *syncpb.CertificateRequest) (*syncpb.CertificateResponse, error) {
	call := &certCall{req: req, done: make(chan certResult, 1)}
	select {
	case c.certCalls <- call:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-call.done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// New checks cfg and builds a client; it starts nothing.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sync client: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// grpc.NewClient connects lazily: this only checks the dial options
	// (transport credentials set, and so on) and the address syntax.
	for _, addr := range cfg.GlobalAddrs {
		cc, err := grpc.NewClient(addr, cfg.DialOptions...)
		if err != nil {
			return nil, fmt.Errorf("sync client: global address %q: %w", addr, err)
		}
		_ = cc.Close()
	}
	return &Client{cfg: cfg, logger: logger.With("zone", cfg.Zone, "replica", cfg.ReplicaID), certCalls: make(chan *certCall)}, nil
}

// Status returns the connection's status.
func (c *Client) Status() Status {
	c.mu.Lock()
	s := c.status
	c.mu.Unlock()
	s.Revision = c.cfg.Replica.Revision()
	return s
}

func (c *Client) update(fn func(s *Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.status)
}

// Run keeps the zone connected to global until ctx ends, then returns nil.
// It may run once at a time.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("sync client: already running")
	}
	defer c.running.Store(false)

	bo := backoff{cfg: c.cfg.Backoff}
	interval := c.cfg.HeartbeatInterval
	for i := 0; ; i = (i + 1) % len(c.cfg.GlobalAddrs) {
		addr := c.cfg.GlobalAddrs[i]
		st := &stream{c: c, addr: addr, interval: interval}
		err := st.run(ctx)
		interval = st.interval // global's, once a Welcome told it
		if ctx.Err() != nil {
			c.update(func(s *Status) { s.Connected = false })
			return nil
		}
		if !st.welcomedAt.IsZero() && time.Since(st.welcomedAt) >= c.cfg.Backoff.ResetAfter {
			bo.reset()
		}
		refused := isRefusal(err)
		delay := bo.next()
		if refused || errors.Is(err, errToken) {
			delay = bo.jitter(c.cfg.Backoff.Max)
		}
		c.update(func(s *Status) {
			s.Connected = false
			s.LastError, s.LastErrorAt, s.Refused = err, time.Now(), refused
			if st.welcomedAt.IsZero() {
				s.Failures++
			} else {
				s.Failures = 0
			}
		})
		switch {
		case refused:
			c.logger.Error("global refused this zone: check its zone token (meshctl generate zone-token)",
				"addr", addr, "err", err, "retry_in", delay.Round(time.Millisecond))
		case errors.Is(err, errToken):
			c.logger.Error("cannot read the zone token", "err", err, "retry_in", delay.Round(time.Millisecond))
		case st.welcomedAt.IsZero():
			c.logger.Warn("cannot sync with global", "addr", addr, "err", err, "retry_in", delay.Round(time.Millisecond))
		default:
			c.logger.Warn("sync stream ended", "addr", addr, "global", st.node, "err", err,
				"retry_in", delay.Round(time.Millisecond))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// isRefusal tells global refusing the zone's credentials from other errors.
func isRefusal(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

var errToken = errors.New("zone token")

// backoff computes delays; it is used by Run's goroutine only.
type backoff struct {
	cfg  Backoff
	last time.Duration // the last delay before jitter; 0 after a reset
}

func (b *backoff) reset() { b.last = 0 }

func (b *backoff) next() time.Duration {
	switch {
	case b.last == 0:
		b.last = b.cfg.Min
	case b.last < b.cfg.Max:
		b.last = min(2*b.last, b.cfg.Max)
	}
	return b.jitter(b.last)
}

func (b *backoff) jitter(d time.Duration) time.Duration {
	f := 1 + b.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
