package proxies

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/xds/generate"
	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
)

// compiled is a Mesh's last compilation and the fingerprint of its inputs.
type compiled struct {
	fp       uint64
	mesh     *generate.Mesh
	problems string // the problems last logged, to log only new ones
	// auth is the zone's CA of the Mesh (nil without mTLS); validity the
	// dataplane certificates' lifetime.
	auth     *certs.Authority
	validity time.Duration
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
// It returns when the next certificate renewal is due (zero: none).
func (g *generator) pass() time.Time {
	start := time.Now()
	changed := g.compile()
	regenerated, renew := g.regenerate(changed)
	g.updateIngresses()
	if len(changed) > 0 || regenerated > 0 {
		took := time.Since(start)
		g.p.metrics.passSeconds.Observe(took.Seconds())
		g.p.logger.Debug("xds pass", "meshes_compiled", len(changed), "proxies_generated", regenerated, "took", took.String())
	}
	return renew
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
		mtps := st.List(api.TypeMeshTrafficPermission, m.Name)
		traces := st.List(api.TypeTrafficTrace, m.Name)
		logs := st.List(api.TypeTrafficLog, m.Name)
		spec := m.Spec.(*api.MeshSpec)
		var auth *certs.Authority
		if spec.MTLSEnabled() {
			if g.p.cfg.Certs != nil {
				auth = g.p.cfg.Certs.Authority(m.Name)
			}
			if auth == nil {
				// No certificates yet: its proxies wait (keeping what they
				// have) until the zone's intermediate arrives.
				continue
			}
		}
		h := fnv.New64a()
		_ = binary.Write(h, binary.LittleEndian, sharedFP)
		hashResource(h, m)
		for _, r := range dps {
			hashResource(h, r)
		}
		for _, list := range [][]*api.Resource{mtps, traces, logs} {
			for _, r := range list {
				hashResource(h, r)
			}
		}
		if auth != nil {
			_, _ = h.Write(auth.TrustBundle)
		}
		fp := h.Sum64()
		prev := g.meshes[m.Name]
		if prev != nil && prev.fp == fp {
			// The same inputs; the zone's intermediate may have been renewed
			// (same roots): new leaves come from the new one.
			prev.auth, prev.validity = auth, dpCertValidity(spec)
			continue
		}
		var prevMesh *generate.Mesh
		if prev != nil {
			prevMesh = prev.mesh
		}
		view := &generate.MeshView{Mesh: m, LocalZone: g.p.cfg.Zone, Zones: zones, Dataplanes: dps, ZoneIngresses: ingresses,
			TrafficPermissions: mtps, TrafficTraces: traces, TrafficLogs: logs}
		if auth != nil {
			view.MTLS = generate.MTLSOf(spec, auth.TrustBundle)
		}
		cm, err := generate.CompileFrom(view, prevMesh)
		if err != nil {
			g.p.metrics.errors.Inc()
			g.p.logger.Error("compiling a Mesh's xDS failed; its proxies keep their resources", "mesh", m.Name, "err", err)
			continue
		}
		c := &compiled{fp: fp, mesh: cm, auth: auth, validity: dpCertValidity(spec)}
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
func (g *generator) regenerate(changed map[string]*generate.Mesh) (int, time.Time) {
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
	var renew time.Time
	for _, w := range todo {
		if r := w.nd.renewAt; !r.IsZero() && (renew.IsZero() || r.Before(renew)) {
			renew = r
		}
	}
	return int(served.Load()), renew
}

// dpCertValidity is the lifetime of a Mesh's dataplane certificates.
func dpCertValidity(spec *api.MeshSpec) time.Duration {
	if b := spec.MTLSBackend(); b != nil && b.DPCert != nil && b.DPCert.Rotation != nil && b.DPCert.Rotation.Expiration != nil {
		return b.DPCert.Rotation.Expiration.Duration
	}
	return api.DefaultDPCertExpiration
}

// identity returns the proxy's certificate in a Mesh with mTLS on, issuing
// a new one when it has none, its CA changed, its Dataplane's identity
// changed or its renewal time passed. renewed reports a new one.
func (g *generator) identity(nd *node, dp *api.Resource, c *compiled) (id *generate.Identity, renewed bool, err error) {
	if c.auth == nil {
		nd.identity, nd.identityAuth, nd.identityOf, nd.renewAt = nil, nil, "", time.Time{}
		nd.certNotAfter.Store(0)
		return nil, false, nil
	}
	service, tags := identityTags(dp)
	now := time.Now()
	if nd.identity != nil && nd.identityAuth == c.auth && nd.identityOf == service && now.Before(nd.renewAt) {
		return nd.identity, false, nil
	}
	leaf, err := c.auth.Issuer.IssueLeaf(ca.LeafOptions{Mesh: dp.Mesh, Service: service, Tags: tags, Validity: c.validity})
	if err != nil {
		return nil, false, fmt.Errorf("issuing its certificate: %w", err)
	}
	g.p.metrics.certsIssued.Inc()
	g.p.insights.certificate(nd.key, leaf.NotAfter, c.auth.Backend)
	nd.identity = &generate.Identity{CertChainPEM: leaf.CertChainPEM, KeyPEM: leaf.KeyPEM}
	nd.identityAuth, nd.identityOf = c.auth, service
	nd.renewAt = ca.RenewAt(certs.Issued(leaf.NotBefore, leaf.NotAfter), leaf.NotAfter, ca.DefaultRenewFraction, ca.DefaultRenewJitter, rand.Float64)
	nd.certNotAfter.Store(leaf.NotAfter.UnixNano())
	return nd.identity, true, nil
}

// identityTags returns the service and tags a proxy's certificate names:
// its first inbound's (or its gateway's).
func identityTags(dp *api.Resource) (string, map[string]string) {
	spec, ok := dp.Spec.(*api.DataplaneSpec)
	if !ok {
		return "", nil
	}
	var tags map[string]string
	switch {
	case spec.Networking.Gateway != nil:
		tags = spec.Networking.Gateway.Tags
	case len(spec.Networking.Inbound) > 0:
		tags = spec.Networking.Inbound[0].Tags
	}
	return tags[api.TagService], tags
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
	id, renewed, err := g.identity(nd, dp, c)
	if err != nil {
		g.p.metrics.errors.Inc()
		g.p.logger.Error("a proxy's certificate failed; it keeps its last resources", "dataplane", nd.id, "err", err)
		return false
	}
	if !renewed && !w.fresh(reg) && dp == nd.generated && !affected(nd, changed[nd.key.Mesh]) {
		return false
	}
	res, err := c.mesh.ProxyWith(dp, generate.KindOf(dp), generate.ProxyOptions{Identity: id})
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
	if m.MeshWideChanged() {
		return true
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
