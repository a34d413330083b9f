package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"
)

func TestNewMeshRoot(t *testing.T) {
	rsaPair, err := rsaRoot()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		pair     KeyPair
		mesh     string
		validity time.Duration
		rsaBits  int
	}{
		"ecdsa default":     {pair: mustRoot(t, "payments", RootOptions{}), mesh: "payments", validity: DefaultRootValidity},
		"ecdsa 1y":          {pair: mustRoot(t, "default", RootOptions{Validity: 365 * 24 * time.Hour}), mesh: "default", validity: 365 * 24 * time.Hour},
		"rsa 2048 (shared)": {pair: rsaPair, mesh: "rsa-mesh", validity: DefaultRootValidity, rsaBits: 2048},
	} {
		cert := mustCert(t, c.pair.CertPEM)
		if got, want := cert.Subject.CommonName, "meshfed "+c.mesh+" root"; got != want {
			t.Errorf("%s: CN %q, want %q", name, got, want)
		}
		if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://"+c.mesh {
			t.Errorf("%s: URIs %v, want [spiffe://%s]", name, cert.URIs, c.mesh)
		}
		if !cert.IsCA || !cert.BasicConstraintsValid || cert.MaxPathLen != 1 || cert.MaxPathLenZero {
			t.Errorf("%s: IsCA %v MaxPathLen %d zero %v, want CA with pathlen 1", name, cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
		}
		if cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s: KeyUsage %v", name, cert.KeyUsage)
		}
		if !cert.NotBefore.Equal(t0.Add(-ClockSkew)) || !cert.NotAfter.Equal(t0.Add(c.validity)) {
			t.Errorf("%s: validity %s..%s, want %s..%s", name, cert.NotBefore, cert.NotAfter, t0.Add(-ClockSkew), t0.Add(c.validity))
		}
		switch k := cert.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if c.rsaBits != 0 || k.Curve.Params().Name != "P-256" {
				t.Errorf("%s: ECDSA %s key", name, k.Curve.Params().Name)
			}
		case *rsa.PublicKey:
			if k.N.BitLen() != c.rsaBits {
				t.Errorf("%s: RSA %d bits, want %d", name, k.N.BitLen(), c.rsaBits)
			}
		}
		if err := CheckProvidedCA(c.pair.CertPEM, c.pair.KeyPEM, t0); err != nil {
			t.Errorf("%s: a builtin root fails the provided-CA checks: %v", name, err)
		}
	}
}

func TestNewMeshRootRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		mesh     string
		o        RootOptions
		sentinel error
		msg      string
	}{
		"rsa 1024":          {"m", RootOptions{KeyType: KeyRSA, RSABits: 1024}, ErrInvalidOptions, "RSA key size 1024"},
		"rsa 16384":         {"m", RootOptions{KeyType: KeyRSA, RSABits: 16384}, ErrInvalidOptions, "between 2048 and 8192"},
		"bits for ecdsa":    {"m", RootOptions{RSABits: 2048}, ErrInvalidOptions, "set for an ECDSA key"},
		"unknown key type":  {"m", RootOptions{KeyType: 7}, ErrInvalidOptions, "KeyType(7)"},
		"negative validity": {"m", RootOptions{Validity: -time.Hour}, ErrInvalidOptions, "must be positive"},
		"empty mesh":        {"", RootOptions{}, ErrInvalidName, `mesh ""`},
		"uppercase mesh":    {"Pay", RootOptions{}, ErrInvalidName, `mesh "Pay"`},
		"slash in mesh":     {"a/b", RootOptions{}, ErrInvalidName, `mesh "a/b"`},
	} {
		_, err := NewMeshRoot(c.mesh, c.o)
		wantErr(t, name, err, c.sentinel, c.msg)
	}
}

func TestCheckProvidedCA(t *testing.T) {
	ec := ecKey(t)
	good := selfSigned(t, ec, nil)
	other := selfSigned(t, ecKey(t), nil)
	root := mustRoot(t, "m", RootOptions{})
	leaf := mustLeaf(t, mustIssuer(t, mustIntermediate(t, root, "m", "z", 0)), LeafOptions{Mesh: "m", Service: "web"})

	// The same key in the other formats users bring.
	sec1, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	rsa2048 := rsaKey(t, 2048)
	rsaCA := selfSigned(t, rsa2048, nil)
	pkcs1 := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048.(*rsa.PrivateKey)))
	ecParams := append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), pemBlock("EC PRIVATE KEY", sec1)...)

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024 := selfSigned(t, rsaKey(t, 1024), nil)

	cases := map[string]struct {
		cert, key []byte
		now       time.Time
		sentinel  error
		msg       string
	}{
		"ok":                        {cert: good.CertPEM, key: good.KeyPEM},
		"ok PKCS#1 RSA key":         {cert: rsaCA.CertPEM, key: pkcs1},
		"ok SEC 1 key after params": {cert: good.CertPEM, key: ecParams},
		"ok no keyUsage extension":  {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.KeyUsage = 0 }).CertPEM, key: good.KeyPEM},
		"ok pathlen 1":              {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.MaxPathLen = 1 }).CertPEM, key: good.KeyPEM},
		"ok with chain after":       {cert: append(append([]byte{}, good.CertPEM...), other.CertPEM...), key: good.KeyPEM},

		"cert not PEM":           {cert: []byte("hello"), key: good.KeyPEM, sentinel: ErrNotPEM, msg: "certificate: no PEM data"},
		"cert empty":             {cert: nil, key: good.KeyPEM, sentinel: ErrNotPEM, msg: "certificate: "},
		"cert is a key block":    {cert: good.KeyPEM, key: good.KeyPEM, sentinel: ErrNotCertificate, msg: `PEM "PRIVATE KEY" block`},
		"cert DER garbage":       {cert: pemBlock("CERTIFICATE", []byte("junk")), key: good.KeyPEM, sentinel: ErrNotCertificate, msg: "certificate: not an X.509"},
		"cert trailing garbage":  {cert: append(append([]byte{}, good.CertPEM...), "junk"...), key: good.KeyPEM, sentinel: ErrNotPEM, msg: "trailing data"},
		"not a CA (leaf)":        {cert: firstPEM(leaf.CertChainPEM), key: leaf.KeyPEM, sentinel: ErrNotCA, msg: "not a CA"},
		"not a CA (flag false)":  {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }).CertPEM, key: good.KeyPEM, sentinel: ErrNotCA, msg: "basicConstraints"},
		"no CertSign":            {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign }).CertPEM, key: good.KeyPEM, sentinel: ErrNoCertSign, msg: "keyCertSign"},
		"pathlen 0":              {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.MaxPathLenZero = true }).CertPEM, key: good.KeyPEM, sentinel: ErrPathLen, msg: "pathlen is 0"},
		"EKU server only":        {cert: selfSigned(t, ec, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }).CertPEM, key: good.KeyPEM, sentinel: ErrExtKeyUsage, msg: "extended key usage"},
		"key of another CA":      {cert: good.CertPEM, key: other.KeyPEM, sentinel: ErrKeyMismatch, msg: "key: private key does not match"},
		"key of another type":    {cert: good.CertPEM, key: pkcs1, sentinel: ErrKeyMismatch, msg: "does not match"},
		"key not PEM":            {cert: good.CertPEM, key: []byte("secret"), sentinel: ErrNotPEM, msg: "key: no PEM data"},
		"key is a certificate":   {cert: good.CertPEM, key: good.CertPEM, sentinel: ErrNotPrivateKey, msg: "key: not a private key: no PRIVATE KEY block"},
		"key DER garbage":        {cert: good.CertPEM, key: pemBlock("PRIVATE KEY", []byte("junk")), sentinel: ErrNotPrivateKey, msg: "key: not a private key"},
		"key encrypted":          {cert: good.CertPEM, key: pemBlock("ENCRYPTED PRIVATE KEY", []byte("x")), sentinel: ErrUnsupportedKey, msg: "encrypted"},
		"key unknown block type": {cert: good.CertPEM, key: pemBlock("OPENSSH PRIVATE KEY", []byte("x")), sentinel: ErrUnsupportedKey, msg: "OPENSSH"},
		"ed25519 CA":             {cert: selfSigned(t, edKey, nil).CertPEM, key: selfSigned(t, edKey, nil).KeyPEM, sentinel: ErrUnsupportedKey, msg: "certificate: unsupported key type: Ed25519"},
		"ed25519 key":            {cert: good.CertPEM, key: selfSigned(t, edKey, nil).KeyPEM, sentinel: ErrUnsupportedKey, msg: "key: unsupported key type: Ed25519"},
		"RSA 1024 CA":            {cert: rsa1024.CertPEM, key: rsa1024.KeyPEM, sentinel: ErrUnsupportedKey, msg: "RSA key of 1024 bits"},
		"expired":                {cert: good.CertPEM, key: good.KeyPEM, now: t0.Add(366 * 24 * time.Hour), sentinel: ErrExpired, msg: "certificate: certificate has expired (NotAfter 2032-"},
		"not yet valid":          {cert: good.CertPEM, key: good.KeyPEM, now: t0.Add(-2 * time.Hour), sentinel: ErrNotYetValid, msg: "not valid yet (NotBefore 2031-03-04T04:06:07Z"},
	}
	for name, c := range cases {
		now := c.now
		if now.IsZero() {
			now = t0
		}
		wantErr(t, name, CheckProvidedCA(c.cert, c.key, now), c.sentinel, c.msg)
	}
}

// TestCheckProvidedCAKeyFileWithCert: a key file may hold the certificate
// before the key (a combined PEM).
func TestCheckProvidedCAKeyFileWithCert(t *testing.T) {
	good := selfSigned(t, ecKey(t), nil)
	if err := CheckProvidedCA(good.CertPEM, append(append([]byte{}, good.CertPEM...), good.KeyPEM...), t0); err != nil {
		t.Fatalf("key file with the certificate first: %v", err)
	}
}
