package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// waitFor bounds every wait; waits end as soon as the awaited event happens.
const waitFor = 10 * time.Second

// checkLeaks registers a goleak check that runs after every other cleanup:
// call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// eventually polls cond until it returns nil, or fails the test.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, waitFor, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects log lines (text handler) for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if testing.Verbose() {
		b.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return b.buf.Write(p)
}

func (b *logBuffer) lines(substr string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.SplitSeq(b.buf.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// fakeRegistrar records Connect and Disconnect; refuse decides.
type fakeRegistrar struct {
	mu           sync.Mutex
	refuse       func(Node) error
	connected    []Node
	disconnected []Node
}

func (r *fakeRegistrar) Connect(_ context.Context, n Node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		if err := r.refuse(n); err != nil {
			return err
		}
	}
	r.connected = append(r.connected, n)
	return nil
}

func (r *fakeRegistrar) Disconnect(n Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disconnected = append(r.disconnected, n)
}

func (r *fakeRegistrar) counts() (connected, disconnected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.connected), len(r.disconnected)
}

// harness is a running server, its registrar, metrics and logs.
type harness struct {
	s    *Server
	reg  *fakeRegistrar
	prom *prometheus.Registry
	logs *logBuffer
	conn *grpc.ClientConn
	// addr is where the server listens (known before Serve runs).
	addr string
}

// startServer serves on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, reg *fakeRegistrar) *harness {
	t.Helper()
	if reg == nil {
		reg = &fakeRegistrar{}
	}
	h := &harness{reg: reg, prom: prometheus.NewRegistry(), logs: &logBuffer{t: t}}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{Registrar: reg, Metrics: h.prom, ShutdownTimeout: 2 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	h.addr = ln.Addr().String()
	h.conn = dial(t, h.addr)
	return h
}

// dial is a plaintext client connection closed when the test ends.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// metric reads one sample from the harness's registry (0 when absent).
func (h *harness) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := h.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// adsStream is what both ADS flavours' client streams offer.
type adsStream[Req, Resp any] interface {
	Send(Req) error
	Recv() (Resp, error)
}

// adsClient is a raw ADS stream: one receive goroutine feeding a channel.
type adsClient[Req, Resp any] struct {
	stream adsStream[Req, Resp]
	cancel context.CancelFunc
	resps  chan Resp
	err    chan error // the receive error that ended the stream
}

type (
	sotwClient  = adsClient[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse]
	deltaClient = adsClient[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse]
)

// openADS opens a stream with open and starts receiving; the stream ends
// with the test.
func openADS[Req, Resp any, S adsStream[Req, Resp]](t *testing.T, open func(context.Context, ...grpc.CallOption) (S, error)) *adsClient[Req, Resp] {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := open(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &adsClient[Req, Resp]{stream: st, cancel: cancel, resps: make(chan Resp, 1024), err: make(chan error, 1)}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			r, err := st.Recv()
			if err != nil {
				c.err <- err
				return
			}
			c.resps <- r
		}
	}()
	t.Cleanup(func() { cancel(); <-recvDone })
	return c
}

func openSotw(t *testing.T, conn *grpc.ClientConn) *sotwClient {
	t.Helper()
	return openADS[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse](t, discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources)
}

func openDelta(t *testing.T, conn *grpc.ClientConn) *deltaClient {
	t.Helper()
	return openADS[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse](t, discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources)
}

func (c *adsClient[Req, Resp]) send(t *testing.T, req Req) {
	t.Helper()
	if err := c.stream.Send(req); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (c *adsClient[Req, Resp]) recv(t *testing.T) Resp {
	t.Helper()
	select {
	case r := <-c.resps:
		return r
	case err := <-c.err:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no response")
	}
	var zero Resp
	return zero
}

// ended waits for the stream to end and returns its error.
func (c *adsClient[Req, Resp]) ended(t *testing.T) error {
	t.Helper()
	for {
		select {
		case <-c.resps:
		case err := <-c.err:
			return err
		case <-time.After(waitFor):
			t.Fatal("stream did not end")
			return nil
		}
	}
}

// quiet asserts that no response arrives within d (a measurement window,
// not a synchronisation).
func quiet[R any](t *testing.T, ch <-chan R, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	n := 0
	for {
		select {
		case <-ch:
			n++
		case <-timer.C:
			if n > 0 {
				t.Fatalf("%d responses within %v, want none", n, d)
			}
			return
		}
	}
}

func node(id string) *core.Node {
	return &core.Node{Id: id, UserAgentName: "meshfed-test"}
}

// eds is an EDS cluster named name.
func eds(name string, timeout time.Duration) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(timeout),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{
			EdsConfig: &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}},
		},
	}
}

// cla is a ClusterLoadAssignment with one locality of weight 1. grpc-go
// (v1.85) NACKs a locality without an id ("EDS response contains a locality
// without ID").
func cla(name, host string, port uint32) *endpoint.ClusterLoadAssignment {
	return &endpoint.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpoint.LocalityLbEndpoints{{
			Locality:            &core.Locality{Zone: "zone-1"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
						Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
			}},
		}},
	}
}

func clusters(cs ...*cluster.Cluster) map[string][]types.Resource {
	out := make([]types.Resource, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return map[string][]types.Resource{resource.ClusterType: out}
}

func names(rs []*discovery.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetName())
	}
	return out
}

func mustSet(t *testing.T, s *Server, nodeID string, res map[string][]types.Resource) {
	t.Helper()
	changed, err := s.SetResources(nodeID, res)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatalf("SetResources(%s): nothing changed", nodeID)
	}
}

// counts reports the bookkeeping's sizes (tests).
func (r *resources) counts() (entries, sets, nodes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries), len(r.sets), len(r.nodes)
}
