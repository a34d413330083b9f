package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// DefaultLeafValidity is a dataplane certificate's lifetime when
// LeafOptions leaves it zero (the API's default dpCert.rotation.expiration).
const DefaultLeafValidity = 24 * time.Hour

// Issuer is a zone intermediate (or any CA key pair) parsed once, ready to
// issue dataplane certificates.
//
// Data flow: the zone builds one Issuer per Mesh from the certificate
// global signed (SignIntermediate) and the key it kept
// (NewIntermediateRequest), issues every dataplane leaf of that Mesh from it,
// and replaces it when the intermediate is renewed. An Issuer is immutable
// and safe for concurrent use.
type Issuer struct {
	ca       *signingCA
	chainPEM []byte // the issuer's certificates, re-encoded, appended to each leaf
	mesh     string // from a ZoneID URI SAN, or "" when the issuer has none
	zone     string
}

// NewIssuer parses and checks an issuing CA key pair: KeyPair.CertPEM is the
// intermediate certificate, optionally followed by its own chain (every
// certificate is appended to issued leaves); KeyPair.KeyPEM its key. The
// checks are CheckProvidedCA's except validity in time, which IssueLeaf
// checks at its Now. If the certificate carries a ZoneID URI SAN, IssueLeaf
// refuses other Meshes.
func NewIssuer(p KeyPair) (*Issuer, error) {
	ca, err := loadCA(p, false)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	var chain bytes.Buffer
	for _, c := range ca.chain {
		chain.Write(encodeCert(c.Raw))
	}
	iss := &Issuer{ca: ca, chainPEM: chain.Bytes()}
	for _, u := range ca.cert.URIs {
		if m, z, ok := parseZoneID(u.String()); ok {
			iss.mesh, iss.zone = m, z
		}
	}
	return iss, nil
}

// Mesh and Zone are the issuer's ZoneID identity; both "" if it has none.
func (i *Issuer) Mesh() string { return i.mesh }

// Zone: see Mesh.
func (i *Issuer) Zone() string { return i.zone }

// NotBefore and NotAfter are the issuer certificate's validity; leaves never
// outlive NotAfter, and the zone renews the intermediate at
// HalfLife(NotBefore, NotAfter).
func (i *Issuer) NotBefore() time.Time { return i.ca.cert.NotBefore }

// NotAfter: see NotBefore.
func (i *Issuer) NotAfter() time.Time { return i.ca.cert.NotAfter }

// LeafOptions describes one dataplane certificate.
type LeafOptions struct {
	// Mesh (required) must be the issuer's Mesh when the issuer has a
	// ZoneID.
	Mesh string
	// Service (required) is the dataplane's kuma.io/service value; it
	// becomes the SPIFFE ID spiffe://<Mesh>/<Service>.
	Service string
	// Tags are the dataplane's other tags; each becomes a kuma://<key>/<value>
	// URI SAN (sorted by key). A kuma.io/service entry is skipped (it must
	// equal Service).
	Tags map[string]string
	// Validity from Now; 0 means DefaultLeafValidity. Capped at the
	// issuer's NotAfter.
	Validity time.Duration
	// Now is the issuing time; zero means time.Now().
	Now time.Time
	// KeyType of the leaf key: KeyECDSA (P-256, default) or KeyRSA with
	// RSABits (0 means 2048).
	KeyType KeyType
	RSABits int
}

// Leaf is an issued dataplane certificate, ready for SDS or files.
type Leaf struct {
	// CertChainPEM is the leaf followed by the issuer's certificates.
	CertChainPEM []byte
	// KeyPEM is the leaf's PKCS#8 private key.
	KeyPEM []byte
	// SPIFFEID is spiffe://<mesh>/<service>.
	SPIFFEID string
	// NotBefore and NotAfter are the leaf's validity; renew at
	// RenewAt(NotBefore, NotAfter, DefaultRenewFraction, DefaultRenewJitter, rnd).
	NotBefore, NotAfter time.Time
}

// IssueLeaf issues one dataplane certificate.
//
// The certificate: empty subject (so the SAN extension is critical), URI
// SANs SPIFFEID(Mesh, Service) then TagURI per other tag sorted by key;
// ExtKeyUsage ServerAuth+ClientAuth; KeyUsage DigitalSignature, plus
// KeyEncipherment for RSA keys; NotBefore Now-ClockSkew (not before the
// issuer's); NotAfter Now+Validity capped at the issuer's NotAfter. It fails
// when the issuer is not valid at Now (ErrExpired, ErrNotYetValid), the
// Mesh is not the issuer's (ErrWrongMesh), or a name is invalid
// (ErrInvalidName).
func (i *Issuer) IssueLeaf(o LeafOptions) (Leaf, error) {
	if i.mesh != "" && o.Mesh != i.mesh {
		return Leaf{}, fmt.Errorf("%w: issuer is mesh %q's, leaf asks for mesh %q", ErrWrongMesh, i.mesh, o.Mesh)
	}
	uris, err := leafURIs(o.Mesh, o.Service, o.Tags)
	if err != nil {
		return Leaf{}, err
	}
	if o.Validity < 0 {
		return Leaf{}, fmt.Errorf("%w: leaf validity %s must be positive", ErrInvalidOptions, o.Validity)
	}
	if o.Validity == 0 {
		o.Validity = DefaultLeafValidity
	}
	now := nowOr(o.Now)
	if err := checkValidity(i.ca.cert, now); err != nil {
		return Leaf{}, fmt.Errorf("issuer: %w", err)
	}
	key, err := genKey(o.KeyType, o.RSABits)
	if err != nil {
		return Leaf{}, err
	}
	sn, err := serial()
	if err != nil {
		return Leaf{}, err
	}
	notBefore, notAfter := now.Add(-ClockSkew), now.Add(o.Validity)
	if notBefore.Before(i.ca.cert.NotBefore) {
		notBefore = i.ca.cert.NotBefore
	}
	if notAfter.After(i.ca.cert.NotAfter) {
		notAfter = i.ca.cert.NotAfter
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     ku,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca.cert, key.Public(), i.ca.key)
	if err != nil {
		return Leaf{}, fmt.Errorf("issue leaf for %s: %w", uris[0], err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Leaf{}, err
	}
	leafPEM := encodeCert(der)
	chain := make([]byte, 0, len(leafPEM)+len(i.chainPEM))
	chain = append(append(chain, leafPEM...), i.chainPEM...)
	// The certificate's NotBefore/NotAfter are tmpl's truncated to seconds.
	return Leaf{
		CertChainPEM: chain,
		KeyPEM:       keyPEM,
		SPIFFEID:     uris[0].String(),
		NotBefore:    notBefore.Truncate(time.Second).UTC(),
		NotAfter:     notAfter.Truncate(time.Second).UTC(),
	}, nil
}

// IssueLeaf parses issuer and issues one leaf: a convenience for one-off
// issuance; a zone issuing many leaves keeps an Issuer (NewIssuer).
func IssueLeaf(issuer KeyPair, o LeafOptions) (Leaf, error) {
	iss, err := NewIssuer(issuer)
	if err != nil {
		return Leaf{}, err
	}
	return iss.IssueLeaf(o)
}

// VerifyLeaf checks a dataplane certificate chain the way a peer does and
// returns its SPIFFE ID: chainPEM is the leaf followed by intermediates
// (Leaf.CertChainPEM); rootsPEM the trust bundle (one or more CA
// certificates, see Bundle). The chain must verify at now for both TLS
// server and client authentication, the leaf must not be a CA, and it must
// carry exactly one spiffe:// URI SAN, of the form SPIFFEID produces.
// Errors wrap ErrUntrusted, ErrNotSPIFFE, or a PEM-parsing sentinel.
func VerifyLeaf(chainPEM, rootsPEM []byte, now time.Time) (string, error) {
	chain, err := parseCerts(chainPEM)
	if err != nil {
		return "", fmt.Errorf("chain: %w", err)
	}
	roots, err := parseCerts(rootsPEM)
	if err != nil {
		return "", fmt.Errorf("roots: %w", err)
	}
	leaf := chain[0]
	if leaf.IsCA {
		return "", fmt.Errorf("%w: the first certificate is a CA, not a leaf", ErrUntrusted)
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   nowOr(now),
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	// x509 accepts a chain valid for any one of KeyUsages; require each.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts.KeyUsages = []x509.ExtKeyUsage{usage}
		if _, err := leaf.Verify(opts); err != nil {
			return "", fmt.Errorf("%w: %w", ErrUntrusted, err)
		}
	}
	var ids []string
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			ids = append(ids, u.String())
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: leaf has %d spiffe:// URI SANs (%s), want 1", ErrNotSPIFFE, len(ids), strings.Join(ids, ", "))
	}
	if _, _, err := ParseSPIFFEID(ids[0]); err != nil {
		return "", err
	}
	return ids[0], nil
}
