package main

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/output"
)

func newInspectCmd(g *globals) *cobra.Command {
	var format, mesh string
	var config bool
	cmd := &cobra.Command{
		Use:   "inspect TYPE NAME",
		Short: "Inspect the control plane, its zones, or where a resource is applied",
		Long: `Inspect the control plane itself (inspect global), its zones (inspect zones),
or, for one resource, its state in every zone (GET .../{name}/_status):
applied, pending, rejected (with the zone's reason) or not-sent, and whether
each zone is online. This answers "is my change live everywhere?".
With --config, for a Dataplane: the xDS resources its proxy is served now
(GET /meshes/{mesh}/dataplanes/{name}/_config, private keys redacted), from a
zone's API, or from global's, which asks the Dataplane's zone (name it there
as ZONE.NAME). TYPE is a type name, its plural or an alias:
  ` + strings.Join(typeHelp(), "\n  "),
		Example: `  meshctl inspect meshtrafficpermission allow-all --mesh default
  meshctl inspect dataplane web-1 --mesh default --config
  meshctl inspect zones
  meshctl inspect zones zone-1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if config {
				return inspectConfig(cmd, g, args[0], args[1], mesh)
			}
			f, err := output.ParseFormat(format)
			if err != nil {
				return err
			}
			tc, err := g.typeCall(cmd, args[0], mesh)
			if err != nil {
				return err
			}
			defer tc.cancel()
			st, err := tc.c.ResourceStatus(tc.ctx, tc.key(args[1]))
			if err != nil {
				return err
			}
			return output.ResourceStatus(cmd.OutOrStdout(), f, st, time.Now())
		},
	}
	cmd.Flags().StringVarP(&mesh, "mesh", "m", "", "mesh of mesh-scoped types (default \"default\")")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	cmd.Flags().BoolVar(&config, "config", false, "for a Dataplane: print the xDS config its proxy is served (JSON)")

	var zonesFormat string
	zones := &cobra.Command{
		Use:   "zones [NAME]",
		Short: "Show the zones: online or offline, serving global node, replicas, applied revision, lag, rejections",
		Long: `Show every zone (GET /zones+insights), or one (GET /zones/{name}/_overview):
STATUS online, offline, or disabled; the GLOBAL-NODE serving its live streams;
its live REPLICAS; ACKED-REV, the revision the zone has applied (every live
replica has); LAG, 0 when caught up, otherwise revisions behind and for how
long; how many resources it REJECTED; AGE of its current connection. Below
the table: why offline zones are offline and the rejected resources with the
zone's reasons. Global only; needs the admin token.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.inspectRun(&zonesFormat, func(ctx context.Context, c *client.Client, w io.Writer, f output.Format) error {
				if len(args) == 1 {
					ov, err := c.ZoneOverview(ctx, args[0])
					if err != nil {
						return err
					}
					return output.ZoneOverview(w, f, ov, time.Now())
				}
				items, err := c.ZoneOverviews(ctx)
				if err != nil {
					return err
				}
				return output.ZoneOverviews(w, f, items, time.Now())
			})(cmd, args)
		},
	}
	zones.Flags().StringVarP(&zonesFormat, "output", "o", "table", "output format: table, yaml, json")
	cmd.AddCommand(zones)

	var globalFormat string
	global := &cobra.Command{
		Use:   "global",
		Short: "Show the global cluster: members, gossip state, Raft role, voters, leader, indexes",
		Long: `Show the global cluster as the node meshctl talks to sees it (GET /global/status):
one row per member with its gossip state, its Raft role in its own view
("unreachable" when it could not be asked), whether it is a voter, a * on the
leader, its applied and commit index, how long ago it last heard from the
leader, and its Raft and API addresses. Needs the admin token.`,
		Args: cobra.NoArgs,
		RunE: g.inspectRun(&globalFormat, func(ctx context.Context, c *client.Client, w io.Writer, f output.Format) error {
			st, err := c.GlobalStatus(ctx)
			if err != nil {
				return err
			}
			return output.GlobalStatus(w, f, st, time.Now())
		}),
	}
	global.Flags().StringVarP(&globalFormat, "output", "o", "table", "output format: table, yaml, json")
	cmd.AddCommand(global)
	cmd.AddCommand(newInspectDataplanesCmd(g), newInspectMeshesCmd(g))
	return cmd
}
