package syncserver_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/global/syncserver"
)

// gate is an Admit function whose refusals the test switches.
type gate struct {
	mu      sync.Mutex
	refused map[string]error
}

func (g *gate) set(zone string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refused[zone] = err
}

func (g *gate) admit(zone string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused[zone]
}

func TestAdmitRefusesAndDropsAZone(t *testing.T) {
	checkLeaks(t)
	g := &gate{refused: map[string]error{}}
	h := newHarness(t, func(c *syncserver.Config) { c.Admit = g.admit })
	seed(t, h.feed)
	z1, _ := h.connect("zone-1", 0, "")
	z1.batchOf()
	z2, _ := h.connect("zone-2", 0, "")
	z2.batchOf()

	// Disabled while connected: dropped at the next change of the state,
	// with the Admit's own status; the other zone carries on.
	g.set("zone-1", status.Error(codes.PermissionDenied, "zone \"zone-1\" is disabled"))
	h.feed.put(mesh(t, "other"))
	if code, err := z1.end(); code != codes.PermissionDenied || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("zone-1's stream ended with %v, want PermissionDenied saying it is disabled", err)
	}
	if got := names(z2.batchOf()...); len(got) != 1 || !strings.HasPrefix(got[0], "+Mesh/other@") {
		t.Fatalf("zone-2 received %v", got)
	}
	eventually(t, "zone-1's disconnection recorded", func() bool {
		_, _, d := h.insights.snapshot()
		return len(d) == 1 && d[0].zone == "zone-1"
	})

	// Refused at Hello: never connected. A plain error is PermissionDenied.
	g.set("zone-1", errors.New("no entry"))
	z := h.dial(true)
	z.send(helloMsg("zone-1", "good-zone-1"))
	code, err := z.end()
	if code != codes.PermissionDenied || !strings.Contains(err.Error(), "no entry") {
		t.Fatalf("refused zone's stream ended with %v", err)
	}
	if conn, _, _ := h.insights.snapshot(); len(conn) != 2 {
		t.Errorf("connections recorded: %v, want only the two admitted", conn)
	}
}

func TestHelloRevisionCountsAsAnAck(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	seed(t, h.feed)
	// A zone up to date resumes: nothing is sent, but its revision is known.
	z, w := h.connect("zone-1", 5, clusterID)
	if w.GetReset_() {
		t.Fatal("unexpected reset")
	}
	eventually(t, "the Hello's revision recorded as an ack", func() bool {
		_, acks, _ := h.insights.snapshot()
		return len(acks) == 1 && acks[0].revision == 5 && acks[0].zone == "zone-1" && acks[0].replica == "zone-1-r1"
	})
	z.cancel()
	// A zone of another cluster (a reset) acknowledges nothing by saying Hello.
	z2, _ := h.connect("zone-2", 3, "cluster-b")
	z2.resetChunks() // sent after the point where a Hello counts as an ack
	_, acks, _ := h.insights.snapshot()
	for _, a := range acks {
		if a.zone == "zone-2" {
			t.Errorf("a reset zone's Hello counted as an ack: %+v", a)
		}
	}
}
