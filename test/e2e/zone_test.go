package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

// TestZone runs one `meshd global` and one `meshd zone` as real processes:
// the zone token comes from `meshctl generate zone-token`, the zone verifies
// global's sync port with global's sync-ca.crt, serves global's state on its
// own API, and reports the Dataplanes applied on it to global.
func TestZone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := harness.StartGlobal(t, bins, dir, "zone-global")
	gn := newAPINode(t, g)
	onGlobal := newCtl(t, "MESHCTL_API="+g.URL(), "MESHCTL_TOKEN="+gn.token)

	r := onGlobal.ok(t, "", "generate", "zone-token", "--zone", "zone-1", "--valid-for", "1h")
	token := strings.TrimSpace(r.stdout)
	if strings.Count(token, ".") != 2 || strings.Contains(token, "\n") || !strings.Contains(r.stderr, `zone token for zone "zone-1": id `) {
		t.Fatalf("generate zone-token: %s", r)
	}
	tokenFile := writeFile(t, "zone-1.token", r.stdout)

	start := time.Now()
	z := harness.StartZone(t, bins, dir, "zone-1", harness.ZoneOptions{Globals: []*harness.Global{g}, TokenFile: tokenFile})
	zn := &apiNode{base: z.URL()} // the zone API needs no token
	expect(t, zn.request(t, false, http.MethodGet, "/meshes/default", nil), http.StatusOK, "the default Mesh on the zone")
	t.Logf("zone ready with the default Mesh %s after its start", time.Since(start).Round(time.Millisecond))
	info := zn.request(t, false, http.MethodGet, "/", nil).object(t)
	if info["role"] != "zone" || info["clusterId"] == "" {
		t.Errorf("GET / on the zone: %v", info)
	}

	// A policy applied on global shows up on the zone's API.
	gn.mustPut(t, "/meshes/default/meshtrafficpermissions/zone-e2e", mtpYAML("default", "zone-e2e", nil))
	harness.Eventually(t, 10*time.Second, "the policy on the zone", func() bool {
		return zn.request(t, false, http.MethodGet, "/meshes/default/meshtrafficpermissions/zone-e2e", nil).status == http.StatusOK
	})

	// A Dataplane applied on the zone with meshctl shows up on global.
	onZone := newCtl(t, "MESHCTL_API="+z.URL())
	dp := writeFile(t, "dp.yaml", `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
`)
	if r := onZone.ok(t, "", "apply", "-f", dp); !strings.Contains(r.stdout, `Dataplane "web-1" in mesh "default" created`) {
		t.Errorf("apply on the zone: %s", r)
	}
	harness.Eventually(t, 10*time.Second, "zone-1.web-1 on global", func() bool {
		return gn.get(t, "/meshes/default/dataplanes/zone-1.web-1").status == http.StatusOK
	})
	if r := onGlobal.ok(t, "", "get", "dataplanes", "-m", "default"); !strings.Contains(r.stdout, "zone-1.web-1") {
		t.Errorf("get dataplanes on global: %s", r)
	}
	// Global-owned types are read-only on the zone, and the error says so.
	if r := onZone.fails(t, "type: Mesh\nname: nope\n", "apply", "-f", "-"); !strings.Contains(r.stderr, "global") {
		t.Errorf("apply a Mesh on the zone: %s", r)
	}

	// Revoking the token: global refuses the zone from its next connection.
	if r := onGlobal.ok(t, "", "revoke", "zone-token", "--token-file", tokenFile, "--reason", "e2e"); !strings.Contains(r.stdout, `(zone "zone-1") revoked`) {
		t.Errorf("revoke zone-token: %s", r)
	}
	z.Stop(t)
	z.Restart(t)
	z.WaitReady(t, 30*time.Second) // ready from its file
	harness.Eventually(t, 20*time.Second, "the restarted zone refused for its revoked token", func() bool {
		var st struct {
			Global struct {
				Refused   bool   `json:"refused"`
				LastError string `json:"lastError"`
			} `json:"global"`
		}
		res := zn.request(t, false, http.MethodGet, "/zone/status", nil)
		return res.status == 200 && json.Unmarshal(res.body, &st) == nil && st.Global.Refused && strings.Contains(st.Global.LastError, "revoked")
	})
	// It still serves its last state.
	expect(t, zn.request(t, false, http.MethodGet, "/meshes/default/meshtrafficpermissions/zone-e2e", nil), http.StatusOK, "the policy on the refused zone")
}

// TestZoneCommandErrors checks that `meshd zone` refuses bad input at once,
// with a message naming the problem.
func TestZoneCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := writeFile(t, "token", "a.b.c\n")
	ca := writeFile(t, "ca.crt", "not a certificate")
	base := func(overrides ...string) []string {
		args := map[string]string{
			"--zone": "zone-1", "--global": "127.0.0.1:1", "--token-file": token, "--global-ca-file": ca,
			"--data-dir": filepath.Join(dir, "data"), "--api-addr": "127.0.0.1:0",
		}
		for i := 0; i+1 < len(overrides); i += 2 {
			args[overrides[i]] = overrides[i+1]
		}
		out := []string{"zone"}
		for k, v := range args {
			if v != "" {
				out = append(out, k, v)
			}
		}
		return out
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad zone name", base("--zone", "Zone_1"), `zone: "Zone_1" is not a valid zone name`},
		{"missing token file", base("--token-file", filepath.Join(dir, "nope")), "token-file: cannot read the zone token"},
		{"unreadable CA file", base("--global-ca-file", filepath.Join(dir, "nope.crt")), "global-ca-file: cannot read global's sync CA certificate"},
		{"CA file without a certificate", base(), "global-ca-file: " + ca + ": no PEM certificate found"},
		{"no CA file and no --insecure", base("--global-ca-file", ""), "global-ca-file: must be set"},
		{"no global", base("--global", ""), "at least one global sync address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bins.Meshd, c.args...)
			cmd.Env = cleanEnv("MESHFED_")
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
				t.Fatalf("meshd %s: %v\n%s\nwant exit 1 and %q", strings.Join(c.args, " "), err, out, c.want)
			}
		})
	}
}

// TestDevFederation runs `meshd dev` (three global nodes and two zones in
// one process) on a loopback address of its own, so that its fixed ports
// collide with nothing else, and checks that the zones are wired up.
func TestDevFederation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	host := fmt.Sprintf("127.0.%d.%d", 1+rand.IntN(250), 2+rand.IntN(250))
	dev := harness.Start(t, dir, "dev", bins.Meshd, []string{"dev", "--data-dir", filepath.Join(dir, "data"), "--host", host})
	for _, port := range []int{5682, 5683} {
		url := fmt.Sprintf("http://%s:%d", host, port)
		harness.Eventually(t, 60*time.Second, url+"/readyz", func() bool {
			if !dev.Running() {
				t.Fatalf("meshd dev exited:\n%s", dev.Log())
			}
			res, err := httpClient.Get(url + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
	}
	zone1 := &apiNode{base: fmt.Sprintf("http://%s:5682", host)}
	zone2 := &apiNode{base: fmt.Sprintf("http://%s:5683", host)}
	expect(t, zone1.request(t, false, http.MethodGet, "/meshes/default", nil), http.StatusOK, "the default Mesh on zone-1")
	// A Dataplane on zone-2 shows up on every global node, and zone-2's
	// token was written where the banner says.
	expect(t, zone2.request(t, false, http.MethodPut, "/meshes/default/dataplanes/web-1", strings.NewReader(`type: Dataplane
mesh: default
name: web-1
networking: {address: 10.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}
`)), http.StatusCreated, "a Dataplane on zone-2")
	g := harness.Global{DataDir: filepath.Join(dir, "data", "global-1")}
	g2 := &apiNode{base: fmt.Sprintf("http://%s:5781", host), token: g.Token(t)}
	harness.Eventually(t, 10*time.Second, "zone-2.web-1 on global-2", func() bool {
		return g2.get(t, "/meshes/default/dataplanes/zone-2.web-1").status == http.StatusOK
	})
	harness.Eventually(t, 10*time.Second, "the banner", func() bool {
		return strings.Contains(dev.Log(), fmt.Sprintf("zone-2   API http://%s:5683", host))
	})
	if b, err := os.ReadFile(filepath.Join(dir, "data", "zone-2", "token")); err != nil || strings.Count(string(b), ".") != 2 {
		t.Errorf("zone-2's token file: %q %v", b, err)
	}
}
