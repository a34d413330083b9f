package harness

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Zone is a started `meshd zone`.
type Zone struct {
	*Process
	// ZoneName is the zone's --zone (the process name by default).
	ZoneName  string
	DataDir   string
	APIAddr   string
	XDSAddr   string
	TokenFile string
}

// URL is the zone's API base URL.
func (z *Zone) URL() string { return "http://" + z.APIAddr }

// ZoneOptions tunes StartZone.
type ZoneOptions struct {
	// Globals (required) are the global nodes the zone dials (their sync
	// addresses, in order); the first one's DATA_DIR/sync-ca.crt verifies
	// them.
	Globals []*Global
	// TokenFile (required) holds the zone token.
	TokenFile string
	// Zone is --zone; default: the process name.
	Zone string
	// LogLevel is --log-level; default "debug".
	LogLevel string
	// NoWait returns at once instead of waiting for /readyz (a zone that is
	// expected never to get global's state).
	NoWait bool
	// Extra flags, after the harness's own (they win).
	Extra []string
}

// StartZone starts `meshd zone` named name on free loopback ports, with its
// data in a new directory under dir, against opts.Globals' sync ports over
// TLS, and waits until it is ready (it holds global's state).
func StartZone(t testing.TB, bins Binaries, dir, name string, opts ZoneOptions) *Zone {
	t.Helper()
	if len(opts.Globals) == 0 || opts.TokenFile == "" {
		t.Fatal("StartZone: Globals and TokenFile are required")
	}
	if opts.Zone == "" {
		opts.Zone = name
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	var sync []string
	for _, g := range opts.Globals {
		if g.SyncAddr == "" {
			t.Fatalf("StartZone: global %s has no sync address", g.Name)
		}
		sync = append(sync, g.SyncAddr)
	}
	// Global writes its sync CA file once the cluster's secrets exist.
	caFile := filepath.Join(opts.Globals[0].DataDir, "sync-ca.crt")
	Eventually(t, 30*time.Second, caFile, func() bool {
		b, err := os.ReadFile(caFile)
		return err == nil && len(b) > 0
	})
	z := &Zone{ZoneName: opts.Zone, DataDir: filepath.Join(dir, name+"-data"), APIAddr: FreeAddr(t), XDSAddr: FreeAddr(t), TokenFile: opts.TokenFile}
	args := append([]string{"zone", "--zone", opts.Zone, "--global", strings.Join(sync, ","),
		"--data-dir", z.DataDir, "--api-addr", z.APIAddr, "--xds-addr", z.XDSAddr,
		"--token-file", opts.TokenFile, "--global-ca-file", caFile,
		"--log-level", opts.LogLevel}, opts.Extra...)
	z.Process = Start(t, dir, name, bins.Meshd, args)
	if !opts.NoWait {
		z.WaitReady(t, 30*time.Second)
	}
	return z
}

// WaitReady polls the zone's /readyz until it answers 200, failing at once
// if the process exits meanwhile.
func (z *Zone) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	Eventually(t, timeout, z.URL()+"/readyz", func() bool {
		if !z.Running() {
			t.Fatalf("%s exited while starting (see its log %s):\n%s", z.Name, z.LogPath, tail([]byte(z.Log()), 20))
		}
		return ready(context.Background(), client, z.URL()) == nil
	})
}
