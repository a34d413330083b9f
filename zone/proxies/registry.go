package proxies

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/generate"
	"github.com/meshfed/meshfed/xds/server"
	"github.com/meshfed/meshfed/zone/certs"
)

// node is one proxy with a stream open on this replica.
type node struct {
	id      string
	key     api.Key // its Dataplane
	streams int
	// fresh: the proxy has not received resources since it connected;
	// connects counts its Connects (a pass clears fresh only when none
	// came meanwhile).
	fresh    bool
	connects int
	// generated is the Dataplane (pointer: stored resources are immutable)
	// the proxy's resources were last generated from; failed is the one
	// generation last failed for (logged once).
	generated *api.Resource
	failed    *api.Resource
	// deps are the services its resources depend on (nil: every service,
	// a proxyless gRPC application).
	deps map[string]bool
	all  bool
	// identity is its certificate in a Mesh with mTLS on, issued by
	// identityAuth for service identityOf, renewed at renewAt (the
	// generator's, like generated).
	identity     *generate.Identity
	identityAuth *certs.Authority
	identityOf   string
	renewAt      time.Time
	// certNotAfter is identity's expiry (unix nanoseconds, 0 when none):
	// written by the generator, read at scrape time (EarliestCertExpiry).
	certNotAfter atomic.Int64
}

// registry tracks the proxies connected to this replica and registers
// their Dataplanes. It implements server.Registrar.
type registry struct {
	p  *Proxies
	mu sync.Mutex
	// nodes by node id ("<mesh>.<name>").
	nodes map[string]*node
	// gone: when each self-registered Dataplane was last seen with a stream
	// here or with its registering replica alive (sweep).
	lastSeen map[api.Key]time.Time
}

var _ server.Registrar = (*registry)(nil)

func newRegistry(p *Proxies) *registry {
	return &registry{p: p, nodes: map[string]*node{}, lastSeen: map[api.Key]time.Time{}}
}

func (r *registry) connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nodes)
}

// earliestCertExpiry returns the earliest expiry of the certificates the
// connected proxies hold; ok is false when none holds one.
func (r *registry) earliestCertExpiry() (t time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var earliest int64
	for _, nd := range r.nodes {
		if na := nd.certNotAfter.Load(); na != 0 && (earliest == 0 || na < earliest) {
			earliest = na
		}
	}
	if earliest == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, earliest), true
}

// Connect registers a stream's proxy: its Dataplane from node metadata, or
// the one created through the API.
func (r *registry) Connect(ctx context.Context, n server.Node) error {
	key := api.Key{Type: api.TypeDataplane, Mesh: n.Mesh, Name: n.Name}
	if err := r.register(ctx, n, key); err != nil {
		r.p.metrics.refused.Inc()
		r.p.logger.Warn("refused a proxy", "dataplane", n.ID, "user_agent", n.UserAgent, "err", err)
		return err
	}
	r.mu.Lock()
	nd := r.nodes[n.ID]
	if nd == nil {
		nd = &node{id: n.ID, key: key}
		r.nodes[n.ID] = nd
	}
	nd.streams++
	nd.connects++
	nd.fresh = true
	r.mu.Unlock()
	r.p.insights.connected(n)
	r.p.logger.Info("proxy connected", "dataplane", n.ID, "user_agent", n.UserAgent, "stream", n.StreamID, "delta", n.Delta)
	r.p.kick()
	return nil
}

// Disconnect forgets a stream; the proxy's resources go with its last one.
func (r *registry) Disconnect(n server.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nd := r.nodes[n.ID]
	if nd == nil {
		return
	}
	nd.streams--
	r.p.insights.disconnected(n)
	r.p.logger.Info("proxy disconnected", "dataplane", n.ID, "stream", n.StreamID, "streams_left", nd.streams)
	if nd.streams > 0 {
		return
	}
	delete(r.nodes, n.ID)
	r.lastSeen[nd.key] = time.Now()
	r.p.cfg.Pusher.Clear(n.ID)
}

// register makes sure the proxy's Dataplane is in the inventory. Its
// errors wrap server.ErrInvalidNode (the proxy's input is wrong) or
// server.ErrUnavailable (retry later).
func (r *registry) register(ctx context.Context, n server.Node, key api.Key) error {
	cfg := &r.p.cfg
	if _, ok := cfg.State.Get(api.Key{Type: api.TypeMesh, Name: n.Mesh}); !ok {
		return fmt.Errorf("%w: node.id: mesh %q does not exist in zone %q (yet): Meshes are created on global", server.ErrUnavailable, n.Mesh, cfg.Zone)
	}
	existing, exists := cfg.Inventory.Get(key)
	field := n.Metadata.GetFields()[MetadataDataplane]
	if field == nil {
		if !exists {
			return fmt.Errorf("%w: node.metadata.%s: no Dataplane %q in mesh %q: create it through the zone API, or put its definition in the node metadata", server.ErrInvalidNode, MetadataDataplane, n.Name, n.Mesh)
		}
		return nil
	}
	dp, err := decodeDataplane(field, n.Mesh, n.Name)
	if err != nil {
		return fmt.Errorf("%w: node.metadata.%s: %w", server.ErrInvalidNode, MetadataDataplane, err)
	}
	if exists && existing.Labels[LabelRegisteredBy] == "" {
		// Created through the API: it wins, unless the proxy disagrees.
		if sameSpec(existing, dp) {
			return nil
		}
		return fmt.Errorf("%w: node.metadata.%s: Dataplane %q in mesh %q was created through the zone API with another definition: change or delete it there, or connect without a definition", server.ErrInvalidNode, MetadataDataplane, n.Name, n.Mesh)
	}
	if dp.Labels == nil {
		dp.Labels = map[string]string{}
	}
	dp.Labels[LabelRegisteredBy] = cfg.ReplicaID
	if err := r.p.store(ctx, dp); err != nil {
		var invalid *api.ValidationError
		if errors.As(err, &invalid) {
			return fmt.Errorf("%w: node.metadata.%s: %w", server.ErrInvalidNode, MetadataDataplane, err)
		}
		return fmt.Errorf("%w: storing Dataplane %q: %w", server.ErrUnavailable, n.ID, err)
	}
	return nil
}

// decodeDataplane reads a Dataplane from node metadata: a JSON object, or
// YAML/JSON text. An empty mesh or name is filled from the node id; a
// different one is refused.
func decodeDataplane(v *structpb.Value, mesh, name string) (*api.Resource, error) {
	var doc []byte
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		doc = []byte(k.StringValue)
	case *structpb.Value_StructValue:
		b, err := protojson.Marshal(k.StructValue)
		if err != nil {
			return nil, err
		}
		doc = b
	default:
		return nil, fmt.Errorf("must be an object or a string holding the Dataplane, not %T", v.GetKind())
	}
	return api.DecodeDataplane(doc, mesh, name)
}

// sameSpec reports whether two Dataplanes have the same spec.
func sameSpec(a, b *api.Resource) bool {
	ja, errA := a.WithMeta(api.Meta{Type: a.Type}).MarshalJSON()
	jb, errB := b.WithMeta(api.Meta{Type: b.Type}).MarshalJSON()
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// sweep deletes the self-registered Dataplanes whose proxies have been gone
// for the grace period: those registered by this replica, or by a replica
// no longer in the zone's pool.
func (r *registry) sweep(now time.Time) {
	cfg := &r.p.cfg
	connected := map[api.Key]bool{}
	r.mu.Lock()
	for _, nd := range r.nodes {
		connected[nd.key] = true
	}
	r.mu.Unlock()
	seen := map[api.Key]bool{}
	for _, dp := range cfg.Inventory.List(api.TypeDataplane, "") {
		owner := dp.Labels[LabelRegisteredBy]
		if owner == "" {
			continue
		}
		key := dp.Key()
		seen[key] = true
		r.mu.Lock()
		last, known := r.lastSeen[key]
		if connected[key] || (owner != cfg.ReplicaID && cfg.ReplicaAlive(owner)) || !known {
			// Served here, or its registering replica answers for it; or
			// first seen now (a restart: the grace period starts).
			r.lastSeen[key] = now
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		if now.Sub(last) < cfg.GracePeriod {
			continue
		}
		if _, err := cfg.Inventory.Delete(key, dp.Revision); err != nil && !api.IsNotFound(err) {
			r.p.logger.Warn("removing a departed proxy's Dataplane", "dataplane", key.Mesh+"."+key.Name, "err", err)
			continue
		}
		r.p.metrics.removed.Inc()
		r.p.insights.forget(key)
		if _, err := cfg.Inventory.DeleteSystem(insightKey(key)); err != nil && !api.IsNotFound(err) {
			r.p.logger.Warn("removing a departed proxy's insight", "dataplane", key.Mesh+"."+key.Name, "err", err)
		}
		r.p.logger.Info("removed the Dataplane of a departed proxy", "dataplane", key.Mesh+"."+key.Name,
			"gone_for", now.Sub(last).Round(time.Second).String(), "registered_by", owner)
		r.mu.Lock()
		delete(r.lastSeen, key)
		r.mu.Unlock()
	}
	r.mu.Lock()
	for k := range r.lastSeen {
		if !seen[k] {
			delete(r.lastSeen, k)
		}
	}
	r.mu.Unlock()
}
