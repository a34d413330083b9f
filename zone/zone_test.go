package zone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/zone/inventory"
	"github.com/meshfed/meshfed/zone/replica"
)

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validConfig is a configuration that passes Validate (plaintext, so that
// no CA file is needed).
func validConfig(t testing.TB) Config {
	dir := t.TempDir()
	return Config{
		Zone: "zone-1", ReplicaID: "r1", GlobalAddrs: []string{"127.0.0.1:1"},
		TokenFile: writeFile(t, dir, "token", "tok\n"), Insecure: true,
		DataDir: filepath.Join(dir, "data"), APIAddr: "127.0.0.1:0",
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		modify func(c *Config)
		want   string // "" = valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"no zone", func(c *Config) { c.Zone = "" }, "zone: must be set"},
		{"bad zone", func(c *Config) { c.Zone = "Zone_1" }, `"Zone_1" is not a valid zone name`},
		{"dotted zone", func(c *Config) { c.Zone = "a.b" }, "not a valid zone name"},
		{"long zone", func(c *Config) { c.Zone = strings.Repeat("z", 64) }, "not a valid zone name"},
		{"no global", func(c *Config) { c.GlobalAddrs = nil }, "at least one global sync address"},
		{"empty global", func(c *Config) { c.GlobalAddrs = []string{"a:1", " "} }, "address 2"},
		{"no token file", func(c *Config) { c.TokenFile = "" }, "token-file: must be set"},
		{"neither CA nor insecure", func(c *Config) { c.Insecure = false }, "global-ca-file: must be set"},
		{"both CA and insecure", func(c *Config) { c.GlobalCAFile = "ca.crt" }, "give one, not both"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data-dir"},
		{"bad api addr", func(c *Config) { c.APIAddr = "5681" }, "api-addr"},
		{"bad xds addr", func(c *Config) { c.XDSAddr = "nope" }, "xds-addr"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "max-body-bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t)
			c.modify(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		cfg := validConfig(t)
		cfg.APIAddr, cfg.ReplicaID = "", ""
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.APIAddr != DefaultAPIAddr || cfg.XDSAddr != DefaultXDSAddr || cfg.ReplicaID == "" {
			t.Errorf("defaults: %+v", cfg)
		}
	})
}

func TestNewChecksFiles(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"missing token file", func(c *Config) { c.TokenFile = filepath.Join(dir, "nope") }, "token-file: cannot read the zone token"},
		{"empty token file", func(c *Config) { c.TokenFile = writeFile(t, dir, "empty", " \n") }, "is empty"},
		{"missing CA file", func(c *Config) { c.Insecure, c.GlobalCAFile = false, filepath.Join(dir, "nope.crt") }, "global-ca-file: cannot read"},
		{"CA file without a certificate", func(c *Config) { c.Insecure, c.GlobalCAFile = false, writeFile(t, dir, "bad.crt", "hello") }, "no PEM certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t)
			c.modify(&cfg)
			_, err := New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// --- the store over a replica and an inventory --------------------------

func prepared(t testing.TB, doc string) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("fixture: %v\n%s", err, doc)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatalf("fixture: %v\n%s", err, doc)
	}
	return r
}

// wire is a resource as global sends it, at revision rev.
func wire(t testing.TB, doc string, rev uint64) *syncpb.Resource {
	t.Helper()
	r := prepared(t, doc)
	r.Revision = rev
	w, err := batch.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// globalState is what the tests' replica holds: the default Mesh, a policy
// and another zone's ingress.
func globalState(t testing.TB) []*syncpb.Resource {
	return []*syncpb.Resource{
		wire(t, "type: Mesh\nname: default\n", 1),
		wire(t, `type: MeshTrafficPermission
mesh: default
name: allow
spec: {targetRef: {kind: Mesh}, from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}
`, 2),
		wire(t, `type: ZoneIngress
name: zone-2.ingress
labels: {kuma.io/zone: zone-2, kuma.io/origin: zone}
zone: zone-2
networking: {address: 10.2.0.1, port: 10001}
`, 3),
	}
}

// seedReplica writes global's state into the replica file of dataDir, as
// if the zone had synced before.
func seedReplica(t testing.TB, dataDir string) {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := replica.Open(filepath.Join(dataDir, ReplicaFile), nil, replica.Options{Zone: "zone-1"})
	if err != nil {
		t.Fatal(err)
	}
	if rej, err := rep.Reset(globalState(t), 3, "cluster-a"); err != nil || len(rej) != 0 {
		t.Fatalf("seed: %v %v", rej, err)
	}
	if err := rep.Close(); err != nil {
		t.Fatal(err)
	}
}

func dpDoc(mesh, name string) string {
	return fmt.Sprintf(`type: Dataplane
mesh: %s
name: %s
networking:
  address: 10.1.0.1
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
`, mesh, name)
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	seedReplica(t, dir)
	rep, err := replica.Open(filepath.Join(dir, ReplicaFile), nil, replica.Options{Zone: "zone-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	inv, err := inventory.Open(filepath.Join(dir, InventoryFile), nil, inventory.Options{Zone: "zone-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	s := &store{zone: "zone-1", view: newView(rep, inv), rep: rep, inv: inv}
	ctx := context.Background()

	// Global-owned: from the replica, never written here.
	if m, err := s.Get(ctx, api.Key{Type: api.TypeMesh, Name: "default"}, rest.ReadOptions{}); err != nil || m.Revision != 1 {
		t.Fatalf("get mesh: %v %v", m, err)
	}
	var roe *api.ReadOnlyError
	if _, _, err := s.Put(ctx, prepared(t, "type: Mesh\nname: other\n"), rest.WriteOptions{}); !errors.As(err, &roe) || roe.Owner != api.RoleGlobal {
		t.Errorf("put mesh: %v", err)
	}

	// Zone-owned: into the inventory, in a mesh the zone knows.
	dp, created, err := s.Put(ctx, prepared(t, dpDoc("default", "web-1")), rest.WriteOptions{})
	if err != nil || !created || dp.Revision != 1 {
		t.Fatalf("put dataplane: %v %v %v", dp, created, err)
	}
	var ve *api.ValidationError
	_, _, err = s.Put(ctx, prepared(t, dpDoc("nope", "web-1")), rest.WriteOptions{})
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "mesh" || !strings.Contains(err.Error(), `mesh "nope" does not exist`) {
		t.Errorf("dataplane in an unknown mesh: %v", err)
	}
	var ce *api.ConflictError
	if _, _, err := s.Put(ctx, prepared(t, dpDoc("default", "web-1")), rest.WriteOptions{ExpectRevision: 9}); !errors.As(err, &ce) {
		t.Errorf("stale revision: %v", err)
	}

	// ZoneIngress: ours and zone-2's (fanned out by global) are listed
	// together; zone-2's cannot be changed here.
	own := prepared(t, "type: ZoneIngress\nname: ingress\nzone: zone-1\nnetworking: {address: 10.1.0.9, port: 10001}\n")
	if _, _, err := s.Put(ctx, own, rest.WriteOptions{}); err != nil {
		t.Fatalf("own ingress: %v", err)
	}
	list, err := s.List(ctx, api.TypeZoneIngress, "", rest.ReadOptions{})
	if err != nil || len(list) != 2 || list[0].Name != "ingress" || list[1].Name != "zone-2.ingress" {
		t.Errorf("ingress list: %v %v", list, err)
	}
	theirs := prepared(t, "type: ZoneIngress\nname: zone-2.ingress\nzone: zone-1\nnetworking: {address: 10.1.0.9, port: 10001}\n")
	if _, _, err := s.Put(ctx, theirs, rest.WriteOptions{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), `belongs to zone "zone-2"`) {
		t.Errorf("overwrite zone-2's ingress: %v", err)
	}
	if err := s.Delete(ctx, api.Key{Type: api.TypeZoneIngress, Name: "zone-2.ingress"}, rest.WriteOptions{}); !errors.As(err, &ce) {
		t.Errorf("delete zone-2's ingress: %v", err)
	}
	if err := s.Delete(ctx, api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "nope"}, rest.WriteOptions{}); err != api.ErrNotFound {
		t.Errorf("delete a missing dataplane: %v", err)
	}
	if err := s.Delete(ctx, dp.Key(), rest.WriteOptions{ExpectRevision: dp.Revision}); err != nil {
		t.Errorf("delete dataplane: %v", err)
	}
	if _, err := s.Get(ctx, dp.Key(), rest.ReadOptions{}); err != api.ErrNotFound {
		t.Errorf("get deleted dataplane: %v", err)
	}
}

// --- the server, without a global -------------------------------------

type apiClient struct {
	base string
	hc   *http.Client
}

func (c *apiClient) do(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// runServer runs a zone server until the test ends and returns its API.
func runServer(t *testing.T, cfg Config) (*Server, *apiClient) {
	t.Helper()
	srv, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for srv.APIAddr() == "" {
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the API did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return srv, &apiClient{base: "http://" + srv.APIAddr(), hc: hc}
}

// deadGlobal returns an address where nothing listens.
func deadGlobal(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestServerWithoutGlobal(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	t.Run("never synced: not ready", func(t *testing.T) {
		cfg := validConfig(t)
		cfg.GlobalAddrs = []string{deadGlobal(t)}
		srv, c := runServer(t, cfg)
		code, body := c.do(t, "GET", "/readyz", "")
		if code != 503 || !strings.Contains(string(body), "waiting for the first state from global") {
			t.Errorf("/readyz: %d %s", code, body)
		}
		code, body = c.do(t, "GET", "/", "")
		var info rest.Info
		if err := json.Unmarshal(body, &info); code != 200 || err != nil || info.Role != "zone" || info.InstanceID != "r1" || info.ClusterID != "" {
			t.Errorf("GET /: %d %s", code, body)
		}
		st, ok := srv.Status()
		if !ok || st.Ready || st.Zone != "zone-1" || st.Global.Connected {
			t.Errorf("status: %+v", st)
		}
	})
	t.Run("restarted from its file: ready, serving its last state", func(t *testing.T) {
		cfg := validConfig(t)
		cfg.GlobalAddrs = []string{deadGlobal(t)}
		seedReplica(t, cfg.DataDir)
		_, c := runServer(t, cfg)
		if code, body := c.do(t, "GET", "/readyz", ""); code != 200 {
			t.Fatalf("/readyz: %d %s", code, body)
		}
		code, body := c.do(t, "GET", "/meshes", "")
		if code != 200 || !strings.Contains(string(body), `"name":"default"`) {
			t.Errorf("GET /meshes: %d %s", code, body)
		}
		code, body = c.do(t, "GET", "/", "")
		if code != 200 || !strings.Contains(string(body), `"clusterId":"cluster-a"`) {
			t.Errorf("GET /: %d %s", code, body)
		}
		// Writes of the zone's own resources work while global is away; they
		// wait in the outbox.
		code, body = c.do(t, "PUT", "/meshes/default/dataplanes/web-1", dpDoc("default", "web-1"))
		if code != 201 || !strings.Contains(string(body), `"kuma.io/zone":"zone-1"`) {
			t.Errorf("PUT dataplane: %d %s", code, body)
		}
		code, body = c.do(t, "PUT", "/meshes/default", "type: Mesh\nname: default\n")
		if code != 405 || !strings.Contains(string(body), `"owner":"global"`) {
			t.Errorf("PUT mesh: %d %s", code, body)
		}
		code, body = c.do(t, "GET", "/zone/status", "")
		var st Status
		if err := json.Unmarshal(body, &st); code != 200 || err != nil || !st.Ready || st.Reports.Pending != 1 || st.Replica.Revision != 3 || st.Global.Connected {
			t.Errorf("GET /zone/status: %d %s", code, body)
		}
		code, body = c.do(t, "GET", "/metrics", "")
		if code != 200 || !strings.Contains(string(body), "meshfed_zone_reports_pending 1") {
			t.Errorf("GET /metrics: %d", code)
		}
	})
}
