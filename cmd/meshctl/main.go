// Command meshctl is Meshfed's CLI: apply, get and delete resources and
// manage the control planes it talks to. It is a thin shell over api/client
// and api/output; this package holds flags, environment, config and the
// wording of messages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/cmd/internal/cli"
)

func main() {
	root := newRoot(os.Stdin, os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprint(os.Stderr, describeError(err))
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	api        string
	token      string
	configPath string
	timeout    time.Duration
	retryFor   time.Duration
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "meshctl",
		Short:         "Meshfed command-line client",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.api, "api", "", "control plane API URL (env MESHCTL_API; default: the current control plane of the config file)")
	pf.StringVar(&g.token, "token", "", "API bearer token (env MESHCTL_TOKEN)")
	pf.StringVar(&g.configPath, "config-file", "", "meshctl config file (env MESHCTL_CONFIG; default ~/.meshctl/config)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "give up on a command after this long")
	pf.DurationVar(&g.retryFor, "retry-for", 10*time.Second, "keep retrying a call while the control plane is unavailable (503, e.g. during an election) or refuses connections, for up to this long; 0 disables retries")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return cli.Layer(cmd.Flags(), "MESHCTL", "")
	}
	root.AddCommand(newApplyCmd(g), newGetCmd(g), newDeleteCmd(g), newInspectCmd(g), newVersionCmd(g), newConfigCmd(g))
	root.AddCommand(newGenerateCmd(g))
	root.AddCommand(newRevokeCmd(g))
	return root
}

func (g *globals) config() string {
	if g.configPath != "" {
		return g.configPath
	}
	if v := os.Getenv("MESHCTL_CONFIG"); v != "" {
		return v
	}
	return defaultConfigPath()
}

// client resolves the control plane: --api/--token (or their environment
// variables), else the config file's current control plane.
func (g *globals) client() (*client.Client, error) {
	addr, token, err := g.endpoint()
	if err != nil {
		return nil, err
	}
	return client.New(addr, token, g.retryOption())
}

// endpoint resolves the control plane's API URL and token as client does.
func (g *globals) endpoint() (addr, token string, err error) {
	addr, token = g.api, g.token
	if addr == "" {
		cfg, err := loadConfig(g.config())
		if err != nil {
			return "", "", err
		}
		cp, ok := cfg.current()
		if !ok {
			return "", "", errors.New("no control plane: pass --api URL (or set MESHCTL_API), or add one with `meshctl config control-planes add`")
		}
		addr = cp.Address
		if token == "" {
			token = cp.Token
		}
	}
	return addr, token, nil
}

func (g *globals) retryOption() client.Option {
	if g.retryFor <= 0 {
		return client.WithRetry(client.RetryPolicy{Disabled: true})
	}
	return client.WithRetryTimeout(min(g.retryFor, g.timeout))
}

// problems is a list of errors reported together, with a closing line.
type problems struct {
	errs   []error
	footer string
}

func (p *problems) Error() string {
	parts := make([]string, len(p.errs))
	for i, e := range p.errs {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n") + "\n" + p.footer
}

func (p *problems) Unwrap() []error { return p.errs }

// describeError renders an error for a person: validation problems one per
// line with their field paths.
func describeError(err error) string {
	var b strings.Builder
	if p, ok := err.(*problems); ok {
		for _, e := range p.errs {
			b.WriteString(describeError(e))
		}
		if p.footer != "" {
			b.WriteString(p.footer + "\n")
		}
		return b.String()
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			b.WriteString(describeError(e))
		}
		return b.String()
	}
	var ve *api.ValidationError
	if errors.As(err, &ve) {
		prefix := strings.TrimSuffix(err.Error(), ve.Error())
		prefix = strings.TrimSuffix(strings.TrimSpace(prefix), ":")
		if prefix == "" {
			prefix = "invalid input"
		}
		fmt.Fprintf(&b, "Error: %s is invalid:\n", prefix)
		for _, fe := range ve.Errors {
			if fe.Field != "" {
				fmt.Fprintf(&b, "  * %s: %s\n", fe.Field, fe.Message)
			} else {
				fmt.Fprintf(&b, "  * %s\n", fe.Message)
			}
		}
		return b.String()
	}
	return "Error: " + err.Error() + "\n"
}
