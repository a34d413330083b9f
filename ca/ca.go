// Package ca makes and checks certificates with the standard library only.
// It imports nothing else from the repository.
//
// Where it sits in the data flow:
//
//   - Sync TLS: global creates its sync CA (NewRoot), keeps it in the
//     replicated store and issues serving certificates from it (Parse,
//     Authority.IssueServer); zones trust it through CertPool.
//   - Per-Mesh mTLS (DESIGN.md §9): global creates and stores each builtin
//     Mesh root (NewMeshRoot) or checks a provided one (CheckProvidedCA);
//     the root key never leaves global. Each zone makes its own
//     intermediate key and CSR (NewIntermediateRequest) and sends the CSR
//     over the sync stream; global signs it (SignIntermediate). The zone
//     builds an Issuer (NewIssuer) and issues short-lived dataplane
//     certificates from it (Issuer.IssueLeaf) carrying SPIFFE IDs
//     (SPIFFEID, ParseSPIFFEID) and tag URIs (TagURI). Trust bundles
//     (Bundle) carry the roots; VerifyLeaf checks a chain as a peer would.
//   - Rotation: zones renew leaves at RenewAt (80% of life, jittered) and
//     intermediates at HalfLife.
//
// Errors of the mTLS part wrap sentinel errors (ErrExpired, ErrWrongMesh,
// ...; see errors.go) so callers can branch with errors.Is.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyPair is a certificate and its private key, PEM-encoded.
type KeyPair struct {
	CertPEM []byte `json:"cert"`
	KeyPEM  []byte `json:"key"`
}

// KeyOptions chooses the key algorithm: ECDSA P-256 unless RSABits is set.
type KeyOptions struct {
	RSABits int
}

func newKey(o KeyOptions) (crypto.Signer, error) {
	if o.RSABits == 0 {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if o.RSABits < 2048 || o.RSABits > 8192 {
		return nil, fmt.Errorf("RSA key size %d: must be between 2048 and 8192", o.RSABits)
	}
	return rsa.GenerateKey(rand.Reader, o.RSABits)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encode(der []byte, key crypto.Signer) (KeyPair, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func keyID(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return sum[:20]
}

// NewRoot creates a self-signed CA certificate valid from a minute ago for
// validity.
func NewRoot(commonName string, validity time.Duration, o KeyOptions) (KeyPair, error) {
	if validity <= 0 {
		return KeyPair{}, errors.New("CA validity must be positive")
	}
	key, err := newKey(o)
	if err != nil {
		return KeyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Meshfed"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(key.Public()),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("create CA certificate: %w", err)
	}
	return encode(der, key)
}

// Authority is a parsed CA that can issue.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	pair KeyPair
}

// Parse checks a CA key pair: the certificate is a CA, currently valid, and
// the key matches it.
func Parse(p KeyPair) (*Authority, error) {
	cert, err := ParseCertificate(p.CertPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, errors.New("certificate is not a CA (basicConstraints CA:TRUE missing)")
	}
	now := time.Now()
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate expired on %s", cert.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("CA certificate is not valid before %s", cert.NotBefore.Format(time.RFC3339))
	}
	tlsPair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key does not match its certificate: %w", err)
	}
	signer, ok := tlsPair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	return &Authority{Cert: cert, Key: signer, pair: p}, nil
}

// ParseCertificate decodes the first PEM certificate.
func ParseCertificate(pemBytes []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return cert, nil
		}
	}
}

// IssueServer issues a TLS server certificate for hosts (DNS names or IPs),
// valid for validity (capped at the CA's own expiry).
func (a *Authority) IssueServer(hosts []string, validity time.Duration) (KeyPair, error) {
	if len(hosts) == 0 {
		return KeyPair{}, errors.New("a server certificate needs at least one host")
	}
	key, err := newKey(KeyOptions{})
	if err != nil {
		return KeyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   sn,
		Subject:        pkix.Name{CommonName: hosts[0], Organization: []string{"Meshfed"}},
		NotBefore:      now.Add(-time.Minute),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: a.Cert.SubjectKeyId,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return encode(der, key)
}

// CertPool returns a pool holding the CA certificates in pemBytes.
func CertPool(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}
