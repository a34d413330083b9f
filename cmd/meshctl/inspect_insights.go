package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/output"
)

// inspectRun is the body of an inspect subcommand: it parses -o, builds
// the client and the call's deadline, then runs show.
func (g *globals) inspectRun(format *string, show func(ctx context.Context, c *client.Client, w io.Writer, f output.Format) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		f, err := output.ParseFormat(*format)
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		ctx, cancel := g.context(cmd)
		defer cancel()
		return show(ctx, c, cmd.OutOrStdout(), f)
	}
}

// newInspectDataplanesCmd is `meshctl inspect dataplanes`.
func newInspectDataplanesCmd(g *globals) *cobra.Command {
	var format, mesh string
	cmd := &cobra.Command{
		Use:   "dataplanes",
		Short: "Show a Mesh's dataplanes: online or offline, kind, zone replica, last ACK, NACKs, certificate expiry",
		Long: `Show the dataplanes of a Mesh with their insights (GET
/meshes/{mesh}/dataplanes+insights): STATUS online while the proxy has an xDS
stream (as its zone reported), KIND envoy or grpc, the zone REPLICA serving
it, how long ago it last acknowledged a response (LAST-ACK), the responses it
rejected (NACKS) and, in an mTLS Mesh, when its certificate expires. Works on
global (every zone's) and on a zone.`,
		Example: `  meshctl inspect dataplanes --mesh default
  meshctl --api http://127.0.0.1:5682 inspect dataplanes -o yaml`,
		Args: cobra.NoArgs,
		RunE: g.inspectRun(&format, func(ctx context.Context, c *client.Client, w io.Writer, f output.Format) error {
			items, err := c.DataplaneOverviews(ctx, mesh)
			if err != nil {
				return err
			}
			return output.DataplaneOverviews(w, f, items, time.Now())
		}),
	}
	cmd.Flags().StringVarP(&mesh, "mesh", "m", "default", "the Mesh")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	return cmd
}

// newInspectMeshesCmd is `meshctl inspect meshes`.
func newInspectMeshesCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "meshes",
		Short: "Show every Mesh: dataplanes online/total, CA, policies by type",
		Long:  `Show every Mesh's counts (GET /mesh-insights): dataplanes online and total, its enabled CA backend, and how many policies of each type. Works on global and on a zone.`,
		Args:  cobra.NoArgs,
		RunE: g.inspectRun(&format, func(ctx context.Context, c *client.Client, w io.Writer, f output.Format) error {
			items, err := c.MeshInsights(ctx)
			if err != nil {
				return err
			}
			return output.MeshInsights(w, f, items)
		}),
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	return cmd
}
