package e2e

import (
	"testing"

	"github.com/meshfed/meshfed/test/harness"
)

// TestGlobal runs the API and meshctl tests against one shared `meshd
// global`. The subtests run in parallel; each works in meshes of its own
// (and leaves the default Mesh alone), so their state does not interfere.
func TestGlobal(t *testing.T) {
	t.Parallel()
	g := harness.StartGlobal(t, bins, t.TempDir(), "shared-1")
	n := newAPINode(t, g)
	s := &shared{g: g, n: n}

	groups := []struct {
		name  string
		tests []namedTest
	}{
		{"API", apiTests},
		{"Meshctl", meshctlTests},
	}
	for _, grp := range groups {
		t.Run(grp.name, func(t *testing.T) {
			for _, tc := range grp.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, s)
				})
			}
		})
	}
}

// shared is what the subtests of TestGlobal get.
type shared struct {
	g *harness.Global
	n *apiNode
}

type namedTest struct {
	name string
	fn   func(t *testing.T, s *shared)
}
