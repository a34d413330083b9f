// Package proxies is the zone's side of xDS (DESIGN.md §7–8): it registers
// the proxies that connect to the zone's xDS server, removes the
// Dataplanes they registered themselves once they have been gone for a
// grace period, keeps the zone's ZoneIngress availableServices current, and
// turns the zone's state into every connected proxy's resources.
//
// Where it sits in the data flow:
//
//	replica (global's state) + inventory (the zone's own) ──▶ State
//	  ──▶ one MeshView per Mesh ──▶ xds/generate.CompileFrom (shared protos)
//	  ──▶ (*Mesh).Proxy per affected proxy ──▶ xds/server.SetResources
//	xds/server ──Connect/Disconnect──▶ this package ──▶ inventory (Dataplanes)
//
// Decisions:
//
//   - Registration. A proxy's node id is "<mesh>.<name>". It either carries
//     its Dataplane in node metadata under "dataplane" (a JSON object, or
//     the Dataplane as YAML/JSON text) and registers itself — the Dataplane
//     is validated and stored with the label meshfed.io/registered-by set
//     to this replica — or its Dataplane was created beforehand through the
//     zone API. A refusal (invalid Dataplane, unknown Mesh, none at all)
//     ends only that proxy's stream, with the reason.
//   - Lifecycle. A self-registered Dataplane is deleted once its proxy has
//     been disconnected for GracePeriod, by the replica that registered it
//     (or, when that replica is gone from the zone's pool, by any replica);
//     a proxy that reconnects to another replica is registered there again,
//     and the label moves with it, so the first replica leaves it alone.
//     Dataplanes created through the API stay.
//   - Generation is event-driven and debounced: a change of the zone's
//     state starts a pass after Debounce (changes meanwhile join it). A
//     pass recompiles only the Meshes whose inputs changed (a fingerprint
//     of their resources' revisions), reusing the protos of unchanged
//     services, and regenerates only the proxies affected: new streams,
//     proxies whose Dataplane changed, Envoy proxies with an outbound to a
//     changed service, and proxyless gRPC proxies (which see every service)
//     when any service changed. xds/server then sends only what changed.
//   - A proxy whose resources cannot be generated keeps its last good ones;
//     the error is logged once per Dataplane revision.
//   - availableServices of this zone's ZoneIngresses: the healthy
//     instances per (Mesh, service, protocol) among the zone's Dataplanes,
//     written back through the inventory (and so reported to global) when
//     they change.
package proxies

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/server"
	"github.com/meshfed/meshfed/zone/certs"
	"github.com/meshfed/meshfed/zone/inventory"
)

// LabelRegisteredBy marks a Dataplane its proxy registered itself, with the
// id of the replica it registered on.
const LabelRegisteredBy = "meshfed.io/registered-by"

// MetadataDataplane is the node metadata key that carries a proxy's
// Dataplane.
const MetadataDataplane = "dataplane"

// Defaults.
const (
	DefaultGracePeriod = 30 * time.Second
	DefaultDebounce    = 50 * time.Millisecond
)

// State is the zone's state as generation reads it: global's replica and
// the zone's inventory together (the zone's own resources under their own
// names, other zones' under zone-qualified ones).
type State interface {
	Get(key api.Key) (*api.Resource, bool)
	List(typ, mesh string) []*api.Resource
	// Changed is closed at the next change of either.
	Changed() <-chan struct{}
}

// Inventory is where the zone's own resources are written.
type Inventory interface {
	Get(key api.Key) (*api.Resource, bool)
	List(typ, mesh string) []*api.Resource
	Put(r *api.Resource, opts inventory.PutOptions) (*api.Resource, bool, error)
	// PutBatch stores several resources in one transaction (one disk sync).
	PutBatch(rs []*api.Resource, now time.Time) ([]error, error)
	// PutSystem and DeleteSystem write the zone's system types
	// (DataplaneInsight).
	PutSystem(rs []*api.Resource, now time.Time) ([]error, error)
	DeleteSystem(key api.Key) (*api.Resource, error)
	Delete(key api.Key, expectRevision uint64) (*api.Resource, error)
}

// Certs is the zone's certificate authority (zone/certs).
type Certs interface {
	// Authority returns a Mesh's issuing state, nil when there is none.
	Authority(mesh string) *certs.Authority
	// Changed is closed at the next change of any Authority.
	Changed() <-chan struct{}
}

// Pusher is the xDS server's cache.
type Pusher interface {
	SetResources(nodeID string, res map[string][]types.Resource) (bool, error)
	Clear(nodeID string)
}

// Config configures the zone's proxies.
type Config struct {
	// Zone and ReplicaID (required) name this zone and this replica.
	Zone      string
	ReplicaID string
	State     State
	Inventory Inventory
	// Pusher may be set after New, with SetPusher, before Run.
	Pusher Pusher
	// Certs issues the proxies' certificates in Meshes with mTLS on; nil:
	// such Meshes are not served.
	Certs Certs
	// GracePeriod is how long a self-registered Dataplane outlives its
	// proxy's last stream; default DefaultGracePeriod.
	GracePeriod time.Duration
	// Debounce is how long a pass waits for more changes; default
	// DefaultDebounce.
	Debounce time.Duration
	// ReplicaAlive tells whether another replica of the zone is in its
	// pool; nil means this replica is alone.
	ReplicaAlive func(id string) bool
	// Metrics receives meshfed_zone_xds_* metrics; nil keeps them
	// unregistered.
	Metrics prometheus.Registerer
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Zone == "" || c.ReplicaID == "" {
		errs = append(errs, errors.New("proxies: zone and replica id must be set"))
	}
	if c.State == nil || c.Inventory == nil {
		errs = append(errs, errors.New("proxies: state and inventory must be set"))
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.Debounce == 0 {
		c.Debounce = DefaultDebounce
	}
	if c.GracePeriod < 0 || c.Debounce < 0 {
		errs = append(errs, fmt.Errorf("proxies: grace period (%s) and debounce (%s) must not be negative", c.GracePeriod, c.Debounce))
	}
	if c.ReplicaAlive == nil {
		c.ReplicaAlive = func(string) bool { return false }
	}
	return errors.Join(errs...)
}

// Proxies is the zone's registry of connected proxies and their generator.
type Proxies struct {
	cfg      Config
	logger   *slog.Logger
	metrics  *metrics
	reg      *registry
	gen      *generator
	insights *insights
	wake     chan struct{}
	// puts carries registrations to storeLoop, which writes them in
	// batches (group commit).
	puts chan putRequest
}

// putRequest is one registration waiting to be stored.
type putRequest struct {
	dp   *api.Resource
	done chan error
}

// maxPutBatch bounds the registrations written in one transaction.
const maxPutBatch = 512

// New checks cfg; it starts nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Proxies, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	p := &Proxies{cfg: cfg, logger: logger, metrics: m, wake: make(chan struct{}, 1), puts: make(chan putRequest)}
	p.reg = newRegistry(p)
	p.gen = newGenerator(p)
	p.insights = newInsights(p)
	return p, nil
}

// SetPusher sets the xDS server's cache (the server needs the registry,
// and the registry the server). Call it before Run.
func (p *Proxies) SetPusher(pusher Pusher) { p.cfg.Pusher = pusher }

// kick asks Run for a pass soon.
func (p *Proxies) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run generates on every change of the zone's state and every new stream,
// and sweeps the self-registered Dataplanes of departed proxies, until ctx
// ends.
func (p *Proxies) Run(ctx context.Context) error {
	if p.cfg.Pusher == nil {
		return errors.New("proxies: no pusher (SetPusher)")
	}
	sweep := time.NewTicker(min(p.cfg.GracePeriod/4, 5*time.Second))
	defer sweep.Stop()
	flush := time.NewTicker(InsightFlush)
	defer flush.Stop()
	stored := make(chan struct{})
	defer func() { <-stored }()
	go func() { defer close(stored); p.storeLoop(ctx) }()
	var certsChanged <-chan struct{}
	for {
		changed := p.cfg.State.Changed()
		if p.cfg.Certs != nil {
			certsChanged = p.cfg.Certs.Changed()
		}
		renew := p.gen.pass()
		var renewal <-chan time.Time
		var renewTimer *time.Timer
		if !renew.IsZero() {
			renewTimer = time.NewTimer(max(time.Until(renew), 0))
			renewal = renewTimer.C
		}
		swept := false
		select {
		case <-ctx.Done():
		case <-changed:
		case <-certsChanged:
		case <-renewal:
		case <-p.wake:
		case <-sweep.C:
			p.reg.sweep(time.Now())
			swept = true
		case now := <-flush.C:
			p.insights.flush(now)
			swept = true
		}
		if renewTimer != nil {
			renewTimer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
		if swept {
			continue
		}
		// Debounce: let a burst of changes end up in one pass.
		t := time.NewTimer(p.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// store writes a registered Dataplane through storeLoop, with whatever
// other registrations arrive meanwhile: a burst of proxies connecting costs
// a few disk syncs, not one each.
func (p *Proxies) store(ctx context.Context, dp *api.Resource) error {
	req := putRequest{dp: dp, done: make(chan error, 1)}
	select {
	case p.puts <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// storeLoop writes the registrations store hands it, in batches, until ctx
// ends.
func (p *Proxies) storeLoop(ctx context.Context) {
	for {
		var batch []putRequest
		select {
		case <-ctx.Done():
			return
		case req := <-p.puts:
			batch = append(batch, req)
		}
	more:
		for len(batch) < maxPutBatch {
			select {
			case req := <-p.puts:
				batch = append(batch, req)
			default:
				break more
			}
		}
		dps := make([]*api.Resource, len(batch))
		for i, req := range batch {
			dps[i] = req.dp
		}
		errs, err := p.cfg.Inventory.PutBatch(dps, time.Now())
		for i, req := range batch {
			if err != nil {
				req.done <- err
			} else {
				req.done <- errs[i]
			}
		}
	}
}

// Registrar is what the xDS server tells about streams.
func (p *Proxies) Registrar() server.Registrar { return p.reg }

// Connected returns how many proxies have a stream open on this replica.
func (p *Proxies) Connected() int { return p.reg.connected() }

// EarliestCertExpiry returns the earliest expiry of the certificates the
// proxies connected here hold (Meshes with mTLS on); ok is false when none
// holds one.
func (p *Proxies) EarliestCertExpiry() (time.Time, bool) { return p.reg.earliestCertExpiry() }
