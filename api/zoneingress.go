package api

// ZoneIngressSpec is the body of a ZoneIngress (Kuma's
// mesh.v1alpha1.ZoneIngress, inline): a zone's entry point for cross-zone
// traffic and the services reachable through it. Zones own it; global fans
// it out to the other zones.
type ZoneIngressSpec struct {
	// Zone (required) is the name of the zone the ingress belongs to.
	Zone string `json:"zone"`
	// Networking mirrors Kuma's ZoneIngress.networking.
	Networking ZoneIngressNetworking `json:"networking"`
	// AvailableServices mirrors Kuma's ZoneIngress.availableServices.
	AvailableServices []AvailableService `json:"availableServices,omitempty"`
}

// ZoneIngressNetworking mirrors Kuma's ZoneIngress.Networking.
type ZoneIngressNetworking struct {
	// Address (required) is where the ingress listens inside its zone.
	Address string `json:"address"`
	// AdvertisedAddress is the address other zones use; set together with
	// AdvertisedPort.
	AdvertisedAddress string `json:"advertisedAddress,omitempty"`
	// Port (required) is the listening port.
	Port uint32 `json:"port"`
	// AdvertisedPort is the port other zones use.
	AdvertisedPort uint32 `json:"advertisedPort,omitempty"`
}

// AvailableService mirrors Kuma's ZoneIngress.AvailableService: one
// service of one Mesh reachable through the ingress.
type AvailableService struct {
	// Mesh (required) is the service's Mesh.
	Mesh string `json:"mesh"`
	// Tags (required) must contain kuma.io/service.
	Tags map[string]string `json:"tags,omitempty"`
	// Instances is the number of healthy instances behind the ingress.
	Instances uint32 `json:"instances,omitempty"`
	// ExternalService marks an ExternalService reached through the zone.
	ExternalService bool `json:"externalService,omitempty"`
}

// Default implements Spec: a ZoneIngress has no defaults.
func (s *ZoneIngressSpec) Default() {}

// Validate implements Spec.
func (s *ZoneIngressSpec) Validate(v *Validator, at Path) {
	// The zone is a Zone's name, so it follows the Zone name rules.
	ValidateName(v, at.Field("zone"), s.Zone, 63)

	n := s.Networking
	np := at.Field("networking")
	validateAddress(v, np.Field("address"), n.Address, true)
	v.Port(np.Field("port"), n.Port)
	validateAddress(v, np.Field("advertisedAddress"), n.AdvertisedAddress, false)
	if n.AdvertisedPort != 0 {
		v.Port(np.Field("advertisedPort"), n.AdvertisedPort)
	}
	switch {
	case n.AdvertisedAddress != "" && n.AdvertisedPort == 0:
		v.Add(np.Field("advertisedPort"), "must be set when advertisedAddress is set")
	case n.AdvertisedAddress == "" && n.AdvertisedPort != 0:
		v.Add(np.Field("advertisedAddress"), "must be set when advertisedPort is set")
	}

	for i, as := range s.AvailableServices {
		p := at.Field("availableServices").Index(i)
		ValidateName(v, p.Field("mesh"), as.Mesh, 63)
		validateServiceTags(v, p.Field("tags"), as.Tags)
	}
}

// AdvertisedAddressPort returns the address and port other zones should use:
// the advertised ones when set, the listening ones otherwise.
func (s *ZoneIngressSpec) AdvertisedAddressPort() (string, uint32) {
	if s.Networking.AdvertisedAddress != "" {
		return s.Networking.AdvertisedAddress, s.Networking.AdvertisedPort
	}
	return s.Networking.Address, s.Networking.Port
}

// SpecIfZoneIngress returns r's spec when r is a ZoneIngress (r may be nil).
func (r *Resource) SpecIfZoneIngress() (*ZoneIngressSpec, bool) {
	if r == nil {
		return nil, false
	}
	zi, ok := r.Spec.(*ZoneIngressSpec)
	return zi, ok
}
