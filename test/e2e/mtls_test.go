package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/test/harness"
)

// mtlsApp is a proxyless gRPC application of an mTLS Mesh: its agent
// (meshd dp grpc-agent) and, unless role is "agent", the application.
type mtlsApp struct {
	agent, app *harness.Process
	dir        string
	port       int
}

func (f *trafficFed) mtlsApp(t *testing.T, zone, mesh, name, role string) *mtlsApp {
	t.Helper()
	z := f.zones[zone]
	a := &mtlsApp{dir: filepath.Join(f.dir, name+"-certs"), port: freePort(t)}
	service := "echo"
	if role != "server" {
		service = name
	}
	dpFile := filepath.Join(f.dir, name+"-dp.yaml")
	dp := fmt.Sprintf("type: Dataplane\nmesh: %s\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: %d\n    tags:\n      kuma.io/service: %s\n      kuma.io/protocol: grpc\n",
		mesh, name, a.port, service)
	if err := os.WriteFile(dpFile, []byte(dp), 0o644); err != nil {
		t.Fatal(err)
	}
	a.agent = harness.Start(t, f.dir, name+"-agent", bins.Meshd, []string{"dp", "grpc-agent", "--mesh", mesh, "--name", name,
		"--zone-xds", z.XDSAddr, "--dir", a.dir, "--dataplane-file", dpFile, "--refresh", "200ms", "--log-level", "info"})
	harness.Eventually(t, 30*time.Second, name+"'s certificates", func() bool {
		if !a.agent.Running() {
			t.Fatalf("%s's agent exited:\n%s", name, a.agent.Log())
		}
		return strings.Contains(a.agent.Log(), "certificates written to")
	})
	env := "GRPC_XDS_BOOTSTRAP=" + filepath.Join(a.dir, "bootstrap.json")
	switch role {
	case "server":
		a.app = harness.Start(t, f.dir, name, bins.XDSApp, []string{"server", "--port", fmt.Sprint(a.port), "--id", name, "--zone", zone}, env)
		waitServing(t, a.app, 0)
	case "client":
		a.app = harness.Start(t, f.dir, name, bins.XDSApp, []string{"client", "--target", "xds:///echo", "--interval", "20ms", "--timeout", "2s"}, env)
	}
	return a
}

// rotations counts the certificates the agent has written.
func (a *mtlsApp) rotations() int { return strings.Count(a.agent.Log(), "certificate written") }

// directCall calls the server at 127.0.0.1:port past xDS, with creds.
func directCall(port int, creds credentials.TransportCredentials) error {
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true})
	return err
}

// certCreds are TLS client credentials with the agent's certificate of a,
// skipping the server's verification (the server's acceptance of the
// client is what is tested).
func certCreds(t *testing.T, a *mtlsApp) credentials.TransportCredentials {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(a.dir, "cert.pem"), filepath.Join(a.dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
}

// waitCalls waits until c's last n calls all passed check.
func waitCalls(t *testing.T, c *harness.Process, n int, timeout time.Duration, what string, check func(call) bool) {
	t.Helper()
	harness.Eventually(t, timeout, what, func() bool {
		if !c.Running() {
			t.Fatalf("%s exited:\n%s", c.Name, c.Log())
		}
		cs := calls(t, c)
		if len(cs) < n {
			return false
		}
		for _, x := range cs[len(cs)-n:] {
			if !check(x) {
				return false
			}
		}
		return true
	})
}

// TestMTLS: Meshes with mTLS, for real: builtin CA, zone intermediates on
// both sides of a cross-zone call, SPIFFE identities seen by the server,
// foreign and plaintext clients refused, MeshTrafficPermission enforced and
// lifted without restarts, certificates rotating under continuous traffic
// (also while global is down), and two Meshes trusting each other through
// one provided CA.
func TestMTLS(t *testing.T) {
	t.Parallel()
	f := startTrafficFed(t, 30*time.Second)
	secure := "type: Mesh\nname: secure\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 6s\n"
	f.gn.mustPut(t, "/meshes/secure", secure)
	f.gn.mustPut(t, "/meshes/other", strings.Replace(secure, "name: secure", "name: other", 1))
	allowAll := func(mesh, name string) string {
		return fmt.Sprintf("type: MeshTrafficPermission\nmesh: %s\nname: %s\nspec:\n  targetRef: {kind: Mesh}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n", mesh, name)
	}
	f.gn.mustPut(t, "/meshes/secure/meshtrafficpermissions/allow-all", allowAll("secure", "allow-all"))

	// A server in zone-2, a client in zone-1: each with a certificate from
	// its own zone's intermediate of the Mesh's root.
	server := f.mtlsApp(t, "zone-2", "secure", "echo-s", "server")
	client := f.mtlsApp(t, "zone-1", "secure", "client-s", "client")
	waitCalls(t, client.app, 10, 30*time.Second, "mTLS calls from zone-1 to zone-2", func(c call) bool {
		return c.Error == "" && c.Server == "echo-s" && c.Caller == "spiffe://secure/client-s"
	})

	// A plaintext client, and a client with another Mesh's certificate,
	// are refused.
	if err := directCall(server.port, insecure.NewCredentials()); err == nil {
		t.Error("a plaintext call to an mTLS server succeeded")
	}
	foreign := f.mtlsApp(t, "zone-2", "other", "intruder", "agent")
	if err := directCall(server.port, certCreds(t, foreign)); err == nil {
		t.Error("a call with another Mesh's certificate succeeded")
	}
	if err := directCall(server.port, certCreds(t, client)); err != nil {
		t.Errorf("a direct call with the Mesh's own certificate: %v", err)
	}

	// MeshTrafficPermission: deny the client's service, then lift it.
	deny := "type: MeshTrafficPermission\nmesh: secure\nname: deny-client\nspec:\n  targetRef: {kind: Mesh}\n  from:\n  - targetRef: {kind: MeshService, name: client-s}\n    default: {action: Deny}\n"
	f.gn.mustPut(t, "/meshes/secure/meshtrafficpermissions/deny-client", deny)
	waitCalls(t, client.app, 5, 30*time.Second, "PERMISSION_DENIED", func(c call) bool {
		return strings.Contains(c.Error, "PermissionDenied")
	})
	expect(t, f.gn.del(t, "/meshes/secure/meshtrafficpermissions/deny-client"), http.StatusOK, "lift the deny")
	waitCalls(t, client.app, 10, 30*time.Second, "calls allowed again", func(c call) bool { return c.Error == "" && c.Server == "echo-s" })

	// Rotation under traffic: certificates live 6 s; across at least two
	// rotations on both sides, no call fails.
	from := len(calls(t, client.app))
	sr, cr := server.rotations(), client.rotations()
	harness.Eventually(t, 40*time.Second, "two rotations on both sides", func() bool {
		return server.rotations() >= sr+2 && client.rotations() >= cr+2
	})
	assertNoFailures(t, client.app, from, "across rotations")

	// Global down: the zones keep issuing from their intermediates.
	f.global.Kill(t)
	from = len(calls(t, client.app))
	sr, cr = server.rotations(), client.rotations()
	harness.Eventually(t, 40*time.Second, "two rotations with global down", func() bool {
		return server.rotations() >= sr+2 && client.rotations() >= cr+2
	})
	assertNoFailures(t, client.app, from, "with global down")
}

// assertNoFailures fails t for any of c's calls from index from on that
// failed.
func assertNoFailures(t *testing.T, c *harness.Process, from int, when string) {
	t.Helper()
	cs := calls(t, c)
	failed := 0
	for _, x := range cs[from:] {
		if x.Error != "" {
			failed++
			if failed <= 3 {
				t.Errorf("call %d failed %s: %s", x.Seq, when, x.Error)
			}
		}
	}
	t.Logf("%d calls %s, %d failed", len(cs)-from, when, failed)
}

// TestSharedProvidedCA: Meshes c and d use one provided CA (the same
// certificate and key in Secrets of each): a client of d reaches c's server
// over mTLS, allowed by a MeshTrafficPermission of c for Mesh d.
func TestSharedProvidedCA(t *testing.T) {
	t.Parallel()
	f := startTrafficFed(t, 30*time.Second)
	root, err := ca.NewMeshRoot("shared", ca.RootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mesh := range []string{"c", "d"} {
		f.gn.mustPut(t, "/meshes/"+mesh, fmt.Sprintf("type: Mesh\nname: %s\n", mesh))
		f.gn.mustPut(t, "/meshes/"+mesh+"/secrets/ca-cert", fmt.Sprintf("type: Secret\nmesh: %s\nname: ca-cert\ndata: %s\n", mesh, base64.StdEncoding.EncodeToString(root.CertPEM)))
		f.gn.mustPut(t, "/meshes/"+mesh+"/secrets/ca-key", fmt.Sprintf("type: Secret\nmesh: %s\nname: ca-key\nlabels:\n  meshfed.io/ca-key: \"true\"\ndata: %s\n", mesh, base64.StdEncoding.EncodeToString(root.KeyPEM)))
		f.gn.mustPut(t, "/meshes/"+mesh, fmt.Sprintf("type: Mesh\nname: %s\nmtls:\n  enabledBackend: shared\n  backends:\n  - name: shared\n    type: provided\n    conf:\n      cert: {secret: ca-cert}\n      key: {secret: ca-key}\n", mesh))
	}
	f.gn.mustPut(t, "/meshes/c/meshtrafficpermissions/from-d", "type: MeshTrafficPermission\nmesh: c\nname: from-d\nspec:\n  targetRef: {kind: Mesh}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n  - targetRef: {kind: Mesh, mesh: d}\n    default: {action: Allow}\n")
	server := f.mtlsApp(t, "zone-1", "c", "echo-c", "server")
	caller := f.mtlsApp(t, "zone-2", "d", "caller-d", "agent")
	harness.Eventually(t, 20*time.Second, "the cross-mesh call", func() bool {
		return directCall(server.port, certCreds(t, caller)) == nil
	})

	// Insights: echo-c is online on its zone and on global, with its
	// certificate; once its streams end (application and agent), offline
	// within the documented time (1 s flush, then the report to global).
	onGlobal := newCtl(t, "MESHCTL_API="+f.global.URL(), "MESHCTL_TOKEN="+f.gn.token)
	onZone := newCtl(t, "MESHCTL_API="+f.zones["zone-1"].URL())
	row := func(c *ctl, name string) string {
		for _, line := range strings.Split(c.ok(t, "", "inspect", "dataplanes", "-m", "c").stdout, "\n") {
			if strings.Contains(line, " "+name+" ") {
				return line
			}
		}
		return ""
	}
	harness.Eventually(t, 20*time.Second, "echo-c online on global with its certificate", func() bool {
		r := row(onGlobal, "zone-1.echo-c")
		return strings.Contains(r, " online ") && strings.Contains(r, " grpc ") && strings.Contains(r, " in ")
	})
	if r := row(onZone, "echo-c"); !strings.Contains(r, " online ") {
		t.Errorf("echo-c on its zone: %q", r)
	}
	if out := onGlobal.ok(t, "", "inspect", "meshes").stdout; !strings.Contains(out, "shared (provided)") {
		t.Errorf("inspect meshes:\n%s", out)
	}
	server.app.Stop(t)
	server.agent.Stop(t)
	stopped := time.Now()
	harness.Eventually(t, 15*time.Second, "echo-c offline on global", func() bool {
		return strings.Contains(row(onGlobal, "zone-1.echo-c"), " offline ")
	})
	t.Logf("echo-c offline on global %s after its streams ended", time.Since(stopped).Round(10*time.Millisecond))
	var gi struct {
		Dataplanes struct{ Total, Online int } `json:"dataplanes"`
		Zones      struct{ Total, Online int } `json:"zones"`
	}
	res := f.gn.get(t, "/global-insight")
	if res.status != http.StatusOK || json.Unmarshal(res.body, &gi) != nil || gi.Zones.Online != 2 || gi.Dataplanes.Total < 2 {
		t.Errorf("global-insight: %s", res)
	}
}
