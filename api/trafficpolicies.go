package api

// Selector picks dataplanes by their tags: an inbound (or gateway) matches
// when it carries every tag of Match, a value of "*" matching any value. It
// mirrors Kuma's mesh.v1alpha1.Selector, used by TrafficTrace, TrafficLog
// and MeshGateway.
type Selector struct {
	// Match is required and non-empty.
	Match map[string]string `json:"match,omitempty"`
}

// Matches reports whether tags satisfy every entry of s.Match.
func (s Selector) Matches(tags map[string]string) bool {
	if len(s.Match) == 0 {
		return false
	}
	for k, want := range s.Match {
		got, ok := tags[k]
		if !ok || (want != "*" && got != want) {
			return false
		}
	}
	return true
}

// validateSelectors reports an empty list at p, and every empty or invalid
// match of its entries.
func validateSelectors(v *Validator, p Path, sels []Selector) {
	if len(sels) == 0 {
		v.Add(p, "must not be empty")
	}
	for i, s := range sels {
		mp := p.Index(i).Field("match")
		if len(s.Match) == 0 {
			v.Add(mp, "must not be empty")
		}
		ValidateTags(v, mp, s.Match)
	}
}

// TrafficTraceSpec is the body of a TrafficTrace (Kuma's
// mesh.v1alpha1.TrafficTrace, inline): it turns on tracing, through one of
// the Mesh's tracing backends, for the dataplanes its selectors match.
type TrafficTraceSpec struct {
	// Selectors (required, non-empty) pick the traced dataplanes.
	Selectors []Selector `json:"selectors,omitempty"`
	// Conf chooses the backend; absent means the Mesh's default.
	Conf *TrafficTraceConf `json:"conf,omitempty"`
}

// TrafficTraceConf mirrors Kuma's TrafficTrace.Conf.
type TrafficTraceConf struct {
	// Backend names one of the Mesh's tracing.backends; empty means the
	// Mesh's tracing.defaultBackend.
	Backend string `json:"backend,omitempty"`
}

// Default implements Spec: a TrafficTrace has no defaults (the backend is
// resolved against the Mesh when traces are configured).
func (s *TrafficTraceSpec) Default() {}

// Validate implements Spec.
func (s *TrafficTraceSpec) Validate(v *Validator, at Path) {
	validateSelectors(v, at.Field("selectors"), s.Selectors)
}

// BackendName returns the configured backend name, "" for the Mesh's
// default.
func (s *TrafficTraceSpec) BackendName() string {
	if s.Conf == nil {
		return ""
	}
	return s.Conf.Backend
}

// TrafficLogSpec is the body of a TrafficLog (Kuma's
// mesh.v1alpha1.TrafficLog, inline): it logs the traffic from the sources
// to the destinations through one of the Mesh's logging backends.
type TrafficLogSpec struct {
	// Sources (required, non-empty) pick the client dataplanes.
	Sources []Selector `json:"sources,omitempty"`
	// Destinations (required, non-empty) pick the destination services.
	Destinations []Selector `json:"destinations,omitempty"`
	// Conf chooses the backend; absent means the Mesh's default.
	Conf *TrafficLogConf `json:"conf,omitempty"`
}

// TrafficLogConf mirrors Kuma's TrafficLog.Conf.
type TrafficLogConf struct {
	// Backend names one of the Mesh's logging.backends; empty means the
	// Mesh's logging.defaultBackend.
	Backend string `json:"backend,omitempty"`
}

// Default implements Spec: a TrafficLog has no defaults.
func (s *TrafficLogSpec) Default() {}

// Validate implements Spec.
func (s *TrafficLogSpec) Validate(v *Validator, at Path) {
	validateSelectors(v, at.Field("sources"), s.Sources)
	validateSelectors(v, at.Field("destinations"), s.Destinations)
}

// BackendName returns the configured backend name, "" for the Mesh's
// default.
func (s *TrafficLogSpec) BackendName() string {
	if s.Conf == nil {
		return ""
	}
	return s.Conf.Backend
}
