package generate

import (
	"testing"

	"github.com/meshfed/meshfed/ca"
)

// TestNamesMatchCA: the URI SANs RBAC and SAN checks match are the ones ca
// writes into dataplane certificates.
func TestNamesMatchCA(t *testing.T) {
	for _, tc := range []struct{ mesh, service string }{
		{"default", "backend"}, {"m", "backend_kuma-demo_svc_8080"}, {"m", "a b/c"},
	} {
		if got, want := SPIFFEID(tc.mesh, tc.service), ca.SPIFFEID(tc.mesh, tc.service); got != want {
			t.Errorf("SPIFFEID(%q, %q) = %q, ca says %q", tc.mesh, tc.service, got, want)
		}
	}
	for _, tc := range []struct{ key, value string }{
		{"version", "v1"}, {"kuma.io/zone", "zone-1"}, {"path", "a/b c"},
	} {
		if got, want := KumaTagURI(tc.key, tc.value), ca.TagURI(tc.key, tc.value); got != want {
			t.Errorf("KumaTagURI(%q, %q) = %q, ca says %q", tc.key, tc.value, got, want)
		}
	}
}
