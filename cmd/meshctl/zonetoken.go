package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
)

func newGenerateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "generate", Short: "Generate credentials (zone tokens) and dataplane bootstraps"}
	var zone, validFor string
	zoneToken := &cobra.Command{
		Use:   "zone-token --zone NAME [--valid-for D]",
		Short: "Issue a token a zone control plane uses to connect to global",
		Long: `Ask global for a zone token (POST /tokens/zone) and print it on standard
output, e.g. to a file for meshd zone --token-file. The token is valid for one
zone only, until it expires (--valid-for, default 1 year) or is revoked
(meshctl revoke zone-token). Its id and expiry are printed on standard error.
Needs the admin token.`,
		Example: `  meshctl generate zone-token --zone zone-1 > zone-1.token
  meshctl generate zone-token --zone zone-1 --valid-for 30d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := &api.Validator{}
			api.ValidateName(v, "--zone", zone, 63)
			if validFor != "" {
				if d, err := api.ParseDuration(validFor); err != nil || d <= 0 {
					v.Add("--valid-for", "must be a positive duration such as 24h, 30d or 1y, not %q", validFor)
				}
			}
			if err := v.Err(); err != nil {
				return fmt.Errorf("generate zone-token: %w", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			tok, err := c.GenerateZoneToken(ctx, zone, validFor)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "zone token for zone %q: id %s, valid until %s\n",
				tok.Zone, tok.ID, tok.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	zoneToken.Flags().StringVar(&zone, "zone", "", "the zone the token is for (required)")
	zoneToken.Flags().StringVar(&validFor, "valid-for", "", "how long the token is valid, e.g. 24h, 30d, 1y (default: global's, 1 year)")
	cmd.AddCommand(zoneToken)
	cmd.AddCommand(newGenerateBootstrapCmds(g)...)
	return cmd
}

func newRevokeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "revoke", Short: "Revoke credentials (zone tokens)"}
	var tokenFile, id, reason string
	zoneToken := &cobra.Command{
		Use:   "zone-token (--token-file F | --id ID) [--reason R]",
		Short: "Revoke a zone token: global refuses it from now on",
		Long: `Revoke a zone token (POST /tokens/zone/revoke), given the token (in a file)
or its id (printed by meshctl generate zone-token). Every global node refuses
it from then on; a zone using it is refused at its next connection. Needs the
admin token.`,
		Example: `  meshctl revoke zone-token --token-file zone-1.token --reason "rotated"
  meshctl revoke zone-token --id 6f1c...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rev := client.ZoneTokenRevocation{ID: strings.TrimSpace(id), Reason: reason}
			switch {
			case tokenFile != "" && rev.ID != "":
				return errors.New("revoke zone-token: give --token-file or --id, not both")
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("revoke zone-token: %w", err)
				}
				if rev.Token = strings.TrimSpace(string(b)); rev.Token == "" {
					return fmt.Errorf("revoke zone-token: %s is empty", tokenFile)
				}
			case rev.ID == "":
				return errors.New("revoke zone-token: --token-file F or --id ID is required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			out, err := c.RevokeZoneToken(ctx, rev)
			if err != nil {
				return err
			}
			if out.Zone != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "zone token %s (zone %q) revoked\n", out.ID, out.Zone)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "zone token %s revoked\n", out.ID)
			}
			return nil
		},
	}
	f := zoneToken.Flags()
	f.StringVar(&tokenFile, "token-file", "", "file holding the token to revoke")
	f.StringVar(&id, "id", "", "id of the token to revoke")
	f.StringVar(&reason, "reason", "", "why it is revoked (kept with the revocation)")
	cmd.AddCommand(zoneToken)
	return cmd
}
