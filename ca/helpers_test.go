package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed "now" of the mTLS tests.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// rsaRoot is generated once: RSA key generation is slow under -race.
var rsaRoot = sync.OnceValues(func() (KeyPair, error) {
	return NewMeshRoot("rsa-mesh", RootOptions{KeyType: KeyRSA, RSABits: 2048, Now: t0})
})

func mustRoot(t testing.TB, mesh string, o RootOptions) KeyPair {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = t0
	}
	p, err := NewMeshRoot(mesh, o)
	if err != nil {
		t.Fatalf("NewMeshRoot(%s): %v", mesh, err)
	}
	return p
}

// mustIntermediate runs the zone + global halves of the CSR exchange.
func mustIntermediate(t testing.TB, root KeyPair, mesh, zone string, validity time.Duration) KeyPair {
	t.Helper()
	csr, key, err := NewIntermediateRequest(mesh, zone, KeyOptions{})
	if err != nil {
		t.Fatalf("NewIntermediateRequest: %v", err)
	}
	cert, err := SignIntermediate(root, csr, IntermediateOptions{Mesh: mesh, Zone: zone, Validity: validity, Now: t0})
	if err != nil {
		t.Fatalf("SignIntermediate(%s/%s): %v", mesh, zone, err)
	}
	return KeyPair{CertPEM: cert, KeyPEM: key}
}

func mustIssuer(t testing.TB, p KeyPair) *Issuer {
	t.Helper()
	iss, err := NewIssuer(p)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return iss
}

func mustLeaf(t testing.TB, iss *Issuer, o LeafOptions) Leaf {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = t0
	}
	l, err := iss.IssueLeaf(o)
	if err != nil {
		t.Fatalf("IssueLeaf: %v", err)
	}
	return l
}

func mustCert(t testing.TB, pemBytes []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCertificate(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned makes a custom self-signed certificate (a "provided" CA as a
// user might bring), shaped by edit, signed by key.
func selfSigned(t testing.TB, key crypto.Signer, edit func(*x509.Certificate)) KeyPair {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "Acme corporate CA"},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// wantErr checks err against a sentinel (nil: no error) and a message part.
func wantErr(t testing.TB, name string, err, sentinel error, msg string) {
	t.Helper()
	switch {
	case sentinel == nil && err != nil:
		t.Errorf("%s: unexpected error %v", name, err)
	case sentinel != nil && !errors.Is(err, sentinel):
		t.Errorf("%s: err %v, want %v", name, err, sentinel)
	case sentinel != nil && !strings.Contains(err.Error(), msg):
		t.Errorf("%s: err %q does not contain %q", name, err, msg)
	}
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// firstPEM returns the first PEM block of b, re-encoded.
func firstPEM(b []byte) []byte {
	block, _ := pem.Decode(b)
	return pem.EncodeToMemory(block)
}
