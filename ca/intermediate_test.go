package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"
)

func TestNewIntermediateRequest(t *testing.T) {
	csrPEM, keyPEM, err := NewIntermediateRequest("payments", "zone-1", KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://payments/zone/zone-1" {
		t.Errorf("CSR URIs %v", csr.URIs)
	}
	if csr.Subject.CommonName != "meshfed payments zone zone-1" {
		t.Errorf("CSR CN %q", csr.Subject.CommonName)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Error("key does not match the CSR")
	}
	for name, c := range map[string]struct {
		mesh, zone string
		o          KeyOptions
		sentinel   error
		msg        string
	}{
		"bad mesh":  {"", "z", KeyOptions{}, ErrInvalidName, "mesh"},
		"bad zone":  {"m", "a/b", KeyOptions{}, ErrInvalidName, `zone "a/b"`},
		"small RSA": {"m", "z", KeyOptions{RSABits: 1024}, ErrInvalidOptions, "1024"},
	} {
		_, _, err := NewIntermediateRequest(c.mesh, c.zone, c.o)
		wantErr(t, name, err, c.sentinel, c.msg)
	}
}

func TestSignIntermediate(t *testing.T) {
	root := mustRoot(t, "payments", RootOptions{})
	rootCert := mustCert(t, root.CertPEM)
	csr, key, err := NewIntermediateRequest("payments", "zone-1", KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := SignIntermediate(root, csr, IntermediateOptions{Mesh: "payments", Zone: "zone-1", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	c := mustCert(t, certPEM)
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://payments/zone/zone-1" {
		t.Errorf("URIs %v", c.URIs)
	}
	if c.Subject.CommonName != "meshfed payments zone zone-1" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage != x509.KeyUsageCertSign {
		t.Errorf("IsCA %v MaxPathLen %d zero %v KeyUsage %v, want CA pathlen 0 certSign", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if !c.NotBefore.Equal(t0.Add(-ClockSkew)) || !c.NotAfter.Equal(t0.Add(DefaultIntermediateValidity)) {
		t.Errorf("validity %s..%s", c.NotBefore, c.NotAfter)
	}
	if err := c.CheckSignatureFrom(rootCert); err != nil {
		t.Errorf("not signed by the root: %v", err)
	}
	iss := mustIssuer(t, KeyPair{CertPEM: certPEM, KeyPEM: key})
	if iss.Mesh() != "payments" || iss.Zone() != "zone-1" {
		t.Errorf("issuer identity %s/%s", iss.Mesh(), iss.Zone())
	}

	// Capping: asked for 20 years under a 10-year root.
	long, err := SignIntermediate(root, csr, IntermediateOptions{Mesh: "payments", Zone: "zone-1", Validity: 20 * 365 * 24 * time.Hour, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustCert(t, long).NotAfter; !got.Equal(rootCert.NotAfter) {
		t.Errorf("intermediate NotAfter %s, want capped at root's %s", got, rootCert.NotAfter)
	}
}

func TestSignIntermediateRefuses(t *testing.T) {
	root := mustRoot(t, "payments", RootOptions{})
	csr, _, err := NewIntermediateRequest("payments", "zone-1", KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherMesh, _, _ := NewIntermediateRequest("billing", "zone-1", KeyOptions{})
	otherZone, _, _ := NewIntermediateRequest("payments", "zone-2", KeyOptions{})

	// A CSR whose signature is broken: flip a bit in the signature.
	block, _ := pem.Decode(csr)
	der := append([]byte{}, block.Bytes...)
	der[len(der)-5] ^= 0x01
	badSig := pemBlock("CERTIFICATE REQUEST", der)

	mkCSR := func(tmpl *x509.CertificateRequest) []byte {
		d, err := x509.CreateCertificateRequest(rand.Reader, tmpl, ecKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("CERTIFICATE REQUEST", d)
	}
	zoneURI, _ := url.Parse("spiffe://payments/zone/zone-1")
	svcURI, _ := url.Parse("spiffe://payments/web")
	extraDNS := mkCSR(&x509.CertificateRequest{URIs: []*url.URL{zoneURI}, DNSNames: []string{"evil.example"}})
	noURI := mkCSR(&x509.CertificateRequest{})
	twoURIs := mkCSR(&x509.CertificateRequest{URIs: []*url.URL{zoneURI, zoneURI}})
	serviceURI := mkCSR(&x509.CertificateRequest{URIs: []*url.URL{svcURI}})
	smallRSA, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{zoneURI}}, rsaKey(t, 1024))
	if err != nil {
		t.Fatal(err)
	}

	leafRoot := mustIntermediate(t, root, "payments", "zone-1", 0) // pathlen 0: cannot sign CAs
	expired := mustRoot(t, "payments", RootOptions{Validity: time.Hour, Now: t0.Add(-2 * time.Hour)})
	opts := IntermediateOptions{Mesh: "payments", Zone: "zone-1", Now: t0}

	cases := map[string]struct {
		root     KeyPair
		csr      []byte
		o        IntermediateOptions
		sentinel error
		msg      string
	}{
		"wrong mesh":         {root, otherMesh, opts, ErrWrongMesh, `CSR asks for mesh "billing", expected "payments"`},
		"wrong zone":         {root, otherZone, opts, ErrWrongZone, `CSR asks for zone "zone-2", expected "zone-1"`},
		"bad signature":      {root, badSig, opts, ErrCSRSignature, "signature is invalid"},
		"not PEM":            {root, []byte("csr please"), opts, ErrNotCSR, "no PEM data"},
		"a certificate":      {root, root.CertPEM, opts, ErrNotCSR, `found a PEM "CERTIFICATE" block`},
		"DER garbage":        {root, pemBlock("CERTIFICATE REQUEST", []byte("junk")), opts, ErrNotCSR, "not a certificate signing request"},
		"extra DNS name":     {root, extraDNS, opts, ErrCSRIdentity, "1 DNS names"},
		"no URI":             {root, noURI, opts, ErrCSRIdentity, "has 0 URIs"},
		"two URIs":           {root, twoURIs, opts, ErrCSRIdentity, "has 2 URIs"},
		"service URI":        {root, serviceURI, opts, ErrCSRIdentity, `"spiffe://payments/web" is not spiffe://<mesh>/zone/<zone>`},
		"RSA 1024 CSR":       {root, pemBlock("CERTIFICATE REQUEST", smallRSA), opts, ErrUnsupportedKey, "CSR key: unsupported key type: RSA key of 1024 bits"},
		"root pathlen 0":     {leafRoot, csr, opts, ErrPathLen, "mesh CA: certificate:"},
		"root expired":       {expired, csr, opts, ErrExpired, "mesh CA: certificate: certificate has expired"},
		"root key mismatch":  {KeyPair{CertPEM: root.CertPEM, KeyPEM: expired.KeyPEM}, csr, opts, ErrKeyMismatch, "mesh CA: key:"},
		"bad options mesh":   {root, csr, IntermediateOptions{Mesh: "", Zone: "zone-1"}, ErrInvalidName, "mesh"},
		"bad options zone":   {root, csr, IntermediateOptions{Mesh: "payments", Zone: "Zone 1"}, ErrInvalidName, "zone"},
		"negative validity":  {root, csr, IntermediateOptions{Mesh: "payments", Zone: "zone-1", Validity: -1}, ErrInvalidOptions, "positive"},
		"ok (control group)": {root, csr, opts, nil, ""},
	}
	for name, c := range cases {
		_, err := SignIntermediate(c.root, c.csr, c.o)
		wantErr(t, name, err, c.sentinel, c.msg)
	}
}
