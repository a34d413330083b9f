package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// dataplane is what a simulated proxy presents in its node metadata.
type dataplane struct {
	name     string
	ip       string
	service  int   // index: it serves svc-<service>
	outbound []int // indexes of the services it calls
}

func serviceName(i int) string { return fmt.Sprintf("svc-%d", i) }

// firstOutboundPort is the port of a proxy's first outbound listener on
// 127.0.0.1; the others follow (listener names must be unique).
const firstOutboundPort = 10001

// doc is the Dataplane in Kuma's JSON shape.
func (d *dataplane) doc() map[string]any {
	outs := make([]any, 0, len(d.outbound))
	for k, s := range d.outbound {
		outs = append(outs, map[string]any{
			"port": firstOutboundPort + k,
			"tags": map[string]any{"kuma.io/service": serviceName(s)},
		})
	}
	return map[string]any{
		"type": "Dataplane", "mesh": "default", "name": d.name,
		"networking": map[string]any{
			"address": d.ip,
			"inbound": []any{map[string]any{
				"port": 8080,
				"tags": map[string]any{"kuma.io/service": serviceName(d.service), "kuma.io/protocol": "http"},
			}},
			"outbound": outs,
		},
	}
}

// docJSON is the Dataplane as a JSON document (for the zone API).
func (d *dataplane) docJSON() []byte {
	b, err := json.Marshal(d.doc())
	if err != nil {
		panic(err) // a map of strings and numbers always marshals
	}
	return b
}

// node is the xDS node an Envoy with this Dataplane presents.
func (d *dataplane) node() (*core.Node, error) {
	md, err := structpb.NewStruct(map[string]any{"dataplane": d.doc()})
	if err != nil {
		return nil, err
	}
	return &core.Node{
		Id:            "default." + d.name,
		Cluster:       serviceName(d.service),
		UserAgentName: "envoy",
		UserAgentVersionType: &core.Node_UserAgentVersion{
			UserAgentVersion: "1.34.1",
		},
		Metadata: md,
	}, nil
}

// probe is one endpoint change being watched: the first EDS of service
// that holds addr, on every subscriber.
type probe struct {
	id      int64
	service string
	addr    string
	start   time.Time
	mu      sync.Mutex
	lat     []time.Duration
	left    int
	done    chan struct{}
}

func (p *probe) record(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lat = append(p.lat, d)
	p.left--
	if p.left == 0 {
		close(p.done)
	}
}

// fleet is the simulated proxies of one run and what they share.
type fleet struct {
	conns  []*grpc.ClientConn
	start  time.Time
	expect map[string]int // endpoints per service when every proxy is connected
	probe  atomic.Pointer[probe]
	// firstDone / fullDone count proxies that reached each state.
	firstDone, fullDone atomic.Int64
	full                chan struct{} // closed when fullDone reaches len(proxies)
	proxies             []*proxy
	streamErrors        atomic.Int64
	lastStreamError     atomic.Pointer[string]
	responses           atomic.Int64
}

// proxy is one simulated Envoy: one ADS state-of-the-world stream.
type proxy struct {
	f  *fleet
	dp *dataplane
	// outSet holds the names of the services it calls.
	outSet map[string]bool

	// Reached: first = everything it asked for at the time (LDS, CDS, the
	// EDS of every EDS cluster, the RDS of every route name); full = its
	// final config: every outbound's cluster, CLA with all the service's
	// endpoints and RouteConfiguration. Durations since fleet.start; 0 =
	// not yet.
	first, full atomic.Int64
	probeSeen   atomic.Int64 // id of the last probe recorded

	mu    sync.Mutex // guards the state below for status()
	state adsState
}

// adsState is what one stream has received.
type adsState struct {
	version, nonce map[string]string
	haveLDS        bool
	haveCDS        bool
	edsNames       []string // requested, sorted
	rdsNames       []string
	clas           map[string]map[string]bool // cluster → endpoint addresses
	routes         map[string]bool
	listeners      int
	clusters       int
}

func newState() adsState {
	return adsState{version: map[string]string{}, nonce: map[string]string{},
		clas: map[string]map[string]bool{}, routes: map[string]bool{}}
}

// run keeps the proxy's stream up until ctx ends, reconnecting after an
// error as Envoy does.
func (p *proxy) run(ctx context.Context, conn *grpc.ClientConn, node *core.Node) {
	for ctx.Err() == nil {
		err := p.stream(ctx, conn, node)
		if ctx.Err() != nil {
			return
		}
		p.f.streamErrors.Add(1)
		msg := fmt.Sprintf("%s: %v", p.dp.name, err)
		p.f.lastStreamError.Store(&msg)
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stream runs one ADS stream: CDS and LDS wildcard requests, then EDS and
// RDS for what they reference; every response is ACKed.
func (p *proxy) stream(ctx context.Context, conn *grpc.ClientConn, node *core.Node) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.state = newState()
	p.mu.Unlock()
	// Envoy sends the node on the first request of a stream.
	if err := st.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		return err
	}
	if err := st.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resource.ListenerType}); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		p.f.responses.Add(1)
		reqs, err := p.handle(resp)
		if err != nil {
			// A real Envoy would NACK; the bench reports it instead.
			return fmt.Errorf("bad %s response: %w", resp.GetTypeUrl(), err)
		}
		for _, r := range reqs {
			if err := st.Send(r); err != nil {
				return err
			}
		}
	}
}

// handle applies one response and returns the requests to send: a new EDS
// or RDS subscription when CDS or LDS changed it, then the ACK.
func (p *proxy) handle(resp *discoverygrpc.DiscoveryResponse) ([]*discoverygrpc.DiscoveryRequest, error) {
	now := time.Since(p.f.start)
	typ := resp.GetTypeUrl()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.state
	var reqs []*discoverygrpc.DiscoveryRequest
	switch typ {
	case resource.ClusterType:
		var eds []string
		for _, a := range resp.GetResources() {
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				return nil, err
			}
			if c.GetType() == clusterv3.Cluster_EDS {
				name := c.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = c.GetName()
				}
				eds = append(eds, name)
			}
		}
		s.haveCDS, s.clusters = true, len(resp.GetResources())
		sort.Strings(eds)
		eds = slices.Compact(eds)
		if !slices.Equal(eds, s.edsNames) {
			s.edsNames = eds
			reqs = append(reqs, s.request(resource.EndpointType, eds))
		}
	case resource.ListenerType:
		var rds []string
		for _, a := range resp.GetResources() {
			l := &listener.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return nil, err
			}
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					tc := f.GetTypedConfig()
					if tc == nil || !strings.HasSuffix(tc.GetTypeUrl(), "HttpConnectionManager") {
						continue
					}
					h := &hcm.HttpConnectionManager{}
					if err := tc.UnmarshalTo(h); err != nil {
						return nil, err
					}
					if r := h.GetRds(); r != nil {
						rds = append(rds, r.GetRouteConfigName())
					}
				}
			}
		}
		s.haveLDS, s.listeners = true, len(resp.GetResources())
		sort.Strings(rds)
		rds = slices.Compact(rds)
		if !slices.Equal(rds, s.rdsNames) {
			s.rdsNames = rds
			reqs = append(reqs, s.request(resource.RouteType, rds))
		}
	case resource.EndpointType:
		pr := p.f.probe.Load()
		for _, a := range resp.GetResources() {
			cla := &endpoint.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(cla); err != nil {
				return nil, err
			}
			addrs := map[string]bool{}
			for _, le := range cla.GetEndpoints() {
				for _, e := range le.GetLbEndpoints() {
					addrs[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
				}
			}
			s.clas[cla.GetClusterName()] = addrs
			if pr != nil && cla.GetClusterName() == pr.service && addrs[pr.addr] && p.probeSeen.Load() != pr.id {
				p.probeSeen.Store(pr.id)
				pr.record(time.Since(pr.start))
			}
		}
	case resource.RouteType:
		for _, a := range resp.GetResources() {
			rc := &route.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				return nil, err
			}
			s.routes[rc.GetName()] = true
		}
	default:
		return nil, fmt.Errorf("unexpected type %q", typ)
	}
	s.version[typ], s.nonce[typ] = resp.GetVersionInfo(), resp.GetNonce()
	ack := &discoverygrpc.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	switch typ {
	case resource.EndpointType:
		ack.ResourceNames = s.edsNames
	case resource.RouteType:
		ack.ResourceNames = s.rdsNames
	}
	reqs = append(reqs, ack)
	p.check(now)
	return reqs, nil
}

// request subscribes to names of typ, carrying the last version and nonce
// of that type (state of the world: every request states the full set).
func (s *adsState) request(typ string, names []string) *discoverygrpc.DiscoveryRequest {
	return &discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: names,
		VersionInfo: s.version[typ], ResponseNonce: s.nonce[typ]}
}

// check records when the proxy first reaches the first and full states.
// Called with p.mu held.
func (p *proxy) check(now time.Duration) {
	s := &p.state
	if p.first.Load() == 0 && p.consistent() {
		p.first.Store(int64(max(now, 1)))
		p.f.firstDone.Add(1)
	}
	if p.full.Load() != 0 || !p.consistent() || len(s.edsNames) != len(p.outSet) || len(s.rdsNames) != len(p.outSet) {
		return
	}
	for _, n := range s.edsNames {
		if !p.outSet[n] || len(s.clas[n]) < p.f.expect[n] {
			return
		}
	}
	for _, n := range s.rdsNames {
		if !p.outSet[n] {
			return
		}
	}
	p.full.Store(int64(max(now, 1)))
	if p.f.fullDone.Add(1) == int64(len(p.f.proxies)) {
		close(p.f.full)
	}
}

// consistent: LDS and CDS received, and every requested EDS and RDS name
// answered.
func (p *proxy) consistent() bool {
	s := &p.state
	if !s.haveLDS || !s.haveCDS {
		return false
	}
	for _, n := range s.edsNames {
		if _, ok := s.clas[n]; !ok {
			return false
		}
	}
	for _, n := range s.rdsNames {
		if !s.routes[n] {
			return false
		}
	}
	return true
}

// status describes what the proxy still lacks (for a timeout report).
func (p *proxy) status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.state
	var missing []string
	for _, n := range s.edsNames {
		if got, ok := s.clas[n]; !ok {
			missing = append(missing, "EDS "+n)
		} else if len(got) < p.f.expect[n] {
			missing = append(missing, fmt.Sprintf("EDS %s has %d/%d endpoints", n, len(got), p.f.expect[n]))
		}
	}
	for _, n := range s.rdsNames {
		if !s.routes[n] {
			missing = append(missing, "RDS "+n)
		}
	}
	return fmt.Sprintf("%s: lds=%v (%d listeners) cds=%v (%d clusters) eds=%v rds=%v (want %d outbound services) missing=%v versions=%v",
		p.dp.name, s.haveLDS, s.listeners, s.haveCDS, s.clusters, s.edsNames, s.rdsNames, len(p.outSet), missing, s.version)
}
