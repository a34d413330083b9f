package api

import "testing"

func TestZoneValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "minimal", doc: "type: Zone\nname: zone-1\n"},
		{name: "network and disabled", doc: `
type: Zone
name: us-east.dc-1
enabled: false
network: dc-east
labels:
  region: us-east
`},
	})
}

func TestZoneDefaultsAndHelpers(t *testing.T) {
	if got, want := encodeYAML(t, "type: Zone\nname: zone-1\n"), "type: Zone\nname: zone-1\nenabled: true\n"; got != want {
		t.Errorf("defaults:\n%s\nwant:\n%s", got, want)
	}
	z := mustPrepare(t, "type: Zone\nname: zone-1\nenabled: false\nnetwork: dc-east\n").Spec.(*ZoneSpec)
	if z.IsEnabled() || z.NetworkOr("zone-1") != "dc-east" {
		t.Errorf("zone = %+v", z)
	}
	if got := (&ZoneSpec{}).NetworkOr("zone-2"); got != "zone-2" || !(&ZoneSpec{}).IsEnabled() {
		t.Errorf("NetworkOr without network = %q", got)
	}
}

func TestZoneInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "network not a DNS label", doc: "type: Zone\nname: zone-1\nnetwork: dc.east\n", want: []string{"network"}},
		{name: "network upper case and name too long", doc: `
type: Zone
name: zone-with-a-name-that-is-far-too-long-to-fit-into-one-dns-label-x
network: DC_East
`, want: []string{"name", "network"}},
		{name: "enabled not a boolean", doc: "type: Zone\nname: zone-1\nenabled: sometimes\n", want: []string{"enabled"}},
		{name: "global type with a mesh", doc: "type: Zone\nmesh: default\nname: zone-1\n", want: []string{"mesh"}},
	})
}
