package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/api/output"
	"github.com/meshfed/meshfed/cmd/internal/cli"
)

func (g *globals) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

// typeCall is what a command about one resource type needs: the type and
// mesh the user named, a client, and a context bounded by --timeout (call
// cancel when done).
type typeCall struct {
	d      *api.Descriptor
	mesh   string
	c      *client.Client
	ctx    context.Context
	cancel context.CancelFunc
}

// key names a resource of the call's type.
func (tc *typeCall) key(name string) api.Key {
	return api.Key{Type: tc.d.Name, Mesh: tc.mesh, Name: name}
}

func (g *globals) typeCall(cmd *cobra.Command, typ, mesh string) (*typeCall, error) {
	d, m, err := resolveType(typ, mesh)
	if err != nil {
		return nil, err
	}
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := g.context(cmd)
	return &typeCall{d: d, mesh: m, c: c, ctx: ctx, cancel: cancel}, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Create or update resources from YAML or JSON (multi-document YAML allowed)",
		Long: `Create or update resources from YAML or JSON files (- reads standard input).
Every document is decoded and validated by the control plane first; if any is
invalid, every problem is printed and nothing is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("apply: -f FILE (or -f - for standard input) is required")
			}
			var docs []*api.Resource
			var errs []error
			for _, f := range files {
				rs, err := readResources(cmd.InOrStdin(), f)
				docs = append(docs, rs...)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", f, err))
				}
			}
			if len(errs) > 0 {
				return &problems{errs: errs, footer: "nothing was applied"}
			}
			if len(docs) == 0 {
				return errors.New("apply: no resources in the input")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			// Validate everything on the server before writing anything.
			verbs := make([]string, len(docs))
			for i, r := range docs {
				_, created, err := c.Put(ctx, r, client.PutOptions{DryRun: true})
				if missingMesh(err) && creates(docs[:i], api.Key{Type: api.TypeMesh, Name: r.Mesh}) {
					// Its mesh is created earlier in the same input.
					err, created = nil, true
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", describe(r), err))
					continue
				}
				verbs[i] = "updated"
				if created {
					verbs[i] = "created"
				}
			}
			if len(errs) > 0 {
				return &problems{errs: errs, footer: "nothing was applied"}
			}
			out := cmd.OutOrStdout()
			for i, r := range docs {
				if dryRun {
					fmt.Fprintf(out, "%s %s (dry run)\n", describe(r), verbs[i])
					continue
				}
				_, created, err := c.Put(ctx, r, client.PutOptions{})
				if err != nil && i > 0 {
					return fmt.Errorf("%s: %w (the resources before it in the input were applied)", describe(r), err)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", describe(r), err)
				}
				verb := "updated"
				if created {
					verb = "created"
				}
				fmt.Fprintf(out, "%s %s\n", describe(r), verb)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "file to apply, or - for standard input (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate on the control plane and print what would change, without writing")
	return cmd
}

// missingMesh reports whether err says the resource's mesh does not exist
// (a 400 at field "mesh", or a 404 from older servers).
func missingMesh(err error) bool {
	var ve *api.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			if fe.Field != "mesh" {
				return false
			}
		}
		return len(ve.Errors) > 0
	}
	return api.IsNotFound(err)
}

// creates reports whether docs include the resource key.
func creates(docs []*api.Resource, key api.Key) bool {
	for _, d := range docs {
		if d.Key() == key {
			return true
		}
	}
	return false
}

func readResources(stdin io.Reader, path string) ([]*api.Resource, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return api.DecodeAll(r)
}

func describe(r *api.Resource) string {
	if r.Mesh != "" {
		return fmt.Sprintf("%s %q in mesh %q", r.Type, r.Name, r.Mesh)
	}
	return fmt.Sprintf("%s %q", r.Type, r.Name)
}

// resolveType maps what the user typed to a registry entry and the mesh to
// use (mesh-scoped types default to mesh "default", as kumactl does).
func resolveType(typ, mesh string) (*api.Descriptor, string, error) {
	d, err := api.LookupAny(typ)
	if err != nil {
		return nil, "", err
	}
	if d.Scope == api.ScopeGlobal {
		return d, "", nil
	}
	if mesh == "" {
		mesh = "default"
	}
	return d, mesh, nil
}

func newGetCmd(g *globals) *cobra.Command {
	var mesh, format string
	cmd := &cobra.Command{
		Use:   "get TYPE [NAME]",
		Short: "Show one resource or list resources of a type",
		Long: "Show one resource or list resources of a type. TYPE is a type name, its plural or an alias:\n  " +
			strings.Join(typeHelp(), "\n  "),
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := output.ParseFormat(format)
			if err != nil {
				return err
			}
			tc, err := g.typeCall(cmd, args[0], mesh)
			if err != nil {
				return err
			}
			defer tc.cancel()
			if len(args) == 2 {
				r, err := tc.c.Get(tc.ctx, tc.key(args[1]))
				if err != nil {
					return err
				}
				return output.One(cmd.OutOrStdout(), f, r, time.Now())
			}
			items, err := tc.c.ListAll(tc.ctx, tc.d.Name, tc.mesh, client.ListOptions{})
			if err != nil {
				return err
			}
			return output.Many(cmd.OutOrStdout(), f, items, time.Now())
		},
	}
	cmd.Flags().StringVarP(&mesh, "mesh", "m", "", "mesh of mesh-scoped types (default \"default\")")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table, yaml, json")
	return cmd
}

func typeHelp() []string {
	var out []string
	for _, d := range api.Types() {
		out = append(out, fmt.Sprintf("%-22s %-24s %s-scoped, owned by %s", d.Name, d.Plural, d.Scope, d.Owner))
	}
	return out
}

func newDeleteCmd(g *globals) *cobra.Command {
	var mesh string
	cmd := &cobra.Command{
		Use:   "delete TYPE NAME",
		Short: "Delete a resource (deleting a Mesh deletes everything in it)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := g.typeCall(cmd, args[0], mesh)
			if err != nil {
				return err
			}
			defer tc.cancel()
			key := tc.key(args[1])
			if err := tc.c.Delete(tc.ctx, key, client.DeleteOptions{}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", describe(&api.Resource{Meta: api.Meta{Type: key.Type, Mesh: key.Mesh, Name: key.Name}}))
			return nil
		},
	}
	cmd.Flags().StringVarP(&mesh, "mesh", "m", "", "mesh of mesh-scoped types (default \"default\")")
	return cmd
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print meshctl's version and, when reachable, the control plane's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "meshctl: %s\n", cli.Version)
			c, err := g.client()
			if err != nil {
				fmt.Fprintf(out, "control plane: not configured\n")
				return nil
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			info, err := c.Info(ctx)
			if err != nil {
				return fmt.Errorf("control plane: %w", err)
			}
			fmt.Fprintf(out, "control plane: %s %s (%s, instance %s, cluster %s)\n", info.Product, info.Version, info.Role, info.InstanceID, info.ClusterID)
			return nil
		},
	}
}

func newConfigCmd(g *globals) *cobra.Command {
	cfgCmd := &cobra.Command{Use: "config", Short: "Manage meshctl's configuration"}
	cps := &cobra.Command{Use: "control-planes", Aliases: []string{"control-plane", "cp"}, Short: "Manage the control planes meshctl talks to"}
	var name, address, token, tokenFile string
	var overwrite bool
	add := &cobra.Command{
		Use:   "add --name NAME --address URL [--token TOKEN | --token-file FILE]",
		Short: "Add a control plane and make it the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := &api.Validator{}
			api.ValidateName(v, "--name", name, 63)
			v.Required("--address", address)
			if err := v.Err(); err != nil {
				return err
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				token = strings.TrimSpace(string(b))
			}
			// An interactive check: a typo in the address should fail now,
			// not after the retry budget.
			c, err := client.New(address, token, client.WithRetry(client.RetryPolicy{Disabled: true}))
			if err != nil {
				return fmt.Errorf("--address: %w", err)
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			if _, err := c.Types(ctx); err != nil {
				return fmt.Errorf("control plane %s is not usable: %w", address, err)
			}
			path := g.config()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			cp := controlPlane{Name: name, Address: address, Token: token}
			if i := cfg.find(name); i >= 0 {
				if !overwrite {
					return fmt.Errorf("control plane %q already exists (use --overwrite to replace it)", name)
				}
				cfg.ControlPlanes[i] = cp
			} else {
				cfg.ControlPlanes = append(cfg.ControlPlanes, cp)
			}
			cfg.CurrentControlPlane = name
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added control plane %q (%s) and switched to it\n", name, address)
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "name of the control plane")
	add.Flags().StringVar(&address, "address", "", "API URL, e.g. http://127.0.0.1:5681")
	add.Flags().StringVar(&token, "token", "", "admin token")
	add.Flags().StringVar(&tokenFile, "token-file", "", "file holding the admin token")
	add.Flags().BoolVar(&overwrite, "overwrite", false, "replace a control plane of the same name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the configured control planes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.config())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%-8s %-20s %s\n", "ACTIVE", "NAME", "ADDRESS")
			for _, cp := range cfg.ControlPlanes {
				mark := ""
				if cp.Name == cfg.CurrentControlPlane {
					mark = "*"
				}
				fmt.Fprintf(out, "%-8s %-20s %s\n", mark, cp.Name, cp.Address)
			}
			return nil
		},
	}
	var switchName string
	switchCmd := &cobra.Command{
		Use:   "switch --name NAME",
		Short: "Make a configured control plane the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := g.config()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if cfg.find(switchName) < 0 {
				return fmt.Errorf("--name: no control plane %q is configured", switchName)
			}
			cfg.CurrentControlPlane = switchName
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "switched to control plane %q\n", switchName)
			return nil
		},
	}
	switchCmd.Flags().StringVar(&switchName, "name", "", "name of the control plane")
	var removeName string
	remove := &cobra.Command{
		Use:   "remove --name NAME",
		Short: "Remove a configured control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := g.config()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			i := cfg.find(removeName)
			if i < 0 {
				return fmt.Errorf("--name: no control plane %q is configured", removeName)
			}
			cfg.ControlPlanes = append(cfg.ControlPlanes[:i], cfg.ControlPlanes[i+1:]...)
			if cfg.CurrentControlPlane == removeName {
				cfg.CurrentControlPlane = ""
			}
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed control plane %q\n", removeName)
			return nil
		},
	}
	remove.Flags().StringVar(&removeName, "name", "", "name of the control plane")
	cps.AddCommand(add, list, switchCmd, remove)
	cfgCmd.AddCommand(cps)
	return cfgCmd
}
