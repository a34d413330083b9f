package global

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/membership"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/global/syncserver"
)

// AdminTokenFile is the name of the file, in the data dir, that holds the
// admin token once the cluster is bootstrapped.
const AdminTokenFile = "admin-token"

// ClusterIDFile is the name of the file, in the data dir, that remembers
// the id of the cluster whose Raft state the node holds. A node restarting
// announces it in gossip at once, before it has replayed its log, so that
// it never merges with (or is given a vote in) another cluster.
const ClusterIDFile = "cluster-id"

// Config configures one global node.
type Config struct {
	// NodeID names this node in the Raft cluster. Default: the host name.
	NodeID string
	// DataDir holds the Raft log, snapshots and the admin token.
	DataDir string
	// APIAddr is the HTTP API's listen address (default port 5681).
	APIAddr string
	// RaftAddr is the Raft transport's listen address (default port 5690).
	RaftAddr string
	// GossipAddr is the memberlist listen address (default port 5691).
	GossipAddr string
	// SyncAddr is the zones' sync port (gRPC; default port 5685).
	SyncAddr string
	// SyncInsecure serves the sync port without TLS (tests, trusted
	// networks only).
	SyncInsecure bool
	// SyncCertFile and SyncKeyFile replace the serving certificate issued
	// from the replicated sync CA.
	SyncCertFile, SyncKeyFile string
	// ZoneCAValidity is the lifetime of the intermediate CAs global signs
	// for zones; it bounds how long a zone cut off from global can keep
	// issuing dataplane certificates (it renews at half of it). Default
	// ca.DefaultIntermediateValidity (90 days).
	ZoneCAValidity time.Duration
	// SyncHeartbeatInterval is the sync streams' heartbeat; default 5s.
	SyncHeartbeatInterval time.Duration
	// InsightFlushInterval bounds how often a zone's acknowledgements are
	// written through Raft; default 1s.
	InsightFlushInterval time.Duration
	// Join lists gossip addresses of other global nodes.
	Join []string
	// BootstrapExpect: wait for this many fresh nodes in gossip, then the one
	// with the lowest id bootstraps Raft with all of them. 0 means 1 (bootstrap
	// alone) without Join, and "never bootstrap, wait to be added" with Join.
	BootstrapExpect int
	// DeadServerThreshold: autopilot removes a server dead in gossip for
	// longer than this (default 30s), keeping at least MinQuorum voters.
	DeadServerThreshold time.Duration
	// MinQuorum: autopilot never removes dead voters below this many
	// (default 3).
	MinQuorum int
	// AutopilotInterval is how often the leader reconciles membership and
	// Raft (besides on every gossip change). Default 1s.
	AutopilotInterval time.Duration
	// SkipDefaultMesh: do not create the default Mesh when the cluster is
	// first bootstrapped.
	SkipDefaultMesh bool
	// TimingMultiplier scales Raft timeouts; see store.Config.
	TimingMultiplier int
	// DeadNodeReclaim is how long after a node's death in gossip a new node
	// may take its id at another address (replacement); default 5s.
	DeadNodeReclaim time.Duration
	// GossipReconnectInterval is how often dead gossip members are tried
	// again so that a split heals; default 10s (see membership.Config).
	GossipReconnectInterval time.Duration
	// MaxBodyBytes limits API request bodies; default 1 MiB.
	MaxBodyBytes int64
	// Version is the build version shown at GET /.
	Version string
	// NoLeaveOnShutdown skips the graceful leave when Run's context ends
	// (meshd dev stops every node at once, where leaving makes no sense).
	NoLeaveOnShutdown bool
	// SnapshotThreshold, SnapshotInterval and TrailingLogs tune Raft
	// snapshots; zero keeps store.Config's defaults (see there).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Test hooks: in-process clusters replace the transports to cut links.
	RaftTransport   raft.Transport
	GossipTransport memberlist.Transport
	// HTTPClient carries calls to other nodes (forwarding, status). Default:
	// a client with a 10s timeout.
	HTTPClient *http.Client
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			errs = append(errs, errors.New("node-id: must be set (the host name is unknown)"))
		}
		c.NodeID = h
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
		errs = append(errs, fmt.Errorf("api-addr: %q is not host:port: %w", c.APIAddr, err))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil && c.RaftTransport == nil {
		errs = append(errs, fmt.Errorf("raft-addr: %q is not host:port: %w", c.RaftAddr, err))
	}
	if c.SyncAddr == "" {
		errs = append(errs, errors.New("sync-addr: must not be empty"))
	} else if _, _, err := net.SplitHostPort(c.SyncAddr); err != nil {
		errs = append(errs, fmt.Errorf("sync-addr: %q is not host:port: %w", c.SyncAddr, err))
	}
	if (c.SyncCertFile == "") != (c.SyncKeyFile == "") {
		errs = append(errs, errors.New("sync-tls-cert-file and sync-tls-key-file: give both or neither"))
	}
	if c.InsightFlushInterval == 0 {
		c.InsightFlushInterval = time.Second
	}
	if c.GossipAddr == "" && c.GossipTransport == nil {
		errs = append(errs, errors.New("gossip-addr: must not be empty"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("bootstrap-expect: %d must not be negative", c.BootstrapExpect))
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		errs = append(errs, fmt.Errorf("bootstrap-expect: %d nodes need --join addresses to find each other", c.BootstrapExpect))
	}
	if c.DeadServerThreshold == 0 {
		c.DeadServerThreshold = 30 * time.Second
	}
	if c.DeadServerThreshold < 0 {
		errs = append(errs, fmt.Errorf("autopilot-dead-threshold: %s must be positive", c.DeadServerThreshold))
	}
	if c.MinQuorum == 0 {
		c.MinQuorum = 3
	}
	if c.MinQuorum < 1 {
		errs = append(errs, fmt.Errorf("autopilot-min-quorum: %d must be at least 1", c.MinQuorum))
	}
	if c.AutopilotInterval == 0 {
		c.AutopilotInterval = time.Second
	}
	if c.HTTPClient == nil {
		// Forwarded writes from many concurrent clients share connections to
		// the leader instead of opening one per request.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 128
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	}
	if c.TimingMultiplier < 0 || c.TimingMultiplier > 10 {
		errs = append(errs, fmt.Errorf("raft-timing-multiplier: %d must be between 1 and 10", c.TimingMultiplier))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max-body-bytes: %d must not be negative", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// Server is one global node.
type Server struct {
	cfg        Config
	logger     *slog.Logger
	store      *store.Node
	members    *membership.Membership
	httpClient *http.Client
	registry   *prometheus.Registry
	handler    http.Handler
	// skipLeave: the next shutdown skips the graceful leave (SkipLeave).
	skipLeave atomic.Bool
	// savedClusterID is ClusterIDFile's content when Run started.
	savedClusterID atomic.Value // string
	// leaving: nodes this node, as leader, removed because they are leaving
	// gracefully, and when; autopilot does not add them back while their
	// gossip state is the one they left from.
	leavingMu sync.Mutex
	leaving   map[string]time.Time
	insights  *zoneInsights
	// syncMetrics are the sync server's, kept across restarts of its port.
	syncMetrics *syncserver.Metrics
	// syncServer is the sync server while the sync port serves (nil
	// before): requests to zones go through its streams.
	syncServer atomic.Pointer[syncserver.Server]
}

// New builds a global node; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger, registry: prometheus.NewRegistry(), httpClient: cfg.HTTPClient}
	s.insights = newZoneInsights(s)
	node, err := store.New(store.Config{
		NodeID:            cfg.NodeID,
		DataDir:           cfg.DataDir,
		RaftAddr:          cfg.RaftAddr,
		Transport:         cfg.RaftTransport,
		Forwarder:         httpForwarder{s: s},
		Bootstrap:         s.expect() == 1,
		SkipDefaultMesh:   cfg.SkipDefaultMesh,
		TimingMultiplier:  cfg.TimingMultiplier,
		SnapshotThreshold: cfg.SnapshotThreshold,
		SnapshotInterval:  cfg.SnapshotInterval,
		TrailingLogs:      cfg.TrailingLogs,
		Metrics:           s.registry,
	}, logger)
	if err != nil {
		return nil, err
	}
	s.store = node
	if s.syncMetrics, err = syncserver.NewMetrics(s.registry); err != nil {
		return nil, err
	}
	s.members, err = membership.New(membership.Config{
		NodeID:            cfg.NodeID,
		BindAddr:          cfg.GossipAddr,
		Join:              cfg.Join,
		TimingMultiplier:  cfg.TimingMultiplier,
		DeadNodeReclaim:   cfg.DeadNodeReclaim,
		ReconnectInterval: cfg.GossipReconnectInterval,
		Meta:              s.meta,
		Transport:         cfg.GossipTransport,
	}, logger)
	if err != nil {
		return nil, err
	}
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStoreCollector(node),
		newZoneCollector(s),
	)
	apiHandler, err := rest.NewHandler(rest.Config{
		Role:         api.RoleGlobal,
		Store:        apiStore{Node: node, s: s},
		Info:         s.info,
		Authenticate: s.authenticate,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Ready:        node.Ready,
		Metrics:      promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}),
		Registerer:   s.registry,
		Logger:       logger,
		Routes:       s.zoneRoutes(),
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", apiHandler)
	// The routes beside the API are counted in the API's metrics too.
	for _, rt := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /global/status", s.handleStatus},
		{"POST /tokens/zone", s.internal(s.handleZoneToken)},
		{"POST /tokens/zone/revoke", s.internal(s.handleZoneTokenRevoke)},
		{"POST /_internal/raft/apply", s.internal(s.handleApply)},
		{"POST /_internal/raft/read-index", s.internal(s.handleReadIndex)},
		{"POST /_internal/raft/leave", s.internal(s.handleLeave)},
		{"GET /_internal/status", s.internal(s.handleLocalStatus)},
		{"POST /_internal/zones/config", s.internal(s.handleZoneConfig)},
	} {
		h, err := rest.InstrumentHandler(s.registry, rt.pattern, rt.h)
		if err != nil {
			return nil, err
		}
		mux.Handle(rt.pattern, h)
	}
	s.handler = s.untilIdentity(mux)
	return s, nil
}

// SkipLeave makes the shutdown that follows (Run's context ending) skip the
// graceful leave, as NoLeaveOnShutdown does: in-process tests use it to stop
// a node as abruptly as a kill -9 would.
func (s *Server) SkipLeave() { s.skipLeave.Store(true) }

// Members returns the node's gossip membership (tests, dev).
func (s *Server) Members() *membership.Membership { return s.members }

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !s.authenticate(bearer(r)) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshfed"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(rest.ErrorBody{Title: "Unauthorized", Details: "this endpoint requires an \"Authorization: Bearer TOKEN\" header"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.status(r.Context()))
}

// Store returns the node's store (for tests and the dev federation).
func (s *Server) Store() *store.Node { return s.store }

// Handler returns the HTTP API handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) info() rest.Info {
	meta, _ := s.store.State().Meta()
	return rest.Info{
		Product:    "Meshfed",
		Tagline:    "Meshfed global control plane",
		Version:    s.cfg.Version,
		Role:       string(api.RoleGlobal),
		InstanceID: s.cfg.NodeID,
		ClusterID:  meta.ClusterID,
	}
}

// untilIdentity answers 503 with Retry-After to calls carrying a token
// while this node has not applied the bootstrap command yet (it is starting,
// or it has just joined and is receiving the log): it cannot check the token,
// and a 401 would tell a client with a valid token that it is not.
func (s *Server) untilIdentity(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.store.State().Meta(); !ok && r.Header.Get("Authorization") != "" {
			rest.WriteError(w, r, s.logger, &api.UnavailableError{
				Reason:     "this node has not received the cluster's identity yet (it is starting or catching up)",
				RetryAfter: time.Second,
			})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) authenticate(token string) bool {
	meta, ok := s.store.State().Meta()
	if !ok || meta.AdminToken == "" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(meta.AdminToken)) == 1
}

// Run starts the store and the HTTP API and blocks until ctx ends or one of
// them fails; then it stops both (the API first, draining requests).
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, ClusterIDFile)); err == nil {
		s.savedClusterID.Store(strings.TrimSpace(string(b)))
	}
	ln, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api-addr: %w", err)
	}
	// The parts run until the node has left the cluster, not merely until
	// ctx ends: a graceful leave needs Raft, gossip and the API.
	parent := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	var wg sync.WaitGroup
	background := func(fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	storeDone := make(chan error, 1)
	go func() { storeDone <- s.store.Run(ctx) }()
	gossipDone := make(chan error, 1)
	go func() { gossipDone <- s.members.Run(ctx) }()

	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	apiDone := make(chan error, 1)
	go func() { apiDone <- srv.Serve(ln) }()
	s.logger.Info("global node started", "node", s.cfg.NodeID, "api", ln.Addr().String(), "raft", s.cfg.RaftAddr,
		"gossip", s.cfg.GossipAddr, "join", strings.Join(s.cfg.Join, ","), "data_dir", s.cfg.DataDir)

	background(s.writeAdminToken)
	background(s.announceIdentity)
	background(s.bootstrapExpect)
	background(s.autopilot)
	background(func(ctx context.Context) { s.insights.run(ctx, s.cfg.InsightFlushInterval) })
	syncDone := make(chan error, 1)
	go func() { syncDone <- s.serveSync(ctx) }()

	var runErr error
	select {
	case <-parent.Done():
		if !s.cfg.NoLeaveOnShutdown && !s.skipLeave.Load() {
			s.leave()
		}
	case err := <-storeDone:
		runErr = fmt.Errorf("store: %w", err)
		storeDone <- err
	case err := <-gossipDone:
		runErr = fmt.Errorf("gossip: %w", err)
		gossipDone <- err
	case err := <-apiDone:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("api: %w", err)
		}
	case err := <-syncDone:
		runErr = err
		syncDone <- nil
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	if err := <-storeDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("store: %w", err)
	}
	if err := <-gossipDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("gossip: %w", err)
	}
	if err := <-syncDone; err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// writeAdminToken writes the replicated admin token to DataDir/admin-token
// (mode 0600) once the cluster is bootstrapped, so that an operator on any
// node can read it, and the cluster id to DataDir/cluster-id.
func (s *Server) writeAdminToken(ctx context.Context) {
	st := s.store.State()
	for {
		changed := st.Watch()
		if meta, ok := st.Meta(); ok {
			if s.writeDataFile(ClusterIDFile, meta.ClusterID) {
				s.savedClusterID.Store(meta.ClusterID)
			}
			if s.writeDataFile(AdminTokenFile, meta.AdminToken) {
				s.logger.Info("admin token written", "path", filepath.Join(s.cfg.DataDir, AdminTokenFile))
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

// writeDataFile replaces DataDir/name with value and a newline (mode 0600)
// unless it holds that already; it reports whether it wrote.
func (s *Server) writeDataFile(name, value string) bool {
	path := filepath.Join(s.cfg.DataDir, name)
	if cur, err := os.ReadFile(path); err == nil && string(cur) == value+"\n" {
		return false
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(value+"\n"), 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		s.logger.Error("write data file", "path", path, "err", err)
		return false
	}
	return true
}
