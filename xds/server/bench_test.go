package server

import (
	"fmt"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

const (
	benchNodes    = 10_000
	benchServices = 500
)

// benchWorld is 500 shared clusters and CLAs, and one listener of each
// node's own.
type benchWorld struct {
	clusters, clas []types.Resource
	listeners      []types.Resource
}

func newBenchWorld() *benchWorld {
	w := &benchWorld{}
	for i := range benchServices {
		name := fmt.Sprintf("svc-%d", i)
		w.clusters = append(w.clusters, eds(name, time.Second))
		w.clas = append(w.clas, cla(name, fmt.Sprintf("10.0.%d.%d", i/250, i%250), 8080))
	}
	for i := range benchNodes {
		w.listeners = append(w.listeners, &listener.Listener{Name: fmt.Sprintf("inbound-%d", i)})
	}
	return w
}

func (w *benchWorld) res(i int) map[string][]types.Resource {
	return map[string][]types.Resource{
		resource.ClusterType:  w.clusters,
		resource.EndpointType: w.clas,
		resource.ListenerType: {w.listeners[i]},
	}
}

func benchNode(i int) string { return fmt.Sprintf("default.node-%d", i%benchNodes) }

// BenchmarkSetResources: one op is one node's SetResources.
//   - first: the node's first snapshot (all 10,000 nodes, then again).
//   - unchanged: the same content again (a no-op).
//   - one-cla-changed: one shared CLA was replaced; every node is set again.
func BenchmarkSetResources(b *testing.B) {
	b.Run("first", func(b *testing.B) {
		w := newBenchWorld()
		s := newTestServer(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%benchNodes == 0 && i > 0 {
				b.StopTimer()
				s = newTestServer(b)
				b.StartTimer()
			}
			if _, err := s.SetResources(benchNode(i), w.res(i%benchNodes)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		w := newBenchWorld()
		s := newTestServer(b)
		for i := range benchNodes {
			if _, err := s.SetResources(benchNode(i), w.res(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if changed, err := s.SetResources(benchNode(i), w.res(i%benchNodes)); err != nil || changed {
				b.Fatal(changed, err)
			}
		}
	})
	b.Run("one-cla-changed", func(b *testing.B) {
		w := newBenchWorld()
		s := newTestServer(b)
		for i := range benchNodes {
			if _, err := s.SetResources(benchNode(i), w.res(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%benchNodes == 0 {
				b.StopTimer()
				clas := append([]types.Resource(nil), w.clas...)
				clas[i/benchNodes%benchServices] = cla(fmt.Sprintf("svc-%d", i/benchNodes%benchServices), "10.9.9.9", uint16ToPort(i))
				w.clas = clas
				b.StartTimer()
			}
			if changed, err := s.SetResources(benchNode(i), w.res(i%benchNodes)); err != nil || !changed {
				b.Fatal(changed, err)
			}
		}
	})
}

// BenchmarkSetResourcesLookups: the lists hold known resources, but neither
// the node's own set nor the last set used for the type has the same
// pointers: one map lookup per resource. (Two worlds of different content,
// nodes switching between them.)
func BenchmarkSetResourcesLookups(b *testing.B) {
	a, c := newBenchWorld(), newBenchWorld()
	c.listeners = a.listeners
	for i := range c.clusters {
		c.clusters[i] = eds(fmt.Sprintf("svc-%d", i), 2*time.Second)
		c.clas[i] = cla(fmt.Sprintf("svc-%d", i), "10.1.1.1", 9090)
	}
	worlds := [2]*benchWorld{a, c}
	s := newTestServer(b)
	for i := range benchNodes {
		if _, err := s.SetResources(benchNode(i), worlds[i%2].res(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pass := i / benchNodes
		if _, err := s.SetResources(benchNode(i), worlds[(i+pass+1)%2].res(i%benchNodes)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetResourcesNewPointers: equal content in new objects (a
// generator that rebuilds every proto): every resource is marshalled and
// hashed. Share the objects instead.
func BenchmarkSetResourcesNewPointers(b *testing.B) {
	w := newBenchWorld()
	s := newTestServer(b)
	if _, err := s.SetResources(benchNode(0), w.res(0)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		res := w.res(0)
		for typ, list := range res {
			cl := make([]types.Resource, len(list))
			for j, x := range list {
				cl[j] = proto.Clone(x)
			}
			res[typ] = cl
		}
		b.StartTimer()
		if changed, err := s.SetResources(benchNode(0), res); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

func uint16ToPort(i int) uint32 { return uint32(1024 + i/benchNodes%60000) }
