package ca

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// Bundle builds a trust bundle: the certificates of every input, in order,
// each once (duplicates by DER are dropped), re-encoded as PEM.
//
// Data flow: global publishes each Mesh's bundle to zones — the current
// root, plus the previous one while a root rotates, and the CAs of other
// Meshes a Mesh must trust — and zones hand it to dataplanes as their
// validation context. Empty or whitespace-only inputs are skipped (an absent
// previous root); any other input must be only PEM certificates that parse
// (ErrNotPEM, ErrNotCertificate). A bundle with no certificate at all is an
// error (ErrNotPEM).
func Bundle(pems ...[]byte) ([]byte, error) {
	var out bytes.Buffer
	seen := map[string]bool{}
	for i, p := range pems {
		if len(bytes.TrimSpace(p)) == 0 {
			continue
		}
		certs, err := parseCerts(p)
		if err != nil {
			return nil, fmt.Errorf("bundle input %d: %w", i, err)
		}
		for _, c := range certs {
			if seen[string(c.Raw)] {
				continue
			}
			seen[string(c.Raw)] = true
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("bundle: %w", ErrNotPEM)
	}
	return out.Bytes(), nil
}
