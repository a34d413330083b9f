package integration

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/test/harness"
)

// configDump is the part of a zone's config dump the test reads.
type configDump struct {
	Dataplane string `json:"dataplane"`
	Zone      string `json:"zone"`
	Resources map[string]struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	} `json:"resources"`
}

func listenerNames(t *testing.T, body []byte) []string {
	t.Helper()
	var d configDump
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("config dump %s: %v", body, err)
	}
	var names []string
	for _, it := range d.Resources["Listener"].Items {
		names = append(names, it.Name)
	}
	slices.Sort(names)
	return names
}

// TestDataplaneConfigThroughGlobal: GET .../dataplanes/{name}/_config on
// global asks the Dataplane's zone over its sync stream and answers the
// zone's dump; a second global node, which does not serve the zone's
// stream, forwards to the one that does; the zone's refusal is a 404 with
// its message, and an offline zone a 503.
func TestDataplaneConfigThroughGlobal(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// raft's TCP transport leaves a peer's accepted connection reading
	// after Close (hashicorp/raft NetworkTransport), until the process ends.
	t.Cleanup(func() {
		goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"))
	})
	f := startFederation(t)

	secure := "type: Mesh\nname: secure\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
	if code, body := f.gAPI.call(t, "PUT", "/meshes/secure", secure); code != 201 {
		t.Fatalf("PUT the mTLS Mesh: %d %s", code, body)
	}
	harness.Eventually(t, 15*time.Second, "the zone's intermediate CA for Mesh secure", func() bool {
		st, ok := f.zoneServer.Status()
		for _, c := range st.CA {
			if ok && c.Mesh == "secure" && c.NotAfter != nil {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runProxy(ctx, t, f.xdsAddr)

	code, zoneBody := f.zAPI.call(t, "GET", "/meshes/secure/dataplanes/web-1/_config", "")
	if code != 200 {
		t.Fatalf("the zone's own dump: %d %s", code, zoneBody)
	}
	want := listenerNames(t, zoneBody)
	if len(want) == 0 {
		t.Fatalf("the zone's dump has no listeners: %s", zoneBody)
	}
	harness.Eventually(t, 10*time.Second, "the proxy's Dataplane on global", func() bool {
		return f.gAPI.status(t, "/meshes/secure/dataplanes/zone-1.web-1") == 200
	})

	t.Log("global asks the zone")
	code, body := f.gAPI.call(t, "GET", "/meshes/secure/dataplanes/zone-1.web-1/_config", "")
	if code != 200 {
		t.Fatalf("GET _config on global: %d %s", code, body)
	}
	var d configDump
	if err := json.Unmarshal(body, &d); err != nil || d.Dataplane != "secure.web-1" || d.Zone != "zone-1" {
		t.Fatalf("global's answer %s: %v", body, err)
	}
	if got := listenerNames(t, body); !slices.Equal(got, want) {
		t.Errorf("listeners through global %v, want the zone's %v", got, want)
	}
	if strings.Contains(string(body), "PRIVATE KEY") {
		t.Error("the dump through global holds a private key")
	}
	for path, wantCode := range map[string]int{
		"/meshes/secure/dataplanes/web-1/_config":         404, // global's name is zone-qualified
		"/meshes/secure/dataplanes/zone-1.nope/_config":   404,
		"/meshes/default/dataplanes/zone-1.web-1/_config": 404,
	} {
		if code, body := f.gAPI.call(t, "GET", path, ""); code != wantCode {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, wantCode)
		}
	}

	t.Log("a second global node forwards to the node serving the zone's stream")
	g2dir := t.TempDir()
	g2cfg := global.Config{
		NodeID: "g2", DataDir: g2dir, APIAddr: harness.FreeAddr(t), RaftAddr: harness.FreeAddr(t),
		GossipAddr: harness.FreeAddr(t), SyncAddr: harness.FreeAddr(t), Join: []string{f.gGossip},
		SyncHeartbeatInterval: time.Second, InsightFlushInterval: 100 * time.Millisecond,
	}
	g2 := newRestartable(t, "global-2", func() func(context.Context) error {
		srv, err := global.New(g2cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return srv.Run
	})
	g2API := endpoint{base: "http://" + g2cfg.APIAddr, token: f.gAPI.token}
	harness.WaitReady(t, g2API.base, 30*time.Second)
	harness.Eventually(t, 30*time.Second, "global-2's forwarded config dump", func() bool {
		code, body = g2API.call(t, "GET", "/meshes/secure/dataplanes/zone-1.web-1/_config", "")
		return code == 200
	})
	if got := listenerNames(t, body); !slices.Equal(got, want) {
		t.Errorf("listeners through global-2 %v, want the zone's %v", got, want)
	}
	if code, body := g2API.call(t, "GET", "/meshes/secure/dataplanes/zone-1.nope/_config", ""); code != 404 {
		t.Errorf("an unknown Dataplane through global-2: %d %s", code, body)
	}

	t.Log("the proxy leaves: the zone's refusal is a 404 with its message")
	cancel()
	harness.Eventually(t, 10*time.Second, "the zone's refusal", func() bool {
		code, body = f.gAPI.call(t, "GET", "/meshes/secure/dataplanes/zone-1.web-1/_config", "")
		return code == 404
	})
	if !strings.Contains(string(body), "no proxy connected") {
		t.Errorf("the refusal %s lacks the zone's message", body)
	}

	t.Log("the zone goes offline: 503")
	f.zone.Stop()
	harness.Eventually(t, 10*time.Second, "503 for an offline zone", func() bool {
		code, body = f.gAPI.call(t, "GET", "/meshes/secure/dataplanes/zone-1.web-1/_config", "")
		return code == 503
	})
	if !strings.Contains(string(body), "offline") {
		t.Errorf("the 503 %s does not say the zone is offline", body)
	}
	g2.Stop()
}
