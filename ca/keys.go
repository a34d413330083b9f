package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// KeyType is the algorithm of a generated key.
type KeyType int

const (
	// KeyECDSA is ECDSA on P-256, the default.
	KeyECDSA KeyType = iota
	// KeyRSA is RSA with RSABits bits (default 2048).
	KeyRSA
)

func (k KeyType) String() string {
	switch k {
	case KeyECDSA:
		return "ECDSA"
	case KeyRSA:
		return "RSA"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// Key sizes and lifetimes of the per-Mesh mTLS machinery.
const (
	// DefaultRSABits is the RSA size when KeyRSA is chosen without RSABits.
	DefaultRSABits = 2048
	// MinRSABits and MaxRSABits bound generated and accepted RSA keys; they
	// match the Mesh API's validation of caCert.RSAbits (2048 to 8192).
	MinRSABits = 2048
	MaxRSABits = 8192
	// ClockSkew is how far NotBefore of every issued certificate is
	// backdated, so a peer whose clock is a little behind accepts it.
	ClockSkew = time.Minute
)

// genKey makes a key of type kt. For KeyRSA, bits 0 means DefaultRSABits;
// for KeyECDSA, bits must be 0.
func genKey(kt KeyType, bits int) (crypto.Signer, error) {
	switch kt {
	case KeyECDSA:
		if bits != 0 {
			return nil, fmt.Errorf("%w: RSABits %d set for an ECDSA key (choose KeyRSA)", ErrInvalidOptions, bits)
		}
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		if bits == 0 {
			bits = DefaultRSABits
		}
		if bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("%w: RSA key size %d: must be between %d and %d", ErrInvalidOptions, bits, MinRSABits, MaxRSABits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	}
	return nil, fmt.Errorf("%w: unknown key type %v", ErrInvalidOptions, kt)
}

// keyType maps the existing KeyOptions (RSABits 0 = ECDSA) to a KeyType.
func (o KeyOptions) keyType() KeyType {
	if o.RSABits != 0 {
		return KeyRSA
	}
	return KeyECDSA
}

// checkPublicKey accepts the public keys Meshfed works with.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s (want P-256, P-384 or P-521)", ErrUnsupportedKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (want %d to %d)", ErrUnsupportedKey, n, MinRSABits, MaxRSABits)
		}
		return nil
	case ed25519.PublicKey:
		return fmt.Errorf("%w: Ed25519 (want ECDSA or RSA)", ErrUnsupportedKey)
	}
	return fmt.Errorf("%w: %T (want ECDSA or RSA)", ErrUnsupportedKey, pub)
}

// parseCerts decodes every CERTIFICATE block of pemBytes, in order. It
// fails on no PEM at all, on other block types, on DER that does not parse
// and on trailing bytes that are not PEM.
func parseCerts(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: found a PEM %q block", ErrNotCertificate, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotCertificate, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNotPEM
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the last certificate", ErrNotPEM)
	}
	return certs, nil
}

// parsePrivateKey decodes the first private-key block of pemBytes: PKCS#8
// ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"),
// and checks its type with checkPublicKey.
func parsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	rest := pemBytes
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted private keys are not supported", ErrUnsupportedKey)
		default:
			if strings.HasSuffix(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("%w: PEM %q block", ErrUnsupportedKey, block.Type)
			}
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotPrivateKey, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T cannot sign", ErrUnsupportedKey, key)
		}
		if err := checkPublicKey(signer.Public()); err != nil {
			return nil, err
		}
		return signer, nil
	}
	if sawPEM {
		return nil, fmt.Errorf("%w: no PRIVATE KEY block", ErrNotPrivateKey)
	}
	return nil, ErrNotPEM
}

// encodeKey PEM-encodes a private key as PKCS#8.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// checkValidity reports a certificate that is not valid at now.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w (NotAfter %s, now %s)", ErrExpired, c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w (NotBefore %s, now %s)", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
