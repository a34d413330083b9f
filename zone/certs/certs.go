// Package certs is the zone's certificate authority (DESIGN.md §9): for
// every Mesh with mTLS on, it holds an intermediate CA of its own — the key
// made here, the certificate signed by global over the sync stream — and
// issues the dataplane certificates of the zone's proxies from it.
//
// Where it sits in the data flow: the zone's replica says which Meshes have
// mTLS on (and with which backend); the manager makes a key and a CSR,
// global signs it with the Mesh's root (whose key never leaves global) and
// answers with the trust bundle; zone/proxies asks Authority(mesh) for an
// issuer when it generates a proxy's resources.
//
// Decisions:
//
//   - One intermediate per (zone, Mesh, backend), kept in DataDir/ca/<mesh>.json
//     (mode 0600), so a zone restarted while global is unreachable keeps
//     issuing until the intermediate expires: its lifetime (global's
//     --zone-ca-validity) bounds how long a zone cut off from global can
//     issue. It is renewed at half its life; a failed renewal is retried
//     with backoff while the old one keeps serving.
//   - A Mesh whose backend changes (mTLS disabled, another backend) drops
//     its intermediate and asks for a new one.
//   - Authority returns an immutable snapshot; callers compare pointers to
//     see a change, and Changed wakes them.
package certs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// Meshes is where the manager reads the Meshes (the zone's replica).
type Meshes interface {
	List(typ, mesh string) []*api.Resource
	Changed() <-chan struct{}
}

// Signer sends a CSR to global (zone/syncclient).
type Signer interface {
	SignIntermediate(ctx context.Context, req *syncpb.CertificateRequest) (*syncpb.CertificateResponse, error)
}

// Config configures the manager.
type Config struct {
	// Zone (required) is this zone's name, in its intermediates.
	Zone string
	// Dir (required) holds the intermediates.
	Dir    string
	Meshes Meshes
	Signer Signer
	// RetryMin and RetryMax bound the backoff between failed requests;
	// defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Zone == "" || c.Dir == "" {
		errs = append(errs, errors.New("certs: zone and dir must be set"))
	}
	if c.Meshes == nil || c.Signer == nil {
		errs = append(errs, errors.New("certs: meshes and signer must be set"))
	}
	if c.RetryMin == 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = time.Minute
	}
	return errors.Join(errs...)
}

// Authority is one Mesh's issuing state: read-only, replaced as a whole.
type Authority struct {
	Mesh    string
	Backend string
	// Issuer issues leaves from the zone's intermediate.
	Issuer *ca.Issuer
	// TrustBundle is the Mesh's root certificates (PEM).
	TrustBundle []byte
	// RenewAt is when the intermediate is renewed (half its life).
	RenewAt time.Time
}

// stored is an intermediate's file.
type stored struct {
	Mesh        string `json:"mesh"`
	Backend     string `json:"backend"`
	CertPEM     []byte `json:"certificate"`
	KeyPEM      []byte `json:"key"`
	TrustBundle []byte `json:"trustBundle"`
}

// MeshStatus is one Mesh's intermediate as the zone status shows it.
type MeshStatus struct {
	Mesh      string     `json:"mesh"`
	Backend   string     `json:"backend"`
	NotAfter  *time.Time `json:"notAfter,omitempty"`
	RenewAt   *time.Time `json:"renewAt,omitempty"`
	LastError string     `json:"lastError,omitempty"`
}

// Manager keeps the zone's intermediates.
type Manager struct {
	cfg    Config
	logger *slog.Logger

	mu      sync.Mutex
	auths   map[string]*Authority
	errs    map[string]string    // the last failure per Mesh
	retryAt map[string]time.Time // no request before
	backoff map[string]time.Duration
	changed chan struct{}
}

// New checks cfg and loads the intermediates in Dir that are still valid.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, logger: logger, auths: map[string]*Authority{}, errs: map[string]string{},
		retryAt: map[string]time.Time{}, backoff: map[string]time.Duration{}, changed: make(chan struct{})}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(cfg.Dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		a, err := load(f)
		if err != nil {
			logger.Warn("ignoring an unreadable intermediate CA file", "path", f, "err", err)
			continue
		}
		if time.Now().After(a.Issuer.NotAfter()) {
			logger.Warn("ignoring an expired intermediate CA", "mesh", a.Mesh, "not_after", a.Issuer.NotAfter())
			continue
		}
		m.auths[a.Mesh] = a
		logger.Info("loaded the zone's intermediate CA", "mesh", a.Mesh, "backend", a.Backend, "not_after", a.Issuer.NotAfter())
	}
	return m, nil
}

func load(path string) (*Authority, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return authorityOf(s)
}

func authorityOf(s stored) (*Authority, error) {
	iss, err := ca.NewIssuer(ca.KeyPair{CertPEM: s.CertPEM, KeyPEM: s.KeyPEM})
	if err != nil {
		return nil, err
	}
	if iss.Mesh() != s.Mesh {
		return nil, fmt.Errorf("intermediate is for mesh %q, not %q", iss.Mesh(), s.Mesh)
	}
	return &Authority{Mesh: s.Mesh, Backend: s.Backend, Issuer: iss, TrustBundle: s.TrustBundle,
		RenewAt: ca.HalfLife(Issued(iss.NotBefore(), iss.NotAfter()), iss.NotAfter())}, nil
}

// Issued returns when a certificate was issued: ca backdates NotBefore by
// ca.ClockSkew, which must not count in its life (a short-lived one would
// be due for renewal at once).
func Issued(notBefore, notAfter time.Time) time.Time {
	if t := notBefore.Add(ca.ClockSkew); t.Before(notAfter) {
		return t
	}
	return notBefore
}

// Authority returns the Mesh's issuing state, or nil when there is none
// (mTLS off, or no intermediate yet).
func (m *Manager) Authority(mesh string) *Authority {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.auths[mesh]
}

// Changed is closed at the next change of any Authority.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Status lists the Meshes' intermediates.
func (m *Manager) Status() []MeshStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	var out []MeshStatus
	for name, a := range m.auths {
		na, ra := a.Issuer.NotAfter(), a.RenewAt
		out = append(out, MeshStatus{Mesh: name, Backend: a.Backend, NotAfter: &na, RenewAt: &ra, LastError: m.errs[name]})
		seen[name] = true
	}
	for name, e := range m.errs {
		if !seen[name] {
			out = append(out, MeshStatus{Mesh: name, LastError: e})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mesh < out[j].Mesh })
	return out
}

// Run keeps an intermediate for every Mesh with mTLS on until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	for {
		changed := m.cfg.Meshes.Changed()
		next := m.reconcile(ctx)
		wait := time.Until(next)
		if next.IsZero() {
			wait = time.Hour
		}
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
			t.Stop()
		case <-t.C:
		}
	}
}

// reconcile brings every Mesh's intermediate up to date and returns when
// it next needs to look (a renewal or a retry), zero for never.
func (m *Manager) reconcile(ctx context.Context) time.Time {
	want := map[string]string{} // mesh → enabled backend
	for _, r := range m.cfg.Meshes.List(api.TypeMesh, "") {
		if b := r.Spec.(*api.MeshSpec).MTLSBackend(); b != nil {
			want[r.Name] = b.Name
		}
	}
	m.mu.Lock()
	for mesh, a := range m.auths {
		if want[mesh] != a.Backend {
			delete(m.auths, mesh)
			_ = os.Remove(m.path(mesh))
			m.logger.Info("dropped the zone's intermediate CA", "mesh", mesh, "backend", a.Backend)
			m.notifyLocked()
		}
	}
	for mesh := range m.errs {
		if _, ok := want[mesh]; !ok {
			delete(m.errs, mesh)
		}
	}
	m.mu.Unlock()

	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	now := time.Now()
	for mesh, backend := range want {
		m.mu.Lock()
		a, retry := m.auths[mesh], m.retryAt[mesh]
		m.mu.Unlock()
		if a != nil && now.Before(a.RenewAt) {
			soonest(a.RenewAt)
			continue
		}
		if now.Before(retry) {
			soonest(retry)
			continue
		}
		if err := m.request(ctx, mesh, backend); err != nil {
			if ctx.Err() != nil {
				return next
			}
			m.mu.Lock()
			b := m.backoff[mesh]
			b = min(max(b*2, m.cfg.RetryMin), m.cfg.RetryMax)
			b = b/2 + time.Duration(rand.Int64N(int64(b/2)+1))
			m.backoff[mesh], m.retryAt[mesh], m.errs[mesh] = b, now.Add(b), err.Error()
			m.mu.Unlock()
			m.logger.Warn("getting the zone's intermediate CA failed; retrying", "mesh", mesh, "backend", backend, "retry_in", b.String(), "err", err)
			soonest(now.Add(b))
			continue
		}
		m.mu.Lock()
		delete(m.backoff, mesh)
		delete(m.retryAt, mesh)
		delete(m.errs, mesh)
		soonest(m.auths[mesh].RenewAt)
		m.mu.Unlock()
	}
	return next
}

// request gets a new intermediate for mesh from global and stores it.
func (m *Manager) request(ctx context.Context, mesh, backend string) error {
	csr, key, err := ca.NewIntermediateRequest(mesh, m.cfg.Zone, ca.KeyOptions{})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := m.cfg.Signer.SignIntermediate(rctx, &syncpb.CertificateRequest{Mesh: mesh, Backend: backend, CsrPem: csr})
	if err != nil {
		return fmt.Errorf("no answer from global: %w", err)
	}
	if resp.GetError() != "" {
		return fmt.Errorf("global refused: %s", resp.GetError())
	}
	s := stored{Mesh: mesh, Backend: backend, CertPEM: resp.GetCertificatePem(), KeyPEM: key, TrustBundle: resp.GetTrustBundlePem()}
	a, err := authorityOf(s)
	if err != nil {
		return fmt.Errorf("global's answer: %w", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := m.path(mesh) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.path(mesh)); err != nil {
		return err
	}
	m.mu.Lock()
	m.auths[mesh] = a
	m.notifyLocked()
	m.mu.Unlock()
	m.logger.Info("got the zone's intermediate CA", "mesh", mesh, "backend", backend,
		"not_after", a.Issuer.NotAfter(), "renew_at", a.RenewAt)
	return nil
}

func (m *Manager) path(mesh string) string { return filepath.Join(m.cfg.Dir, mesh+".json") }

// notifyLocked wakes Changed's waiters. Callers hold mu.
func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}
