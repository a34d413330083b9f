package proxies

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/generate"
	"github.com/meshfed/meshfed/zone/inventory"
)

// compiled is a Mesh's last compilation and the fingerprint of its inputs.
type compiled struct {
	fp       uint64
	mesh     *generate.Mesh
	problems string // the problems last logged, to log only new ones
}

// generator runs the passes; only Run's goroutine calls it.
type generator struct {
	p      *Proxies
	meshes map[string]*compiled
}

func newGenerator(p *Proxies) *generator {
	return &generator{p: p, meshes: map[string]*compiled{}}
}

// work is one proxy to regenerate, as the pass saw it.
type work struct {
	nd       *node
	connects int
}

// pass recompiles the Meshes whose inputs changed and regenerates the
// proxies affected, then brings the zone's ZoneIngresses up to date.
func (g *generator) pass() {
	start := time.Now()
	changed := g.compile()
	regenerated := g.regenerate(changed)
	g.updateIngresses()
	if len(changed) > 0 || regenerated > 0 {
		took := time.Since(start)
		g.p.metrics.passSeconds.Observe(took.Seconds())
		g.p.logger.Debug("xds pass", "meshes_compiled", len(changed), "proxies_generated", regenerated, "took", took.String())
	}
}

// compile recompiles every Mesh whose inputs changed and returns them.
func (g *generator) compile() map[string]*generate.Mesh {
	st := g.p.cfg.State
	zones := map[string]generate.Zone{}
	shared := fnv.New64a()
	for _, z := range st.List(api.TypeZone, "") {
		spec, _ := z.Spec.(*api.ZoneSpec)
		zones[z.Name] = generate.ZoneOf(spec)
		hashResource(shared, z)
	}
	ingresses := st.List(api.TypeZoneIngress, "")
	for _, zi := range ingresses {
		hashResource(shared, zi)
	}
	sharedFP := shared.Sum64()

	changed := map[string]*generate.Mesh{}
	live := map[string]bool{}
	for _, m := range st.List(api.TypeMesh, "") {
		live[m.Name] = true
		dps := st.List(api.TypeDataplane, m.Name)
		h := fnv.New64a()
		_ = binary.Write(h, binary.LittleEndian, sharedFP)
		hashResource(h, m)
		for _, dp := range dps {
			hashResource(h, dp)
		}
		fp := h.Sum64()
		prev := g.meshes[m.Name]
		if prev != nil && prev.fp == fp {
			continue
		}
		var prevMesh *generate.Mesh
		if prev != nil {
			prevMesh = prev.mesh
		}
		view := &generate.MeshView{Mesh: m, LocalZone: g.p.cfg.Zone, Zones: zones, Dataplanes: dps, ZoneIngresses: ingresses}
		cm, err := generate.CompileFrom(view, prevMesh)
		if err != nil {
			g.p.metrics.errors.Inc()
			g.p.logger.Error("compiling a Mesh's xDS failed; its proxies keep their resources", "mesh", m.Name, "err", err)
			continue
		}
		c := &compiled{fp: fp, mesh: cm}
		var lines []string
		for _, e := range cm.Problems() {
			lines = append(lines, e.Error())
		}
		c.problems = strings.Join(lines, "\n")
		if prev == nil || prev.problems != c.problems {
			for _, line := range lines {
				g.p.logger.Warn("left out of the Mesh's xDS", "mesh", m.Name, "problem", line)
			}
		}
		g.meshes[m.Name] = c
		changed[m.Name] = cm
	}
	for name := range g.meshes {
		if !live[name] {
			delete(g.meshes, name)
		}
	}
	return changed
}

// hashResource adds a resource's identity and revision to a fingerprint.
func hashResource(h interface{ Write([]byte) (int, error) }, r *api.Resource) {
	_, _ = h.Write([]byte(r.Type))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(r.Name))
	_, _ = h.Write([]byte{0})
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], r.Revision)
	_, _ = h.Write(b[:])
}

// regenerate gives new resources to every proxy that needs them and
// returns how many it served.
func (g *generator) regenerate(changed map[string]*generate.Mesh) int {
	reg := g.p.reg
	reg.mu.Lock()
	todo := make([]work, 0, len(reg.nodes))
	for _, nd := range reg.nodes {
		todo = append(todo, work{nd: nd, connects: nd.connects})
	}
	reg.mu.Unlock()

	// Proxies are independent and the compiled Meshes read-only: spread
	// them over the cores.
	var served atomic.Int64
	var wg sync.WaitGroup
	next := make(chan work)
	for range max(1, min(runtime.GOMAXPROCS(0), len(todo))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range next {
				if g.serve(w, changed) {
					served.Add(1)
				}
			}
		}()
	}
	for _, w := range todo {
		next <- w
	}
	close(next)
	wg.Wait()
	return int(served.Load())
}

// serve regenerates one proxy if it needs it and reports whether it did.
// Only one goroutine handles a given node in a pass.
func (g *generator) serve(w work, changed map[string]*generate.Mesh) bool {
	reg := g.p.reg
	nd := w.nd
	c := g.meshes[nd.key.Mesh]
	if c == nil {
		return false // no Mesh (yet): nothing to serve
	}
	dp, ok := g.p.cfg.Inventory.Get(nd.key)
	if !ok {
		// Deleted while its proxy is connected (through the API): it gets
		// nothing until it is registered again.
		if nd.generated != nil {
			g.p.cfg.Pusher.Clear(nd.id)
			nd.generated = nil
			g.p.logger.Warn("a connected proxy's Dataplane was deleted; its resources are withdrawn", "dataplane", nd.id)
		}
		return false
	}
	if !w.fresh(reg) && dp == nd.generated && !affected(nd, changed[nd.key.Mesh]) {
		return false
	}
	res, err := c.mesh.Proxy(dp, generate.KindOf(dp))
	if err != nil {
		if nd.failed != dp {
			nd.failed = dp
			g.p.metrics.errors.Inc()
			g.p.logger.Error("generating a proxy's xDS failed; it keeps its last resources", "dataplane", nd.id, "revision", dp.Revision, "err", err)
		}
		return false
	}
	if _, err := g.p.cfg.Pusher.SetResources(nd.id, res.ByType()); err != nil {
		g.p.metrics.errors.Inc()
		g.p.logger.Error("serving a proxy's xDS failed", "dataplane", nd.id, "err", err)
		return false
	}
	g.p.metrics.generated.Inc()
	nd.generated, nd.failed = dp, nil
	nd.all, nd.deps = dependencies(dp)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.nodes[nd.id] != nd {
		// Its last stream ended meanwhile: take back what was just set.
		g.p.cfg.Pusher.Clear(nd.id)
	} else if nd.connects == w.connects {
		nd.fresh = false
	}
	return true
}

// fresh reports whether the proxy has a stream that has not been served.
func (w work) fresh(reg *registry) bool {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return w.nd.fresh
}

// affected reports whether a proxy depends on a service that changed in
// its Mesh's new compilation m (nil: the Mesh did not change).
func affected(nd *node, m *generate.Mesh) bool {
	if m == nil {
		return false
	}
	if nd.all {
		return len(m.ChangedServices()) > 0
	}
	for svc := range nd.deps {
		if m.ServiceChanged(svc) {
			return true
		}
	}
	return false
}

// dependencies returns the services a proxy's resources depend on: its
// outbounds' for an Envoy sidecar, every service (all) for a proxyless gRPC
// application.
func dependencies(dp *api.Resource) (all bool, deps map[string]bool) {
	if generate.KindOf(dp) == generate.KindGRPC {
		return true, nil
	}
	deps = map[string]bool{}
	if spec, ok := dp.Spec.(*api.DataplaneSpec); ok {
		for _, out := range spec.Networking.Outbound {
			deps[out.Tags[api.TagService]] = true
		}
	}
	return false, deps
}

// updateIngresses writes the availableServices of this zone's ZoneIngresses
// when the zone's Dataplanes changed them.
func (g *generator) updateIngresses() {
	inv := g.p.cfg.Inventory
	ingresses := inv.List(api.TypeZoneIngress, "")
	if len(ingresses) == 0 {
		return
	}
	want := availableServices(inv.List(api.TypeDataplane, ""))
	for _, zi := range ingresses {
		spec, ok := zi.Spec.(*api.ZoneIngressSpec)
		if !ok || slices.EqualFunc(spec.AvailableServices, want, sameAvailable) {
			continue
		}
		next := *spec
		next.AvailableServices = want
		r := &api.Resource{Meta: api.Meta{Type: zi.Type, Name: zi.Name, Labels: zi.Labels}, Spec: &next}
		if err := api.Prepare(r); err != nil {
			g.p.logger.Error("computing a ZoneIngress's availableServices", "zone_ingress", zi.Name, "err", err)
			continue
		}
		if _, _, err := inv.Put(r, inventory.PutOptions{}); err != nil {
			g.p.logger.Error("updating a ZoneIngress's availableServices", "zone_ingress", zi.Name, "err", err)
			continue
		}
		g.p.logger.Info("updated a ZoneIngress's availableServices", "zone_ingress", zi.Name, "services", len(want))
	}
}

// availableServices counts the healthy inbounds of the zone's Dataplanes
// per (Mesh, service, protocol), sorted.
func availableServices(dps []*api.Resource) []api.AvailableService {
	type key struct{ mesh, service, protocol string }
	counts := map[key]uint32{}
	for _, dp := range dps {
		spec, ok := dp.Spec.(*api.DataplaneSpec)
		if !ok {
			continue
		}
		for _, in := range spec.Networking.Inbound {
			if in.Health != nil && !in.Health.Ready {
				continue
			}
			counts[key{dp.Mesh, in.Tags[api.TagService], in.Tags[api.TagProtocol]}]++
		}
	}
	out := make([]api.AvailableService, 0, len(counts))
	for k, n := range counts {
		tags := map[string]string{api.TagService: k.service}
		if k.protocol != "" {
			tags[api.TagProtocol] = k.protocol
		}
		out = append(out, api.AvailableService{Mesh: k.mesh, Tags: tags, Instances: n})
	}
	slices.SortFunc(out, func(a, b api.AvailableService) int {
		return cmp.Or(cmp.Compare(a.Mesh, b.Mesh), cmp.Compare(a.Tags[api.TagService], b.Tags[api.TagService]),
			cmp.Compare(a.Tags[api.TagProtocol], b.Tags[api.TagProtocol]))
	})
	return out
}

func sameAvailable(a, b api.AvailableService) bool {
	if a.Mesh != b.Mesh || a.Instances != b.Instances || a.ExternalService != b.ExternalService || len(a.Tags) != len(b.Tags) {
		return false
	}
	for k, v := range a.Tags {
		if b.Tags[k] != v {
			return false
		}
	}
	return true
}
