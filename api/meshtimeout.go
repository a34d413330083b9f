package api

// MeshTimeoutSpec is the spec of a MeshTimeout (Kuma's meshtimeout
// v1alpha1): connection and HTTP timeouts for the traffic to (outbound)
// and from (inbound) the dataplanes its targetRef selects.
type MeshTimeoutSpec struct {
	// TargetRef selects the dataplanes; default {kind: Mesh}. Allowed
	// kinds: Mesh, MeshSubset, MeshService, MeshServiceSubset,
	// MeshGateway.
	TargetRef *TargetRef `json:"targetRef,omitempty"`
	// To sets timeouts on outbound traffic; targetRef kinds Mesh or
	// MeshService.
	To []MeshTimeoutItem `json:"to,omitempty"`
	// From sets timeouts on inbound traffic; targetRef kind Mesh.
	From []MeshTimeoutItem `json:"from,omitempty"`
}

// MeshTimeoutItem is one to or from entry of a MeshTimeout.
type MeshTimeoutItem struct {
	TargetRef TargetRef       `json:"targetRef"`
	Default   MeshTimeoutConf `json:"default"`
}

// MeshTimeoutConf mirrors Kuma's MeshTimeout Conf: every field optional,
// at least one set.
type MeshTimeoutConf struct {
	// ConnectionTimeout bounds establishing a connection.
	ConnectionTimeout *Duration `json:"connectionTimeout,omitempty"`
	// IdleTimeout closes connections without traffic; 0 disables it.
	IdleTimeout *Duration `json:"idleTimeout,omitempty"`
	// HTTP holds the HTTP-specific timeouts.
	HTTP *MeshTimeoutHTTP `json:"http,omitempty"`
}

// MeshTimeoutHTTP mirrors Kuma's MeshTimeout Http: every field optional.
type MeshTimeoutHTTP struct {
	RequestTimeout        *Duration `json:"requestTimeout,omitempty"`
	StreamIdleTimeout     *Duration `json:"streamIdleTimeout,omitempty"`
	MaxStreamDuration     *Duration `json:"maxStreamDuration,omitempty"`
	MaxConnectionDuration *Duration `json:"maxConnectionDuration,omitempty"`
	RequestHeadersTimeout *Duration `json:"requestHeadersTimeout,omitempty"`
}

// Default implements Spec: the top-level targetRef defaults to the Mesh.
func (s *MeshTimeoutSpec) Default() {
	if s.TargetRef == nil {
		s.TargetRef = MeshTargetRef()
	}
}

// Validate implements Spec.
func (s *MeshTimeoutSpec) Validate(v *Validator, at Path) {
	if s.TargetRef != nil {
		ValidateTargetRef(v, at.Field("targetRef"), *s.TargetRef,
			TargetMesh, TargetMeshSubset, TargetMeshService, TargetMeshServiceSubset, TargetMeshGateway)
	}
	if len(s.To) == 0 && len(s.From) == 0 {
		v.Add(at, "must have at least one to or from entry")
	}
	for i, item := range s.To {
		p := at.Field("to").Index(i)
		ValidateTargetRef(v, p.Field("targetRef"), item.TargetRef, TargetMesh, TargetMeshService)
		item.Default.validate(v, p.Field("default"))
	}
	for i, item := range s.From {
		p := at.Field("from").Index(i)
		ValidateTargetRef(v, p.Field("targetRef"), item.TargetRef, TargetMesh)
		item.Default.validate(v, p.Field("default"))
	}
}

func (c *MeshTimeoutConf) validate(v *Validator, p Path) {
	if c.ConnectionTimeout == nil && c.IdleTimeout == nil && c.HTTP == nil {
		v.Add(p, "must set at least one timeout")
		return
	}
	checkDuration(v, p.Field("connectionTimeout"), c.ConnectionTimeout)
	checkDuration(v, p.Field("idleTimeout"), c.IdleTimeout)
	if h := c.HTTP; h != nil {
		hp := p.Field("http")
		fields := []struct {
			name string
			d    *Duration
		}{
			{"requestTimeout", h.RequestTimeout},
			{"streamIdleTimeout", h.StreamIdleTimeout},
			{"maxStreamDuration", h.MaxStreamDuration},
			{"maxConnectionDuration", h.MaxConnectionDuration},
			{"requestHeadersTimeout", h.RequestHeadersTimeout},
		}
		set := false
		for _, f := range fields {
			set = set || f.d != nil
			checkDuration(v, hp.Field(f.name), f.d)
		}
		if !set {
			v.Add(hp, "must set at least one timeout")
		}
	}
}
