package api

import "testing"

func TestZoneIngressValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "with services", doc: `
type: ZoneIngress
name: zone-1-ingress
zone: zone-1
networking:
  address: 192.168.0.1
  advertisedAddress: ingress.zone-1.example.com
  port: 10001
  advertisedPort: 10000
availableServices:
- mesh: default
  tags:
    kuma.io/service: backend
    version: v1
    kuma.io/zone: zone-1
  instances: 2
- mesh: payments
  tags:
    kuma.io/service: httpbin
  instances: 1
  externalService: true
`},
		{name: "minimal", doc: `
type: ZoneIngress
name: zi
zone: zone-2
networking:
  address: 10.0.0.7
  port: 10001
`},
	})

	zi := mustPrepare(t, "type: ZoneIngress\nname: zi\nzone: z\nnetworking:\n  address: 10.0.0.7\n  port: 10001\n").Spec.(*ZoneIngressSpec)
	if a, p := zi.AdvertisedAddressPort(); a != "10.0.0.7" || p != 10001 {
		t.Errorf("AdvertisedAddressPort() = %s, %d", a, p)
	}
}

func TestZoneIngressInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "empty", doc: "type: ZoneIngress\nname: zi\n", want: []string{"networking.address", "networking.port", "zone"}},
		{name: "advertised address without port and bad services", doc: `
type: ZoneIngress
name: zi
zone: Zone_1
networking:
  address: 10.0.0.1
  advertisedAddress: 1.2.3.4
  port: 10001
availableServices:
- tags:
    version: v1
- mesh: default
  tags:
    kuma.io/service: "a b"
`, want: []string{
			"availableServices[0].mesh",
			"availableServices[0].tags",
			`availableServices[1].tags["kuma.io/service"]`,
			"networking.advertisedPort",
			"zone",
		}},
		{name: "advertised port without address, bad addresses", doc: `
type: ZoneIngress
name: zi
zone: zone-1
networking:
  address: "10.0.0.256"
  port: 70000
  advertisedPort: 10000
`, want: []string{"networking.address", "networking.advertisedAddress", "networking.port"}},
		{name: "instances negative", doc: `
type: ZoneIngress
name: zi
zone: zone-1
networking:
  address: 10.0.0.1
  port: 10001
availableServices:
- mesh: default
  tags:
    kuma.io/service: web
  instances: -1
`, want: []string{"availableServices[0].instances"}},
	})
}
