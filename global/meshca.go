package global

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// Mesh CAs on global (DESIGN.md §9):
//
//   - A Mesh whose enabled mTLS backend is builtin gets its root when it is
//     written: global generates the key and certificate and stores them as
//     two Secrets of the Mesh, "<mesh>.ca-builtin-cert-<backend>" and
//     "<mesh>.ca-builtin-key-<backend>" (Kuma's names), in the same Raft
//     batch as the Mesh. The key Secret carries api.LabelCAKey: the sync
//     filter never sends it to a zone, and the API never prints a Secret's
//     data. An existing root is kept (created at most once per backend).
//   - A provided backend's certificate and key (a Secret of the Mesh, a
//     file on the global nodes, or inline) are checked when the Mesh is
//     written: a CA, the key matching, currently valid. A key held in a
//     Secret must be labelled api.LabelCAKey (so it never left global).
//   - Switching enabledBackend while mTLS is on is refused (disable mTLS
//     first), as Kuma does; the existing validation refuses removing the
//     enabled backend.
//   - The meshfed.io/ca-key label cannot be added to or removed from an
//     existing Secret (a Secret already sent to zones would stay there);
//     a Secret a Mesh's enabled CA uses cannot be deleted.
//   - Zones send CSRs for their intermediates over the sync stream; any
//     global node signs with the Mesh's root from its replicated state
//     (SignIntermediate), for the zone the stream authenticated.

// builtinSecretNames are the Secrets holding a builtin backend's root.
func builtinSecretNames(mesh, backend string) (cert, key string) {
	return mesh + ".ca-builtin-cert-" + backend, mesh + ".ca-builtin-key-" + backend
}

// Put implements rest.Store: Meshes and Secrets get the CA rules above.
func (a apiStore) Put(ctx context.Context, r *api.Resource, opts rest.WriteOptions) (*api.Resource, bool, error) {
	switch r.Type {
	case api.TypeMesh:
		return a.s.putMesh(ctx, r, opts)
	case api.TypeSecret:
		if err := a.s.checkSecretPut(r); err != nil {
			return nil, false, err
		}
	}
	return a.Node.Put(ctx, r, opts)
}

// putMesh writes a Mesh, creating its builtin root when it needs one.
func (s *Server) putMesh(ctx context.Context, r *api.Resource, opts rest.WriteOptions) (*api.Resource, bool, error) {
	st := s.store.State()
	spec, ok := r.Spec.(*api.MeshSpec)
	if !ok {
		return s.store.Put(ctx, r, opts)
	}
	if old, ok := st.Get(api.Key{Type: api.TypeMesh, Name: r.Name}); ok {
		if err := checkBackendSwitch(old.Spec.(*api.MeshSpec), spec); err != nil {
			return nil, false, err
		}
	}
	backend := spec.MTLSBackend()
	if backend == nil {
		return s.store.Put(ctx, r, opts)
	}
	var ops []store.BatchOp
	switch backend.Type {
	case api.MTLSBuiltin:
		var err error
		if ops, err = s.builtinRootOps(st, r.Name, backend); err != nil {
			return nil, false, err
		}
	case api.MTLSProvided:
		if _, err := loadProvidedCA(st, r.Name, spec, backend, time.Now()); err != nil {
			return nil, false, err
		}
	}
	if len(ops) == 0 {
		return s.store.Put(ctx, r, opts)
	}
	body, err := r.MarshalJSON()
	if err != nil {
		return nil, false, err
	}
	// The Mesh first (its Secrets need it), then its root, in one log
	// entry: zones receive them at the same revision.
	now := time.Now().UTC()
	ops = append([]store.BatchOp{{Put: &store.PutCommand{Resource: body, ExpectRevision: opts.ExpectRevision, Now: now}}}, ops...)
	results, err := s.store.ApplyBatch(ctx, ops)
	if err != nil {
		return nil, false, err
	}
	mesh := results[0]
	if mesh.Err != nil {
		return nil, false, mesh.Err
	}
	for _, res := range results[1:] {
		var conflict *api.ConflictError
		if res.Err != nil && !errors.As(res.Err, &conflict) {
			return nil, false, fmt.Errorf("storing the Mesh's root CA: %w", res.Err)
		}
	}
	s.logger.Info("created a builtin root CA", "mesh", r.Name, "backend", backend.Name)
	return mesh.Resource, mesh.Created, nil
}

// builtinRootOps returns the batch operations that create a builtin
// backend's root, or none when it exists.
func (s *Server) builtinRootOps(st *store.State, mesh string, b *api.MTLSBackend) ([]store.BatchOp, error) {
	certName, keyName := builtinSecretNames(mesh, b.Name)
	_, hasCert := st.Get(api.Key{Type: api.TypeSecret, Mesh: mesh, Name: certName})
	_, hasKey := st.Get(api.Key{Type: api.TypeSecret, Mesh: mesh, Name: keyName})
	if hasCert && hasKey {
		return nil, nil
	}
	opts := ca.RootOptions{Validity: api.DefaultCAExpiration}
	if c := b.Conf; c != nil && c.CACert != nil {
		if c.CACert.RSABits > 0 {
			opts.KeyType, opts.RSABits = ca.KeyRSA, int(c.CACert.RSABits)
		}
		if c.CACert.Expiration != nil {
			opts.Validity = c.CACert.Expiration.Duration
		}
	}
	root, err := ca.NewMeshRoot(mesh, opts)
	if err != nil {
		v := &api.Validator{}
		v.Add(api.Path("mtls").Field("backends"), "backend %q: cannot create the root CA: %v", b.Name, err)
		return nil, v.Err()
	}
	now := time.Now().UTC()
	var ops []store.BatchOp
	for _, sec := range []struct {
		name   string
		data   []byte
		labels map[string]string
	}{
		{certName, root.CertPEM, nil},
		{keyName, root.KeyPEM, map[string]string{api.LabelCAKey: "true"}},
	} {
		r := &api.Resource{Meta: api.Meta{Type: api.TypeSecret, Mesh: mesh, Name: sec.name, Labels: sec.labels},
			Spec: &api.SecretSpec{Data: base64.StdEncoding.EncodeToString(sec.data)}}
		if err := api.Prepare(r); err != nil {
			return nil, err
		}
		body, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		// MustCreate: a root written meanwhile by another request wins.
		ops = append(ops, store.BatchOp{Put: &store.PutCommand{Resource: body, Now: now, MustCreate: true}})
	}
	return ops, nil
}

// checkBackendSwitch refuses changing enabledBackend while mTLS is on.
func checkBackendSwitch(old, next *api.MeshSpec) error {
	o, n := old.MTLSBackend(), next.MTLSBackend()
	if o == nil || n == nil || o.Name == n.Name {
		return nil
	}
	v := &api.Validator{}
	v.Add(api.Path("mtls").Field("enabledBackend"), "cannot switch from %q to %q while mTLS is enabled: disable mTLS first (enabledBackend: \"\"), then enable the other backend", o.Name, n.Name)
	return v.Err()
}

// checkSecretPut refuses adding or removing the CA-key label on an existing
// Secret.
func (s *Server) checkSecretPut(r *api.Resource) error {
	old, ok := s.store.State().Get(r.Key())
	if !ok || old.Labels[api.LabelCAKey] == r.Labels[api.LabelCAKey] {
		return nil
	}
	v := &api.Validator{}
	v.Add(api.Path("labels").Key(api.LabelCAKey), "cannot be added to or removed from an existing Secret (zones may hold a copy of it): delete the Secret and create it again")
	return v.Err()
}

// secretInUse refuses deleting a Secret the enabled CA of its Mesh uses.
func secretInUse(st *store.State, key api.Key) error {
	m, ok := st.Get(api.Key{Type: api.TypeMesh, Name: key.Mesh})
	if !ok {
		return nil
	}
	b := m.Spec.(*api.MeshSpec).MTLSBackend()
	if b == nil {
		return nil
	}
	used := map[string]bool{}
	switch b.Type {
	case api.MTLSBuiltin:
		c, k := builtinSecretNames(key.Mesh, b.Name)
		used[c], used[k] = true, true
	case api.MTLSProvided:
		if b.Conf != nil && b.Conf.Cert != nil {
			used[b.Conf.Cert.Secret] = true
		}
		if b.Conf != nil && b.Conf.Key != nil {
			used[b.Conf.Key.Secret] = true
		}
	}
	if used[key.Name] {
		return &api.ConflictError{Reason: fmt.Sprintf("%s is used by Mesh %q's enabled mTLS backend %q: disable mTLS or switch backends first", key, key.Mesh, b.Name)}
	}
	return nil
}

// loadProvidedCA reads and checks a provided backend's certificate and key.
// Errors name the field.
func loadProvidedCA(st *store.State, mesh string, spec *api.MeshSpec, b *api.MTLSBackend, now time.Time) (ca.KeyPair, error) {
	idx := 0
	for i := range spec.MTLS.Backends {
		if spec.MTLS.Backends[i].Name == b.Name {
			idx = i
		}
	}
	at := api.Path("mtls").Field("backends").Index(idx).Field("conf")
	v := &api.Validator{}
	var kp ca.KeyPair
	if b.Conf == nil || b.Conf.Cert == nil || b.Conf.Key == nil {
		v.Add(at, "a provided backend needs cert and key")
		return kp, v.Err()
	}
	var err error
	if kp.CertPEM, err = readDataSource(st, mesh, b.Conf.Cert, false); err != nil {
		v.Add(at.Field("cert"), "%v", err)
	}
	if kp.KeyPEM, err = readDataSource(st, mesh, b.Conf.Key, true); err != nil {
		v.Add(at.Field("key"), "%v", err)
	}
	if !v.OK() {
		return kp, v.Err()
	}
	if err := ca.CheckProvidedCA(kp.CertPEM, kp.KeyPEM, now); err != nil {
		v.Add(at, "%v", err)
		return kp, v.Err()
	}
	return kp, nil
}

// readDataSource reads a provided CA's certificate or key. A key in a
// Secret must carry the CA-key label.
func readDataSource(st *store.State, mesh string, ds *api.DataSource, key bool) ([]byte, error) {
	switch {
	case ds.Secret != "":
		r, ok := st.Get(api.Key{Type: api.TypeSecret, Mesh: mesh, Name: ds.Secret})
		if !ok {
			return nil, fmt.Errorf("secret %q does not exist in mesh %q", ds.Secret, mesh)
		}
		if key && r.Labels[api.LabelCAKey] != "true" {
			return nil, fmt.Errorf("secret %q holds a CA private key: create it with the label %s: \"true\", so that it never leaves global", ds.Secret, api.LabelCAKey)
		}
		return r.Spec.(*api.SecretSpec).Bytes()
	case ds.File != "":
		b, err := os.ReadFile(ds.File)
		if err != nil {
			return nil, fmt.Errorf("file: %w (it must exist on every global node)", err)
		}
		return b, nil
	case ds.Inline != "":
		return base64.StdEncoding.DecodeString(ds.Inline)
	default:
		return []byte(ds.InlineString), nil
	}
}

// meshRoot returns the key pair the Mesh's enabled backend signs with, and
// the trust bundle zones get.
func meshRoot(st *store.State, mesh string) (*api.MTLSBackend, ca.KeyPair, error) {
	m, ok := st.Get(api.Key{Type: api.TypeMesh, Name: mesh})
	if !ok {
		return nil, ca.KeyPair{}, fmt.Errorf("mesh %q does not exist", mesh)
	}
	spec := m.Spec.(*api.MeshSpec)
	b := spec.MTLSBackend()
	if b == nil {
		return nil, ca.KeyPair{}, fmt.Errorf("mesh %q has mTLS disabled", mesh)
	}
	switch b.Type {
	case api.MTLSBuiltin:
		certName, keyName := builtinSecretNames(mesh, b.Name)
		var kp ca.KeyPair
		for _, x := range []struct {
			name string
			out  *[]byte
		}{{certName, &kp.CertPEM}, {keyName, &kp.KeyPEM}} {
			r, ok := st.Get(api.Key{Type: api.TypeSecret, Mesh: mesh, Name: x.name})
			if !ok {
				return b, kp, fmt.Errorf("mesh %q: the root of backend %q is missing (Secret %q)", mesh, b.Name, x.name)
			}
			data, err := r.Spec.(*api.SecretSpec).Bytes()
			if err != nil {
				return b, kp, err
			}
			*x.out = data
		}
		return b, kp, nil
	default:
		kp, err := loadProvidedCA(st, mesh, spec, b, time.Now())
		return b, kp, err
	}
}

// SignIntermediate implements syncserver.Signer.
func (s *Server) SignIntermediate(_ context.Context, zone string, req *syncpb.CertificateRequest) *syncpb.CertificateResponse {
	fail := func(format string, args ...any) *syncpb.CertificateResponse {
		return &syncpb.CertificateResponse{Error: fmt.Sprintf(format, args...)}
	}
	b, root, err := meshRoot(s.store.State(), req.GetMesh())
	if err != nil {
		return fail("%v", err)
	}
	if b.Name != req.GetBackend() {
		return fail("mesh %q's enabled mTLS backend is %q, not %q", req.GetMesh(), b.Name, req.GetBackend())
	}
	cert, err := ca.SignIntermediate(root, req.GetCsrPem(), ca.IntermediateOptions{Mesh: req.GetMesh(), Zone: zone, Validity: s.cfg.ZoneCAValidity})
	if err != nil {
		return fail("%v", err)
	}
	bundle, err := ca.Bundle(root.CertPEM)
	if err != nil {
		return fail("trust bundle: %v", err)
	}
	return &syncpb.CertificateResponse{CertificatePem: cert, TrustBundlePem: bundle}
}
