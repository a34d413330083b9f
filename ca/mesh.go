package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// DefaultRootValidity is a builtin Mesh root's lifetime when RootOptions
// leaves it zero (the API's default caCert.expiration, 10 years).
const DefaultRootValidity = 10 * 365 * 24 * time.Hour

// RootOptions shapes a builtin Mesh root (api.BuiltinCACert maps onto it:
// RSAbits 0 -> KeyECDSA, otherwise KeyRSA with RSABits; expiration ->
// Validity).
type RootOptions struct {
	// KeyType is KeyECDSA (P-256, default) or KeyRSA.
	KeyType KeyType
	// RSABits is the RSA key size for KeyRSA: 0 means 2048; 2048 to 8192
	// accepted (the API's range). Must be 0 for KeyECDSA.
	RSABits int
	// Validity is the root's lifetime from Now; 0 means DefaultRootValidity.
	Validity time.Duration
	// Now is the issuing time; zero means time.Now().
	Now time.Time
}

// NewMeshRoot generates the builtin CA of a Mesh with mTLS enabled.
//
// Data flow: global calls it once per builtin mTLS backend, stores the
// KeyPair in its replicated store (the key never leaves the global
// cluster), publishes only the certificate to zones (trust bundle), and
// signs zone intermediates with it (SignIntermediate).
//
// The root is self-signed, CN "meshfed <mesh> root", O "Meshfed", URI SAN
// spiffe://<mesh>; IsCA with MaxPathLen 1 (root -> zone intermediate ->
// leaf); KeyUsage CertSign|CRLSign; NotBefore Now-ClockSkew, NotAfter
// Now+Validity.
func NewMeshRoot(mesh string, o RootOptions) (KeyPair, error) {
	if err := checkMesh(mesh); err != nil {
		return KeyPair{}, err
	}
	if o.Validity < 0 {
		return KeyPair{}, fmt.Errorf("%w: root validity %s must be positive", ErrInvalidOptions, o.Validity)
	}
	if o.Validity == 0 {
		o.Validity = DefaultRootValidity
	}
	key, err := genKey(o.KeyType, o.RSABits)
	if err != nil {
		return KeyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	uri, err := parseURI(MeshID(mesh))
	if err != nil {
		return KeyPair{}, err
	}
	now := nowOr(o.Now)
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "meshfed " + mesh + " root", Organization: []string{"Meshfed"}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		SubjectKeyId:          keyID(key.Public()),
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("create mesh %s root: %w", mesh, err)
	}
	return encode(der, key)
}

// signingCA is a parsed CA key pair that passed checkCA.
type signingCA struct {
	cert  *x509.Certificate   // the CA itself: first certificate of CertPEM
	chain []*x509.Certificate // every certificate of CertPEM, cert first
	key   crypto.Signer
}

var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// loadCA parses and checks a CA key pair, everything but validity in time:
// certificate PEM, CA:TRUE, keyCertSign, extended key usage, key types, and
// the key matching the certificate. needPathLen additionally requires room
// for one CA below (a Mesh root or provided CA signs zone intermediates).
// Errors say "certificate: ..." or "key: ..." and wrap a sentinel.
func loadCA(p KeyPair, needPathLen bool) (*signingCA, error) {
	chain, err := parseCerts(p.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	c := chain[0]
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("certificate: %w", ErrNotCA)
	}
	// A missing keyUsage extension means unrestricted (RFC 5280 4.2.1.3;
	// OpenSSL's default CA profile omits it); a present one must allow
	// certificate signing.
	hasKU := slices.ContainsFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidKeyUsage) })
	if hasKU && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certificate: %w", ErrNoCertSign)
	}
	if needPathLen && c.MaxPathLenZero {
		return nil, fmt.Errorf("certificate: %w (pathlen is 0)", ErrPathLen)
	}
	if len(c.ExtKeyUsage) > 0 && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) &&
		(!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
		return nil, fmt.Errorf("certificate: %w", ErrExtKeyUsage)
	}
	if err := checkPublicKey(c.PublicKey); err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	key, err := parsePrivateKey(p.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if !keyMatches(c, key) {
		return nil, fmt.Errorf("key: %w", ErrKeyMismatch)
	}
	return &signingCA{cert: c, chain: chain, key: key}, nil
}

// CheckProvidedCA checks the certificate and key a user supplies for a
// provided mTLS backend, before global accepts the Mesh (and again before it
// signs with them). The first certificate in certPEM is the CA; further
// certificates (its own chain to an offline root) are allowed and only
// parsed. It requires: PEM certificate; basicConstraints CA:TRUE; keyUsage,
// if present, with keyCertSign; a path length that allows one zone
// intermediate below; no extended key usage excluding TLS client/server; an
// unencrypted ECDSA (P-256/384/521) or RSA (2048-8192) key matching the
// certificate; valid at now.
//
// Each error wraps one of ErrNotPEM, ErrNotCertificate, ErrNotCA,
// ErrNoCertSign, ErrPathLen, ErrExtKeyUsage, ErrUnsupportedKey,
// ErrNotPrivateKey, ErrKeyMismatch, ErrExpired or ErrNotYetValid, and starts
// with "certificate: " or "key: " so the caller only prefixes its field
// path.
//
// Two Meshes configured with the same provided certificate and key trust
// each other: their zone intermediates chain to the same CA.
func CheckProvidedCA(certPEM, keyPEM []byte, now time.Time) error {
	c, err := loadCA(KeyPair{CertPEM: certPEM, KeyPEM: keyPEM}, true)
	if err != nil {
		return err
	}
	if err := checkValidity(c.cert, nowOr(now)); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}
