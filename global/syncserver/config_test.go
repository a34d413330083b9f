package syncserver_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// configRequest reads messages until the next ConfigRequest.
func (z *zoneConn) configRequest() *syncpb.ConfigRequest {
	z.t.Helper()
	for {
		if r := z.next().GetConfigRequest(); r != nil {
			return r
		}
	}
}

func (z *zoneConn) answerConfig(resp *syncpb.ConfigResponse) {
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_ConfigResponse{ConfigResponse: resp}})
}

// registered waits until the server has a session of zone (it registers
// right after queueing the Welcome).
func (h *harness) registered(zone string) {
	h.t.Helper()
	eventually(h.t, "the session of "+zone+" registered", func() bool { return h.srv.HasSession(zone) })
}

// TestRequestConfig: concurrent requests travel on the zone's stream and get
// their own answers back, matched by request id, whatever the order the
// zone answers in; a zone's refusal is a *ZoneError with its message.
func TestRequestConfig(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	z, _ := h.connect("zone-1", 0, "")
	h.registered("zone-1")

	const n = 5
	type result struct {
		json []byte
		err  error
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range n + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := h.srv.RequestConfig(ctx, "zone-1", "default", fmt.Sprintf("dp-%d", i))
			results[i] = result{b, err}
		}()
	}
	var reqs []*syncpb.ConfigRequest
	for range n + 1 {
		reqs = append(reqs, z.configRequest())
	}
	ids := map[string]bool{}
	for i := len(reqs) - 1; i >= 0; i-- { // answered in reverse order
		r := reqs[i]
		if ids[r.GetRequestId()] || r.GetRequestId() == "" {
			t.Fatalf("request id %q reused or empty", r.GetRequestId())
		}
		ids[r.GetRequestId()] = true
		if r.GetName() == fmt.Sprintf("dp-%d", n) {
			z.answerConfig(&syncpb.ConfigResponse{RequestId: r.GetRequestId(), Error: `dataplane "dp-5": not found`})
			continue
		}
		z.answerConfig(&syncpb.ConfigResponse{RequestId: r.GetRequestId(),
			Json: fmt.Appendf(nil, `{"mesh":%q,"dataplane":%q}`, r.GetMesh(), r.GetName())})
	}
	wg.Wait()
	for i := range n {
		want := fmt.Sprintf(`{"mesh":"default","dataplane":"dp-%d"}`, i)
		if results[i].err != nil || string(results[i].json) != want {
			t.Errorf("request %d: %s, %v; want %s", i, results[i].json, results[i].err, want)
		}
	}
	var ze *syncserver.ZoneError
	if err := results[n].err; !errors.As(err, &ze) || ze.Zone != "zone-1" || ze.Replica != "zone-1-r1" || ze.Message != `dataplane "dp-5": not found` {
		t.Errorf("refusal: %v, want a *ZoneError with the zone's message", err)
	}

	// A caller that gives up does not break the stream: the late answer is
	// dropped and the next request works.
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if _, err := h.srv.RequestConfig(short, "zone-1", "default", "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered: %v, want the context's deadline", err)
	}
	late := z.configRequest()
	z.answerConfig(&syncpb.ConfigResponse{RequestId: late.GetRequestId(), Json: []byte(`{}`)})
	go func() {
		r := z.configRequest()
		z.answerConfig(&syncpb.ConfigResponse{RequestId: r.GetRequestId(), Json: []byte(`{"ok":true}`)})
	}()
	if b, err := h.srv.RequestConfig(ctx, "zone-1", "default", "next"); err != nil || string(b) != `{"ok":true}` {
		t.Errorf("after a late answer: %s, %v", b, err)
	}
}

// TestRequestConfigSessionEnds: pending requests fail when the zone's
// stream ends; then the zone has no session on the node.
func TestRequestConfigSessionEnds(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	z, _ := h.connect("zone-1", 0, "")
	h.registered("zone-1")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := h.srv.RequestConfig(ctx, "zone-1", "default", fmt.Sprintf("dp-%d", i))
			errs <- err
		}()
	}
	for range 3 {
		z.configRequest()
	}
	z.cancel() // the zone goes away without answering
	for range 3 {
		if err := <-errs; !errors.Is(err, syncserver.ErrSessionEnded) {
			t.Errorf("pending request: %v, want ErrSessionEnded", err)
		}
	}
	eventually(t, "the session unregistered", func() bool {
		_, err := h.srv.RequestConfig(ctx, "zone-1", "default", "dp")
		return errors.Is(err, syncserver.ErrNoSession)
	})
}

// TestRequestConfigNoSession: a zone (or replica) without a stream on this
// node is ErrNoSession at once.
func TestRequestConfigNoSession(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := h.srv.RequestConfig(ctx, "zone-1", "default", "dp"); !errors.Is(err, syncserver.ErrNoSession) {
		t.Errorf("no stream at all: %v, want ErrNoSession", err)
	}
	h.connect("zone-1", 0, "")
	h.registered("zone-1")
	if _, err := h.srv.RequestConfig(ctx, "zone-2", "default", "dp"); !errors.Is(err, syncserver.ErrNoSession) {
		t.Errorf("another zone: %v, want ErrNoSession", err)
	}
	if _, err := h.srv.RequestConfigFrom(ctx, "zone-1", "zone-1-r2", "default", "dp"); !errors.Is(err, syncserver.ErrNoSession) {
		t.Errorf("another replica: %v, want ErrNoSession", err)
	}
}
