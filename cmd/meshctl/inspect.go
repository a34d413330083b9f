package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api/output"
)

func newInspectCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect", Short: "Inspect the control plane itself"}
	var format string
	global := &cobra.Command{
		Use:   "global",
		Short: "Show the global cluster: members, gossip state, Raft role, voters, leader, indexes",
		Long: `Show the global cluster as the node meshctl talks to sees it (GET /global/status):
one row per member with its gossip state, its Raft role in its own view
("unreachable" when it could not be asked), whether it is a voter, a * on the
leader, its applied and commit index, how long ago it last heard from the
leader, and its Raft and API addresses. Needs the admin token.`,
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
			st, err := c.GlobalStatus(ctx)
			if err != nil {
				return err
			}
			return output.GlobalStatus(cmd.OutOrStdout(), f, st, time.Now())
		},
	}
	global.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	cmd.AddCommand(global)
	return cmd
}
