package integration

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/test/harness"
	zonecp "github.com/meshfed/meshfed/zone"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// noKeepAlive carries the zone tests' HTTP calls: no idle connection (and
// its goroutines) outlives a call, so goleak sees only the servers' own.
var noKeepAlive = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// restartable is a global node or a zone server that a test stops and
// starts again with the same configuration (and data dir).
type restartable struct {
	t     *testing.T
	name  string
	start func() func(ctx context.Context) error // builds a new server
	stopF func()
}

func newRestartable(t *testing.T, name string, build func() func(ctx context.Context) error) *restartable {
	r := &restartable{t: t, name: name, start: build}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start builds a new server from the configuration and runs it.
func (r *restartable) Start() {
	r.t.Helper()
	if r.stopF != nil {
		r.t.Fatalf("%s: started twice", r.name)
	}
	run := r.start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	r.stopF = func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("%s: %v", r.name, err)
		}
	}
}

// Stop stops the server and waits for it; stopping a stopped one is a no-op.
func (r *restartable) Stop() {
	if r.stopF != nil {
		r.stopF()
		r.stopF = nil
	}
}

// endpoint is an HTTP API with an optional bearer token.
type endpoint struct {
	base, token string
}

func (e endpoint) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (e endpoint) status(t *testing.T, path string) int {
	t.Helper()
	code, _ := e.call(t, "GET", path, "")
	return code
}

func dpYAML(mesh, name string) string {
	return "type: Dataplane\nmesh: " + mesh + "\nname: " + name + `
networking:
  address: 10.1.0.1
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
`
}

// federation is one global node and one zone control plane of a test, each
// restartable with the same configuration.
type federation struct {
	global, zone *restartable
	gAPI, zAPI   endpoint
	// xdsAddr is the zone's xDS server.
	xdsAddr string
	// gGossip is the global node's gossip address (for a second node to
	// join).
	gGossip string
	// zoneServer is the zone's current server (replaced at each start).
	zoneServer *zonecp.Server
}

// startFederation starts a global node, issues a token for zone-1 and
// starts zone-1 against it over TLS; both are ready when it returns.
func startFederation(t *testing.T) *federation {
	t.Helper()
	f := &federation{}
	logger := slog.New(slog.DiscardHandler)

	gdir := t.TempDir()
	gcfg := global.Config{
		NodeID: "g1", DataDir: gdir, APIAddr: harness.FreeAddr(t), RaftAddr: harness.FreeAddr(t),
		GossipAddr: harness.FreeAddr(t), SyncAddr: harness.FreeAddr(t),
		SyncHeartbeatInterval: time.Second, InsightFlushInterval: 100 * time.Millisecond,
	}
	f.global = newRestartable(t, "global", func() func(context.Context) error {
		srv, err := global.New(gcfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		return srv.Run
	})
	f.gAPI = endpoint{base: "http://" + gcfg.APIAddr}
	f.gGossip = gcfg.GossipAddr
	harness.WaitReady(t, f.gAPI.base, 30*time.Second)
	harness.Eventually(t, 10*time.Second, "admin token and sync CA files", func() bool {
		tok, err1 := os.ReadFile(filepath.Join(gdir, global.AdminTokenFile))
		_, err2 := os.Stat(filepath.Join(gdir, global.SyncCAFile))
		f.gAPI.token = strings.TrimSpace(string(tok))
		return err1 == nil && err2 == nil && f.gAPI.token != ""
	})
	code, body := f.gAPI.call(t, "POST", "/tokens/zone", `{"zone":"zone-1","validFor":"1h"}`)
	var tok struct{ Token string }
	if err := json.Unmarshal(body, &tok); code != 200 || err != nil || tok.Token == "" {
		t.Fatalf("zone token: %d %s", code, body)
	}
	zdir := t.TempDir()
	tokenFile := filepath.Join(zdir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	zcfg := zonecp.Config{
		Zone: "zone-1", ReplicaID: "zone-1-r1", GlobalAddrs: []string{gcfg.SyncAddr},
		TokenFile: tokenFile, GlobalCAFile: filepath.Join(gdir, global.SyncCAFile),
		DataDir: filepath.Join(zdir, "data"), APIAddr: harness.FreeAddr(t), XDSAddr: harness.FreeAddr(t),
		SyncBackoff:           syncclient.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond},
		SyncHeartbeatInterval: time.Second,
	}
	f.zone = newRestartable(t, "zone", func() func(context.Context) error {
		srv, err := zonecp.New(zcfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		f.zoneServer = srv
		return srv.Run
	})
	f.zAPI = endpoint{base: "http://" + zcfg.APIAddr}
	f.xdsAddr = zcfg.XDSAddr
	harness.WaitReady(t, f.zAPI.base, 15*time.Second)
	return f

}

// TestZoneControlPlane runs a real global node and a real zone control plane
// (zonecp.Server) in one process, over TLS, and checks the zone's API end to
// end: global's state served read-only, the zone's own Dataplanes reported
// to global, and both surviving global's absence.
func TestZoneControlPlane(t *testing.T) {
	// Goroutines of earlier tests of the package are not this test's.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	f := startFederation(t)
	g, z, gAPI, zAPI := f.global, f.zone, f.gAPI, f.zAPI

	t.Log("global's state reaches the zone API")
	code, body := zAPI.call(t, "GET", "/meshes", "")
	if code != 200 || !strings.Contains(string(body), `"name":"default"`) {
		t.Fatalf("GET /meshes on the zone: %d %s", code, body)
	}
	mtp := `{"type":"MeshTrafficPermission","mesh":"default","name":"allow","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`
	if code, body := gAPI.call(t, "PUT", "/meshes/default/meshtrafficpermissions/allow", mtp); code != 201 {
		t.Fatalf("policy on global: %d %s", code, body)
	}
	harness.Eventually(t, 10*time.Second, "the policy on the zone API", func() bool {
		return zAPI.status(t, "/meshes/default/meshtrafficpermissions/allow") == 200
	})
	code, body = zAPI.call(t, "GET", "/", "")
	if code != 200 || !strings.Contains(string(body), `"role":"zone"`) || !strings.Contains(string(body), `"instanceId":"zone-1-r1"`) {
		t.Errorf("GET / on the zone: %d %s", code, body)
	}

	t.Log("global-owned types are read-only on the zone")
	code, body = zAPI.call(t, "PUT", "/meshes/demo", "type: Mesh\nname: demo\n")
	if code != 405 || !strings.Contains(string(body), `"owner":"global"`) || !strings.Contains(string(body), "write it there") {
		t.Errorf("PUT a Mesh on the zone: %d %s", code, body)
	}

	t.Log("a Dataplane in a mesh the zone does not know is refused at field mesh")
	code, body = zAPI.call(t, "PUT", "/meshes/nope/dataplanes/web-1", dpYAML("nope", "web-1"))
	var eb struct {
		Causes []struct{ Field, Message string }
	}
	if err := json.Unmarshal(body, &eb); code != 400 || err != nil || len(eb.Causes) != 1 || eb.Causes[0].Field != "mesh" {
		t.Errorf("PUT a Dataplane in an unknown mesh: %d %s", code, body)
	}

	t.Log("a Dataplane created on the zone appears on global as <zone>.<name>")
	if code, body := zAPI.call(t, "PUT", "/meshes/default/dataplanes/web-1", dpYAML("default", "web-1")); code != 201 {
		t.Fatalf("PUT a Dataplane on the zone: %d %s", code, body)
	}
	harness.Eventually(t, 10*time.Second, "zone-1.web-1 on global", func() bool {
		return gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-1") == 200
	})
	code, body = gAPI.call(t, "GET", "/meshes/default/dataplanes/zone-1.web-1", "")
	if code != 200 || !strings.Contains(string(body), `"kuma.io/zone":"zone-1"`) || !strings.Contains(string(body), `"kuma.io/display-name":"web-1"`) {
		t.Errorf("the reported Dataplane on global: %d %s", code, body)
	}
	if code, _ := gAPI.call(t, "PUT", "/meshes/default/dataplanes/x", dpYAML("default", "x")); code != 405 {
		t.Errorf("PUT a Dataplane on global: %d, want 405", code)
	}

	t.Log("deleting it on the zone deletes it on global")
	if code, body := zAPI.call(t, "DELETE", "/meshes/default/dataplanes/web-1", ""); code != 200 {
		t.Fatalf("DELETE on the zone: %d %s", code, body)
	}
	harness.Eventually(t, 10*time.Second, "zone-1.web-1 gone from global", func() bool {
		return gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-1") == 404
	})
	if code, body := zAPI.call(t, "PUT", "/meshes/default/dataplanes/web-2", dpYAML("default", "web-2")); code != 201 {
		t.Fatalf("PUT web-2 on the zone: %d %s", code, body)
	}
	harness.Eventually(t, 10*time.Second, "zone-1.web-2 on global, the outbox empty", func() bool {
		st, ok := f.zoneServer.Status()
		return gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-2") == 200 && ok && st.Reports.Pending == 0
	})

	t.Log("global stops; the zone restarts and serves its last state")
	g.Stop()
	z.Stop()
	z.Start()
	harness.WaitReady(t, zAPI.base, 10*time.Second)
	for _, path := range []string{"/meshes/default", "/meshes/default/meshtrafficpermissions/allow", "/meshes/default/dataplanes/web-2"} {
		if code, body := zAPI.call(t, "GET", path, ""); code != 200 {
			t.Errorf("GET %s on the restarted zone: %d %s", path, code, body)
		}
	}
	if st, ok := f.zoneServer.Status(); !ok || st.Global.Connected || !st.Ready {
		t.Errorf("restarted zone's status: %+v", st)
	}

	t.Log("changes made while global is down are delivered when it is back")
	if code, body := zAPI.call(t, "PUT", "/meshes/default/dataplanes/web-3", dpYAML("default", "web-3")); code != 201 {
		t.Fatalf("PUT web-3 on the zone: %d %s", code, body)
	}
	if code, body := zAPI.call(t, "DELETE", "/meshes/default/dataplanes/web-2", ""); code != 200 {
		t.Fatalf("DELETE web-2 on the zone: %d %s", code, body)
	}
	if st, _ := f.zoneServer.Status(); st.Reports.Pending != 2 {
		t.Errorf("outbox while global is down: %+v", st.Reports)
	}
	g.Start()
	harness.WaitReady(t, gAPI.base, 30*time.Second)
	harness.Eventually(t, 20*time.Second, "web-3 on global and web-2 gone", func() bool {
		return gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-3") == 200 &&
			gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-2") == 404
	})
	harness.Eventually(t, 10*time.Second, "the zone connected with an empty outbox", func() bool {
		st, ok := f.zoneServer.Status()
		return ok && st.Global.Connected && st.Reports.Pending == 0 && len(st.Reports.Rejected) == 0
	})
	code, body = zAPI.call(t, "GET", "/zone/status", "")
	if code != 200 || !strings.Contains(string(body), `"connected":true`) {
		t.Errorf("GET /zone/status: %d %s", code, body)
	}
}

// TestZoneRegisteredAgainAfterDeletion: global deletes an offline zone (and,
// with it, what the zone reported); when the zone connects again, global
// registers it anew and the zone reports all its resources again.
func TestZoneRegisteredAgainAfterDeletion(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	f := startFederation(t)
	for _, name := range []string{"web-1", "web-2"} {
		if code, body := f.zAPI.call(t, "PUT", "/meshes/default/dataplanes/"+name, dpYAML("default", name)); code != 201 {
			t.Fatalf("PUT %s on the zone: %d %s", name, code, body)
		}
	}
	harness.Eventually(t, 10*time.Second, "both Dataplanes and the Zone on global", func() bool {
		return f.gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-1") == 200 &&
			f.gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-2") == 200 &&
			f.gAPI.status(t, "/zones/zone-1") == 200
	})
	harness.Eventually(t, 10*time.Second, "the zone following its Zone's creation", func() bool {
		st, ok := f.zoneServer.Status()
		return ok && st.Reports.ReportedTo.ZoneCreated != "" && st.Reports.Pending == 0
	})

	f.zone.Stop()
	// Global refuses to delete an online zone; once it has seen the zone
	// go, it deletes the Zone (and what the zone reported, where global
	// implements it).
	harness.Eventually(t, 15*time.Second, "the offline Zone deleted on global", func() bool {
		code, _ := f.gAPI.call(t, "DELETE", "/zones/zone-1", "")
		return code == 200 || code == 404
	})
	t.Logf("after the Zone's deletion, zone-1.web-1 on global: %d", f.gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-1"))

	f.zone.Start()
	harness.Eventually(t, 15*time.Second, "the Zone registered again and both Dataplanes back on global", func() bool {
		return f.gAPI.status(t, "/zones/zone-1") == 200 &&
			f.gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-1") == 200 &&
			f.gAPI.status(t, "/meshes/default/dataplanes/zone-1.web-2") == 200
	})
}
