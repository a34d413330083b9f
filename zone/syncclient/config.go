package syncclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/meshfed/meshfed/sync/syncpb"
)

// Replica is the zone's persisted copy of global's state, as the client
// writes it. *replica.Replica satisfies it.
type Replica interface {
	// ApplyChanges applies upserts then deletes in one write and moves the
	// replica to revision; resources it refuses come back as rejections
	// (they do not fail the write). An error means nothing was written.
	ApplyChanges(upserts []*syncpb.Resource, deletes []*syncpb.Deletion, revision uint64) ([]*syncpb.Rejection, error)
	// Reset replaces the whole replica with resources at revision, from the
	// global cluster clusterID, in one write.
	Reset(resources []*syncpb.Resource, revision uint64, clusterID string) ([]*syncpb.Rejection, error)
	// Revision is the global revision last fully applied (0 when empty).
	Revision() uint64
	// ClusterID is the global cluster the replica's data came from ("" when
	// it has none).
	ClusterID() string
}

// Reports is the source of the zone's inventory reports (Dataplanes,
// ZoneIngress) waiting to be written on global.
type Reports interface {
	// PendingAfter returns at most limit of the reports global has not
	// acknowledged yet whose sequence is after after, in sequence order.
	PendingAfter(after uint64, limit int) []*syncpb.Report
	// Acked records global's acknowledgement of report seq (committed), with
	// the resources global refused.
	Acked(seq uint64, rejected []*syncpb.Rejection)
	// Watch returns a channel closed when a new report is pending. Take it
	// before calling PendingAfter, so that a report added in between is not
	// missed.
	Watch() <-chan struct{}
}

// Backoff is the delay between connection attempts: it starts at Min,
// doubles after each failed attempt up to Max, and each delay is varied at
// random by ±Jitter.
type Backoff struct {
	// Min is the delay after the first failure. Default 100ms.
	Min time.Duration
	// Max bounds the delay; it is also the delay after global refused the
	// zone (a bad token: only the operator can fix it). Default 10s.
	Max time.Duration
	// Jitter is the fraction by which a delay varies both ways, in [0, 1).
	// Default 0.2.
	Jitter float64
	// ResetAfter: a stream that lived at least this long was a success, and
	// the next delay starts again from Min. Default 30s.
	ResetAfter time.Duration
}

// Config configures the zone's sync client.
type Config struct {
	// Zone (required) is this zone's name, as in its token.
	Zone string
	// ReplicaID (required) names this zone control-plane replica (zones may
	// run several); global shows it in the zone's insight.
	ReplicaID string
	// GlobalAddrs (required) are global nodes' sync addresses (host:port, or
	// any gRPC target). Any node serves the stream; the client dials one
	// and moves to the next after every failure.
	GlobalAddrs []string
	// Token is the zone token signed by global. Exactly one of Token and
	// TokenFunc must be set.
	Token string
	// TokenFunc returns the token at each connection attempt (e.g. reading
	// the token file again, so that the operator may replace it).
	TokenFunc func() (string, error)
	// DialOptions are passed to grpc.NewClient for every attempt. They must
	// include transport credentials: production passes
	// grpc.WithTransportCredentials(credentials.NewTLS(...)) with global's CA;
	// tests pass insecure.NewCredentials().
	DialOptions []grpc.DialOption
	// Replica (required) is where global's state is applied.
	Replica Replica
	// Reports is the source of the zone's reports; nil when the zone
	// reports nothing.
	Reports Reports
	// Backoff between connection attempts; zero fields take their defaults.
	Backoff Backoff
	// HeartbeatInterval is how often the client speaks on an idle stream
	// until global's Welcome tells its own interval, which is used from
	// then on. Global silent for three intervals (or not answering Hello
	// within three) is dropped. Default 5s.
	HeartbeatInterval time.Duration
	// Capabilities are announced in Hello (for future protocol changes).
	Capabilities []string
	// ConfigDumper answers global's ConfigRequests: the JSON config dump of
	// Dataplane name (the zone's name for it) in mesh, as the zone's API
	// serves it, or an error whose text global shows (a missing Dataplane,
	// a proxy not connected to this replica). It runs off the stream's
	// loop, at most maxConfigDumps at a time, and must return soon after
	// ctx ends (ConfigDumpTimeout). Nil answers every request with an error.
	ConfigDumper func(ctx context.Context, mesh, name string) ([]byte, error)
	// ConfigDumpTimeout bounds one ConfigDumper call; global is told it
	// timed out. Default 5s.
	ConfigDumpTimeout time.Duration
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Zone == "" {
		errs = append(errs, errors.New("zone must not be empty"))
	}
	if c.ReplicaID == "" {
		errs = append(errs, errors.New("replica id must not be empty"))
	}
	if len(c.GlobalAddrs) == 0 {
		errs = append(errs, errors.New("at least one global address is needed"))
	}
	for i, a := range c.GlobalAddrs {
		if a == "" {
			errs = append(errs, fmt.Errorf("global address %d is empty", i+1))
		}
	}
	if (c.Token == "") == (c.TokenFunc == nil) {
		errs = append(errs, errors.New("exactly one of token and token func must be set"))
	}
	if c.Replica == nil {
		errs = append(errs, errors.New("replica must be set"))
	}
	b := &c.Backoff
	if b.Min == 0 {
		b.Min = 100 * time.Millisecond
	}
	if b.Max == 0 {
		b.Max = 10 * time.Second
	}
	if b.Jitter == 0 {
		b.Jitter = 0.2
	}
	if b.ResetAfter == 0 {
		b.ResetAfter = 30 * time.Second
	}
	if b.Min < 0 || b.Max < b.Min {
		errs = append(errs, fmt.Errorf("backoff: need 0 < min <= max, got min %s max %s", b.Min, b.Max))
	}
	if b.Jitter < 0 || b.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("backoff: jitter must be in [0, 1), got %v", b.Jitter))
	}
	if b.ResetAfter < 0 {
		errs = append(errs, errors.New("backoff: reset-after must not be negative"))
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.ConfigDumpTimeout == 0 {
		c.ConfigDumpTimeout = 5 * time.Second
	}
	if c.ConfigDumpTimeout < 0 {
		errs = append(errs, errors.New("config dump timeout must not be negative"))
	}
	if c.HeartbeatInterval < 0 {
		errs = append(errs, errors.New("heartbeat interval must not be negative"))
	}
	return errors.Join(errs...)
}
