package api

// MeshInsight counts a Mesh's dataplanes and policies (Kuma's MeshInsight).
type MeshInsight struct {
	Type       string                       `json:"type"`
	Name       string                       `json:"name"`
	Dataplanes MeshInsightDataplanes        `json:"dataplanes"`
	Policies   map[string]MeshInsightPolicy `json:"policies"`
	// MTLS is the Mesh's enabled CA backend ("" when mTLS is off).
	MTLS MeshInsightMTLS `json:"mTLS"`
}

// MeshInsightDataplanes counts a Mesh's dataplanes by state.
type MeshInsightDataplanes struct {
	Total   int `json:"total"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

// MeshInsightPolicy counts one policy type.
type MeshInsightPolicy struct {
	Total int `json:"total"`
}

// MeshInsightMTLS is the Mesh's CA.
type MeshInsightMTLS struct {
	EnabledBackend string `json:"enabledBackend,omitempty"`
	Type           string `json:"type,omitempty"`
}

// TypeMeshInsight is the "type" of a MeshInsight document.
const TypeMeshInsight = "MeshInsight"
