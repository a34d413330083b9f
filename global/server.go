package global

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/global/store"
)

// AdminTokenFile is the name of the file, in the data dir, that holds the
// admin token once the cluster is bootstrapped.
const AdminTokenFile = "admin-token"

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
	// SkipDefaultMesh: do not create the default Mesh when the cluster is
	// first bootstrapped.
	SkipDefaultMesh bool
	// TimingMultiplier scales Raft timeouts; see store.Config.
	TimingMultiplier int
	// MaxBodyBytes limits API request bodies; default 1 MiB.
	MaxBodyBytes int64
	// Version is the build version shown at GET /.
	Version string
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
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft-addr: %q is not host:port: %w", c.RaftAddr, err))
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
	cfg      Config
	logger   *slog.Logger
	store    *store.Node
	registry *prometheus.Registry
	handler  http.Handler
}

// New builds a global node; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	node, err := store.New(store.Config{
		NodeID:           cfg.NodeID,
		DataDir:          cfg.DataDir,
		RaftAddr:         cfg.RaftAddr,
		Bootstrap:        true,
		SkipDefaultMesh:  cfg.SkipDefaultMesh,
		TimingMultiplier: cfg.TimingMultiplier,
	}, logger)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, logger: logger, store: node, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStoreCollector(node),
	)
	s.handler, err = rest.NewHandler(rest.Config{
		Role:         api.RoleGlobal,
		Store:        node,
		Info:         s.info,
		Authenticate: s.authenticate,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Ready:        node.Ready,
		Metrics:      promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}),
		Registerer:   s.registry,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
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
	ln, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api-addr: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	storeDone := make(chan error, 1)
	go func() { storeDone <- s.store.Run(ctx) }()

	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	apiDone := make(chan error, 1)
	go func() { apiDone <- srv.Serve(ln) }()
	s.logger.Info("global node started", "node", s.cfg.NodeID, "api", ln.Addr().String(), "raft", s.cfg.RaftAddr, "data_dir", s.cfg.DataDir)

	go s.writeAdminToken(ctx)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-storeDone:
		runErr = fmt.Errorf("store: %w", err)
		storeDone <- err
	case err := <-apiDone:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("api: %w", err)
		}
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	cancel()
	if err := <-storeDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("store: %w", err)
	}
	return runErr
}

// writeAdminToken writes the replicated admin token to DataDir/admin-token
// (mode 0600) once the cluster is bootstrapped, so that an operator on any
// node can read it.
func (s *Server) writeAdminToken(ctx context.Context) {
	st := s.store.State()
	for {
		changed := st.Watch()
		if meta, ok := st.Meta(); ok {
			path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
			if cur, err := os.ReadFile(path); err == nil && string(cur) == meta.AdminToken+"\n" {
				return
			}
			tmp := path + ".tmp"
			err := os.WriteFile(tmp, []byte(meta.AdminToken+"\n"), 0o600)
			if err == nil {
				err = os.Rename(tmp, path)
			}
			if err != nil {
				s.logger.Error("write admin token", "path", path, "err", err)
			} else {
				s.logger.Info("admin token written", "path", path)
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
