// Command meshd runs Meshfed's control planes: `meshd global` (a node of the
// global cluster), `meshd zone` (a zone control plane) and `meshd dev` (a
// local federation for trying it out, dev.go). This package holds flags,
// environment, config file, logger and signals, and the dev federation's
// wiring.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cli"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/zone"
)

const envPrefix = "MESHFED"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meshd:", err)
		os.Exit(1)
	}
}

type common struct {
	config    string
	logLevel  string
	logFormat string
	pprofAddr string
}

func (c *common) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.config, "config", "", "YAML config file whose keys are this command's flag names (flags win over MESHFED_* environment variables, which win over the file)")
	cmd.Flags().StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&c.logFormat, "log-format", "text", "log format: text, json")
	cmd.Flags().StringVar(&c.pprofAddr, "pprof-addr", "", "serve Go's profiler (net/http/pprof) on this address; off when empty (keep it on loopback)")
}

// startPprof serves /debug/pprof/ on addr when set; profiling is how
// performance work starts (measure, then optimise).
func startPprof(addr string, logger *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	logger.Info("profiler listening", "addr", ln.Addr().String())
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	return nil
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshd",
		Short:         "Meshfed control plane",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newGlobalCmd(), newZoneCmd(), newDevCmd(), newDPCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "meshd", cli.Version) },
	})
	return root
}

// prepare layers env and config file under the flags and builds the logger.
func prepare(cmd *cobra.Command, c *common) error {
	// The config file path itself may come from the environment.
	if !cmd.Flags().Changed("config") {
		if v, ok := os.LookupEnv(cli.EnvName(envPrefix, "config")); ok {
			c.config = v
		}
	}
	return cli.Layer(cmd.Flags(), envPrefix, c.config, "config")
}

func newGlobalCmd() *cobra.Command {
	var c common
	var cfg global.Config
	cmd := &cobra.Command{
		Use:   "global",
		Short: "Run a node of the global control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, &c); err != nil {
				return err
			}
			logger, err := cli.NewLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			cfg.Version = cli.Version
			srv, err := global.New(cfg, logger)
			if err != nil {
				return err
			}
			if err := startPprof(c.pprofAddr, logger); err != nil {
				return err
			}
			return runUntilSignal(srv.Run)
		},
	}
	c.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "node-id", "", "this node's id in the Raft cluster (default: the host name)")
	f.StringVar(&cfg.DataDir, "data-dir", "meshfed-data", "directory for the Raft log, snapshots and the admin token")
	f.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:5681", "HTTP API listen address")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:5690", "Raft listen address (must be an IP other nodes can reach)")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", "127.0.0.1:5691", "gossip (memberlist) listen address, UDP and TCP")
	f.StringVar(&cfg.SyncAddr, "sync-addr", "127.0.0.1:5685", "sync port (gRPC) zones connect to")
	f.BoolVar(&cfg.SyncInsecure, "sync-insecure", false, "serve the sync port without TLS (only on trusted networks)")
	f.StringVar(&cfg.SyncCertFile, "sync-tls-cert-file", "", "serving certificate of the sync port (default: issued from the cluster's sync CA)")
	f.StringVar(&cfg.SyncKeyFile, "sync-tls-key-file", "", "key of --sync-tls-cert-file")
	f.StringSliceVar(&cfg.Join, "join", nil, "gossip addresses of other global nodes to join (comma-separated)")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "wait for this many fresh nodes, then bootstrap Raft with all of them (default: 1 without --join; with --join, wait to be added by the cluster's leader)")
	f.DurationVar(&cfg.DeadServerThreshold, "autopilot-dead-threshold", 30*time.Second, "remove a server from Raft after it has been dead in gossip this long")
	f.IntVar(&cfg.MinQuorum, "autopilot-min-quorum", 3, "never remove dead voters below this many")
	f.BoolVar(&cfg.SkipDefaultMesh, "skip-default-mesh", false, "do not create the default Mesh when the store is first bootstrapped")
	f.DurationVar(&cfg.ZoneCAValidity, "zone-ca-validity", 90*24*time.Hour, "lifetime of the intermediate CAs global signs for zones: how long a zone cut off from global can keep issuing dataplane certificates (renewed at half of it)")
	f.IntVar(&cfg.TimingMultiplier, "raft-timing-multiplier", 1, "scale Raft and gossip timeouts (1 = tuned for a LAN; raise on slow or loaded machines)")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest accepted API request body")
	return cmd
}

func newZoneCmd() *cobra.Command {
	var c common
	var cfg zone.Config
	cmd := &cobra.Command{
		Use:   "zone --zone NAME --global ADDR[,ADDR...] --token-file F --global-ca-file F",
		Short: "Run a zone control plane",
		Long: `Run a zone control plane: it dials global's sync port (any of --global, in
turn), keeps a replica of global's state in --data-dir and serves it on its
HTTP API (the same paths as global's; global-owned types are read-only there).
The zone's own Dataplanes and ZoneIngress are written through that API and
reported to global. A zone restarted while global is unreachable serves its
last known state from --data-dir.

The zone API needs no token: it listens on loopback (127.0.0.1:5681) by
default; bind it elsewhere only on a trusted network.`,
		Example: `  meshctl generate zone-token --zone zone-1 > zone-1.token
  meshd zone --zone zone-1 --global 127.0.0.1:5685 --token-file zone-1.token \
    --global-ca-file meshfed-data/sync-ca.crt --data-dir zone-1-data --api-addr 127.0.0.1:5682`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, &c); err != nil {
				return err
			}
			logger, err := cli.NewLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			cfg.Version = cli.Version
			srv, err := zone.New(cfg, logger)
			if err != nil {
				return err
			}
			if err := startPprof(c.pprofAddr, logger); err != nil {
				return err
			}
			return runUntilSignal(srv.Run)
		},
	}
	c.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.Zone, "zone", "", "this zone's name: a DNS label, the zone its token was issued for (required)")
	f.StringVar(&cfg.ReplicaID, "replica-id", "", "this zone control-plane replica's id, shown on global (default: the host name)")
	f.StringSliceVar(&cfg.GlobalAddrs, "global", nil, "global nodes' sync addresses host:port, comma-separated; the zone tries them in turn (required)")
	f.StringVar(&cfg.TokenFile, "token-file", "", "file holding the zone token (meshctl generate zone-token); read again at every connection attempt (required)")
	f.StringVar(&cfg.GlobalCAFile, "global-ca-file", "", "PEM certificate of global's sync CA (global's DATA_DIR/sync-ca.crt) to verify global (required unless --insecure)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "sync with global over plaintext (global run with --sync-insecure; trusted networks only)")
	f.StringVar(&cfg.DataDir, "data-dir", "meshfed-zone-data", "directory for the replica of global's state and the zone's own resources")
	f.StringVar(&cfg.APIAddr, "api-addr", zone.DefaultAPIAddr, "HTTP API listen address (no token needed: keep it on loopback or a trusted network)")
	f.StringVar(&cfg.XDSAddr, "xds-addr", zone.DefaultXDSAddr, "xDS (gRPC ADS) listen address proxies connect to; generated bootstraps point at it")
	f.StringVar(&cfg.XDSAdvertiseAddr, "xds-advertise-addr", "", "xDS address proxies dial, written into generated bootstraps (default: the --xds-addr it listens on)")
	f.DurationVar(&cfg.DataplaneGracePeriod, "dataplane-grace-period", 30*time.Second, "how long a Dataplane its proxy registered itself outlives the proxy's last xDS stream")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", "", "gossip address host:port shared with the zone's other replicas (HA); empty: a zone of one replica")
	f.StringVar(&cfg.GossipAdvertiseAddr, "gossip-advertise-addr", "", "gossip address the other replicas reach (default: --gossip-addr)")
	f.StringSliceVar(&cfg.Join, "join", nil, "gossip addresses of the zone's other replicas, comma-separated")
	f.StringVar(&cfg.GossipKeyFile, "gossip-key-file", "", "file with a base64 key (16, 24 or 32 bytes) that encrypts the replicas' gossip; the same on every replica")
	f.DurationVar(&cfg.TombstoneTTL, "tombstone-ttl", zone.DefaultTombstoneTTL, "how long a deleted zone resource is remembered, so that a replica with an older copy cannot bring it back")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest accepted API request body")
	return cmd
}

// runUntilSignal runs fn until SIGINT or SIGTERM.
func runUntilSignal(fn func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := fn(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
