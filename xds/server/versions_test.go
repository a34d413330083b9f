package server

import (
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

func newTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Config{Registrar: &fakeRegistrar{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func snapOf(t *testing.T, s *Server, nodeID string) *snapshot {
	t.Helper()
	rs, err := s.res.snapshots.GetSnapshot(nodeID)
	if err != nil {
		t.Fatal(err)
	}
	return rs.(*snapshot)
}

func TestSetResourcesVersions(t *testing.T) {
	s := newTestServer(t)
	a, b := eds("a", time.Second), eds("b", time.Second)
	ea := cla("a", "10.0.0.1", 80)
	res := map[string][]types.Resource{resource.ClusterType: {a, b}, resource.EndpointType: {ea}}
	mustSet(t, s, "default.x", res)
	first := snapOf(t, s, "default.x")
	cv, ev := first.GetVersion(resource.ClusterType), first.GetVersion(resource.EndpointType)
	if cv == "" || ev == "" || cv == ev {
		t.Fatalf("versions %q %q", cv, ev)
	}
	if first.GetVersion(resource.ListenerType) == "" {
		t.Fatal("an empty type needs a version too (Envoy waits for its first wildcard answer)")
	}
	if first.GetVersion("type.googleapis.com/nope") != "" {
		t.Fatal("unknown type has a version")
	}

	// Same content: no change, whether the pointers are the same or not,
	// and whatever the order.
	if changed, err := s.SetResources("default.x", res); err != nil || changed {
		t.Fatalf("same resources: changed=%v err=%v", changed, err)
	}
	copies := map[string][]types.Resource{
		resource.ClusterType:  {proto.Clone(b).(types.Resource), proto.Clone(a).(types.Resource)},
		resource.EndpointType: {proto.Clone(ea).(types.Resource)},
	}
	if changed, err := s.SetResources("default.x", copies); err != nil || changed {
		t.Fatalf("equal copies: changed=%v err=%v", changed, err)
	}
	if snapOf(t, s, "default.x") != first {
		t.Fatal("the cache's snapshot was replaced by an unchanged one")
	}

	// One cluster changes: the cluster type's version and that cluster's
	// version change, nothing else.
	b2 := eds("b", 2*time.Second)
	mustSet(t, s, "default.x", map[string][]types.Resource{resource.ClusterType: {a, b2}, resource.EndpointType: {ea}})
	second := snapOf(t, s, "default.x")
	if second.GetVersion(resource.ClusterType) == cv {
		t.Error("cluster type version did not change")
	}
	if second.GetVersion(resource.EndpointType) != ev {
		t.Error("endpoint type version changed")
	}
	v1, v2 := first.GetVersionMap(resource.ClusterType), second.GetVersionMap(resource.ClusterType)
	if v1["a"] != v2["a"] || v1["b"] == v2["b"] {
		t.Errorf("per-resource versions: before %v after %v", v1, v2)
	}

	// Nodes with the same resources share one set per type.
	mustSet(t, s, "default.y", map[string][]types.Resource{resource.ClusterType: {b2, a}, resource.EndpointType: {ea}})
	if snapOf(t, s, "default.y").sets != second.sets {
		t.Error("nodes with the same resources do not share their sets")
	}
	s.Clear("default.x")
	s.Clear("default.y")
	if e, st, n := s.res.counts(); e != 0 || st != 0 || n != 0 {
		t.Errorf("after Clear: %d entries, %d sets, %d nodes remembered", e, st, n)
	}
	if _, err := s.res.snapshots.GetSnapshot("default.x"); err == nil {
		t.Error("snapshot still in the cache after Clear")
	}
}

func TestSetResourcesErrors(t *testing.T) {
	a := eds("a", time.Second)
	for _, tc := range []struct {
		name string
		res  map[string][]types.Resource
		want string
	}{
		{"duplicate", map[string][]types.Resource{resource.ClusterType: {a, eds("a", 2*time.Second)}}, `two resources named "a"`},
		{"wrong type", map[string][]types.Resource{resource.ListenerType: {a}}, "resource of type envoy.config.cluster.v3.Cluster"},
		{"unnamed", map[string][]types.Resource{resource.ClusterType: {&cluster.Cluster{}}}, "without a name"},
		{"nil", map[string][]types.Resource{resource.ClusterType: {nil}}, "nil resource"},
		{"unknown type", map[string][]types.Resource{"type.googleapis.com/x.Y": {a}}, "unsupported type_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			mustSet(t, s, "default.x", clusters(eds("old", time.Second)))
			before := snapOf(t, s, "default.x")
			_, err := s.SetResources("default.x", tc.res)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if snapOf(t, s, "default.x") != before {
				t.Fatal("a refused SetResources changed the snapshot")
			}
			if e, st, n := s.res.counts(); e != 1 || st != int(types.UnknownType) || n != 1 {
				t.Fatalf("bookkeeping after refusal: %d entries, %d sets, %d nodes", e, st, n)
			}
		})
	}
}

func TestParseNodeID(t *testing.T) {
	for _, tc := range []struct {
		id, mesh, name, err string
	}{
		{"default.backend", "default", "backend", ""},
		{"default.backend.v1.pod-1", "default", "backend.v1.pod-1", ""},
		{"", "", "", "node.id: must be set"},
		{"nodot", "", "", `node.id: "nodot" must be "<mesh>.<name>"`},
		{".x", "", "", "empty mesh"},
		{"x.", "", "", "empty name"},
	} {
		mesh, name, err := ParseNodeID(tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.id, err, tc.err)
			}
			continue
		}
		if err != nil || mesh != tc.mesh || name != tc.name {
			t.Errorf("%q: %q %q %v", tc.id, mesh, name, err)
		}
	}
}
