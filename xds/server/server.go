package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	delta "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// DefaultAddr is the zone's xDS port on loopback.
const DefaultAddr = "127.0.0.1:5678"

// Config configures the xDS server.
type Config struct {
	// Addr is where Run listens. Default DefaultAddr.
	Addr string
	// Registrar is told about every stream's node; required.
	Registrar Registrar
	// Metrics receives the meshfed_xds_* metrics (package doc). Nil keeps
	// them unregistered.
	Metrics prometheus.Registerer
	// Creds secures the listener (TLS). Nil serves plaintext.
	Creds credentials.TransportCredentials
	// ServerOptions are added after the server's own (keepalive, stream
	// limits), so they may override them.
	ServerOptions []grpc.ServerOption
	// ShutdownTimeout bounds the graceful stop when ctx ends; streams still
	// open after it are cut. Default 5s.
	ShutdownTimeout time.Duration
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("xds addr: %w", err))
	}
	if c.Registrar == nil {
		errs = append(errs, errors.New("xds registrar must be set"))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("xds shutdown timeout must not be negative"))
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	return errors.Join(errs...)
}

// Server is the zone's ADS server. SetResources and Clear may be called at
// any time, before Run and concurrently with it and with each other.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	res     *resources
	running atomic.Bool
	addr    atomic.Pointer[net.Addr]

	streamIDs atomic.Int64
	streamsMu sync.Mutex
	sotw      map[int64]*stream // by go-control-plane's state-of-the-world stream id
	delta     map[int64]*stream // by go-control-plane's delta stream id

	nackMu sync.Mutex
	nacks  nackLog
}

// New checks cfg and registers the metrics; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		logger:  logger,
		metrics: m,
		res:     newResources(cache.NewSnapshotCache(false, cache.IDHash{}, gcpLogger{logger})),
		sotw:    make(map[int64]*stream),
		delta:   make(map[int64]*stream),
		nacks:   nackLog{last: make(map[string]map[string]string)},
	}, nil
}

// SetResources replaces the resources served to nodeID, keyed by type URL
// (resource.ClusterType, ...); a type absent from res is served empty. It
// reports whether anything changed: setting the same content again changes
// nothing and sends nothing. Only types whose content changed are sent to
// state-of-the-world streams, and only changed resources to delta streams.
//
// The resources must not be modified afterwards (they are read while being
// sent, and remembered by pointer); share them freely between nodes.
func (s *Server) SetResources(nodeID string, res map[string][]types.Resource) (changed bool, err error) {
	start := time.Now()
	defer func() { s.metrics.setDur.Observe(time.Since(start).Seconds()) }()
	changed, err = s.res.set(nodeID, res)
	if err != nil {
		return changed, fmt.Errorf("xds resources of %s: %w", nodeID, err)
	}
	return changed, nil
}

// Resources returns the resources the node is served now, by type URL with
// each type's version; ok is false when the node has none. They must not be
// modified.
func (s *Server) Resources(nodeID string) (res map[string][]types.Resource, versions map[string]string, ok bool) {
	snap, err := s.res.snapshots.GetSnapshot(nodeID)
	if err != nil || snap == nil {
		return nil, nil, false
	}
	res, versions = map[string][]types.Resource{}, map[string]string{}
	for typ := types.ResponseType(0); typ < types.UnknownType; typ++ {
		url, err := cache.GetResponseTypeURL(typ)
		if err != nil {
			continue
		}
		if got := snap.GetResources(url); len(got) > 0 {
			for _, r := range got {
				res[url] = append(res[url], r)
			}
			versions[url] = snap.GetVersion(url)
		}
	}
	return res, versions, true
}

// Clear forgets nodeID's resources and go-control-plane's state for it. Call
// it when the node's Dataplane is gone; a stream still open for the node
// receives nothing more until it reconnects.
func (s *Server) Clear(nodeID string) {
	s.res.clear(nodeID)
	s.nackMu.Lock()
	delete(s.nacks.last, nodeID)
	s.nackMu.Unlock()
}

// Addr is the address Run or Serve listens on (nil when not serving).
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Run listens on cfg.Addr and serves until ctx ends (see Serve).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("xds addr: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves ADS on ln until ctx ends or serving fails, then ends every
// stream, stops gracefully within cfg.ShutdownTimeout (then forcibly) and
// closes ln. It may run once at a time.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.running.CompareAndSwap(false, true) {
		_ = ln.Close()
		return errors.New("xds server: already running")
	}
	defer s.running.Store(false)

	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		// Proxies keep one long stream; probe idle connections, and let
		// clients ping as Envoy and grpc-go do.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if s.cfg.Creds != nil {
		opts = append(opts, grpc.Creds(s.cfg.Creds))
	}
	opts = append(opts, s.cfg.ServerOptions...)
	gs := grpc.NewServer(opts...)

	// Streams end when streamCtx does: go-control-plane's stream loops
	// return on it, so the graceful stop below does not wait for them.
	streamCtx, cancelStreams := context.WithCancel(context.Background())
	defer cancelStreams()
	cb, log := callbacks{s}, gcpLogger{s.logger}
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, ads{
		sotw:  sotw.NewServer(streamCtx, s.res.snapshots, cb, sotw.WithLogger(log)),
		delta: delta.NewServer(streamCtx, s.res.snapshots, cb, delta.WithLogger(log)),
	})

	addr := ln.Addr()
	s.addr.Store(&addr)
	defer s.addr.Store(nil)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	s.logger.Info("xds server started", "addr", addr.String(), "tls", s.cfg.Creds != nil)

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		if err != nil {
			err = fmt.Errorf("xds serve: %w", err)
		}
	}
	cancelStreams()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.logger.Warn("xds server: graceful stop timed out; closing the remaining streams", "timeout", s.cfg.ShutdownTimeout)
		gs.Stop()
		<-stopped
	}
	s.logger.Info("xds server stopped", "addr", addr.String())
	return err
}

// gcpLogger sends go-control-plane's logs to slog. Its Info lines (one per
// watch) are Debug here.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

func (g gcpLogger) log(level slog.Level, format string, args []any) {
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	g.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "go-control-plane")
}

// ads is the Aggregated Discovery Service on go-control-plane's stream
// handlers. (go-control-plane's pkg/server/v3 would do the same, but it
// imports the ratelimit module, which this module does not require.)
type ads struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	sotw  sotw.Server
	delta delta.Server
}

func (a ads) StreamAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(st, resource.AnyType)
}

func (a ads) DeltaAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(st, resource.AnyType)
}
