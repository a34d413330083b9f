package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

// call is one line an xdsapp client prints per call.
type call struct {
	Seq    int    `json:"seq"`
	Time   string `json:"time"`
	Server string `json:"server"`
	Zone   string `json:"zone"`
	Caller string `json:"caller"`
	Error  string `json:"error"`
}

// calls parses the calls an xdsapp client has printed so far.
func calls(t *testing.T, p *harness.Process) []call {
	t.Helper()
	var out []call
	for _, line := range strings.Split(p.Log(), "\n") {
		if !strings.HasPrefix(line, `{"seq":`) {
			continue
		}
		var c call
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			continue // a line still being written
		}
		out = append(out, c)
	}
	return out
}

// trafficFed is one global and two zones on one network, with proxyless
// gRPC applications (test/xdsapp) bootstrapped by `meshctl generate
// grpc-bootstrap` against their zone.
type trafficFed struct {
	dir    string
	global *harness.Global
	gn     *apiNode
	zones  map[string]*harness.Zone
}

func startTrafficFed(t *testing.T, grace time.Duration) *trafficFed {
	t.Helper()
	dir := t.TempDir()
	g := harness.StartGlobal(t, bins, dir, "traffic-global")
	gn := newAPINode(t, g)
	onGlobal := newCtl(t, "MESHCTL_API="+g.URL(), "MESHCTL_TOKEN="+gn.token)
	// Both zones on one network: endpoints are reached directly. The
	// default Mesh prefers local endpoints; Mesh b is another tenant.
	for _, z := range []string{"zone-1", "zone-2"} {
		gn.mustPut(t, "/zones/"+z, fmt.Sprintf("type: Zone\nname: %s\nnetwork: shared\n", z))
	}
	gn.mustPut(t, "/meshes/default", "type: Mesh\nname: default\nrouting:\n  localityAwareLoadBalancing: true\n")
	gn.mustPut(t, "/meshes/b", "type: Mesh\nname: b\n")
	f := &trafficFed{dir: dir, global: g, gn: gn, zones: map[string]*harness.Zone{}}
	for _, z := range []string{"zone-1", "zone-2"} {
		token := writeFile(t, z+".token", onGlobal.ok(t, "", "generate", "zone-token", "--zone", z).stdout)
		f.zones[z] = harness.StartZone(t, bins, dir, z, harness.ZoneOptions{Globals: []*harness.Global{g}, TokenFile: token,
			LogLevel: "info", Extra: []string{"--dataplane-grace-period", grace.String()}})
	}
	// Each zone has Mesh b (it arrives after the default Mesh).
	for _, z := range f.zones {
		zn := &apiNode{base: z.URL()}
		harness.Eventually(t, 20*time.Second, "Mesh b in "+z.ZoneName, func() bool {
			return zn.request(t, false, http.MethodGet, "/meshes/b", nil).status == http.StatusOK
		})
	}
	return f
}

// app starts an xdsapp (server or client) as Dataplane name of mesh in
// zone, registered by its bootstrap's metadata; a server serves service
// echo on port, a client calls xds:///echo.
func (f *trafficFed) app(t *testing.T, zone, mesh, name, role string, port int) *harness.Process {
	t.Helper()
	z := f.zones[zone]
	service := "echo"
	if role == "client" {
		service = name // a client serves nothing of interest, but a Dataplane needs an inbound
	}
	dpFile := filepath.Join(f.dir, name+"-dp.yaml")
	dp := fmt.Sprintf("type: Dataplane\nmesh: %s\nname: %s\nlabels:\n  meshfed.io/proxy: grpc\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: %d\n    tags:\n      kuma.io/service: %s\n      kuma.io/protocol: grpc\n",
		mesh, name, port, service)
	if err := os.WriteFile(dpFile, []byte(dp), 0o644); err != nil {
		t.Fatal(err)
	}
	bootstrapFile := filepath.Join(f.dir, name+"-bootstrap.json")
	onZone := newCtl(t, "MESHCTL_API="+z.URL())
	onZone.ok(t, "", "generate", "grpc-bootstrap", "--mesh", mesh, "--name", name, "--dataplane-file", dpFile, "-o", bootstrapFile)
	env := "GRPC_XDS_BOOTSTRAP=" + bootstrapFile
	if role == "server" {
		p := harness.Start(t, f.dir, name, bins.XDSApp, []string{"server", "--port", fmt.Sprint(port), "--id", name, "--zone", zone}, env)
		waitServing(t, p, 0)
		return p
	}
	return harness.Start(t, f.dir, name, bins.XDSApp, []string{"client", "--target", "xds:///echo", "--interval", "20ms", "--timeout", "2s"}, env)
}

// waitServing waits until server p has printed SERVING more than before
// times.
func waitServing(t *testing.T, p *harness.Process, before int) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, p.Name+" serving", func() bool {
		if !p.Running() {
			t.Fatalf("%s exited:\n%s", p.Name, p.Log())
		}
		return strings.Count(p.Log(), "\nSERVING\n") > before
	})
}

// waitAnswers waits until client c's last n calls were all answered by
// server.
func waitAnswers(t *testing.T, c *harness.Process, server string, n int, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, fmt.Sprintf("%d calls in a row answered by %s", n, server), func() bool {
		if !c.Running() {
			t.Fatalf("%s exited:\n%s", c.Name, c.Log())
		}
		cs := calls(t, c)
		if len(cs) < n {
			return false
		}
		for _, x := range cs[len(cs)-n:] {
			if x.Error != "" || x.Server != server {
				return false
			}
		}
		return true
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(harness.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// TestCrossZoneTraffic: real proxyless gRPC applications in two zones,
// configured only by the zones' xDS. A zone-1 client reaches a service
// whose only instance is in zone-2; an instance in zone-1 takes over
// (locality awareness); killing it moves the calls back to zone-2 without a
// failed call once the switch settled, and its Dataplane leaves within the
// grace period; restarted, it gets the traffic back. Mesh b's instance is
// never seen from the default Mesh, nor the other way round.
func TestCrossZoneTraffic(t *testing.T) {
	t.Parallel()
	const grace = 3 * time.Second
	f := startTrafficFed(t, grace)
	portZ1 := freePort(t)

	f.app(t, "zone-2", "default", "echo-z2", "server", freePort(t))
	client := f.app(t, "zone-1", "default", "client-1", "client", freePort(t))
	waitAnswers(t, client, "echo-z2", 10, 30*time.Second)

	// A local instance: the client prefers it.
	z1 := f.app(t, "zone-1", "default", "echo-z1", "server", portZ1)
	waitAnswers(t, client, "echo-z1", 20, 20*time.Second)

	// Mesh b has its own echo, in the same zone, with its own client.
	f.app(t, "zone-1", "b", "echo-b", "server", freePort(t))
	clientB := f.app(t, "zone-1", "b", "client-b", "client", freePort(t))
	waitAnswers(t, clientB, "echo-b", 10, 30*time.Second)

	// Kill the local instance: calls fail over to zone-2.
	killedAt := len(calls(t, client))
	z1.Kill(t)
	waitAnswers(t, client, "echo-z2", 10, 20*time.Second)
	after := calls(t, client)
	settled := -1
	for i := killedAt; i < len(after); i++ {
		if after[i].Error == "" && after[i].Server == "echo-z2" {
			settled = i
			break
		}
	}
	failedBefore := 0
	for _, c := range after[killedAt:settled] {
		if c.Error != "" {
			failedBefore++
		}
	}
	t.Logf("failover: %d calls between the kill and the first zone-2 answer, %d of them failed", settled-killedAt, failedBefore)
	// From the switch on, no call fails (checked over the next 50 calls).
	harness.Eventually(t, 20*time.Second, "50 calls after the switch", func() bool { return len(calls(t, client)) >= settled+50 })
	for _, c := range calls(t, client)[settled:] {
		if c.Error != "" {
			t.Errorf("call %d failed after the switch to zone-2 settled: %s", c.Seq, c.Error)
		}
	}
	// Its Dataplane leaves the zone (and global) within the grace period
	// (plus the sweep interval).
	zone1 := &apiNode{base: f.zones["zone-1"].URL()}
	start := time.Now()
	harness.Eventually(t, grace+5*time.Second, "echo-z1's Dataplane removed", func() bool {
		return zone1.request(t, false, http.MethodGet, "/meshes/default/dataplanes/echo-z1", nil).status == http.StatusNotFound
	})
	t.Logf("echo-z1's Dataplane removed %s after the failover settled (grace %s)", time.Since(start).Round(10*time.Millisecond), grace)
	harness.Eventually(t, 10*time.Second, "zone-1.echo-z1 removed from global", func() bool {
		return f.gn.get(t, "/meshes/default/dataplanes/zone-1.echo-z1").status == http.StatusNotFound
	})

	// Restarted: it registers again and gets the traffic back.
	z1.Restart(t)
	waitServing(t, z1, 0)
	waitAnswers(t, client, "echo-z1", 20, 20*time.Second)

	// Isolation: each Mesh's client only ever reached its own Mesh's echo.
	for _, c := range calls(t, client) {
		if c.Error == "" && c.Server != "echo-z1" && c.Server != "echo-z2" {
			t.Errorf("the default Mesh's client reached %q", c.Server)
		}
	}
	for _, c := range calls(t, clientB) {
		if c.Error == "" && c.Server != "echo-b" {
			t.Errorf("Mesh b's client reached %q", c.Server)
		}
	}
}
