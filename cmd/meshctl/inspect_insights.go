package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api/output"
)

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
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := output.ParseFormat(format)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			items, err := c.DataplaneOverviews(ctx, mesh)
			if err != nil {
				return err
			}
			return output.DataplaneOverviews(cmd.OutOrStdout(), f, items, time.Now())
		},
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := output.ParseFormat(format)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			items, err := c.MeshInsights(ctx)
			if err != nil {
				return err
			}
			return output.MeshInsights(cmd.OutOrStdout(), f, items)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	return cmd
}
