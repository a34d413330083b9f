package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func newFlags() (*pflag.FlagSet, *string, *int, *bool) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addr := fs.String("api-addr", "default:1", "")
	n := fs.Int("raft-timing-multiplier", 1, "")
	b := fs.Bool("skip-default-mesh", false, "")
	fs.String("config", "", "")
	return fs, addr, n, b
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLayerPrecedence(t *testing.T) {
	file := writeFile(t, "api-addr: file:1\nraft-timing-multiplier: 3\nskip-default-mesh: true\n")
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantAddr string
		wantN    int
	}{
		{"file only", nil, nil, "file:1", 3},
		{"env over file", nil, map[string]string{"TEST_API_ADDR": "env:1"}, "env:1", 3},
		{"flag over env", []string{"--api-addr", "flag:1"}, map[string]string{"TEST_API_ADDR": "env:1"}, "flag:1", 3},
		{"env int", nil, map[string]string{"TEST_RAFT_TIMING_MULTIPLIER": "5"}, "file:1", 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			fs, addr, n, b := newFlags()
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if err := Layer(fs, "TEST", file, "config"); err != nil {
				t.Fatal(err)
			}
			if *addr != c.wantAddr || *n != c.wantN || !*b {
				t.Errorf("got addr=%q n=%d skip=%v, want %q %d true", *addr, *n, *b, c.wantAddr, c.wantN)
			}
		})
	}
}

func TestLayerErrors(t *testing.T) {
	cases := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"unknown key", "api-addr: x:1\nbogus: 1\nconfig: y\n", nil, "unknown key(s) bogus, config"},
		{"bad file value", "raft-timing-multiplier: lots\n", nil, "config file key raft-timing-multiplier"},
		{"bad env value", "", map[string]string{"TEST_SKIP_DEFAULT_MESH": "maybe"}, "TEST_SKIP_DEFAULT_MESH"},
		{"not a map", "- a\n- b\n", nil, "not a YAML map"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			fs, _, _, _ := newFlags()
			_ = fs.Parse(nil)
			err := Layer(fs, "TEST", writeFile(t, c.file), "config")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	fs, _, _, _ := newFlags()
	if err := Layer(fs, "TEST", filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing config file: want an error")
	}
}

func TestNewLogger(t *testing.T) {
	if _, err := NewLogger("info", "json"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLogger("loud", "text"); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Fatalf("bad level: %v", err)
	}
	if _, err := NewLogger("info", "xml"); err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("bad format: %v", err)
	}
}
