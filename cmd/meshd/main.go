// Command meshd runs Meshfed's control planes: `meshd global` (a node of the
// global cluster) and `meshd dev` (a local federation for trying it out).
// This file holds flags, environment, config file, logger and signals only.
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
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/cmd/internal/cli"
	"github.com/meshfed/meshfed/global"
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
	root.AddCommand(newGlobalCmd(), newDevCmd(), &cobra.Command{
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
	f.IntVar(&cfg.TimingMultiplier, "raft-timing-multiplier", 1, "scale Raft and gossip timeouts (1 = tuned for a LAN; raise on slow or loaded machines)")
	f.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 1<<20, "largest accepted API request body")
	return cmd
}

// devNodes is how many global nodes `meshd dev` runs.
const devNodes = 3

// devPortOffset separates the dev nodes' ports: node i (0-based) listens on
// the default ports plus i*devPortOffset.
const devPortOffset = 100

func newDevCmd() *cobra.Command {
	var c common
	var dataDir, host string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local federation on loopback (three global nodes in one process), data under a local folder",
		Long: fmt.Sprintf(`Run a local federation in one process with its data under --data-dir:
%d global nodes forming a Raft cluster through gossip. Node i (1-based) listens on
API 5681, Raft 5690 and gossip 5691, each plus (i-1)*%d.`, devNodes, devPortOffset),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, &c); err != nil {
				return err
			}
			logger, err := cli.NewLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			addr := func(port, i int) string { return fmt.Sprintf("%s:%d", host, port+i*devPortOffset) }
			var join []string
			for i := 0; i < devNodes; i++ {
				join = append(join, addr(5691, i))
			}
			var servers []*global.Server
			for i := 0; i < devNodes; i++ {
				id := fmt.Sprintf("global-%d", i+1)
				srv, err := global.New(global.Config{
					NodeID: id, DataDir: filepath.Join(dataDir, id),
					APIAddr: addr(5681, i), RaftAddr: addr(5690, i), GossipAddr: addr(5691, i), SyncAddr: addr(5685, i),
					Join: join, BootstrapExpect: devNodes, Version: cli.Version, NoLeaveOnShutdown: true,
				}, logger.With("node", id))
				if err != nil {
					return err
				}
				servers = append(servers, srv)
			}
			go announceDev(cmd, addr(5681, 0), filepath.Join(dataDir, "global-1", global.AdminTokenFile))
			return runUntilSignal(func(ctx context.Context) error {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				errs := make(chan error, len(servers))
				for _, srv := range servers {
					go func() { errs <- srv.Run(ctx) }()
				}
				var first error
				for range servers {
					if err := <-errs; err != nil && first == nil {
						first = err
						cancel() // one node failed: stop the federation
					}
				}
				return first
			})
		},
	}
	c.bind(cmd)
	cmd.Flags().StringVar(&dataDir, "data-dir", ".meshfed/dev", "directory holding every node's data")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "loopback address every node listens on")
	return cmd
}

// announceDev prints how to talk to the dev control plane once its admin
// token exists.
func announceDev(cmd *cobra.Command, apiAddr, tokenPath string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(tokenPath); err == nil {
			fmt.Fprintf(cmd.ErrOrStderr(), `
Meshfed dev federation is up: 3 global nodes (APIs on ports 5681, 5781, 5881).
  API:         http://%s
  admin token: %s
Try:
  export MESHCTL_API=http://%s MESHCTL_TOKEN=$(cat %s)
  ./bin/meshctl get meshes

`, apiAddr, tokenPath, apiAddr, tokenPath)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
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
