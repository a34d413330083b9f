package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/xds/bootstrap"
	"github.com/meshfed/meshfed/xds/generate"
)

// Bootstrap formats, as the zone endpoint's format parameter names them.
const (
	formatGRPC  = "grpc"
	formatEnvoy = "envoy"
)

// bootstrapFlags are the flags of both bootstrap commands.
type bootstrapFlags struct {
	mesh, name    string
	dataplaneFile string
	output        string
	adminPort     uint32 // envoy only
}

func newGenerateBootstrapCmds(g *globals) []*cobra.Command {
	var gf, ef bootstrapFlags
	grpcCmd := &cobra.Command{
		Use:   "grpc-bootstrap --mesh M --name N [--dataplane-file F] [-o FILE]",
		Short: "Print the xDS bootstrap of a proxyless gRPC application",
		Long: `Ask the zone control plane (--api is the zone's API) for the grpc-go xDS
bootstrap of Dataplane N in mesh M (GET
/meshes/M/dataplanes/N/_bootstrap?format=grpc) and print it, or write it to
FILE. The application reads it from the file GRPC_XDS_BOOTSTRAP names and
connects to the zone's xDS server as node "M.N".

With --dataplane-file, the Dataplane (YAML or JSON, - for standard input) is
checked here and put into the bootstrap's node metadata, so the application
registers itself when it connects. Its mesh and name must match --mesh and
--name (or be empty: they are filled in; --mesh and --name may be left out
when the file has them). Its label meshfed.io/proxy must be "grpc" (it is
set when absent).`,
		Example: `  meshctl --api http://127.0.0.1:5681 generate grpc-bootstrap --mesh default --name echo-1 -o echo-1.json
  meshctl generate grpc-bootstrap --dataplane-file echo-1.yaml -o echo-1.json
  GRPC_XDS_BOOTSTRAP=echo-1.json ./echo-server`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return generateBootstrap(cmd, g, formatGRPC, &gf)
		},
	}
	envoyCmd := &cobra.Command{
		Use:   "envoy-bootstrap --mesh M --name N [--dataplane-file F] [--admin-port 9901] [-o FILE]",
		Short: "Print the bootstrap of an Envoy sidecar or gateway",
		Long: `Ask the zone control plane (--api is the zone's API) for the Envoy bootstrap
(envoy.config.bootstrap.v3.Bootstrap as JSON) of Dataplane N in mesh M (GET
/meshes/M/dataplanes/N/_bootstrap?format=envoy&adminPort=P) and print it, or
write it to FILE for envoy -c FILE. Envoy connects to the zone's xDS server
over ADS as node "M.N" and serves its admin interface on 127.0.0.1:P.

With --dataplane-file, the Dataplane (YAML or JSON, - for standard input) is
checked here and put into the bootstrap's node metadata, so the proxy
registers itself when it connects. Its mesh and name must match --mesh and
--name (or be empty: they are filled in; --mesh and --name may be left out
when the file has them). It must not be labelled meshfed.io/proxy: grpc.`,
		Example: `  meshctl --api http://127.0.0.1:5681 generate envoy-bootstrap --mesh default --name web-1 -o web-1.json
  meshctl generate envoy-bootstrap --dataplane-file web-1.yaml --admin-port 19901 -o web-1.json
  envoy -c web-1.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return generateBootstrap(cmd, g, formatEnvoy, &ef)
		},
	}
	for _, c := range []struct {
		cmd *cobra.Command
		f   *bootstrapFlags
	}{{grpcCmd, &gf}, {envoyCmd, &ef}} {
		fl := c.cmd.Flags()
		fl.StringVarP(&c.f.mesh, "mesh", "m", "", "mesh of the Dataplane (required unless the --dataplane-file has it)")
		fl.StringVar(&c.f.name, "name", "", "name of the Dataplane (required unless the --dataplane-file has it)")
		fl.StringVar(&c.f.dataplaneFile, "dataplane-file", "", "Dataplane definition (YAML or JSON, - for standard input) to put into the bootstrap, so the proxy registers itself")
		fl.StringVarP(&c.f.output, "output", "o", "", "file to write the bootstrap to (default: standard output)")
	}
	envoyCmd.Flags().Uint32Var(&ef.adminPort, "admin-port", bootstrap.DefaultAdminPort, "port of Envoy's admin interface on 127.0.0.1")
	return []*cobra.Command{grpcCmd, envoyCmd}
}

func generateBootstrap(cmd *cobra.Command, g *globals, format string, f *bootstrapFlags) error {
	what := "generate " + format + "-bootstrap"
	var dp json.RawMessage
	if f.dataplaneFile != "" {
		r, err := readDataplane(cmd.InOrStdin(), f, format)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if dp, err = json.Marshal(r); err != nil {
			return fmt.Errorf("%s: --dataplane-file: %w", what, err)
		}
	}
	v := &api.Validator{}
	if v.Required("--mesh", f.mesh) && !api.IsDNSLabel(f.mesh) {
		v.Add("--mesh", "%q must be a lowercase RFC 1123 label (letters, digits and '-', at most 63 characters)", f.mesh)
	}
	api.ValidateName(v, "--name", f.name, 253)
	if format == formatEnvoy && (f.adminPort == 0 || f.adminPort > 65535) {
		v.Add("--admin-port", "must be between 1 and 65535")
	}
	if err := v.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}

	addr, token, err := g.endpoint()
	if err != nil {
		return err
	}
	if _, err := client.New(addr, token); err != nil { // the same URL checks as every other command
		return fmt.Errorf("--api: %w", err)
	}
	q := url.Values{"format": {format}}
	if format == formatEnvoy {
		q.Set("adminPort", strconv.FormatUint(uint64(f.adminPort), 10))
	}
	ctx, cancel := g.context(cmd)
	defer cancel()
	body, err := getBootstrap(ctx, addr, token, g.retryFor, []string{"meshes", f.mesh, "dataplanes", f.name, "_bootstrap"}, q)
	if err != nil {
		return err
	}
	if err := checkBootstrap(body, bootstrap.NodeID(f.mesh, f.name)); err != nil {
		return fmt.Errorf("%s: the zone's answer: %w", what, err)
	}
	if dp != nil {
		if body, err = bootstrap.WithDataplane(body, dp); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if f.output == "" {
		_, err := cmd.OutOrStdout().Write(body)
		return err
	}
	if err := os.WriteFile(f.output, body, 0o644); err != nil {
		return fmt.Errorf("%s: -o: %w", what, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s bootstrap of node %q written to %s\n", format, bootstrap.NodeID(f.mesh, f.name), f.output)
	return nil
}

// readDataplane reads and checks the --dataplane-file, filling its mesh and
// name from the flags or the flags from it.
func readDataplane(stdin io.Reader, f *bootstrapFlags, format string) (*api.Resource, error) {
	var data []byte
	var err error
	if f.dataplaneFile == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(f.dataplaneFile)
	}
	if err != nil {
		return nil, fmt.Errorf("--dataplane-file: %w", err)
	}
	at := "--dataplane-file " + f.dataplaneFile
	r, err := api.DecodeDataplane(data, f.mesh, f.name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	f.mesh, f.name = r.Mesh, r.Name
	v := &api.Validator{}
	proxy := r.Labels[generate.LabelProxy]
	switch {
	case format == formatGRPC && proxy == "":
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[generate.LabelProxy] = generate.ProxyGRPC
	case format == formatGRPC && proxy != generate.ProxyGRPC:
		v.Add(api.Path("labels").Key(generate.LabelProxy), "must be %q for a proxyless gRPC application, not %q", generate.ProxyGRPC, proxy)
	case format == formatEnvoy && proxy == generate.ProxyGRPC:
		v.Add(api.Path("labels").Key(generate.LabelProxy), "%q marks a proxyless gRPC application: use grpc-bootstrap, or remove the label for Envoy", proxy)
	}
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	return r, nil
}

// checkBootstrap checks that the zone answered a JSON object for node id.
func checkBootstrap(body []byte, id string) error {
	var doc struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("not a JSON bootstrap: %w", err)
	}
	if doc.Node.ID != id {
		return fmt.Errorf("node.id is %q, want %q", doc.Node.ID, id)
	}
	return nil
}

// bootstrapStatusError is a non-2xx answer of the bootstrap endpoint.
type bootstrapStatusError struct {
	status int
	path   string
	msg    string
}

func (e *bootstrapStatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s: %s", e.path, e.status, http.StatusText(e.status), e.msg)
}

// Unwrap lets errors.Is(err, api.ErrNotFound) work on a 404.
func (e *bootstrapStatusError) Unwrap() error {
	if e.status == http.StatusNotFound {
		return api.ErrNotFound
	}
	return nil
}

// getBootstrap GETs the zone's bootstrap endpoint (api/client has no call
// for it, and no raw request). Like the client, it retries while the zone
// answers 503 or refuses connections, for up to retryFor.
func getBootstrap(ctx context.Context, base, token string, retryFor time.Duration, segments []string, q url.Values) ([]byte, error) {
	var path strings.Builder
	for _, s := range segments {
		path.WriteByte('/')
		path.WriteString(url.PathEscape(s))
	}
	u := strings.TrimSuffix(base, "/") + path.String()
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	start := time.Now()
	wait := 100 * time.Millisecond
	for {
		body, retry, err := getOnce(ctx, u, path.String(), token)
		if err == nil || !retry || retryFor <= 0 || time.Since(start)+wait > retryFor {
			return body, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// getOnce makes one attempt and says whether a failure is worth retrying.
func getOnce(ctx context.Context, u, path, token string) (body []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "meshctl")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, errors.Is(err, syscall.ECONNREFUSED), fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, false, fmt.Errorf("GET %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode/100 == 2 {
		return body, false, nil
	}
	// The API's error body (api/rest.ErrorBody), else the text.
	var eb struct {
		Title   string           `json:"title"`
		Details string           `json:"details"`
		Causes  []api.FieldError `json:"causes"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &eb) == nil && (eb.Details != "" || eb.Title != "") {
		msg = eb.Details
		if msg == "" {
			msg = eb.Title
		}
	}
	if len(msg) > 4<<10 {
		msg = msg[:4<<10] + "..."
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		causes := eb.Causes
		if len(causes) == 0 {
			causes = []api.FieldError{{Message: msg}}
		}
		return nil, false, fmt.Errorf("GET %s: %w", path, &api.ValidationError{Errors: causes})
	case http.StatusUnauthorized:
		return nil, false, &client.UnauthorizedError{Message: msg}
	}
	return nil, resp.StatusCode == http.StatusServiceUnavailable, &bootstrapStatusError{status: resp.StatusCode, path: path, msg: msg}
}
