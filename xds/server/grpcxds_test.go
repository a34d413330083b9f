// The proof with a real xDS consumer: grpc-go's own xDS client resolves
// xds:/// targets through this server.

package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// healthBackend is a plain gRPC server whose health service answers
// "whoami" with its own status, so the client can tell backends apart.
func healthBackend(t *testing.T, whoami healthpb.HealthCheckResponse_ServingStatus) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("whoami", whoami)
	healthpb.RegisterHealthServer(gs, hs)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().(*net.TCPAddr)
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// proxylessResources are the minimal resources grpc-go needs for
// xds:///<target>: API listener (HCM, RDS over ADS, router last), route
// configuration for "*", EDS cluster over ADS, one locality of weight 1.
func proxylessResources(t *testing.T, target string, backend *net.TCPAddr) map[string][]types.Resource {
	t.Helper()
	ads := &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}, ResourceApiVersion: core.ApiVersion_V3}
	manager := &hcm.HttpConnectionManager{
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{ConfigSource: ads, RouteConfigName: "route-" + target}},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &router.Router{})},
		}},
	}
	l := &listener.Listener{Name: target, ApiListener: &listener.ApiListener{ApiListener: mustAny(t, manager)}}
	rc := &route.RouteConfiguration{
		Name: "route-" + target,
		VirtualHosts: []*route.VirtualHost{{
			Name:    target,
			Domains: []string{"*"},
			Routes: []*route.Route{{
				Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "cluster-" + target}}},
			}},
		}},
	}
	c := eds("cluster-"+target, time.Second)
	c.LbPolicy = cluster.Cluster_ROUND_ROBIN
	return map[string][]types.Resource{
		resource.ListenerType: {l},
		resource.RouteType:    {rc},
		resource.ClusterType:  {c},
		resource.EndpointType: {cla("cluster-"+target, backend.IP.String(), uint32(backend.Port))},
	}
}

// TestGRPCXDSClient: a real grpc-go xDS client reaches a backend through
// this server's resources, and follows an endpoint change.
func TestGRPCXDSClient(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	b1 := healthBackend(t, healthpb.HealthCheckResponse_SERVING)
	b2 := healthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	res := proxylessResources(t, "backend", b1)
	mustSet(t, h.s, "default.client", res)

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "default.client"}
	}`, h.addr)
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///backend", grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := healthpb.NewHealthClient(conn)
	whoami := func() (healthpb.HealthCheckResponse_ServingStatus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "whoami"})
		return r.GetStatus(), err
	}
	start := time.Now()
	if st, err := whoami(); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first RPC: %v %v", st, err)
	}
	t.Logf("first RPC after %v", time.Since(start))

	h.reg.mu.Lock()
	n := h.reg.connected[0]
	h.reg.mu.Unlock()
	if n.ID != "default.client" || n.Kind != "grpc" {
		t.Fatalf("registered %+v", n)
	}
	for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		if v := h.metric(t, "meshfed_xds_acks_total", "type_url", typ); v < 1 {
			t.Errorf("no ACK of %s", typ)
		}
		if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", typ); v != 0 {
			t.Errorf("%v NACKs of %s", v, typ)
		}
	}

	// Move the endpoints to the second backend.
	moved := map[string][]types.Resource{}
	for k, v := range res {
		moved[k] = v
	}
	moved[resource.EndpointType] = []types.Resource{cla("cluster-backend", b2.IP.String(), uint32(b2.Port))}
	mustSet(t, h.s, "default.client", moved)
	eventually(t, "traffic on the second backend", func() error {
		st, err := whoami()
		if err != nil {
			return err
		}
		if st != healthpb.HealthCheckResponse_NOT_SERVING {
			return fmt.Errorf("still answered by the first backend (%v)", st)
		}
		return nil
	})
	if v := h.metric(t, "meshfed_xds_responses_total", "type_url", resource.ClusterType); v != 1 {
		t.Errorf("clusters sent %v times, want once (unchanged types are not re-sent)", v)
	}
}

// TestGRPCXDSClientNACK: grpc-go rejects a locality without an id; the
// rejected CLA is sent once (no resend loop), and the corrected one is
// delivered and used.
func TestGRPCXDSClientNACK(t *testing.T) {
	checkLeaks(t)
	h := startServer(t, nil)
	b1 := healthBackend(t, healthpb.HealthCheckResponse_SERVING)
	res := proxylessResources(t, "backend", b1)
	bad := cla("cluster-backend", b1.IP.String(), uint32(b1.Port))
	bad.Endpoints[0].Locality = nil
	res[resource.EndpointType] = []types.Resource{bad}
	mustSet(t, h.s, "default.client", res)

	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}], "node": {"id": "default.client"}}`,
		h.addr)
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///backend", grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	conn.Connect()
	eventually(t, "NACK of the CLA", func() error {
		if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", resource.EndpointType); v != 1 {
			return fmt.Errorf("%v NACKs", v)
		}
		return nil
	})
	sent := h.metric(t, "meshfed_xds_responses_total", "type_url", resource.EndpointType)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) { // a measurement window
		time.Sleep(20 * time.Millisecond)
		if v := h.metric(t, "meshfed_xds_responses_total", "type_url", resource.EndpointType); v != sent {
			t.Fatalf("the rejected CLA was sent again: %v responses, then %v", sent, v)
		}
	}
	if v := h.metric(t, "meshfed_xds_nacks_total", "type_url", resource.EndpointType); v != 1 {
		t.Fatalf("%v NACKs", v)
	}
	if l := h.logs.lines("EDS response contains a locality without ID"); len(l) != 1 {
		t.Fatalf("NACK log lines: %q", l)
	}

	res[resource.EndpointType] = []types.Resource{cla("cluster-backend", b1.IP.String(), uint32(b1.Port))}
	mustSet(t, h.s, "default.client", res)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "whoami"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("RPC after the fix: %v", err)
	}
}
