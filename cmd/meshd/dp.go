package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/cmd/internal/cli"
	"github.com/meshfed/meshfed/xds/agent"
	"github.com/meshfed/meshfed/xds/generate"
)

// newDPCmd groups what runs beside a dataplane.
func newDPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dp", Short: "Run what a dataplane needs beside it"}
	cmd.AddCommand(newGRPCAgentCmd())
	return cmd
}

func newGRPCAgentCmd() *cobra.Command {
	var c common
	var cfg agent.Config
	var dataplaneFile string
	cmd := &cobra.Command{
		Use:   "grpc-agent --mesh M --name N --zone-xds ADDR --dir DIR",
		Short: "Keep a proxyless gRPC application's certificate files and bootstrap fresh",
		Long: `Keep a proxyless gRPC application's mTLS certificate, key and CA bundle in
--dir (cert.pem, key.pem, ca.pem), fetched from the zone over SDS and
rewritten at every rotation, and write --dir/bootstrap.json: the grpc
bootstrap whose file_watcher certificate provider reads them. Run the
application with GRPC_XDS_BOOTSTRAP=DIR/bootstrap.json.`,
		Example: `  meshd dp grpc-agent --mesh default --name echo-1 --zone-xds 127.0.0.1:5678 \
    --dir /run/echo-1 --dataplane-file echo-1.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd, &c); err != nil {
				return err
			}
			logger, err := cli.NewLogger(c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			if dataplaneFile != "" {
				if cfg.Dataplane, err = readDataplane(dataplaneFile, cfg.Mesh, cfg.Name); err != nil {
					return fmt.Errorf("dataplane-file: %w", err)
				}
			}
			out := cmd.OutOrStdout()
			cfg.Ready = func() { fmt.Fprintf(out, "certificates written to %s\n", cfg.Dir) }
			a, err := agent.New(cfg, logger)
			if err != nil {
				return err
			}
			return runUntilSignal(a.Run)
		},
	}
	c.bind(cmd)
	f := cmd.Flags()
	f.StringVarP(&cfg.Mesh, "mesh", "m", "", "the Dataplane's Mesh (required)")
	f.StringVar(&cfg.Name, "name", "", "the Dataplane's name (required)")
	f.StringVar(&cfg.ZoneXDS, "zone-xds", "127.0.0.1:5678", "the zone's xDS address")
	f.StringVar(&cfg.Dir, "dir", "", "directory for cert.pem, key.pem, ca.pem and bootstrap.json (required)")
	f.StringVar(&dataplaneFile, "dataplane-file", "", "the Dataplane (YAML or JSON), put in the node metadata so the proxy registers itself")
	f.DurationVar(&cfg.Refresh, "refresh", time.Second, "how often grpc-go re-reads the certificate files")
	return cmd
}

// readDataplane reads and checks a Dataplane file for mesh and name, and
// returns it as JSON with the proxyless label set.
func readDataplane(path, mesh, name string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dp, err := api.DecodeDataplane(b, mesh, name)
	if err != nil {
		return nil, err
	}
	if dp.Labels == nil {
		dp.Labels = map[string]string{}
	}
	if v, ok := dp.Labels[generate.LabelProxy]; ok && v != generate.ProxyGRPC {
		return nil, fmt.Errorf("labels[%q]: %q, but a grpc-agent serves proxyless gRPC applications (%q)", generate.LabelProxy, v, generate.ProxyGRPC)
	}
	dp.Labels[generate.LabelProxy] = generate.ProxyGRPC
	return dp.MarshalJSON()
}
