package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
)

// inspectConfig is `meshctl inspect dataplane NAME --config`: the
// Dataplane's config dump (GET /meshes/{mesh}/dataplanes/{name}/_config),
// pretty-printed. A zone answers it for its proxies; global asks the
// Dataplane's zone. api/client has no call for it: the raw GET of
// generate_bootstrap.go fetches it (with the same retries on 503).
func inspectConfig(cmd *cobra.Command, g *globals, typ, name, mesh string) error {
	d, m, err := resolveType(typ, mesh)
	if err != nil {
		return err
	}
	if d.Name != api.TypeDataplane {
		return fmt.Errorf("--config: only a Dataplane has a config dump, not a %s", d.Name)
	}
	addr, token, err := g.endpoint()
	if err != nil {
		return err
	}
	if _, err := client.New(addr, token); err != nil { // the same URL checks as every other command
		return fmt.Errorf("--api: %w", err)
	}
	ctx, cancel := g.context(cmd)
	defer cancel()
	body, err := getBootstrap(ctx, addr, token, g.retryFor, []string{"meshes", m, "dataplanes", name, "_config"}, nil)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("the config dump of dataplane %q is not JSON: %w", name, err)
	}
	out.WriteByte('\n')
	_, err = cmd.OutOrStdout().Write(out.Bytes())
	return err
}
