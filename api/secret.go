package api

import "encoding/base64"

// MaxSecretSize is the largest decoded Secret (64 KiB).
const MaxSecretSize = 64 << 10

// SecretSpec is the body of a Secret (Kuma's system.v1alpha1.Secret,
// inline): opaque, mesh-scoped data such as CA material or provided
// certificates. The API never prints it: reads return Redacted().
type SecretSpec struct {
	// Data (required) is the secret, in standard base64, at most 64 KiB
	// once decoded.
	Data string `json:"data,omitempty"`
}

// Default implements Spec: a Secret has no defaults.
func (s *SecretSpec) Default() {}

// Validate implements Spec.
func (s *SecretSpec) Validate(v *Validator, at Path) {
	p := at.Field("data")
	if !v.Required(p, s.Data) {
		return
	}
	b, err := s.Bytes()
	switch {
	case err != nil:
		v.Add(p, "must be standard base64: %s", err)
	case len(b) > MaxSecretSize:
		v.Add(p, "must decode to at most %d bytes, not %d", MaxSecretSize, len(b))
	}
}

// Redacted implements Redactor: the same Secret without its data.
func (s *SecretSpec) Redacted() Spec { return &SecretSpec{} }

// Bytes returns the decoded data.
func (s *SecretSpec) Bytes() ([]byte, error) { return base64.StdEncoding.DecodeString(s.Data) }
