package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

// TestRestartKeepsState writes resources, stops the node with SIGTERM,
// starts it again on the same data dir and ports, and checks that the
// cluster identity, the admin token and every resource (with its revision)
// survived, and that deletions did too.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	g := harness.StartGlobal(t, bins, t.TempDir(), "restart-1")
	n := newAPINode(t, g)
	tokenPath := filepath.Join(g.DataDir, "admin-token")
	tokenBefore, err := os.ReadFile(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	infoBefore := n.request(t, false, http.MethodGet, "/", nil).object(t)

	n.createMesh(t, "persist")
	paths := map[string]string{
		"/meshes/persist/meshtrafficpermissions/p1": mtpYAML("persist", "p1", map[string]string{"v": "1"}),
		"/meshes/persist/traffic-traces/t1":         "type: TrafficTrace\nname: t1\nselectors:\n- match:\n    kuma.io/service: web\n",
		"/meshes/persist/secrets/s1":                "type: Secret\nname: s1\ndata: aGVsbG8=\n",
	}
	for p, body := range paths {
		n.mustPut(t, p, body)
	}
	// An update, so a stored revision differs from its creation's.
	n.mustPut(t, "/meshes/persist/meshtrafficpermissions/p1", mtpYAML("persist", "p1", map[string]string{"v": "2"}))
	// A deletion that must stay deleted.
	n.mustPut(t, "/meshes/persist/meshtrafficpermissions/gone", mtpYAML("persist", "gone", nil))
	expect(t, n.del(t, "/meshes/persist/meshtrafficpermissions/gone"), http.StatusOK, "DELETE gone")
	// Enough log entries that the FSM applies them in several batches on
	// the way up (Raft hands at most 64 at a time), so a node that called
	// itself ready after the first batch would be caught below.
	const bulk = 150
	n.createMesh(t, "bulk")
	for i := range bulk {
		name := fmt.Sprintf("b-%03d", i)
		n.mustPut(t, "/meshes/bulk/meshtrafficpermissions/"+name, mtpYAML("bulk", name, nil))
	}
	expect(t, n.del(t, "/meshes/default"), http.StatusOK, "DELETE the default mesh")

	revs := map[string]uint64{}
	bodies := map[string]string{}
	for _, p := range []string{"/meshes/persist", "/meshes/persist/meshtrafficpermissions/p1",
		"/meshes/persist/traffic-traces/t1", "/meshes/persist/secrets/s1",
		fmt.Sprintf("/meshes/bulk/meshtrafficpermissions/b-%03d", bulk-1)} {
		r := n.get(t, p)
		expect(t, r, http.StatusOK, "GET "+p+" before the restart")
		revs[p] = r.etag(t)
		bodies[p] = string(r.body)
	}
	var maxRev uint64
	for _, r := range revs {
		maxRev = max(maxRev, r)
	}

	g.Stop(t) // SIGTERM; fails the test unless the process exits cleanly
	if g.Running() {
		t.Fatalf("node still running after Stop")
	}
	if _, err := httpClient.Get(g.URL() + "/healthz"); err == nil {
		t.Fatalf("the stopped node still answers")
	}

	g.Restart(t)
	harness.WaitReady(t, g.URL(), 30*time.Second)

	// Ready means the state is there: no waiting for it beyond /readyz.
	for p, rev := range revs {
		r := n.get(t, p)
		expect(t, r, http.StatusOK, "GET "+p+" after the restart")
		if got := r.etag(t); got != rev {
			t.Errorf("%s: ETag %d after the restart, %d before", p, got, rev)
		}
		if string(r.body) != bodies[p] {
			t.Errorf("%s changed across the restart:\nbefore %s\nafter  %s", p, bodies[p], r.body)
		}
	}
	r := n.get(t, "/meshes/bulk/meshtrafficpermissions?size=1")
	expect(t, r, http.StatusOK, "list the bulk mesh after the restart")
	if total := r.object(t)["total"]; total != float64(bulk) {
		t.Errorf("the bulk mesh holds %v policies right after the restart, want %d", total, bulk)
	}
	expect(t, n.get(t, "/meshes/default"), http.StatusNotFound, "the deleted default mesh after the restart")
	expect(t, n.get(t, "/meshes/persist/meshtrafficpermissions/gone"), http.StatusNotFound, "a deleted policy after the restart")
	r = n.get(t, "/meshes")
	expect(t, r, http.StatusOK, "list meshes after the restart")
	if total := r.object(t)["total"]; total != float64(2) {
		t.Errorf("meshes after the restart: %s, want only bulk and persist", r.body)
	}

	infoAfter := n.request(t, false, http.MethodGet, "/", nil).object(t)
	if infoAfter["clusterId"] != infoBefore["clusterId"] || infoAfter["clusterId"] == "" {
		t.Errorf("clusterId %v before the restart, %v after", infoBefore["clusterId"], infoAfter["clusterId"])
	}
	tokenAfter, err := os.ReadFile(tokenPath)
	if err != nil || !bytes.Equal(tokenAfter, tokenBefore) {
		t.Errorf("admin token file changed across the restart (err %v)", err)
	}
	// The old token (the one n holds) still authenticates: every call
	// above used it.

	// New writes continue after the old revisions.
	rev := n.mustPut(t, "/meshes/persist/meshtrafficpermissions/p2", mtpYAML("persist", "p2", nil))
	if rev <= maxRev {
		t.Errorf("first write after the restart got revision %d, not above %d", rev, maxRev)
	}
}

// writeConfig writes a meshd YAML config file.
func writeConfig(t *testing.T, values map[string]any) string {
	t.Helper()
	data, err := json.Marshal(values) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "meshd.yaml", string(data))
}

// refused reports whether nothing accepts TCP connections at addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestConfigLayering checks `meshd global`'s configuration sources: the
// YAML file (by --config or MESHFED_CONFIG), MESHFED_* variables over the
// file, flags over both, and the errors for bad input.
func TestConfigLayering(t *testing.T) {
	t.Parallel()

	t.Run("EnvOverridesFile", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fileAPI, envAPI := harness.FreeAddr(t), harness.FreeAddr(t)
		dataDir := filepath.Join(dir, "from-file-data")
		cfg := writeConfig(t, map[string]any{
			"node-id":           "from-file",
			"api-addr":          fileAPI,
			"raft-addr":         harness.FreeAddr(t),
			"gossip-addr":       harness.FreeAddr(t),
			"sync-addr":         harness.FreeAddr(t),
			"data-dir":          dataDir,
			"skip-default-mesh": true,
			"log-level":         "debug",
		})
		p := harness.Start(t, dir, "layer-env", bins.Meshd, []string{"global"},
			"MESHFED_CONFIG="+cfg, "MESHFED_API_ADDR="+envAPI)
		g := &harness.Global{Process: p, DataDir: dataDir, APIAddr: envAPI}
		harness.WaitReady(t, g.URL(), 30*time.Second)
		if !refused(fileAPI) {
			t.Errorf("the config file's api-addr %s answers although MESHFED_API_ADDR overrides it", fileAPI)
		}
		n := newAPINode(t, g) // the token is in the file's data-dir
		info := n.request(t, false, http.MethodGet, "/", nil).object(t)
		if info["instanceId"] != "from-file" {
			t.Errorf("instanceId %v, want from-file (the config file's node-id)", info["instanceId"])
		}
		// skip-default-mesh from the file: a fresh node without a default Mesh.
		expect(t, n.get(t, "/meshes/default"), http.StatusNotFound, "GET the default mesh with skip-default-mesh")
		r := n.get(t, "/meshes")
		expect(t, r, http.StatusOK, "list meshes")
		if total := r.object(t)["total"]; total != float64(0) {
			t.Errorf("meshes of a node started with skip-default-mesh: %s", r.body)
		}
	})

	t.Run("FlagOverridesEnvAndFile", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fileAPI, envAPI, flagAPI := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
		dataDir := filepath.Join(dir, "flag-data")
		cfg := writeConfig(t, map[string]any{
			"node-id":           "from-file",
			"api-addr":          fileAPI,
			"raft-addr":         harness.FreeAddr(t),
			"gossip-addr":       harness.FreeAddr(t),
			"sync-addr":         harness.FreeAddr(t),
			"data-dir":          dataDir,
			"max-body-bytes":    4096,
			"skip-default-mesh": false,
		})
		p := harness.Start(t, dir, "layer-flag", bins.Meshd, []string{"global", "--config", cfg, "--api-addr", flagAPI, "--skip-default-mesh"},
			"MESHFED_API_ADDR="+envAPI, "MESHFED_NODE_ID=from-env")
		g := &harness.Global{Process: p, DataDir: dataDir, APIAddr: flagAPI}
		harness.WaitReady(t, g.URL(), 30*time.Second)
		for _, addr := range []string{fileAPI, envAPI} {
			if !refused(addr) {
				t.Errorf("%s answers although --api-addr %s overrides it", addr, flagAPI)
			}
		}
		n := newAPINode(t, g)
		info := n.request(t, false, http.MethodGet, "/", nil).object(t)
		if info["instanceId"] != "from-env" {
			t.Errorf("instanceId %v, want from-env (MESHFED_NODE_ID over the file)", info["instanceId"])
		}
		// --skip-default-mesh (over the file's false): no default Mesh.
		expect(t, n.get(t, "/meshes/default"), http.StatusNotFound, "GET the default mesh with --skip-default-mesh")

		// max-body-bytes from the file.
		small := "type: Mesh\nname: small\n"
		expect(t, n.put(t, "/meshes/small", small), http.StatusCreated, "PUT a small mesh")
		big := "type: Mesh\nname: big\nlabels:\n  filler: " + strings.Repeat("x", 5000) + "\n"
		r := n.put(t, "/meshes/big", big)
		expect(t, r, http.StatusRequestEntityTooLarge, "PUT a 5 kB body with max-body-bytes 4096")
		if !strings.Contains(r.errBody(t).Details, "4096") {
			t.Errorf("413 should name the limit 4096: %s", r.body)
		}
		expect(t, n.get(t, "/meshes/big"), http.StatusNotFound, "GET the refused mesh")
	})

	// Bad configuration: meshd exits non-zero at once, naming the problem.
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
		env  []string
		want []string
	}{
		{
			name: "UnknownConfigKey",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, map[string]any{"api-adress": "127.0.0.1:1", "node-id": "x"})}
			},
			want: []string{"api-adress", "unknown key"},
		},
		{
			name: "ConfigValueDoesNotParse",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, map[string]any{"max-body-bytes": "lots"})}
			},
			want: []string{"max-body-bytes", "lots"},
		},
		{
			name: "ConfigFileMissing",
			args: func(t *testing.T) []string {
				return []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}
			},
			want: []string{"missing.yaml"},
		},
		{
			name: "ConfigFileNotYAMLMap",
			args: func(t *testing.T) []string {
				return []string{"--config", writeFile(t, "list.yaml", "- a\n- b\n")}
			},
			want: []string{"list.yaml", "YAML"},
		},
		{
			name: "EnvValueDoesNotParse",
			env:  []string{"MESHFED_MAX_BODY_BYTES=lots"},
			want: []string{"MESHFED_MAX_BODY_BYTES", "lots"},
		},
		{
			name: "TimingMultiplierOutOfRange",
			args: func(t *testing.T) []string { return []string{"--raft-timing-multiplier", "99"} },
			want: []string{"raft-timing-multiplier", "99", "between 1 and 10"},
		},
		{
			name: "APIAddrNotHostPort",
			args: func(t *testing.T) []string { return []string{"--api-addr", "nonsense"} },
			want: []string{"api-addr", "nonsense"},
		},
		{
			name: "UnknownFlag",
			args: func(t *testing.T) []string { return []string{"--no-such-flag"} },
			want: []string{"no-such-flag"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "data")
			// Valid defaults first, so only the case's own problem remains;
			// the case's arguments come last and win.
			args := []string{"global", "--data-dir", dataDir, "--api-addr", harness.FreeAddr(t), "--raft-addr", harness.FreeAddr(t), "--gossip-addr", harness.FreeAddr(t), "--sync-addr", harness.FreeAddr(t)}
			if tc.args != nil {
				args = append(args, tc.args(t)...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bins.Meshd, args...)
			cmd.Env = append(cleanEnv("MESHFED_"), tc.env...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("meshd %s did not exit within 20s:\n%s", strings.Join(args, " "), out)
			}
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() <= 0 || ee.ExitCode() == 66 {
				t.Fatalf("meshd %s: %v, want a non-zero exit:\n%s", strings.Join(args, " "), err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("meshd output does not mention %q:\n%s", w, out)
				}
			}
			if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) > 3 {
				t.Errorf("a configuration error should be a short message, got %d lines:\n%s", len(lines), out)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "raft")); err == nil {
				t.Errorf("meshd created its Raft state despite the bad configuration")
			}
		})
	}
}
