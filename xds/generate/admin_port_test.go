package generate_test

import (
	"testing"

	"github.com/meshfed/meshfed/xds/bootstrap"
	"github.com/meshfed/meshfed/xds/generate"
)

// The stats listener forwards to the admin port the Envoy bootstrap
// configures by default.
func TestEnvoyAdminPortMatchesBootstrap(t *testing.T) {
	if generate.EnvoyAdminPort != bootstrap.DefaultAdminPort {
		t.Fatalf("generate.EnvoyAdminPort %d != bootstrap.DefaultAdminPort %d", generate.EnvoyAdminPort, bootstrap.DefaultAdminPort)
	}
}
