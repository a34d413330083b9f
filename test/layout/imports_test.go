// Package layout checks the repository's import rules (DESIGN.md §11): global
// and zone never import each other, global never imports xds, api and ca
// import nothing else from the repository, and cmd/internal serves cmd only.
package layout

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/meshfed/meshfed"

type pkg struct {
	ImportPath string
	Deps       []string
}

// rule: packages under from must not depend (transitively) on packages under
// any of the forbidden prefixes.
type rule struct {
	from      string
	forbidden []string
	except    []string // allowed prefixes among the forbidden
}

var rules = []rule{
	{from: "global", forbidden: []string{"zone", "xds"}},
	{from: "zone", forbidden: []string{"global"}},
	{from: "sync", forbidden: []string{"global", "zone", "cmd"}},
	{from: "xds", forbidden: []string{"global", "zone", "cmd"}},
	{from: "api", forbidden: []string{""}, except: []string{"api"}},
	{from: "ca", forbidden: []string{""}, except: []string{"ca"}},
	{from: "global", forbidden: []string{"cmd"}},
	{from: "zone", forbidden: []string{"cmd"}},
}

func under(path, prefix string) bool {
	if prefix == "" {
		return strings.HasPrefix(path, module+"/") || path == module
	}
	full := module + "/" + prefix
	return path == full || strings.HasPrefix(path, full+"/")
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages; the check would prove nothing", len(pkgs))
	}
	for _, p := range pkgs {
		for _, r := range rules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			for _, dep := range p.Deps {
				if violates(dep, r) {
					t.Errorf("%s depends on %s: %s/ must not import %v (DESIGN.md §11)", p.ImportPath, dep, r.from, r.forbidden)
				}
			}
		}
		if !under(p.ImportPath, "cmd") {
			for _, dep := range p.Deps {
				if under(dep, "cmd/internal") {
					t.Errorf("%s depends on %s: cmd/internal is for cmd/ only", p.ImportPath, dep)
				}
			}
		}
	}
}

func violates(dep string, r rule) bool {
	for _, f := range r.forbidden {
		if !under(dep, f) {
			continue
		}
		for _, e := range r.except {
			if under(dep, e) {
				return false
			}
		}
		return true
	}
	return false
}

// TestRuleCheckerCatchesViolations proves the checker can fail.
func TestRuleCheckerCatchesViolations(t *testing.T) {
	cases := []struct {
		dep  string
		r    rule
		want bool
	}{
		{module + "/zone", rule{from: "global", forbidden: []string{"zone"}}, true},
		{module + "/zonex", rule{from: "global", forbidden: []string{"zone"}}, false},
		{module + "/global/store", rule{from: "api", forbidden: []string{""}, except: []string{"api"}}, true},
		{module + "/api/rest", rule{from: "api", forbidden: []string{""}, except: []string{"api"}}, false},
		{"github.com/hashicorp/raft", rule{from: "api", forbidden: []string{""}, except: []string{"api"}}, false},
	}
	for _, c := range cases {
		if got := violates(c.dep, c.r); got != c.want {
			t.Errorf("violates(%s, %+v) = %v, want %v", c.dep, c.r, got, c.want)
		}
	}
}
