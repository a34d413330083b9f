package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

// TestZoneReplicas runs one global and two replicas of zone-1 as real
// processes, in one encrypted gossip pool: a Dataplane registered on either
// replica is served by both and reaches global; a replica killed with -9
// misses changes and catches up when it comes back, without bringing back
// what was deleted meanwhile.
func TestZoneReplicas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := harness.StartGlobal(t, bins, dir, "ha-global")
	gn := newAPINode(t, g)
	onGlobal := newCtl(t, "MESHCTL_API="+g.URL(), "MESHCTL_TOKEN="+gn.token)
	tokenFile := writeFile(t, "zone-1.token", onGlobal.ok(t, "", "generate", "zone-token", "--zone", "zone-1").stdout)
	keyFile := writeFile(t, "gossip.key", base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n")

	gossipA, gossipB := harness.FreeAddr(t), harness.FreeAddr(t)
	replica := func(name, id, gossip string, join string) *harness.Zone {
		extra := []string{"--replica-id", id, "--gossip-addr", gossip, "--gossip-key-file", keyFile}
		if join != "" {
			extra = append(extra, "--join", join)
		}
		return harness.StartZone(t, bins, dir, name, harness.ZoneOptions{Globals: []*harness.Global{g}, TokenFile: tokenFile,
			Zone: "zone-1", LogLevel: "info", Extra: extra})
	}
	a := replica("zone-1a", "a", gossipA, gossipB)
	b := replica("zone-1b", "b", gossipB, gossipA)
	an, bn := &apiNode{base: a.URL()}, &apiNode{base: b.URL()}
	peersAlive := func(n *apiNode) int {
		var st struct {
			Peers struct {
				Peers []struct{ ID, State string } `json:"peers"`
			} `json:"peers"`
		}
		res := n.request(t, false, http.MethodGet, "/zone/status", nil)
		if res.status != http.StatusOK || json.Unmarshal(res.body, &st) != nil {
			return -1
		}
		alive := 0
		for _, p := range st.Peers.Peers {
			if p.State == "alive" {
				alive++
			}
		}
		return alive
	}
	harness.Eventually(t, 20*time.Second, "the two replicas in one pool", func() bool { return peersAlive(an) == 1 && peersAlive(bn) == 1 })

	dp := func(name, addr string) string {
		return fmt.Sprintf("type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: %s\n  inbound: [{port: 8080, tags: {kuma.io/service: web}}]\n", name, addr)
	}
	putOn := func(n *apiNode, name, addr string) {
		t.Helper()
		r := n.request(t, false, http.MethodPut, "/meshes/default/dataplanes/"+name, strings.NewReader(dp(name, addr)))
		if r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Fatalf("PUT %s on %s: %s", name, n.base, r)
		}
	}
	present := func(n *apiNode, path string, auth bool) bool {
		return n.request(t, auth, http.MethodGet, path, nil).status == http.StatusOK
	}
	waitOn := func(what string, want bool, check func() bool) {
		t.Helper()
		harness.Eventually(t, 20*time.Second, what, func() bool { return check() == want })
	}

	// Registered on a: served by b, and on global.
	putOn(an, "web-1", "10.0.0.1")
	waitOn("web-1 on replica b", true, func() bool { return present(bn, "/meshes/default/dataplanes/web-1", false) })
	waitOn("zone-1.web-1 on global", true, func() bool { return present(gn, "/meshes/default/dataplanes/zone-1.web-1", true) })

	// a dies; b keeps taking registrations, and deletes web-1.
	a.Kill(t)
	putOn(bn, "web-2", "10.0.0.2")
	if r := bn.request(t, false, http.MethodDelete, "/meshes/default/dataplanes/web-1", nil); r.status != http.StatusOK {
		t.Fatalf("DELETE web-1 on b: %s", r)
	}
	waitOn("zone-1.web-2 on global", true, func() bool { return present(gn, "/meshes/default/dataplanes/zone-1.web-2", true) })
	waitOn("zone-1.web-1 gone from global", false, func() bool { return present(gn, "/meshes/default/dataplanes/zone-1.web-1", true) })

	// a comes back from its file (which still holds web-1): it catches up,
	// and web-1 stays deleted everywhere.
	a.Restart(t)
	a.WaitReady(t, 30*time.Second)
	waitOn("web-2 on the restarted replica a", true, func() bool { return present(an, "/meshes/default/dataplanes/web-2", false) })
	waitOn("web-1 gone from replica a", false, func() bool { return present(an, "/meshes/default/dataplanes/web-1", false) })
	// Give a's reports time to reach global, then check nothing came back.
	harness.Eventually(t, 20*time.Second, "replica a's reports acknowledged", func() bool {
		var st struct {
			Reports struct {
				Pending int `json:"pending"`
			} `json:"reports"`
		}
		res := an.request(t, false, http.MethodGet, "/zone/status", nil)
		return res.status == http.StatusOK && json.Unmarshal(res.body, &st) == nil && st.Reports.Pending == 0
	})
	if present(gn, "/meshes/default/dataplanes/zone-1.web-1", true) {
		t.Fatal("the restarted replica brought a deleted Dataplane back to global")
	}
	if !present(gn, "/meshes/default/dataplanes/zone-1.web-2", true) {
		t.Fatal("web-2 is missing on global")
	}
	// Global sees both replicas of the zone.
	waitOn("two replicas in zone-1's overview", true, func() bool {
		var ov struct {
			Status struct {
				Replicas int `json:"replicas"`
			} `json:"status"`
		}
		res := gn.get(t, "/zones/zone-1/_overview")
		return res.status == http.StatusOK && json.Unmarshal(res.body, &ov) == nil && ov.Status.Replicas == 2
	})
}
