package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/bootstrap"
	"github.com/meshfed/meshfed/xds/generate"
)

// fakeZone stands in for the zone's bootstrap endpoint
// (GET /meshes/{mesh}/dataplanes/{name}/_bootstrap?format=grpc|envoy&adminPort=P),
// answering with xds/bootstrap as the zone does. Mesh "missing" is a 404,
// mesh "invalid" a 400 with causes, mesh "other" a bootstrap of another
// node, mesh "flaky" a 503 on the first request.
type fakeZone struct {
	mu       sync.Mutex
	requests []*http.Request
	flaky    int
}

func (z *fakeZone) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	z.requests = append(z.requests, r)
	first := z.flaky == 0
	z.flaky++
	z.mu.Unlock()
	mesh, name := r.PathValue("mesh"), r.PathValue("name")
	errBody := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
	switch mesh {
	case "missing":
		errBody(http.StatusNotFound, `{"title": "Not found", "details": "mesh \"missing\" not found"}`)
		return
	case "invalid":
		errBody(http.StatusBadRequest, `{"title": "Invalid request", "details": "bad", "causes": [{"field": "adminPort", "message": "must be a port"}]}`)
		return
	case "flaky":
		if first {
			errBody(http.StatusServiceUnavailable, `{"title": "Unavailable", "details": "starting"}`)
			return
		}
	case "other":
		mesh = "someone"
	}
	node := bootstrap.Node{Mesh: mesh, Name: name}
	var b []byte
	var err error
	switch r.URL.Query().Get("format") {
	case "grpc":
		b, err = bootstrap.GRPC(bootstrap.GRPCOptions{Node: node, XDSAddress: "127.0.0.1:5678"})
	case "envoy":
		port, perr := strconv.ParseUint(r.URL.Query().Get("adminPort"), 10, 32)
		if perr != nil {
			errBody(http.StatusBadRequest, `{"title": "Invalid request", "details": "adminPort"}`)
			return
		}
		b, err = bootstrap.Envoy(bootstrap.EnvoyOptions{Node: node, XDSAddress: "127.0.0.1:5678", AdminPort: uint32(port)})
	default:
		errBody(http.StatusBadRequest, `{"title": "Invalid request", "details": "format must be grpc or envoy"}`)
		return
	}
	if err != nil {
		errBody(http.StatusInternalServerError, `{"title": "Internal error", "details": "`+err.Error()+`"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (z *fakeZone) last() *http.Request {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.requests[len(z.requests)-1]
}

func startFakeZone(t *testing.T) (*fakeZone, string) {
	t.Helper()
	z := &fakeZone{}
	mux := http.NewServeMux()
	mux.Handle("GET /meshes/{mesh}/dataplanes/{name}/_bootstrap", z)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return z, srv.URL
}

const grpcDataplaneYAML = `type: Dataplane
name: echo-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: echo
      kuma.io/protocol: grpc
`

const envoyDataplaneYAML = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
`

// runMeshctl runs meshctl against the fake zone.
func runMeshctl(t *testing.T, apiURL, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	for _, k := range []string{"MESHCTL_API", "MESHCTL_TOKEN", "MESHCTL_CONFIG"} {
		t.Setenv(k, "")
	}
	var out, errOut bytes.Buffer
	root := newRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(append([]string{"--api", apiURL, "--token", "secret", "--retry-for", "5s",
		"--config-file", filepath.Join(t.TempDir(), "none")}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// metadataDataplane returns node.metadata.dataplane of a bootstrap.
func metadataDataplane(t *testing.T, b []byte) *api.Resource {
	t.Helper()
	var doc struct {
		Node struct {
			Metadata map[string]json.RawMessage `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	raw, ok := doc.Node.Metadata[bootstrap.MetadataDataplane]
	if !ok {
		t.Fatalf("no node.metadata.dataplane in\n%s", b)
	}
	r, err := api.DecodeJSON(raw)
	if err != nil {
		t.Fatalf("metadata dataplane: %v", err)
	}
	return r
}

func checkEnvoy(t *testing.T, b []byte, adminPort uint32) {
	t.Helper()
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(b, &bs); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v\n%s", err, b)
	}
	if err := bootstrap.ValidateEnvoy(&bs); err != nil {
		t.Fatal(err)
	}
	if got := bs.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(); got != adminPort {
		t.Errorf("admin port %d, want %d", got, adminPort)
	}
}

func checkGRPC(t *testing.T, b []byte) {
	t.Helper()
	if _, err := xds.NewXDSResolverWithConfigForTesting(b); err != nil {
		t.Fatalf("grpc-go refuses the bootstrap: %v\n%s", err, b)
	}
}

func TestGenerateBootstrap(t *testing.T) {
	dir := t.TempDir()
	grpcFile := filepath.Join(dir, "echo-1.yaml")
	if err := os.WriteFile(grpcFile, []byte(grpcDataplaneYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	envoyFile := filepath.Join(dir, "web-1.yaml")
	if err := os.WriteFile(envoyFile, []byte(envoyDataplaneYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		stdin string
		query url.Values // of the request to the zone
		path  string
		check func(t *testing.T, out []byte)
	}{
		{
			name:  "grpc",
			args:  []string{"generate", "grpc-bootstrap", "--mesh", "default", "--name", "echo-1"},
			query: url.Values{"format": {"grpc"}},
			path:  "/meshes/default/dataplanes/echo-1/_bootstrap",
			check: func(t *testing.T, out []byte) {
				want, err := bootstrap.GRPC(bootstrap.GRPCOptions{Node: bootstrap.Node{Mesh: "default", Name: "echo-1"}, XDSAddress: "127.0.0.1:5678"})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, want) {
					t.Errorf("output is not the zone's answer:\n%s", out)
				}
				checkGRPC(t, out)
			},
		},
		{
			name:  "envoy default admin port",
			args:  []string{"generate", "envoy-bootstrap", "-m", "default", "--name", "web-1"},
			query: url.Values{"format": {"envoy"}, "adminPort": {"9901"}},
			path:  "/meshes/default/dataplanes/web-1/_bootstrap",
			check: func(t *testing.T, out []byte) { checkEnvoy(t, out, 9901) },
		},
		{
			name:  "envoy admin port",
			args:  []string{"generate", "envoy-bootstrap", "--mesh", "default", "--name", "web-1", "--admin-port", "19901"},
			query: url.Values{"format": {"envoy"}, "adminPort": {"19901"}},
			path:  "/meshes/default/dataplanes/web-1/_bootstrap",
			check: func(t *testing.T, out []byte) { checkEnvoy(t, out, 19901) },
		},
		{
			name:  "grpc with a dataplane file: mesh filled from the flag, proxy label set",
			args:  []string{"generate", "grpc-bootstrap", "--mesh", "default", "--name", "echo-1", "--dataplane-file", grpcFile},
			query: url.Values{"format": {"grpc"}},
			path:  "/meshes/default/dataplanes/echo-1/_bootstrap",
			check: func(t *testing.T, out []byte) {
				checkGRPC(t, out)
				r := metadataDataplane(t, out)
				if r.Mesh != "default" || r.Name != "echo-1" || r.Labels[generate.LabelProxy] != generate.ProxyGRPC {
					t.Errorf("dataplane %+v", r.Meta)
				}
			},
		},
		{
			name:  "grpc with a dataplane on stdin and the name from it",
			args:  []string{"generate", "grpc-bootstrap", "--mesh", "default", "--dataplane-file", "-"},
			stdin: grpcDataplaneYAML,
			query: url.Values{"format": {"grpc"}},
			path:  "/meshes/default/dataplanes/echo-1/_bootstrap",
			check: func(t *testing.T, out []byte) {
				checkGRPC(t, out)
				if r := metadataDataplane(t, out); r.Key() != (api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "echo-1"}) {
					t.Errorf("dataplane %v", r.Key())
				}
			},
		},
		{
			name:  "envoy with a dataplane file, mesh and name from it",
			args:  []string{"generate", "envoy-bootstrap", "--dataplane-file", envoyFile},
			query: url.Values{"format": {"envoy"}, "adminPort": {"9901"}},
			path:  "/meshes/default/dataplanes/web-1/_bootstrap",
			check: func(t *testing.T, out []byte) {
				checkEnvoy(t, out, 9901)
				if r := metadataDataplane(t, out); r.Name != "web-1" || r.Spec.(*api.DataplaneSpec).Networking.Address != "10.0.0.1" {
					t.Errorf("dataplane %+v", r)
				}
			},
		},
		{
			name:  "retried while the zone answers 503",
			args:  []string{"generate", "grpc-bootstrap", "--mesh", "flaky", "--name", "echo-1"},
			query: url.Values{"format": {"grpc"}},
			path:  "/meshes/flaky/dataplanes/echo-1/_bootstrap",
			check: func(t *testing.T, out []byte) { checkGRPC(t, out) },
		},
		{
			name:  "dotted name",
			args:  []string{"generate", "grpc-bootstrap", "--mesh", "default", "--name", "echo-1.ns"},
			query: url.Values{"format": {"grpc"}},
			path:  "/meshes/default/dataplanes/echo-1.ns/_bootstrap",
			check: func(t *testing.T, out []byte) { checkGRPC(t, out) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			z, apiURL := startFakeZone(t)
			stdout, stderr, err := runMeshctl(t, apiURL, tc.stdin, tc.args...)
			if err != nil {
				t.Fatalf("%s(stderr %q)", describeError(err), stderr)
			}
			req := z.last()
			if req.URL.Path != tc.path || req.URL.Query().Encode() != tc.query.Encode() {
				t.Errorf("request %s?%s, want %s?%s", req.URL.Path, req.URL.RawQuery, tc.path, tc.query.Encode())
			}
			if got := req.Header.Get("Authorization"); got != "Bearer secret" {
				t.Errorf("Authorization %q", got)
			}
			tc.check(t, []byte(stdout))
		})
	}
}

func TestGenerateBootstrapOutputFile(t *testing.T) {
	_, apiURL := startFakeZone(t)
	out := filepath.Join(t.TempDir(), "echo-1.json")
	stdout, stderr, err := runMeshctl(t, apiURL, "", "generate", "grpc-bootstrap", "--mesh", "default", "--name", "echo-1", "-o", out)
	if err != nil {
		t.Fatal(describeError(err))
	}
	if stdout != "" || !strings.Contains(stderr, out) {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkGRPC(t, b)
}

func TestGenerateBootstrapErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meshFile := write("mesh.yaml", "type: Mesh\nname: default\n")
	otherMesh := write("other.yaml", strings.Replace(envoyDataplaneYAML, "mesh: default", "mesh: other", 1))
	noInbound := write("noinbound.yaml", "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n")
	envoyLabel := write("envoylabel.yaml", strings.Replace(grpcDataplaneYAML, "name: echo-1\n", "name: echo-1\nlabels:\n  meshfed.io/proxy: envoy\n", 1))
	grpcLabel := write("grpclabel.yaml", strings.Replace(envoyDataplaneYAML, "name: web-1\n", "name: web-1\nlabels:\n  meshfed.io/proxy: grpc\n", 1))
	notYAML := write("broken.yaml", "type: [\n")

	cases := []struct {
		name     string
		args     []string
		want     []string // in the rendered error
		requests int      // requests the zone must have seen
		notFound bool
	}{
		{name: "no mesh", args: []string{"generate", "grpc-bootstrap", "--name", "echo-1"}, want: []string{"--mesh", "must not be empty"}},
		{name: "no name", args: []string{"generate", "envoy-bootstrap", "--mesh", "default"}, want: []string{"--name", "must not be empty"}},
		{name: "mesh with a dot", args: []string{"generate", "grpc-bootstrap", "--mesh", "a.b", "--name", "x"}, want: []string{"--mesh", "label"}},
		{name: "bad name", args: []string{"generate", "grpc-bootstrap", "--mesh", "default", "--name", "Echo_1"}, want: []string{"--name"}},
		{name: "admin port 0", args: []string{"generate", "envoy-bootstrap", "--mesh", "default", "--name", "w", "--admin-port", "0"}, want: []string{"--admin-port"}},
		{name: "admin port too big", args: []string{"generate", "envoy-bootstrap", "--mesh", "default", "--name", "w", "--admin-port", "65536"}, want: []string{"--admin-port"}},
		{name: "missing file", args: []string{"generate", "grpc-bootstrap", "--mesh", "default", "--name", "e", "--dataplane-file", filepath.Join(dir, "nope.yaml")}, want: []string{"--dataplane-file", "no such file"}},
		{name: "not a dataplane", args: []string{"generate", "grpc-bootstrap", "--dataplane-file", meshFile}, want: []string{"type", "must be Dataplane"}},
		{name: "mesh mismatch", args: []string{"generate", "envoy-bootstrap", "--mesh", "default", "--dataplane-file", otherMesh}, want: []string{"mesh", `"other" does not match the requested mesh "default"`}},
		{name: "name mismatch", args: []string{"generate", "envoy-bootstrap", "--name", "web-2", "--dataplane-file", envoyFileFor(t, dir)}, want: []string{"name", `"web-1" does not match the requested name "web-2"`}},
		{name: "invalid dataplane", args: []string{"generate", "envoy-bootstrap", "--dataplane-file", noInbound}, want: []string{"networking", "at least one inbound"}},
		{name: "grpc bootstrap of an envoy-labelled dataplane", args: []string{"generate", "grpc-bootstrap", "--mesh", "default", "--dataplane-file", envoyLabel}, want: []string{`labels["meshfed.io/proxy"]`}},
		{name: "envoy bootstrap of a grpc dataplane", args: []string{"generate", "envoy-bootstrap", "--dataplane-file", grpcLabel}, want: []string{`labels["meshfed.io/proxy"]`, "grpc-bootstrap"}},
		{name: "malformed file", args: []string{"generate", "grpc-bootstrap", "--mesh", "default", "--dataplane-file", notYAML}, want: []string{"--dataplane-file", "YAML"}},
		{name: "zone 404", args: []string{"generate", "grpc-bootstrap", "--mesh", "missing", "--name", "e"}, want: []string{"404", `mesh "missing" not found`}, requests: 1, notFound: true},
		{name: "zone 400", args: []string{"generate", "grpc-bootstrap", "--mesh", "invalid", "--name", "e"}, want: []string{"adminPort: must be a port"}, requests: 1},
		{name: "zone answers for another node", args: []string{"generate", "grpc-bootstrap", "--mesh", "other", "--name", "e"}, want: []string{"node.id", `"someone.e"`}, requests: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			z, apiURL := startFakeZone(t)
			stdout, _, err := runMeshctl(t, apiURL, "", tc.args...)
			if err == nil {
				t.Fatalf("succeeded:\n%s", stdout)
			}
			msg := describeError(err)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
			if got := errors.Is(err, api.ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(err, api.ErrNotFound) = %v", got)
			}
			z.mu.Lock()
			n := len(z.requests)
			z.mu.Unlock()
			if n != tc.requests {
				t.Errorf("%d requests to the zone, want %d", n, tc.requests)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

func envoyFileFor(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "web-1.yaml")
	if err := os.WriteFile(p, []byte(envoyDataplaneYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
