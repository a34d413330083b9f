package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/test/harness"
)

// zoneSelf is the part of a zone's GET /zone/status the federation test
// reads.
type zoneSelf struct {
	Ready  bool `json:"ready"`
	Global struct {
		Connected bool   `json:"connected"`
		Node      string `json:"node"`
	} `json:"global"`
	Replica struct {
		Revision  uint64 `json:"revision"`
		ClusterID string `json:"clusterId"`
		Resources int    `json:"resources"`
	} `json:"replica"`
}

// zoneStatus asks the zone for GET /zone/status once; ok is false when the
// zone does not answer 200 with the expected JSON.
func zoneStatus(t testing.TB, z *harness.Zone) (zoneSelf, bool) {
	t.Helper()
	var st zoneSelf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, z.URL()+"/zone/status", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, false
	}
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

// fanOutTypes are the global-owned types global sends to every zone.
func fanOutTypes() []string {
	var out []string
	for _, d := range api.Types() {
		if d.Owner == api.RoleGlobal && d.FanOut && !d.System {
			out = append(out, d.Name)
		}
	}
	return out
}

// fedSnapshot lists every global-owned fan-out resource the API at cl
// serves, keyed by type/mesh/name, each as its YAML body (envelope and
// spec) plus its revision.
func fedSnapshot(cl *client.Client) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]string{}
	for _, typ := range fanOutTypes() {
		items, err := cl.ListAll(ctx, typ, "", client.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", typ, err)
		}
		for _, r := range items {
			body, err := api.MarshalYAML(r)
			if err != nil {
				return nil, fmt.Errorf("%s/%s/%s: %w", r.Type, r.Mesh, r.Name, err)
			}
			out[r.Type+"/"+r.Mesh+"/"+r.Name] = fmt.Sprintf("revision %d\n%s", r.Revision, body)
		}
	}
	return out, nil
}

// diffFed compares two snapshots resource by resource.
func diffFed(want, got map[string]string) string {
	var lines []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			lines = append(lines, "missing "+k)
		case g != w:
			lines = append(lines, fmt.Sprintf("%s differs:\n--- global\n%s--- zone\n%s", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, "unexpected "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestFederation runs three `meshd global` nodes and two `meshd zone`
// processes (each zone dials all three sync addresses) and checks: global's
// state reaches both zones; kill -9 of the global node serving zone-1 makes
// zone-1 resume on another node without a Reset and keep receiving changes;
// with every global node down, the zones keep serving their state, also
// across a zone's restart; and once the global nodes are back, each zone's
// replica equals global's state resource by resource and new changes reach
// both zones.
func TestFederation(t *testing.T) {
	t.Parallel()
	start := time.Now()
	dir := t.TempDir()
	c := harness.StartCluster(t, bins, dir, "fed", harness.ClusterOptions{})
	token := c.Token(t)
	// global returns an API node of a running global node.
	global := func() *apiNode {
		t.Helper()
		r := c.Running()
		if len(r) == 0 {
			t.Fatal("no global node is running")
		}
		return &apiNode{base: r[0].URL(), token: token}
	}
	onGlobal := newCtl(t, "MESHCTL_API="+c.Leader(t).URL(), "MESHCTL_TOKEN="+token)
	zones := map[string]*harness.Zone{}
	var names = []string{"zone-1", "zone-2"}
	for _, name := range names {
		r := onGlobal.ok(t, "", "generate", "zone-token", "--zone", name, "--valid-for", "1h")
		tokenFile := writeFile(t, name+".token", r.stdout)
		zones[name] = harness.StartZone(t, bins, dir, name, harness.ZoneOptions{Globals: c.Nodes, TokenFile: tokenFile, LogLevel: "info"})
	}
	zoneAPI := func(name string) *apiNode { return &apiNode{base: zones[name].URL()} }
	onZone := func(name, path string) result {
		t.Helper()
		return zoneAPI(name).request(t, false, http.MethodGet, path, nil)
	}
	waitOnZones := func(what, path string, ok func(result) bool) {
		t.Helper()
		for _, name := range names {
			harness.Eventually(t, 15*time.Second, what+" on "+name, func() bool { return ok(onZone(name, path)) })
		}
	}
	present := func(r result) bool { return r.status == http.StatusOK }
	t.Logf("3 global nodes and 2 zones ready after %s", time.Since(start).Round(time.Millisecond))

	// 1. A Mesh and policies applied on global reach both zones.
	global().createMesh(t, "fed")
	policies := []string{"/meshes/fed/meshtrafficpermissions/p1", "/meshes/fed/meshtrafficpermissions/p2", "/meshes/default/meshtrafficpermissions/p3"}
	for _, p := range policies {
		parts := strings.Split(p, "/")
		global().mustPut(t, p, mtpYAML(parts[2], parts[4], map[string]string{"step": "1"}))
	}
	waitOnZones("the Mesh fed", "/meshes/fed", present)
	for _, p := range policies {
		waitOnZones(p, p, present)
	}

	// 2. kill -9 the global node serving zone-1: zone-1 resumes on another
	// node without a Reset and keeps receiving changes.
	z1 := zones["zone-1"]
	st, ok := zoneStatus(t, z1)
	if !ok || !st.Global.Connected || c.Node(st.Global.Node) == nil {
		t.Fatalf("zone-1's status before the kill: %+v (ok %v)", st, ok)
	}
	victim := c.Node(st.Global.Node)
	// Global's overview of zone-1 names the same node.
	gcl0 := c.Client(t, c.Leader(t))
	var ov *api.ZoneOverview
	harness.Eventually(t, 10*time.Second, "global's overview of zone-1 naming "+victim.ID(), func() bool {
		var err error
		ov, err = gcl0.ZoneOverview(context.Background(), "zone-1")
		return err == nil && ov.Status.Online && ov.Status.GlobalNode == victim.ID()
	})
	z1LogBefore := len(z1.Log())
	killedAt := time.Now()
	c.Kill(t, victim)
	var resumedOn *harness.Global
	harness.Eventually(t, 20*time.Second, "zone-1 connected to another global node", func() bool {
		st, ok := zoneStatus(t, z1)
		if ok && st.Global.Connected && st.Global.Node != victim.ID() {
			resumedOn = c.Node(st.Global.Node)
			return resumedOn != nil
		}
		return false
	})
	t.Logf("zone-1 resumed on %s %s after kill -9 of %s", resumedOn.ID(), time.Since(killedAt).Round(time.Millisecond), victim.ID())
	// The zone's log: a "connected to global" line with reset=false, and
	// no "replica reset by global".
	// The zone's log: a "connected to global" line for the new node with
	// reset=false, and no "replica reset by global". (The zone logs the
	// line just after it updates its status: wait for it.)
	lastLine := func(log, msg, attr string) string {
		line := ""
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, `msg="`+msg+`"`) && strings.Contains(l, attr) {
				line = l
			}
		}
		return line
	}
	var z1Log, conn string
	harness.Eventually(t, 5*time.Second, "zone-1's log line of its connection to "+resumedOn.ID(), func() bool {
		z1Log = z1.Log()[z1LogBefore:]
		conn = lastLine(z1Log, "connected to global", "global="+resumedOn.ID()+" ")
		return conn != ""
	})
	if !strings.Contains(conn, "reset=false") || strings.Contains(z1Log, "replica reset by global") {
		t.Errorf("zone-1 did not resume on %s without a Reset; its log since the kill:\n%s", resumedOn.ID(), z1Log)
	}
	// The new node's log: "zone connected" for zone-1 with reset=false and
	// from_revision > 0, and no "sending a reset" to zone-1.
	var served string
	harness.Eventually(t, 5*time.Second, resumedOn.ID()+"'s log line of zone-1's connection", func() bool {
		served = lastLine(resumedOn.Log(), "zone connected", "zone=zone-1 ")
		return served != ""
	})
	if !strings.Contains(served, "reset=false") || strings.Contains(served, "from_revision=0 ") {
		t.Errorf("%s's \"zone connected\" line for zone-1: %q, want a resume (reset=false, from_revision > 0)", resumedOn.ID(), served)
	}
	if l := lastLine(resumedOn.Log(), "sending a reset", "zone=zone-1 "); l != "" {
		t.Errorf("%s sent zone-1 a reset: %s", resumedOn.ID(), l)
	}
	// A change written after the kill (once the survivors have a leader)
	// reaches both zones.
	c.WaitConverged(t, 30*time.Second)
	after := "/meshes/fed/meshtrafficpermissions/after-kill"
	global().mustPut(t, after, mtpYAML("fed", "after-kill", nil))
	policies = append(policies, after)
	waitOnZones("a policy written after the kill", after, present)

	// 3. Every global node down: the zones keep serving their state, also
	// across zone-2's restart.
	want := map[string]map[string]string{}
	for _, name := range names {
		snap, err := fedSnapshot(mustClient(t, zones[name].URL(), ""))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = snap
	}
	for _, g := range c.Running() {
		c.Kill(t, g)
	}
	for _, name := range names {
		harness.Eventually(t, 15*time.Second, name+" disconnected from global", func() bool {
			st, ok := zoneStatus(t, zones[name])
			return ok && !st.Global.Connected
		})
	}
	z2 := zones["zone-2"]
	z2.Stop(t)
	z2.Restart(t)
	z2.WaitReady(t, 30*time.Second)
	for _, name := range names {
		for _, p := range policies {
			expect(t, onZone(name, p), http.StatusOK, p+" on "+name+" with global down")
		}
		got, err := fedSnapshot(mustClient(t, zones[name].URL(), ""))
		if err != nil {
			t.Fatal(err)
		}
		if d := diffFed(want[name], got); d != "" {
			t.Errorf("%s's state with global down differs from before:\n%s", name, d)
		}
		if st, ok := zoneStatus(t, zones[name]); !ok || !st.Ready || st.Global.Connected {
			t.Errorf("%s's status with global down: %+v (ok %v), want ready and not connected", name, st, ok)
		}
	}

	// 4. The global nodes back (the killed one too, same data dirs):
	// everything converges.
	for _, g := range c.Nodes {
		g.Process.Restart(t) // all at once: a lone node has no quorum
	}
	for _, g := range c.Nodes {
		g.WaitReady(t, 60*time.Second)
	}
	leader := c.WaitConverged(t, 60*time.Second)
	for _, name := range names {
		harness.Eventually(t, 20*time.Second, name+" connected again", func() bool {
			st, ok := zoneStatus(t, zones[name])
			return ok && st.Global.Connected
		})
	}
	// A change made now reaches both zones: one update, one creation, one
	// deletion.
	global().mustPut(t, policies[0], mtpYAML("fed", "p1", map[string]string{"step": "4"}))
	global().mustPut(t, "/meshes/default/meshtrafficpermissions/after-restart", mtpYAML("default", "after-restart", nil))
	expect(t, global().del(t, policies[1]), http.StatusOK, "delete "+policies[1])
	waitOnZones("p1's update", policies[0], func(r result) bool {
		return r.status == http.StatusOK && strings.Contains(string(r.body), `"step":"4"`)
	})
	waitOnZones("after-restart", "/meshes/default/meshtrafficpermissions/after-restart", present)
	waitOnZones("p2's deletion", policies[1], func(r result) bool { return r.status == http.StatusNotFound })
	// Each zone's replica equals global's state, resource by resource.
	gcl := c.Client(t, leader)
	for _, name := range names {
		zcl := mustClient(t, zones[name].URL(), "")
		var last string
		var compared int
		deadline := time.Now().Add(15 * time.Second)
		harness.Eventually(t, 20*time.Second, name+"'s replica equal to global's state", func() bool {
			g, err := fedSnapshot(gcl)
			if err != nil {
				last = err.Error()
				return false
			}
			z, err := fedSnapshot(zcl)
			if err != nil {
				last = err.Error()
				return false
			}
			last, compared = diffFed(g, z), len(g)
			if last != "" && time.Now().After(deadline) {
				t.Fatalf("%s's replica differs from global's state:\n%s", name, last)
			}
			return last == "" && len(g) > 0
		})
		t.Logf("%s's replica equals global's state: %d resources of %d types", name, compared, len(fanOutTypes()))
	}
	t.Logf("federation test done in %s", time.Since(start).Round(time.Millisecond))
}

// mustClient is an API client of base with the token (none for a zone).
func mustClient(t testing.TB, base, token string) *client.Client {
	t.Helper()
	cl, err := client.New(base, token, client.WithRetry(client.RetryPolicy{Disabled: true}))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}
