package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/test/harness"
	"github.com/meshfed/meshfed/xds/bootstrap"
	"github.com/meshfed/meshfed/xds/generate"
	"github.com/meshfed/meshfed/xds/server"
)

// registrar accepts every node and remembers them.
type registrar struct {
	mu    sync.Mutex
	nodes map[string]server.Node
}

func (r *registrar) Connect(_ context.Context, n server.Node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nodes[n.ID] = n
	return nil
}

func (r *registrar) Disconnect(server.Node) {}

func (r *registrar) node(id string) (server.Node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[id]
	return n, ok
}

// startXDS serves ADS on a free loopback port until the test ends and
// returns the server and its address.
func startXDS(t *testing.T, reg server.Registrar) (*server.Server, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := server.New(server.Config{Registrar: reg, ShutdownTimeout: time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("xds server: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// testWriter sends the xDS server's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func grpcDataplane(name string, port int, service string) *api.Resource {
	return &api.Resource{
		Meta: api.Meta{Type: api.TypeDataplane, Mesh: "default", Name: name,
			Labels: map[string]string{generate.LabelProxy: generate.ProxyGRPC}},
		Spec: &api.DataplaneSpec{Networking: api.DataplaneNetworking{
			Address: "127.0.0.1",
			Inbound: []api.DataplaneInbound{{Port: uint32(port), Tags: map[string]string{
				api.TagService: service, api.TagProtocol: api.ProtocolGRPC,
			}}},
		}},
	}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeBootstrap writes dp's gRPC bootstrap (with dp in its metadata) to dir.
func writeBootstrap(t *testing.T, dir string, xdsAddr string, dp *api.Resource) string {
	t.Helper()
	raw, err := json.Marshal(dp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.GRPC(bootstrap.GRPCOptions{
		Node:       bootstrap.Node{Mesh: dp.Mesh, Name: dp.Name, Zone: "zone-1", Dataplane: raw},
		XDSAddress: xdsAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dp.Name+"-bootstrap.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// results are the JSON lines an xdsapp client printed so far.
func results(t *testing.T, log string) []callResult {
	t.Helper()
	var out []callResult
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, `{"seq":`) {
			continue
		}
		var r callResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("client line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestChain: xds/generate → xds/server → real xdsapp server and client
// processes, bootstrapped by xds/bootstrap.GRPC; the client's calls reach
// the server through the xDS resources only, and both nodes register with
// their Dataplane in the node metadata.
func TestChain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	bin, err := harness.BuildPackage(dir, "./test/xdsapp", "xdsapp")
	if err != nil {
		t.Fatal(err)
	}
	reg := &registrar{nodes: map[string]server.Node{}}
	xs, xdsAddr := startXDS(t, reg)

	serverAddr := harness.FreeAddr(t)
	echo := grpcDataplane("echo-1", port(t, serverAddr), "echo")
	caller := grpcDataplane("caller-1", port(t, harness.FreeAddr(t)), "caller")
	mesh := &api.Resource{Meta: api.Meta{Type: api.TypeMesh, Name: "default"}, Spec: &api.MeshSpec{}}
	for _, r := range []*api.Resource{mesh, echo, caller} {
		if err := api.Prepare(r); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
	}
	m, err := generate.Compile(&generate.MeshView{Mesh: mesh, LocalZone: "zone-1", Dataplanes: []*api.Resource{echo, caller}})
	if err != nil {
		t.Fatal(err)
	}
	for _, dp := range []*api.Resource{echo, caller} {
		res, err := m.Proxy(dp, generate.KindOf(dp))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := xs.SetResources(bootstrap.NodeID(dp.Mesh, dp.Name), res.ByType()); err != nil {
			t.Fatal(err)
		}
	}

	srv := harness.Start(t, dir, "xdsapp-server", bin, []string{"server", "--port", strconv.Itoa(port(t, serverAddr)), "--id", "echo-1", "--zone", "zone-1"},
		"GRPC_XDS_BOOTSTRAP="+writeBootstrap(t, dir, xdsAddr, echo))
	harness.Eventually(t, 30*time.Second, "xdsapp server SERVING", func() bool {
		if !srv.Running() {
			t.Fatalf("xdsapp server exited:\n%s", srv.Log())
		}
		return strings.Contains(srv.Log(), "\nSERVING\n")
	})

	cli := harness.Start(t, dir, "xdsapp-client", bin, []string{"client", "--target", "xds:///echo", "--interval", "20ms", "--timeout", "5s"},
		"GRPC_XDS_BOOTSTRAP="+writeBootstrap(t, dir, xdsAddr, caller))
	harness.Eventually(t, 30*time.Second, "3 answers from echo-1", func() bool {
		if !cli.Running() {
			t.Fatalf("xdsapp client exited:\n%s", cli.Log())
		}
		ok := 0
		for _, r := range results(t, cli.Log()) {
			if r.Error == "" && r.Server == "echo-1" && r.Zone == "zone-1" {
				ok++
			}
		}
		return ok >= 3
	})
	for _, r := range results(t, cli.Log()) {
		if r.Error == "" && (r.Server != "echo-1" || r.Zone != "zone-1") {
			t.Errorf("answer from %q in %q", r.Server, r.Zone)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil || r.Seq < 1 {
			t.Errorf("line %+v: %v", r, err)
		}
	}

	// Both proxies registered as gRPC nodes presenting their Dataplane.
	for _, dp := range []*api.Resource{echo, caller} {
		n, ok := reg.node(bootstrap.NodeID(dp.Mesh, dp.Name))
		if !ok {
			t.Errorf("%s did not connect", dp.Name)
			continue
		}
		if n.Kind != "grpc" {
			t.Errorf("%s: kind %q", dp.Name, n.Kind)
		}
		raw, err := n.Metadata.GetFields()[bootstrap.MetadataDataplane].MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := api.DecodeJSON(raw)
		if err != nil || got.Key() != dp.Key() {
			t.Errorf("%s: metadata dataplane %v, %v", dp.Name, got, err)
		}
	}

	// SIGTERM: both exit 0 (Stop fails the test otherwise).
	cli.Stop(t)
	srv.Stop(t)
}

// TestBadFlags: bad input gives a message naming the flag and exit code 2.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"serve"}, `unknown command "serve"`},
		{[]string{"server"}, "--port"},
		{[]string{"server", "--port", "70000", "--id", "x"}, "--port"},
		{[]string{"server", "--port", "8080"}, "--id"},
		{[]string{"server", "--port", "8080", "--id", "x", "extra"}, "unexpected arguments"},
		{[]string{"server", "--nope"}, "nope"},
		{[]string{"client"}, "--target"},
		{[]string{"client", "--target", "dns:///echo"}, "--target"},
		{[]string{"client", "--target", "xds:///"}, "--target"},
		{[]string{"client", "--target", "xds:///echo", "--interval", "0s"}, "--interval"},
		{[]string{"client", "--target", "xds:///echo", "--count", "-1"}, "--count"},
		{[]string{"client", "--target", "xds:///echo", "--timeout", "-1s"}, "--timeout"},
		{[]string{"client", "--target", "xds:///echo", "--interval", "soon"}, "interval"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not mention %q:\n%s", tc.want, stderr.String())
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestServerWithoutBootstrap: a server without a bootstrap fails clearly.
func TestServerWithoutBootstrap(t *testing.T) {
	// grpc-go reads these once, when it is initialized.
	if os.Getenv("GRPC_XDS_BOOTSTRAP") != "" || os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != "" {
		t.Skip("the test process has an xDS bootstrap")
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"server", "--port", strconv.Itoa(port(t, harness.FreeAddr(t))), "--id", "x"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "GRPC_XDS_BOOTSTRAP") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
