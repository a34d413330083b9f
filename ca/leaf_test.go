package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestFullChain: root -> zone intermediate -> leaf verifies with
// crypto/x509 for ECDSA and RSA roots (and an RSA leaf key).
func TestFullChain(t *testing.T) {
	rsaPair, err := rsaRoot()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		root    KeyPair
		mesh    string
		leafKey KeyType
	}{
		"ecdsa root, ecdsa leaf": {mustRoot(t, "payments", RootOptions{}), "payments", KeyECDSA},
		"rsa root, ecdsa leaf":   {rsaPair, "rsa-mesh", KeyECDSA},
		"ecdsa root, rsa leaf":   {mustRoot(t, "payments", RootOptions{}), "payments", KeyRSA},
	} {
		iss := mustIssuer(t, mustIntermediate(t, c.root, c.mesh, "zone-1", 0))
		leaf := mustLeaf(t, iss, LeafOptions{Mesh: c.mesh, Service: "backend", KeyType: c.leafKey})
		id, err := VerifyLeaf(leaf.CertChainPEM, c.root.CertPEM, t0)
		if err != nil {
			t.Errorf("%s: VerifyLeaf: %v", name, err)
			continue
		}
		if id != "spiffe://"+c.mesh+"/backend" || leaf.SPIFFEID != id {
			t.Errorf("%s: SPIFFE ID %q (leaf says %q)", name, id, leaf.SPIFFEID)
		}
		// Straight crypto/x509, both usages, and the chain is 3 long.
		certs, err := parseCerts(leaf.CertChainPEM)
		if err != nil || len(certs) != 2 {
			t.Fatalf("%s: chain of %d certificates: %v", name, len(certs), err)
		}
		pool, _ := CertPool(c.root.CertPEM)
		inter := x509.NewCertPool()
		inter.AddCert(certs[1])
		chains, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: t0,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil || len(chains) != 1 || len(chains[0]) != 3 {
			t.Errorf("%s: x509 Verify: %v (chains %d)", name, err, len(chains))
		}
		// Without the intermediate it does not verify.
		if _, err := VerifyLeaf(firstPEM(leaf.CertChainPEM), c.root.CertPEM, t0); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: leaf without intermediate: %v", name, err)
		}
		// Not after it expired.
		if _, err := VerifyLeaf(leaf.CertChainPEM, c.root.CertPEM, leaf.NotAfter.Add(time.Second)); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: expired leaf: %v", name, err)
		}
	}
}

// TestRootsDoNotCrossVerify: leaves of two Meshes with their own builtin
// roots do not verify against each other's root.
func TestRootsDoNotCrossVerify(t *testing.T) {
	rootA := mustRoot(t, "a", RootOptions{})
	rootB := mustRoot(t, "b", RootOptions{})
	leafA := mustLeaf(t, mustIssuer(t, mustIntermediate(t, rootA, "a", "z", 0)), LeafOptions{Mesh: "a", Service: "web"})
	leafB := mustLeaf(t, mustIssuer(t, mustIntermediate(t, rootB, "b", "z", 0)), LeafOptions{Mesh: "b", Service: "web"})
	for name, c := range map[string]struct {
		chain, roots []byte
		ok           bool
	}{
		"a by a": {leafA.CertChainPEM, rootA.CertPEM, true},
		"b by b": {leafB.CertChainPEM, rootB.CertPEM, true},
		"a by b": {leafA.CertChainPEM, rootB.CertPEM, false},
		"b by a": {leafB.CertChainPEM, rootA.CertPEM, false},
	} {
		_, err := VerifyLeaf(c.chain, c.roots, t0)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: err %v, want ok=%v", name, err, c.ok)
		}
	}
	if err := mtlsHandshake(t, leafA, rootA.CertPEM, leafB, rootB.CertPEM); err == nil {
		t.Error("mTLS handshake between two Meshes with different roots succeeded")
	}
}

// TestCrossZone: leaves from zone-1's and zone-2's intermediates of one Mesh
// root both verify against the root, and talk mTLS to each other.
func TestCrossZone(t *testing.T) {
	root := mustRoot(t, "payments", RootOptions{})
	z1 := mustIssuer(t, mustIntermediate(t, root, "payments", "zone-1", 0))
	z2 := mustIssuer(t, mustIntermediate(t, root, "payments", "zone-2", 0))
	l1 := mustLeaf(t, z1, LeafOptions{Mesh: "payments", Service: "frontend", Tags: map[string]string{"kuma.io/zone": "zone-1"}})
	l2 := mustLeaf(t, z2, LeafOptions{Mesh: "payments", Service: "backend", Tags: map[string]string{"kuma.io/zone": "zone-2"}})
	for _, l := range []Leaf{l1, l2} {
		if _, err := VerifyLeaf(l.CertChainPEM, root.CertPEM, t0); err != nil {
			t.Errorf("%s: %v", l.SPIFFEID, err)
		}
	}
	if err := mtlsHandshake(t, l1, root.CertPEM, l2, root.CertPEM); err != nil {
		t.Errorf("cross-zone mTLS: %v", err)
	}
}

// TestProvidedCASharedByTwoMeshes: two Meshes configured with one provided
// CA trust each other; a third with another CA does not.
func TestProvidedCASharedByTwoMeshes(t *testing.T) {
	shared := selfSigned(t, ecKey(t), func(c *x509.Certificate) { c.KeyUsage = 0 }) // like `openssl req -x509`
	if err := CheckProvidedCA(shared.CertPEM, shared.KeyPEM, t0); err != nil {
		t.Fatal(err)
	}
	other := selfSigned(t, ecKey(t), nil)
	la := mustLeaf(t, mustIssuer(t, mustIntermediate(t, shared, "mesh-a", "zone-1", 0)), LeafOptions{Mesh: "mesh-a", Service: "web"})
	lb := mustLeaf(t, mustIssuer(t, mustIntermediate(t, shared, "mesh-b", "zone-2", 0)), LeafOptions{Mesh: "mesh-b", Service: "api"})
	lc := mustLeaf(t, mustIssuer(t, mustIntermediate(t, other, "mesh-c", "zone-1", 0)), LeafOptions{Mesh: "mesh-c", Service: "web"})
	for _, l := range []Leaf{la, lb} {
		if id, err := VerifyLeaf(l.CertChainPEM, shared.CertPEM, t0); err != nil || id != l.SPIFFEID {
			t.Errorf("%s against the shared CA: %q %v", l.SPIFFEID, id, err)
		}
	}
	if err := mtlsHandshake(t, la, shared.CertPEM, lb, shared.CertPEM); err != nil {
		t.Errorf("mesh-a <-> mesh-b over a shared provided CA: %v", err)
	}
	if _, err := VerifyLeaf(lc.CertChainPEM, shared.CertPEM, t0); !errors.Is(err, ErrUntrusted) {
		t.Errorf("mesh-c (other CA) against the shared CA: %v", err)
	}
	// A bundle of both CAs trusts all three.
	bundle, err := Bundle(shared.CertPEM, other.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Leaf{la, lb, lc} {
		if _, err := VerifyLeaf(l.CertChainPEM, bundle, t0); err != nil {
			t.Errorf("%s against the bundle: %v", l.SPIFFEID, err)
		}
	}
}

// mtlsHandshake runs a real mutual-TLS handshake over a pipe at time t0: a
// is the client trusting aRoots, b the server trusting bRoots and requiring
// a client certificate. The client checks the server's chain itself
// (spiffeVerifier): mesh leaves carry SPIFFE IDs, not host names.
func mtlsHandshake(t *testing.T, a Leaf, aRoots []byte, b Leaf, bRoots []byte) error {
	t.Helper()
	pairA, err := tls.X509KeyPair(a.CertChainPEM, a.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pairB, err := tls.X509KeyPair(b.CertChainPEM, b.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	poolA, _ := CertPool(aRoots)
	poolB, _ := CertPool(bRoots)
	clock := func() time.Time { return t0 }
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	_ = cConn.SetDeadline(time.Now().Add(10 * time.Second))
	_ = sConn.SetDeadline(time.Now().Add(10 * time.Second))
	client := tls.Client(cConn, &tls.Config{Certificates: []tls.Certificate{pairA}, RootCAs: poolA, Time: clock,
		InsecureSkipVerify: true, VerifyPeerCertificate: spiffeVerifier(poolA, x509.ExtKeyUsageServerAuth)})
	server := tls.Server(sConn, &tls.Config{Certificates: []tls.Certificate{pairB}, ClientCAs: poolB, Time: clock,
		ClientAuth: tls.RequireAndVerifyClientCert})
	var wg sync.WaitGroup
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		serr = server.Handshake()
		if serr != nil {
			cConn.Close()
		}
	}()
	cerr := client.Handshake()
	if cerr != nil {
		sConn.Close()
	}
	wg.Wait()
	return errors.Join(cerr, serr)
}

// spiffeVerifier verifies the server's chain as a mesh peer does: against
// roots, by chain and not by host name (SPIFFE has no DNS name).
func spiffeVerifier(roots *x509.CertPool, usage x509.ExtKeyUsage) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		var chain []byte
		for _, r := range raw {
			chain = append(chain, pemBlock("CERTIFICATE", r)...)
		}
		inter := x509.NewCertPool()
		certs, err := parseCerts(chain)
		if err != nil {
			return err
		}
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
}

func TestLeafContents(t *testing.T) {
	root := mustRoot(t, "payments", RootOptions{})
	iss := mustIssuer(t, mustIntermediate(t, root, "payments", "zone-1", 0))
	leaf := mustLeaf(t, iss, LeafOptions{Mesh: "payments", Service: "backend_kuma-demo_svc_8080", Tags: map[string]string{
		"kuma.io/service":  "backend_kuma-demo_svc_8080",
		"version":          "v1",
		"kuma.io/protocol": "http",
		"port":             "http/8080",
		"team":             "a b*",
		"kuma.io/zone":     "zone-1",
	}})
	c := mustCert(t, leaf.CertChainPEM)
	var uris []string
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	want := []string{
		"spiffe://payments/backend_kuma-demo_svc_8080",
		"kuma://kuma.io/protocol/http",
		"kuma://kuma.io/zone/zone-1",
		"kuma://port/http%2F8080",
		"kuma://team/a%20b%2A",
		"kuma://version/v1",
	}
	if !slices.Equal(uris, want) {
		t.Errorf("URI SANs\n got %q\nwant %q", uris, want)
	}
	if len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0 || c.Subject.String() != "" {
		t.Errorf("unexpected names: subject %q DNS %v IP %v", c.Subject, c.DNSNames, c.IPAddresses)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature ||
		!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("IsCA %v KeyUsage %v ExtKeyUsage %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	if !c.NotBefore.Equal(t0.Add(-ClockSkew)) || !c.NotAfter.Equal(t0.Add(DefaultLeafValidity)) ||
		!leaf.NotBefore.Equal(c.NotBefore) || !leaf.NotAfter.Equal(c.NotAfter) {
		t.Errorf("validity %s..%s (Leaf says %s..%s)", c.NotBefore, c.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	// RSA leaves add KeyEncipherment.
	rl := mustLeaf(t, iss, LeafOptions{Mesh: "payments", Service: "web", KeyType: KeyRSA})
	if rc := mustCert(t, rl.CertChainPEM); rc.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("RSA leaf KeyUsage %v", rc.KeyUsage)
	}
	// A service with a '/' stays one escaped segment and parses back.
	sl := mustLeaf(t, iss, LeafOptions{Mesh: "payments", Service: "web/v2"})
	if sl.SPIFFEID != "spiffe://payments/web%2Fv2" {
		t.Errorf("escaped SPIFFE ID %q", sl.SPIFFEID)
	}
	if id, err := VerifyLeaf(sl.CertChainPEM, root.CertPEM, t0); err != nil || id != sl.SPIFFEID {
		t.Errorf("VerifyLeaf(web/v2) %q %v", id, err)
	} else if m, s, err := ParseSPIFFEID(id); err != nil || m != "payments" || s != "web/v2" {
		t.Errorf("ParseSPIFFEID(%q) = %q %q %v", id, m, s, err)
	}
}

func TestValidityCapping(t *testing.T) {
	root := mustRoot(t, "m", RootOptions{Validity: 48 * time.Hour})
	rootCert := mustCert(t, root.CertPEM)
	inter := mustIntermediate(t, root, "m", "z", 0) // asks 90 days, gets 48h
	interCert := mustCert(t, inter.CertPEM)
	if !interCert.NotAfter.Equal(rootCert.NotAfter) {
		t.Errorf("intermediate NotAfter %s, root %s", interCert.NotAfter, rootCert.NotAfter)
	}
	iss := mustIssuer(t, inter)
	now := t0.Add(40 * time.Hour) // 8h left on the intermediate
	leaf := mustLeaf(t, iss, LeafOptions{Mesh: "m", Service: "web", Now: now})
	if !leaf.NotAfter.Equal(interCert.NotAfter) || !leaf.NotBefore.Equal(now.Add(-ClockSkew)) {
		t.Errorf("leaf %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, now.Add(-ClockSkew), interCert.NotAfter)
	}
	// Backdating never precedes the issuer.
	early := mustLeaf(t, iss, LeafOptions{Mesh: "m", Service: "web", Now: t0.Add(-30 * time.Second)})
	if !early.NotBefore.Equal(interCert.NotBefore) {
		t.Errorf("leaf NotBefore %s before issuer's %s", early.NotBefore, interCert.NotBefore)
	}
	for name, c := range map[string]struct {
		o        LeafOptions
		sentinel error
		msg      string
	}{
		"issuer expired":       {LeafOptions{Mesh: "m", Service: "web", Now: t0.Add(49 * time.Hour)}, ErrExpired, "issuer: certificate has expired"},
		"issuer not yet valid": {LeafOptions{Mesh: "m", Service: "web", Now: t0.Add(-time.Hour)}, ErrNotYetValid, "issuer: certificate is not valid yet"},
		"wrong mesh":           {LeafOptions{Mesh: "other", Service: "web", Now: t0}, ErrWrongMesh, `issuer is mesh "m"'s, leaf asks for mesh "other"`},
		"empty service":        {LeafOptions{Mesh: "m", Now: t0}, ErrInvalidName, "service must not be empty"},
		"service tag differs":  {LeafOptions{Mesh: "m", Service: "web", Tags: map[string]string{"kuma.io/service": "api"}, Now: t0}, ErrInvalidName, "differs from Service"},
		"bad tag key":          {LeafOptions{Mesh: "m", Service: "web", Tags: map[string]string{"a:b": "x"}, Now: t0}, ErrInvalidName, `tag key "a:b"`},
		"empty tag value":      {LeafOptions{Mesh: "m", Service: "web", Tags: map[string]string{"v": ""}, Now: t0}, ErrInvalidName, "empty value"},
		"negative validity":    {LeafOptions{Mesh: "m", Service: "web", Validity: -time.Second, Now: t0}, ErrInvalidOptions, "positive"},
		"ecdsa with RSABits":   {LeafOptions{Mesh: "m", Service: "web", RSABits: 2048, Now: t0}, ErrInvalidOptions, "ECDSA"},
	} {
		_, err := iss.IssueLeaf(c.o)
		wantErr(t, name, err, c.sentinel, c.msg)
	}
	// The one-shot function and a bad issuer.
	if _, err := IssueLeaf(inter, LeafOptions{Mesh: "m", Service: "web", Now: t0}); err != nil {
		t.Errorf("IssueLeaf: %v", err)
	}
	if _, err := IssueLeaf(KeyPair{CertPEM: inter.CertPEM, KeyPEM: root.KeyPEM}, LeafOptions{Mesh: "m", Service: "web", Now: t0}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("IssueLeaf with the wrong key: %v", err)
	}
}

// TestIssuerConcurrent shares one Issuer between goroutines (run with -race).
func TestIssuerConcurrent(t *testing.T) {
	root := mustRoot(t, "m", RootOptions{})
	iss := mustIssuer(t, mustIntermediate(t, root, "m", "z", 0))
	const workers, each = 8, 10
	var (
		mu     sync.Mutex
		chains [][]byte
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				l, err := iss.IssueLeaf(LeafOptions{Mesh: "m", Service: "svc", Tags: map[string]string{"worker": string(rune('a' + w))}, Now: t0})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				chains = append(chains, l.CertChainPEM)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	serials := map[string]bool{}
	for _, ch := range chains {
		if _, err := VerifyLeaf(ch, root.CertPEM, t0); err != nil {
			t.Fatal(err)
		}
		serials[mustCert(t, ch).SerialNumber.String()] = true
	}
	if len(serials) != workers*each {
		t.Errorf("%d distinct serials for %d leaves", len(serials), workers*each)
	}
}

func TestVerifyLeafRefuses(t *testing.T) {
	root := mustRoot(t, "m", RootOptions{})
	inter := mustIntermediate(t, root, "m", "z", 0)
	leaf := mustLeaf(t, mustIssuer(t, inter), LeafOptions{Mesh: "m", Service: "web"})
	// A TLS server certificate from the sync CA API: no SPIFFE ID, server
	// only. Parse and IssueServer use the wall clock.
	nowRoot := mustRoot(t, "m", RootOptions{Now: time.Now()})
	a, err := Parse(nowRoot)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := a.IssueServer([]string{"x.local"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		chain, roots []byte
		sentinel     error
		msg          string
	}{
		"chain not PEM":   {[]byte("x"), root.CertPEM, ErrNotPEM, "chain:"},
		"roots not PEM":   {leaf.CertChainPEM, nil, ErrNotPEM, "roots:"},
		"CA as leaf":      {inter.CertPEM, root.CertPEM, ErrUntrusted, "is a CA"},
		"server-only EKU": {srv.CertPEM, nowRoot.CertPEM, ErrUntrusted, "usage"},
	} {
		_, err := VerifyLeaf(c.chain, c.roots, time.Now())
		if name != "server-only EKU" {
			_, err = VerifyLeaf(c.chain, c.roots, t0)
		}
		wantErr(t, name, err, c.sentinel, c.msg)
	}
}
