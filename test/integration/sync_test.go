// Package integration runs global and zone pieces together in one process,
// over real loopback sockets with TLS: a global node's sync port and a zone's
// sync client and replica.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/test/harness"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

type node struct {
	srv      *global.Server
	cfg      global.Config
	token    string
	stop     func()
	syncCA   []byte
	api, dir string
}

func startGlobal(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	cfg := global.Config{
		NodeID: "g1", DataDir: dir, APIAddr: harness.FreeAddr(t), RaftAddr: harness.FreeAddr(t),
		GossipAddr: harness.FreeAddr(t), SyncAddr: harness.FreeAddr(t),
		SyncHeartbeatInterval: time.Second, InsightFlushInterval: 100 * time.Millisecond,
	}
	srv, err := global.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	n := &node{srv: srv, cfg: cfg, api: "http://" + cfg.APIAddr, dir: dir}
	n.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("global: %v", err)
		}
	}
	t.Cleanup(n.stop)
	harness.WaitReady(t, n.api, 30*time.Second)
	harness.Eventually(t, 10*time.Second, "admin token and sync CA files", func() bool {
		tok, err1 := os.ReadFile(filepath.Join(dir, global.AdminTokenFile))
		caPEM, err2 := os.ReadFile(filepath.Join(dir, global.SyncCAFile))
		n.token, n.syncCA = strings.TrimSpace(string(tok)), caPEM
		return err1 == nil && err2 == nil && n.token != "" && len(caPEM) > 0
	})
	return n
}

func (n *node) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, n.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (n *node) zoneToken(t *testing.T, zone string) string {
	t.Helper()
	code, body := n.call(t, "POST", "/tokens/zone", map[string]string{"zone": zone, "validFor": "1h"})
	if code != 200 {
		t.Fatalf("zone token: %d %s", code, body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		t.Fatalf("zone token answer %s: %v", body, err)
	}
	return out.Token
}

// reports is a zone's queue of reports for the test.
type reports struct {
	mu      sync.Mutex
	pending []*syncpb.Report
	acked   map[uint64][]*syncpb.Rejection
	notify  chan struct{}
}

func newReports() *reports {
	return &reports{acked: map[uint64][]*syncpb.Rejection{}, notify: make(chan struct{})}
}

func (r *reports) add(rep *syncpb.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, rep)
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *reports) PendingAfter(after uint64, limit int) []*syncpb.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*syncpb.Report
	for _, rep := range r.pending {
		if rep.GetSequence() > after && len(out) < limit {
			out = append(out, rep)
		}
	}
	return out
}

func (r *reports) Acked(seq uint64, rejected []*syncpb.Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked[seq] = rejected
	kept := r.pending[:0]
	for _, p := range r.pending {
		if p.GetSequence() != seq {
			kept = append(kept, p)
		}
	}
	r.pending = kept
}

func (r *reports) Watch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notify
}

func (r *reports) ack(seq uint64) ([]*syncpb.Rejection, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rej, ok := r.acked[seq]
	return rej, ok
}

type zone struct {
	rep    *replica.Replica
	client *syncclient.Client
	stop   func()
}

func startZone(t *testing.T, g *node, name, tok string, reps *reports) *zone {
	t.Helper()
	return runZone(t, g, name, filepath.Join(t.TempDir(), "replica.db"), tok, reps)
}

func dataplaneReport(t *testing.T, seq uint64, name string) *syncpb.Report {
	t.Helper()
	r, err := api.Decode([]byte(fmt.Sprintf(`
type: Dataplane
mesh: default
name: %s
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
`, name)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := batch.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return &syncpb.Report{Sequence: seq, Upserts: []*syncpb.Resource{w}}
}

func TestZoneSyncOverTLS(t *testing.T) {
	g := startGlobal(t)
	reps := newReports()
	reps.add(dataplaneReport(t, 1, "web-1"))
	z := startZone(t, g, "zone-1", g.zoneToken(t, "zone-1"), reps)

	// Global → zone: the default Mesh, then a policy applied afterwards.
	harness.Eventually(t, 15*time.Second, "the default mesh in the zone's replica", func() bool {
		_, ok := z.rep.Get(api.Key{Type: api.TypeMesh, Name: "default"})
		return ok
	})
	code, body := g.call(t, "PUT", "/meshes/default/meshtrafficpermissions/allow", `{"type":"MeshTrafficPermission","mesh":"default","name":"allow","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`)
	if code != 201 {
		t.Fatalf("put policy: %d %s", code, body)
	}
	harness.Eventually(t, 10*time.Second, "the policy in the zone's replica", func() bool {
		_, ok := z.rep.Get(api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "allow"})
		return ok
	})

	// Zone → global: the reported Dataplane, named and labelled by zone.
	harness.Eventually(t, 10*time.Second, "the report acknowledged", func() bool {
		rej, ok := reps.ack(1)
		return ok && len(rej) == 0
	})
	code, body = g.call(t, "GET", "/meshes/default/dataplanes/zone-1.web-1", nil)
	if code != 200 || !strings.Contains(string(body), `"kuma.io/zone":"zone-1"`) || !strings.Contains(string(body), `"kuma.io/origin":"zone"`) {
		t.Fatalf("reported dataplane on global: %d %s", code, body)
	}
	// Dataplanes do not fan out: the zone never gets its own back.
	if z.rep.Count(api.TypeDataplane, "") != 0 {
		t.Error("a Dataplane was sent to a zone")
	}

	// Insight and Zone resource on global.
	harness.Eventually(t, 10*time.Second, "zone insight with the acknowledged revision", func() bool {
		code, body := g.call(t, "GET", "/zone-insights/zone-1", nil)
		if code != 200 {
			return false
		}
		var zi struct {
			AckedRevision uint64
			Subscriptions []struct{ GlobalInstanceID string }
		}
		_ = json.Unmarshal(body, &zi)
		return zi.AckedRevision >= z.rep.Revision() && zi.AckedRevision > 0 && len(zi.Subscriptions) == 1 && zi.Subscriptions[0].GlobalInstanceID == "g1"
	})
	if code, body := g.call(t, "GET", "/zones/zone-1", nil); code != 200 {
		t.Errorf("zone resource: %d %s", code, body)
	}
	if code, _ := g.call(t, "PUT", "/zone-insights/zone-1", `{"type":"ZoneInsight","name":"zone-1"}`); code != 405 {
		t.Errorf("writing a ZoneInsight through the API: %d, want 405", code)
	}
}

func TestZoneTokenRefusals(t *testing.T) {
	g := startGlobal(t)
	good := g.zoneToken(t, "zone-2")
	cases := []struct {
		name, zone, token, want string
	}{
		{"missing", "zone-2", " ", "no zone token"},
		{"garbage", "zone-2", "abc.def.ghi", "malformed"},
		{"other zone", "zone-3", good, "is for zone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := startZone(t, g, c.zone, c.token, nil)
			harness.Eventually(t, 10*time.Second, "a refusal naming "+c.want, func() bool {
				st := z.client.Status()
				return st.Refused && st.LastError != nil && strings.Contains(st.LastError.Error(), c.want)
			})
			if z.rep.Revision() != 0 {
				t.Error("a refused zone received state")
			}
		})
	}
	t.Run("revoked", func(t *testing.T) {
		tok := g.zoneToken(t, "zone-4")
		if code, body := g.call(t, "POST", "/tokens/zone/revoke", map[string]string{"token": tok, "reason": "test"}); code != 200 {
			t.Fatalf("revoke: %d %s", code, body)
		}
		z := startZone(t, g, "zone-4", tok, nil)
		harness.Eventually(t, 10*time.Second, "a refusal for a revoked token", func() bool {
			st := z.client.Status()
			return st.Refused && st.LastError != nil && strings.Contains(st.LastError.Error(), "revoked")
		})
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, body := range []any{"nope", map[string]string{"zone": "Bad_Zone"}, map[string]string{"zone": "z", "validFor": "-1h"}} {
			if code, out := g.call(t, "POST", "/tokens/zone", body); code != 400 {
				t.Errorf("POST /tokens/zone %v: %d %s, want 400", body, code, out)
			}
		}
	})
}
