package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestNACKParked: after a NACK the rejected version is not sent again (the
// go-control-plane hot loop), and the next change still is.
func TestNACKParked(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	mustSet(t, h.s, "default.web", clusters(eds("a", time.Second)))

	c := openSotw(t, h.conn)
	c.send(t, &discovery.DiscoveryRequest{Node: node("default.web"), TypeUrl: resource.ClusterType})
	r1 := c.recv(t)
	c.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce()})
	eventually(t, "ACK counted", func() error {
		if v := h.metric(t, "meshfed_xds_acks_total", "type_url", resource.ClusterType); v != 1 {
			return fmt.Errorf("acks %v", v)
		}
		return nil
	})

	// A version the proxy rejects.
	mustSet(t, h.s, "default.web", clusters(eds("a", 2*time.Second)))
	r2 := c.recv(t)
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatal("same version after a change")
	}
	nack := &discovery.DiscoveryRequest{
		TypeUrl: resource.ClusterType, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r2.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "cluster a: bad timeout"},
	}
	c.send(t, nack)
	quiet(t, c.resps, 300*time.Millisecond)
	if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", resource.ClusterType); v != 1 {
		t.Fatalf("nacks = %v", v)
	}
	// Unrelated types changing do not wake the parked watch either.
	if changed, err := h.s.SetResources("default.web", clusters(eds("a", 2*time.Second))); err != nil || changed {
		t.Fatalf("same resources: changed=%v err=%v", changed, err)
	}

	// A second NACK of the same version (another stream, a retry) is
	// counted but logged once.
	c2 := openSotw(t, h.conn)
	c2.send(t, &discovery.DiscoveryRequest{Node: node("default.web"), TypeUrl: resource.ClusterType})
	r2b := c2.recv(t)
	c2.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r2b.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Message: "cluster a: bad timeout"}})
	quiet(t, c2.resps, 300*time.Millisecond)
	if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", resource.ClusterType); v != 2 {
		t.Fatalf("nacks = %v", v)
	}
	warned := h.logs.lines("level=WARN msg=\"proxy rejected configuration (NACK)\"")
	if len(warned) != 1 {
		t.Fatalf("NACK warnings: %q", warned)
	}
	for _, kv := range []string{"dataplane=default.web", "type_url=" + resource.ClusterType, "version=" + r2.GetVersionInfo(), `error="cluster a: bad timeout"`} {
		if !strings.Contains(warned[0], kv) {
			t.Errorf("NACK log %q lacks %s", warned[0], kv)
		}
	}

	// The next change is delivered to both.
	mustSet(t, h.s, "default.web", clusters(eds("a", 3*time.Second)))
	for _, cl := range []*sotwClient{c, c2} {
		r3 := cl.recv(t)
		if r3.GetVersionInfo() == r2.GetVersionInfo() || r3.GetVersionInfo() == r1.GetVersionInfo() {
			t.Fatalf("after the change: version %s", r3.GetVersionInfo())
		}
	}
}

// TestDeltaSendsOnlyChanges: a delta stream gets only the resource that
// changed, and a removal as a removal; a NACK is not answered by a resend.
func TestDeltaSendsOnlyChanges(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	a, b, c := eds("a", time.Second), eds("b", time.Second), eds("c", time.Second)
	mustSet(t, h.s, "default.web", clusters(a, b, c))

	d := openDelta(t, h.conn)
	d.send(t, &discovery.DeltaDiscoveryRequest{Node: node("default.web"), TypeUrl: resource.ClusterType})
	r1 := d.recv(t)
	if got := names(r1.GetResources()); !sameSet(got, []string{"a", "b", "c"}) {
		t.Fatalf("first response: %v", got)
	}
	d.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r1.GetNonce()})

	mustSet(t, h.s, "default.web", clusters(a, eds("b", 2*time.Second), c))
	r2 := d.recv(t)
	if got := names(r2.GetResources()); !slices.Equal(got, []string{"b"}) || len(r2.GetRemovedResources()) != 0 {
		t.Fatalf("after changing b: resources %v removed %v", got, r2.GetRemovedResources())
	}
	if r2.GetResources()[0].GetVersion() == r1.GetResources()[0].GetVersion() && r1.GetResources()[0].GetName() == "b" {
		t.Fatal("b's version did not change")
	}
	d.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r2.GetNonce()})

	mustSet(t, h.s, "default.web", clusters(a, eds("b", 2*time.Second)))
	r3 := d.recv(t)
	if len(r3.GetResources()) != 0 || !slices.Equal(r3.GetRemovedResources(), []string{"c"}) {
		t.Fatalf("after removing c: resources %v removed %v", names(r3.GetResources()), r3.GetRemovedResources())
	}
	d.send(t, &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: r3.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Message: "no"}})
	quiet(t, d.resps, 300*time.Millisecond)
	if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", resource.ClusterType); v != 1 {
		t.Fatalf("nacks = %v", v)
	}
	if v := h.metric(t, "meshfed_xds_acks_total", "type_url", resource.ClusterType); v != 2 {
		t.Fatalf("acks = %v", v)
	}
	mustSet(t, h.s, "default.web", clusters(eds("a", 5*time.Second), eds("b", 2*time.Second)))
	if got := names(d.recv(t).GetResources()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after changing a: %v", got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRegistrarRefusal: a refused stream ends with the registrar's reason
// and the right code; another node's stream is unaffected.
func TestRegistrarRefusal(t *testing.T) {
	checkLeaks(t)
	reg := &fakeRegistrar{refuse: func(n Node) error {
		switch n.Name {
		case "bad":
			return fmt.Errorf("%w: metadata.dataplane.networking.address: must be an IP", ErrInvalidNode)
		case "later":
			return fmt.Errorf("%w: zone replica still loading", ErrUnavailable)
		case "nomesh":
			return errors.New(`mesh "default" does not exist in this zone`)
		}
		return nil
	}}
	h := startServer(t, reg)
	mustSet(t, h.s, "default.good", clusters(eds("a", time.Second)))

	good := openSotw(t, h.conn)
	good.send(t, &discovery.DiscoveryRequest{Node: node("default.good"), TypeUrl: resource.ClusterType})
	r1 := good.recv(t)
	good.send(t, &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce()})

	for _, tc := range []struct {
		name string
		code codes.Code
		msg  string
	}{
		{"bad", codes.InvalidArgument, "metadata.dataplane.networking.address: must be an IP"},
		{"later", codes.Unavailable, "zone replica still loading"},
		{"nomesh", codes.FailedPrecondition, `mesh "default" does not exist`},
	} {
		c := openSotw(t, h.conn)
		c.send(t, &discovery.DiscoveryRequest{Node: node("default." + tc.name), TypeUrl: resource.ClusterType})
		st := status.Convert(c.ended(t))
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) || !strings.Contains(st.Message(), "default."+tc.name) {
			t.Errorf("%s: %v, want %v with %q", tc.name, st, tc.code, tc.msg)
		}
	}
	if lines := h.logs.lines(`msg="xds stream refused" dataplane=default.bad`); len(lines) != 1 {
		t.Errorf("refusal log: %q", lines)
	}
	mustSet(t, h.s, "default.good", clusters(eds("a", 2*time.Second)))
	if r := good.recv(t); r.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatal("good stream got the old version")
	}
	if conn, disc := reg.counts(); conn != 1 || disc != 0 {
		t.Fatalf("connected %d, disconnected %d; want 1, 0", conn, disc)
	}
}

// TestBadNodeIDs: malformed node ids are refused before the registrar, with
// a message naming the field.
func TestBadNodeIDs(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	for _, tc := range []struct {
		node *core.Node
		msg  string
	}{
		{nil, ""}, // go-control-plane gives state-of-the-world requests an empty node
		{&core.Node{}, "node.id: must be set"},
		{&core.Node{Id: "backend"}, `node.id: "backend" must be "<mesh>.<name>"`},
		{&core.Node{Id: ".backend"}, "node.id: \".backend\" has an empty mesh"},
		{&core.Node{Id: "default."}, "node.id: \"default.\" has an empty name"},
	} {
		for _, delta := range []bool{false, true} {
			var err error
			if delta {
				c := openDelta(t, h.conn)
				c.send(t, &discovery.DeltaDiscoveryRequest{Node: tc.node, TypeUrl: resource.ClusterType})
				select {
				case err = <-c.err:
				case <-time.After(waitFor):
					t.Fatal("delta stream not ended")
				}
			} else {
				c := openSotw(t, h.conn)
				c.send(t, &discovery.DiscoveryRequest{Node: tc.node, TypeUrl: resource.ClusterType})
				err = c.ended(t)
			}
			want := tc.msg
			if tc.node == nil {
				want = "node.id: must be set"
				if delta {
					want = "node: the first request of a stream must carry the node"
				}
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), want) {
				t.Errorf("node %v (delta %v): %v, want InvalidArgument %q", tc.node, delta, st, want)
			}
		}
	}
	if conn, _ := h.reg.counts(); conn != 0 {
		t.Fatalf("registrar asked %d times", conn)
	}
}

// TestStreamsConnectAndDisconnect: every accepted stream is connected once
// and disconnected once; the gauge follows; a node id cannot change on a
// stream.
func TestStreamsConnectAndDisconnect(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	grpcNode := &core.Node{Id: "default.app", UserAgentName: "gRPC Go", UserAgentVersionType: &core.Node_UserAgentVersion{UserAgentVersion: "1.85.0"}}
	s1 := openSotw(t, h.conn)
	s1.send(t, &discovery.DiscoveryRequest{Node: grpcNode, TypeUrl: resource.ListenerType, ResourceNames: []string{"x"}})
	s2 := openDelta(t, h.conn)
	s2.send(t, &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "default.app", UserAgentName: "envoy"}, TypeUrl: resource.ClusterType})
	eventually(t, "two streams connected", func() error {
		if c, _ := h.reg.counts(); c != 2 {
			return fmt.Errorf("%d connected", c)
		}
		if g, e := h.metric(t, "meshfed_xds_streams", "kind", "grpc"), h.metric(t, "meshfed_xds_streams", "kind", "envoy"); g != 1 || e != 1 {
			return fmt.Errorf("streams gauge grpc %v envoy %v", g, e)
		}
		return nil
	})
	h.reg.mu.Lock()
	n := h.reg.connected[0]
	if n.Delta {
		n = h.reg.connected[1]
	}
	ids := []int64{h.reg.connected[0].StreamID, h.reg.connected[1].StreamID}
	h.reg.mu.Unlock()
	if n.Mesh != "default" || n.Name != "app" || n.Kind != "grpc" || n.UserAgent != "gRPC Go/1.85.0" || ids[0] == ids[1] {
		t.Fatalf("node %+v, stream ids %v", n, ids)
	}

	// A node id change on a stream ends it.
	s2.send(t, &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "default.other"}, TypeUrl: resource.EndpointType})
	select {
	case err := <-s2.err:
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "node.id: changed") {
			t.Fatalf("node id change: %v", st)
		}
	case <-time.After(waitFor):
		t.Fatal("stream not ended after a node id change")
	}
	s1.cancel()
	eventually(t, "both disconnected", func() error {
		if _, d := h.reg.counts(); d != 2 {
			return fmt.Errorf("%d disconnected", d)
		}
		if g, e := h.metric(t, "meshfed_xds_streams", "kind", "grpc"), h.metric(t, "meshfed_xds_streams", "kind", "envoy"); g != 0 || e != 0 {
			return fmt.Errorf("streams gauge grpc %v envoy %v", g, e)
		}
		return nil
	})
}

// TestServeStops: cancelling Serve's context ends open streams at once
// (no wait for the shutdown bound) and disconnects their nodes.
func TestServeStops(t *testing.T) {
	checkLeaks(t)
	reg := &fakeRegistrar{}
	s, err := New(Config{Addr: "127.0.0.1:0", Registrar: reg, ShutdownTimeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "listening", func() error {
		if s.Addr() == nil {
			return errors.New("no address yet")
		}
		return nil
	})
	conn := dial(t, s.Addr().String())
	c := openSotw(t, conn)
	c.send(t, &discovery.DiscoveryRequest{Node: node("default.x"), TypeUrl: resource.ClusterType})
	eventually(t, "connected", func() error {
		if n, _ := reg.counts(); n != 1 {
			return fmt.Errorf("%d connected", n)
		}
		return nil
	})
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stop took %v", d)
	}
	_ = c.ended(t)
	if _, d := reg.counts(); d != 1 {
		t.Fatalf("%d disconnected", d)
	}
	if s.Addr() != nil {
		t.Fatal("Addr() after stop")
	}
}
