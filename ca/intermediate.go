package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"
)

// DefaultIntermediateValidity is a zone intermediate's lifetime when
// IntermediateOptions leaves it zero. Zones renew at HalfLife, so a zone
// keeps issuing through a global outage of up to half of it.
const DefaultIntermediateValidity = 90 * 24 * time.Hour

// NewIntermediateRequest makes a zone's intermediate-CA key and a CSR for
// it.
//
// Data flow: the zone calls it when a Mesh it serves has mTLS enabled (and
// again at the intermediate's HalfLife), keeps keyPEM locally (it never
// leaves the zone), and sends csrPEM to global over the sync stream; global
// answers with SignIntermediate's certificate. KeyOptions{RSABits: 0} is
// ECDSA P-256.
//
// The CSR carries CN "meshfed <mesh> zone <zone>" and the single URI SAN
// ZoneID(mesh, zone) = spiffe://<mesh>/zone/<zone>.
func NewIntermediateRequest(mesh, zone string, o KeyOptions) (csrPEM, keyPEM []byte, err error) {
	if err := checkMesh(mesh); err != nil {
		return nil, nil, err
	}
	if err := checkZone(zone); err != nil {
		return nil, nil, err
	}
	key, err := genKey(o.keyType(), o.RSABits)
	if err != nil {
		return nil, nil, err
	}
	uri, err := parseURI(ZoneID(mesh, zone))
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: intermediateSubject(mesh, zone),
		URIs:    []*url.URL{uri},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR for mesh %s zone %s: %w", mesh, zone, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM, nil
}

func intermediateSubject(mesh, zone string) pkix.Name {
	return pkix.Name{CommonName: "meshfed " + mesh + " zone " + zone, Organization: []string{"Meshfed"}}
}

// IntermediateOptions says which zone global expects a CSR from.
type IntermediateOptions struct {
	// Mesh and Zone (required) are what the sync stream authenticated: the
	// zone on the stream, the Mesh the request is for. The CSR must ask for
	// exactly ZoneID(Mesh, Zone).
	Mesh, Zone string
	// Validity of the intermediate from Now; 0 means
	// DefaultIntermediateValidity. Capped at the root's NotAfter.
	Validity time.Duration
	// Now is the issuing time; zero means time.Now().
	Now time.Time
}

// SignIntermediate is global's answer to a zone's CSR: it signs a zone
// intermediate CA with the Mesh's CA (builtin root from NewMeshRoot, or a
// provided CA that passed CheckProvidedCA).
//
// It checks the root (loadCA, valid at Now), that csrPEM is a PEM CSR whose
// signature verifies, whose key is ECDSA or RSA 2048-8192, and whose only
// name is the URI SAN spiffe://<Mesh>/zone/<Zone>; a CSR for another mesh
// fails with ErrWrongMesh, another zone with ErrWrongZone. Nothing else of
// the CSR is copied: the subject is set here.
//
// The certificate: CN "meshfed <mesh> zone <zone>", URI SAN ZoneID, IsCA
// with MaxPathLen 0 (it signs leaves only), KeyUsage CertSign, NotBefore
// Now-ClockSkew (not before the root's), NotAfter Now+Validity capped at the
// root's NotAfter. The returned PEM is the intermediate only; the zone
// pairs it with its key to build an Issuer.
func SignIntermediate(root KeyPair, csrPEM []byte, o IntermediateOptions) ([]byte, error) {
	if err := checkMesh(o.Mesh); err != nil {
		return nil, err
	}
	if err := checkZone(o.Zone); err != nil {
		return nil, err
	}
	if o.Validity < 0 {
		return nil, fmt.Errorf("%w: intermediate validity %s must be positive", ErrInvalidOptions, o.Validity)
	}
	if o.Validity == 0 {
		o.Validity = DefaultIntermediateValidity
	}
	now := nowOr(o.Now)
	ca, err := loadCA(root, true)
	if err != nil {
		return nil, fmt.Errorf("mesh CA: %w", err)
	}
	if err := checkValidity(ca.cert, now); err != nil {
		return nil, fmt.Errorf("mesh CA: certificate: %w", err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if err := checkCSRIdentity(csr, o.Mesh, o.Zone); err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-ClockSkew), now.Add(o.Validity)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               intermediateSubject(o.Mesh, o.Zone),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(csr.PublicKey),
		URIs:                  csr.URIs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign intermediate for mesh %s zone %s: %w", o.Mesh, o.Zone, err)
	}
	return encodeCert(der), nil
}

// parseCSR decodes and verifies a PEM CSR.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCSR, ErrNotPEM)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: found a PEM %q block", ErrNotCSR, block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSRSignature, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR key: %w", err)
	}
	return csr, nil
}

// checkCSRIdentity requires the CSR's names to be exactly ZoneID(mesh, zone).
func checkCSRIdentity(csr *x509.CertificateRequest, mesh, zone string) error {
	if len(csr.URIs) != 1 || len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("%w (has %d URIs, %d DNS names, %d IPs, %d emails)", ErrCSRIdentity,
			len(csr.URIs), len(csr.DNSNames), len(csr.IPAddresses), len(csr.EmailAddresses))
	}
	got := csr.URIs[0].String()
	m, z, ok := parseZoneID(got)
	switch {
	case !ok:
		return fmt.Errorf("%w: URI %q is not spiffe://<mesh>/zone/<zone>", ErrCSRIdentity, got)
	case m != mesh:
		return fmt.Errorf("%w: CSR asks for mesh %q, expected %q", ErrWrongMesh, m, mesh)
	case z != zone:
		return fmt.Errorf("%w: CSR asks for zone %q, expected %q", ErrWrongZone, z, zone)
	}
	return nil
}
