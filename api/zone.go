package api

// ZoneSpec is the body of a Zone (Kuma's system.v1alpha1.Zone, inline): a
// registered zone control plane.
type ZoneSpec struct {
	// Enabled lets the zone connect and receive resources; default true.
	Enabled *bool `json:"enabled,omitempty"`
	// Network names the zone's network: zones on the same network reach
	// each other's endpoints directly, others go through the ZoneIngress.
	// A DNS label; empty means the zone's own name (a network of its own).
	// Meshfed's addition to Kuma's Zone.
	Network string `json:"network,omitempty"`
}

// Default implements Spec: a zone is enabled.
func (s *ZoneSpec) Default() {
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
}

// Validate implements Spec.
func (s *ZoneSpec) Validate(v *Validator, at Path) {
	if s.Network != "" && !IsDNSLabel(s.Network) {
		v.Add(at.Field("network"), "must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
	}
}

// IsEnabled reports whether the zone is enabled (the default).
func (s *ZoneSpec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// NetworkOr returns the zone's network, or zoneName when none is set.
func (s *ZoneSpec) NetworkOr(zoneName string) string {
	if s.Network != "" {
		return s.Network
	}
	return zoneName
}
