package ca

import "errors"

// Sentinel errors of the per-Mesh mTLS machinery. Every error returned by
// CheckProvidedCA, SignIntermediate, NewIssuer, IssueLeaf, VerifyLeaf,
// ParseSPIFFEID and Bundle wraps one of these (with %w), so callers branch
// with errors.Is and show the message, prefixed with their own field path
// ("mtls.backends[0].conf: certificate: certificate has expired ...").
var (
	// ErrNotPEM: the input holds no PEM block at all (or trailing bytes
	// that are not PEM).
	ErrNotPEM = errors.New("no PEM data found")
	// ErrNotCertificate: PEM found, but not an X.509 certificate (another
	// block type, or DER that does not parse).
	ErrNotCertificate = errors.New("not an X.509 certificate")
	// ErrNotCA: the certificate lacks basicConstraints CA:TRUE.
	ErrNotCA = errors.New("certificate is not a CA (basicConstraints CA:TRUE missing)")
	// ErrNoCertSign: the certificate has a keyUsage extension without
	// keyCertSign.
	ErrNoCertSign = errors.New("certificate's key usage does not include certificate signing (keyCertSign)")
	// ErrPathLen: the CA's path length constraint forbids the zone
	// intermediate that Meshfed puts below it (root -> zone -> leaf needs
	// pathlen >= 1 or none).
	ErrPathLen = errors.New("certificate's path length constraint does not allow a zone intermediate CA below it")
	// ErrExtKeyUsage: the CA restricts extended key usage to something that
	// excludes TLS server and client authentication.
	ErrExtKeyUsage = errors.New("certificate's extended key usage excludes TLS server or client authentication")
	// ErrExpired: NotAfter is in the past.
	ErrExpired = errors.New("certificate has expired")
	// ErrNotYetValid: NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate is not valid yet")
	// ErrNotPrivateKey: the key PEM does not hold a parseable private key.
	ErrNotPrivateKey = errors.New("not a private key")
	// ErrUnsupportedKey: a key type or size Meshfed does not use (supported:
	// ECDSA P-256/P-384/P-521 and RSA 2048 to 8192 bits, unencrypted).
	ErrUnsupportedKey = errors.New("unsupported key type")
	// ErrKeyMismatch: the private key is not the certificate's key.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrNotCSR: the input is not a PEM certificate signing request.
	ErrNotCSR = errors.New("not a certificate signing request")
	// ErrCSRSignature: the CSR's self-signature does not verify.
	ErrCSRSignature = errors.New("certificate signing request signature is invalid")
	// ErrCSRIdentity: the CSR does not carry exactly one zone SPIFFE URI and
	// nothing else.
	ErrCSRIdentity = errors.New("certificate signing request must name exactly one zone identity (URI SAN spiffe://<mesh>/zone/<zone>) and no other names")
	// ErrWrongMesh: a CSR or issuer belongs to another Mesh.
	ErrWrongMesh = errors.New("wrong mesh")
	// ErrWrongZone: a CSR asks for another zone.
	ErrWrongZone = errors.New("wrong zone")
	// ErrInvalidName: a mesh, zone, service or tag that cannot appear in a
	// certificate identity.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidOptions: options out of range (validity, key size, ...).
	ErrInvalidOptions = errors.New("invalid options")
	// ErrNotSPIFFE: a string or certificate without a valid Meshfed
	// service SPIFFE ID.
	ErrNotSPIFFE = errors.New("not a Meshfed SPIFFE ID")
	// ErrUntrusted: a certificate chain that does not verify against the
	// given roots.
	ErrUntrusted = errors.New("certificate chain does not verify")
)
