package zone

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/xds/bootstrap"
	xdsserver "github.com/meshfed/meshfed/xds/server"
	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/peers"
	"github.com/meshfed/meshfed/zone/proxies"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// maxSyncMessageBytes bounds a message from global (global chunks its
// messages at 1 MiB of resources).
const maxSyncMessageBytes = 16 << 20

// Server is one zone control-plane replica.
type Server struct {
	cfg      Config
	logger   *slog.Logger // with the zone's name
	base     *slog.Logger // without: the sync client adds it itself
	dialOpts []grpc.DialOption
	// gossipKey encrypts the replicas' gossip (nil: plaintext).
	gossipKey []byte
	running   atomic.Bool
	// parts is set by Run once the files are open (nil before and after).
	parts atomic.Pointer[parts]
}

// parts are what Run opens and starts.
type parts struct {
	rep    *replica.Replica
	inv    *inventory.Inventory
	client *syncclient.Client
	peers  *peers.Peers // nil: a zone of one replica
	view   *view
	// certs is the zone's intermediate CA per mTLS Mesh.
	certs *certs.Manager
	// proxies registers the proxies and generates their xDS, which xds
	// serves on xdsAddr.
	proxies *proxies.Proxies
	xds     *xdsserver.Server
	xdsAddr net.Addr
	api     net.Addr
}

// replicaAlive tells whether another replica of the zone is alive in the
// zone's pool.
func (p *parts) replicaAlive(id string) bool {
	if p.peers == nil {
		return false
	}
	for _, peer := range p.peers.Status().Peers {
		if peer.ID == id {
			return peer.State == "alive"
		}
	}
	return false
}

// New checks cfg, reads the CA file and checks that the token file is
// readable; it opens and starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := readToken(cfg.TokenFile); err != nil {
		return nil, fmt.Errorf("token-file: %w", err)
	}
	var creds credentials.TransportCredentials
	if cfg.Insecure {
		creds = insecure.NewCredentials()
	} else {
		pemBytes, err := os.ReadFile(cfg.GlobalCAFile)
		if err != nil {
			return nil, fmt.Errorf("global-ca-file: cannot read global's sync CA certificate: %w", err)
		}
		pool, err := ca.CertPool(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("global-ca-file: %s: %w (expected global's DATA_DIR/sync-ca.crt)", cfg.GlobalCAFile, err)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	var gossipKey []byte
	var err error
	if cfg.GossipKeyFile != "" {
		if gossipKey, err = readGossipKey(cfg.GossipKeyFile); err != nil {
			return nil, fmt.Errorf("gossip-key-file: %w", err)
		}
	}
	return &Server{
		gossipKey: gossipKey,
		cfg:       cfg,
		logger:    logger.With("zone", cfg.Zone),
		base:      logger,
		dialOpts: []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxSyncMessageBytes)),
		},
	}, nil
}

// readGossipKey reads a base64 gossip key of 16, 24 or 32 bytes.
func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w (create one with `head -c 32 /dev/urandom | base64`)", path, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%s: the key is %d bytes; it must be 16, 24 or 32 (`head -c 32 /dev/urandom | base64`)", path, n)
	}
	return key, nil
}

// readToken reads the zone token file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the zone token (create one with `meshctl generate zone-token --zone NAME`): %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty: it must hold a zone token (`meshctl generate zone-token --zone NAME`)", path)
	}
	return tok, nil
}

// Run opens the replica and the inventory in DataDir, connects to global and
// serves the HTTP API until ctx ends or the API fails; then it stops
// everything and closes the files. It may run once at a time.
func (s *Server) Run(ctx context.Context) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("zone: already running")
	}
	defer s.running.Store(false)
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	rep, err := replica.Open(filepath.Join(s.cfg.DataDir, ReplicaFile), s.logger.With("component", "replica"),
		replica.Options{Zone: s.cfg.Zone})
	if err != nil {
		return err
	}
	defer closeFile(rep.Close, &err)
	inv, err := inventory.Open(filepath.Join(s.cfg.DataDir, InventoryFile), s.logger.With("component", "inventory"),
		inventory.Options{Zone: s.cfg.Zone, ReplicaID: s.cfg.ReplicaID})
	if err != nil {
		return err
	}
	defer closeFile(inv.Close, &err)
	client, err := syncclient.New(syncclient.Config{
		Zone:              s.cfg.Zone,
		ReplicaID:         s.cfg.ReplicaID,
		GlobalAddrs:       s.cfg.GlobalAddrs,
		TokenFunc:         func() (string, error) { return readToken(s.cfg.TokenFile) },
		DialOptions:       s.dialOpts,
		Replica:           rep,
		Reports:           inv,
		Backoff:           s.cfg.SyncBackoff,
		HeartbeatInterval: s.cfg.SyncHeartbeatInterval,
		ConfigDumper:      s.configDumpJSON,
	}, s.base.With("component", "sync"))
	if err != nil {
		return err
	}
	p := &parts{rep: rep, inv: inv, client: client, view: newView(rep, inv)}
	if s.cfg.GossipAddr != "" {
		p.peers, err = peers.New(peers.Config{
			Zone: s.cfg.Zone, ReplicaID: s.cfg.ReplicaID, BindAddr: s.cfg.GossipAddr,
			AdvertiseAddr: s.cfg.GossipAdvertiseAddr, Join: s.cfg.Join, SecretKey: s.gossipKey,
			Store: inv, Meta: peers.Meta{APIAddr: s.cfg.APIAddr, XDSAddr: s.cfg.XDSAddr},
		}, s.logger.With("component", "peers"))
		if err != nil {
			return err
		}
	}
	metricsRegistry := prometheus.NewRegistry()
	p.certs, err = certs.New(certs.Config{Zone: s.cfg.Zone, Dir: filepath.Join(s.cfg.DataDir, CADir), Meshes: p.view, Signer: client},
		s.logger.With("component", "ca"))
	if err != nil {
		return err
	}
	p.proxies, err = proxies.New(proxies.Config{
		Zone: s.cfg.Zone, ReplicaID: s.cfg.ReplicaID, State: p.view, Inventory: inv, Certs: p.certs,
		GracePeriod: s.cfg.DataplaneGracePeriod, ReplicaAlive: p.replicaAlive, Metrics: metricsRegistry,
	}, s.logger.With("component", "proxies"))
	if err != nil {
		return err
	}
	p.xds, err = xdsserver.New(xdsserver.Config{Addr: s.cfg.XDSAddr, Registrar: p.proxies.Registrar(), Metrics: metricsRegistry},
		s.logger.With("component", "xds"))
	if err != nil {
		return err
	}
	p.proxies.SetPusher(p.xds)
	xdsLn, err := net.Listen("tcp", s.cfg.XDSAddr)
	if err != nil {
		return fmt.Errorf("xds-addr: %w", err)
	}
	handler, err := s.handler(p, metricsRegistry)
	if err != nil {
		_ = xdsLn.Close()
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		_ = xdsLn.Close()
		return fmt.Errorf("api-addr: %w", err)
	}
	p.xdsAddr = xdsLn.Addr()
	p.api = ln.Addr()
	s.parts.Store(p)
	defer s.parts.Store(nil)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); _ = client.Run(ctx) }()
	go func() { defer wg.Done(); s.followCluster(ctx, rep, inv) }()
	go func() { defer wg.Done(); s.pruneTombstones(ctx, inv) }()
	go func() { defer wg.Done(); p.view.follow(ctx.Done()) }()
	go func() { defer wg.Done(); _ = p.proxies.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = p.certs.Run(ctx) }()
	xdsDone := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); xdsDone <- p.xds.Serve(ctx, xdsLn) }()
	peersDone := make(chan error, 1)
	if p.peers != nil {
		wg.Add(1)
		go func() { defer wg.Done(); peersDone <- p.peers.Run(ctx) }()
	}

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	apiDone := make(chan error, 1)
	go func() { apiDone <- srv.Serve(ln) }()
	if s.cfg.Insecure {
		s.logger.Warn("syncing with global over plaintext (--insecure)")
	}
	s.logger.Info("zone control plane started", "replica", s.cfg.ReplicaID, "api", ln.Addr().String(),
		"global", strings.Join(s.cfg.GlobalAddrs, ","), "data_dir", s.cfg.DataDir,
		"revision", rep.Revision(), "cluster_id", rep.ClusterID(), "xds", xdsLn.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-apiDone:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("api: %w", err)
		}
	case err := <-peersDone:
		runErr = fmt.Errorf("gossip: %w", err)
	case err := <-xdsDone:
		runErr = fmt.Errorf("xds: %w", err)
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	s.logger.Info("zone control plane stopped", "revision", rep.Revision(), "reports_pending", inv.Status().Pending)
	return runErr
}

// closeFile closes one of Run's files, keeping Run's first error.
func closeFile(closeFn func() error, runErr *error) {
	if err := closeFn(); err != nil && *runErr == nil {
		*runErr = err
	}
}

// followCluster tells the inventory where the zone reports to (global's
// cluster id, and when this zone's Zone resource was created there), so
// that the zone reports all its resources again when global has lost them
// (inventory.ReportTo).
func (s *Server) followCluster(ctx context.Context, rep *replica.Replica, inv *inventory.Inventory) {
	for {
		changed := rep.Watch()
		t := inventory.Target{ClusterID: rep.ClusterID()}
		if z, ok := rep.Get(api.Key{Type: api.TypeZone, Name: s.cfg.Zone}); ok && !z.CreationTime.IsZero() {
			t.ZoneCreated = z.CreationTime.UTC().Format(time.RFC3339Nano)
		}
		if _, err := inv.ReportTo(t); err != nil {
			s.logger.Error("recording where the zone reports to", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// pruneTombstones forgets deletions older than TombstoneTTL, hourly (and
// once at start).
func (s *Server) pruneTombstones(ctx context.Context, inv *inventory.Inventory) {
	interval := min(time.Hour, s.cfg.TombstoneTTL/2)
	for {
		n, err := inv.PruneTombstones(time.Now().Add(-s.cfg.TombstoneTTL))
		switch {
		case err != nil:
			s.logger.Error("pruning the inventory's tombstones", "err", err)
		case n > 0:
			s.logger.Info("pruned the inventory's tombstones", "count", n, "older_than", s.cfg.TombstoneTTL.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// handler builds the zone's HTTP API: api/rest over the zone's store, the
// zone's status and its metrics.
func (s *Server) handler(p *parts, registry *prometheus.Registry) (http.Handler, error) {
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	registerMetrics(registry, p)
	apiHandler, err := rest.NewHandler(rest.Config{
		Role:         api.RoleZone,
		Store:        &store{zone: s.cfg.Zone, view: p.view, rep: p.rep, inv: p.inv},
		Info:         func() rest.Info { return s.info(p) },
		MaxBodyBytes: s.cfg.MaxBodyBytes,
		Ready:        func() error { return ready(p) },
		Metrics:      promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}),
		Registerer:   registry,
		Logger:       s.logger,
		Routes: []rest.Route{
			{Pattern: "GET /meshes/{mesh}/dataplanes/{name}/_bootstrap", Handler: func(w http.ResponseWriter, r *http.Request) error {
				return s.serveBootstrap(w, r, p)
			}},
			{Pattern: "GET /meshes/{mesh}/dataplanes/{name}/_config", Handler: func(w http.ResponseWriter, r *http.Request) error {
				return s.serveDataplaneConfig(w, r, p)
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", apiHandler)
	status, err := rest.InstrumentHandler(registry, "GET /zone/status",
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveStatus(w, r, p) }))
	if err != nil {
		return nil, err
	}
	mux.Handle("GET /zone/status", status)
	return mux, nil
}

// serveBootstrap answers GET /meshes/{mesh}/dataplanes/{name}/_bootstrap
// ?format=grpc|envoy[&adminPort=P]: the bootstrap a proxy of that name
// starts with, pointing at this zone's xDS server (meshctl generate
// grpc-bootstrap / envoy-bootstrap). The Dataplane need not exist yet: the
// proxy may register itself.
func (s *Server) serveBootstrap(w http.ResponseWriter, r *http.Request, p *parts) error {
	mesh, name := r.PathValue("mesh"), r.PathValue("name")
	if _, ok := p.view.Get(api.Key{Type: api.TypeMesh, Name: mesh}); !ok {
		return fmt.Errorf("mesh %q does not exist in zone %q: %w", mesh, s.cfg.Zone, api.ErrNotFound)
	}
	node := bootstrap.Node{Mesh: mesh, Name: name, Zone: s.cfg.Zone}
	xdsAddr := s.xdsAdvertiseAddr(p)
	var body []byte
	var err error
	switch format := r.URL.Query().Get("format"); format {
	case "", "grpc":
		body, err = bootstrap.GRPC(bootstrap.GRPCOptions{Node: node, XDSAddress: xdsAddr})
	case "envoy":
		opts := bootstrap.EnvoyOptions{Node: node, XDSAddress: xdsAddr}
		if v := r.URL.Query().Get("adminPort"); v != "" {
			port, perr := strconv.ParseUint(v, 10, 16)
			if perr != nil || port == 0 {
				bad := &api.Validator{}
				bad.Add("adminPort", "%q is not a port (1-65535)", v)
				return bad.Err()
			}
			opts.AdminPort = uint32(port)
		}
		body, err = bootstrap.Envoy(opts)
	default:
		bad := &api.Validator{}
		bad.Add("format", "must be grpc or envoy, not %q", format)
		return bad.Err()
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
	return nil
}

// xdsAdvertiseAddr is the xDS address bootstraps point at:
// XDSAdvertiseAddr, or the address the xDS server listens on.
func (s *Server) xdsAdvertiseAddr(p *parts) string {
	if s.cfg.XDSAdvertiseAddr != "" {
		return s.cfg.XDSAdvertiseAddr
	}
	return p.xdsAddr.String()
}

func (s *Server) info(p *parts) rest.Info {
	return rest.Info{
		Product:    "Meshfed",
		Tagline:    fmt.Sprintf("Meshfed zone control plane (zone %s)", s.cfg.Zone),
		Version:    s.cfg.Version,
		Role:       string(api.RoleZone),
		InstanceID: s.cfg.ReplicaID,
		ClusterID:  p.rep.ClusterID(),
	}
}

// ready: the replica holds state from global (received now or loaded from
// the file).
func ready(p *parts) error {
	if p.rep.ClusterID() != "" || p.rep.Revision() > 0 {
		return nil
	}
	msg := "waiting for the first state from global"
	if st := p.client.Status(); st.LastError != nil {
		msg += " (last attempt: " + st.LastError.Error() + ")"
	}
	return errors.New(msg)
}

// configDumpJSON answers global's ConfigRequests (syncclient.Config.
// ConfigDumper): the dump GET /meshes/{mesh}/dataplanes/{name}/_config
// answers, in JSON; its errors' text reaches global's caller.
func (s *Server) configDumpJSON(_ context.Context, mesh, name string) ([]byte, error) {
	p := s.parts.Load()
	if p == nil {
		return nil, fmt.Errorf("zone %q replica %q is not running", s.cfg.Zone, s.cfg.ReplicaID)
	}
	dump, err := s.dataplaneConfig(p, mesh, name)
	if err != nil {
		return nil, err
	}
	return json.Marshal(dump)
}

// APIAddr returns the address the API listens on while Run runs (useful with
// port 0), or "" otherwise.
func (s *Server) APIAddr() string {
	if p := s.parts.Load(); p != nil {
		return p.api.String()
	}
	return ""
}
