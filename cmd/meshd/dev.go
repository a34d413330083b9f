package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/cmd/internal/cli"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/zone"
)

// devNodes is how many global nodes `meshd dev` runs.
const devNodes = 3

// devPortOffset separates the dev nodes' ports: node i (0-based) listens on
// the default ports plus i*devPortOffset.
const devPortOffset = 100

// devZones are the zones `meshd dev` runs, on one network (devNetwork).
// Zone i (1-based) serves its API on 5681+i (5682, 5683) and xDS on 5678+i
// (5679, 5680), out of the way of the global nodes' 5681/5685/5690/5691 +
// 0, 100, 200.
var devZones = []string{"zone-1", "zone-2"}

func newDevCmd() *cobra.Command {
	var c common
	var dataDir, host string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local federation on loopback (three global nodes and two zones in one process), data under a local folder",
		Long: fmt.Sprintf(`Run a local federation in one process with its data under --data-dir:
%d global nodes forming a Raft cluster through gossip, and the zones %s
connected to them over TLS with zone tokens issued at start.

Ports: global node i (1-based) listens on API 5681, sync 5685, Raft 5690 and
gossip 5691, each plus (i-1)*%d. Zone i serves its API on 5681+i (5682, 5683)
and xDS on 5678+i (5679, 5680). The zones are on one network ("dev"): their
proxies reach each other directly.`, devNodes, strings.Join(devZones, " and "), devPortOffset),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, &c); err != nil {
				return err
			}
			logger, err := cli.NewLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			d := &devFederation{dataDir: dataDir, host: host, logger: logger, out: cmd.ErrOrStderr()}
			if err := d.build(); err != nil {
				return err
			}
			if err := startPprof(c.pprofAddr, logger); err != nil {
				return err
			}
			return runUntilSignal(d.run)
		},
	}
	c.bind(cmd)
	cmd.Flags().StringVar(&dataDir, "data-dir", ".meshfed/dev", "directory holding every node's and zone's data")
	cmd.Flags().StringVar(&host, "host", "127.0.0.1", "loopback address every node and zone listens on")
	return cmd
}

// devFederation is the dev command's global nodes and zones.
type devFederation struct {
	dataDir, host string
	logger        *slog.Logger
	out           io.Writer
	globals       []*global.Server
}

func (d *devFederation) addr(port, i int) string {
	return fmt.Sprintf("%s:%d", d.host, port+i*devPortOffset)
}

func (d *devFederation) zoneAPIAddr(i int) string   { return fmt.Sprintf("%s:%d", d.host, 5682+i) }
func (d *devFederation) zoneXDSAddr(i int) string   { return fmt.Sprintf("%s:%d", d.host, 5679+i) }
func (d *devFederation) zoneDir(name string) string { return filepath.Join(d.dataDir, name) }

// global1 is the node whose admin token and sync CA file the zones use (the
// CA is the cluster's, the same on every node).
func (d *devFederation) global1Dir() string { return filepath.Join(d.dataDir, "global-1") }

func (d *devFederation) build() error {
	var join []string
	for i := 0; i < devNodes; i++ {
		join = append(join, d.addr(5691, i))
	}
	for i := 0; i < devNodes; i++ {
		id := fmt.Sprintf("global-%d", i+1)
		srv, err := global.New(global.Config{
			NodeID: id, DataDir: filepath.Join(d.dataDir, id),
			APIAddr: d.addr(5681, i), RaftAddr: d.addr(5690, i), GossipAddr: d.addr(5691, i), SyncAddr: d.addr(5685, i),
			Join: join, BootstrapExpect: devNodes, Version: cli.Version, NoLeaveOnShutdown: true,
		}, d.logger.With("node", id))
		if err != nil {
			return err
		}
		d.globals = append(d.globals, srv)
	}
	return nil
}

// run runs the global nodes, then, once the cluster has its admin token and
// sync CA, the zones, until ctx ends or one of them fails.
func (d *devFederation) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(d.globals)+1)
	for _, srv := range d.globals {
		go func() { errs <- srv.Run(ctx) }()
	}
	go func() { errs <- d.runZones(ctx) }()
	var first error
	for range len(d.globals) + 1 {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel() // one part failed: stop the federation
		}
	}
	return first
}

// runZones waits for the global cluster, issues a token for each zone
// through global-1's API (with the admin token from its data dir), writes it
// to DATA_DIR/zone-N/token and runs the zones against every global node's
// sync port, trusting DATA_DIR/global-1/sync-ca.crt.
func (d *devFederation) runZones(ctx context.Context) error {
	adminTokenPath := filepath.Join(d.global1Dir(), global.AdminTokenFile)
	caPath := filepath.Join(d.global1Dir(), global.SyncCAFile)
	adminToken, err := waitForFiles(ctx, adminTokenPath, caPath)
	if err != nil || ctx.Err() != nil {
		return err
	}
	c, err := client.New("http://"+d.addr(5681, 0), adminToken, client.WithRetryTimeout(30*time.Second))
	if err != nil {
		return err
	}
	var syncAddrs []string
	for i := 0; i < devNodes; i++ {
		syncAddrs = append(syncAddrs, d.addr(5685, i))
	}
	var zones []*zone.Server
	for i, name := range devZones {
		if err := d.registerZone(ctx, c, name); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		tok, err := c.GenerateZoneToken(ctx, name, "")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dev: issuing a token for %s: %w", name, err)
		}
		dir := d.zoneDir(name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		tokenFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte(tok.Token+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		srv, err := zone.New(zone.Config{
			Zone: name, ReplicaID: name + "-dev", GlobalAddrs: syncAddrs,
			TokenFile: tokenFile, GlobalCAFile: caPath, DataDir: dir,
			APIAddr: d.zoneAPIAddr(i), XDSAddr: d.zoneXDSAddr(i), Version: cli.Version,
		}, d.logger.With("node", name))
		if err != nil {
			return err
		}
		zones = append(zones, srv)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(zones))
	for _, srv := range zones {
		go func() { errs <- srv.Run(ctx) }()
	}
	go d.announce(ctx, zones, adminTokenPath)
	var first error
	for range zones {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// devNetwork is the network every dev zone is on: their endpoints reach
// each other directly, as on one loopback.
const devNetwork = "dev"

// registerZone creates the dev zone's Zone on global, on devNetwork, unless
// it exists (a restart keeps what the user changed).
func (d *devFederation) registerZone(ctx context.Context, c *client.Client, name string) error {
	key := api.Key{Type: api.TypeZone, Name: name}
	if _, err := c.Get(ctx, key); err == nil {
		return nil
	} else if !api.IsNotFound(err) {
		return fmt.Errorf("dev: reading Zone %s: %w", name, err)
	}
	z := &api.Resource{Meta: api.Meta{Type: api.TypeZone, Name: name}, Spec: &api.ZoneSpec{Network: devNetwork}}
	if err := api.Prepare(z); err != nil {
		return err
	}
	if _, _, err := c.Put(ctx, z, client.PutOptions{}); err != nil {
		return fmt.Errorf("dev: creating Zone %s: %w", name, err)
	}
	return nil
}

// waitForFiles polls until every path exists and is not empty (the global
// cluster writes them once it is bootstrapped), and returns the first one's
// content. It returns "" and no error when ctx ends first.
func waitForFiles(ctx context.Context, paths ...string) (string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var first string
		all := true
		for i, p := range paths {
			b, err := os.ReadFile(p)
			switch {
			case errors.Is(err, os.ErrNotExist) || (err == nil && len(strings.TrimSpace(string(b))) == 0):
				all = false
			case err != nil:
				return "", fmt.Errorf("dev: %w", err)
			case i == 0:
				first = strings.TrimSpace(string(b))
			}
		}
		if all {
			return first, nil
		}
		select {
		case <-ctx.Done():
			return "", nil
		case <-tick.C:
		}
	}
}

// announce prints how to talk to the dev federation once both zones have
// received global's state (or after 30 s, whatever they have).
func (d *devFederation) announce(ctx context.Context, zones []*zone.Server, adminTokenPath string) {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		ready := true
		for _, z := range zones {
			st, ok := z.Status()
			ready = ready && ok && st.Ready
		}
		if ready {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nMeshfed dev federation is up (data under %s):\n", d.dataDir)
	fmt.Fprintf(&b, "  global   %d nodes: APIs http://%s, http://%s, http://%s\n", devNodes, d.addr(5681, 0), d.addr(5681, 1), d.addr(5681, 2))
	fmt.Fprintf(&b, "           sync %s, %s, %s; admin token in %s\n", d.addr(5685, 0), d.addr(5685, 1), d.addr(5685, 2), adminTokenPath)
	for i, name := range devZones {
		fmt.Fprintf(&b, "  %-8s API http://%s (no token needed); zone token in %s\n", name, d.zoneAPIAddr(i), filepath.Join(d.zoneDir(name), "token"))
	}
	fmt.Fprintf(&b, `Try:
  export MESHCTL_API=http://%s MESHCTL_TOKEN=$(cat %s)
  ./bin/meshctl get meshes
  ./bin/meshctl --api http://%s get meshes     # the same, as zone-1 sees them
  ./bin/meshctl --api http://%s get dataplanes # what the zones registered

`, d.addr(5681, 0), adminTokenPath, d.zoneAPIAddr(0), d.addr(5681, 0))
	fmt.Fprint(d.out, b.String())
}
