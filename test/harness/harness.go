// Package harness starts real meshd processes on 127.0.0.1 for the
// end-to-end tests under test/: it builds the binaries once (with the race
// detector, so a data race in a child process fails the test), picks free
// ports, waits for readiness through the public API, and stops every process
// it started by its own PID. StartCluster runs a multi-node global cluster
// the same way (cluster.go).
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are the built meshd and meshctl, and the proxyless gRPC test
// application (test/xdsapp).
type Binaries struct {
	Meshd   string
	Meshctl string
	XDSApp  string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles meshd, meshctl and xdsapp into dir once per test process. The
// binaries carry the race detector when the test binary does.
func Build(dir string) (Binaries, error) {
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		b := Binaries{Meshd: filepath.Join(dir, "meshd"), Meshctl: filepath.Join(dir, "meshctl"), XDSApp: filepath.Join(dir, "xdsapp")}
		for _, target := range []struct{ out, pkg string }{{b.Meshd, "./cmd/meshd"}, {b.Meshctl, "./cmd/meshctl"}, {b.XDSApp, "./test/xdsapp"}} {
			if buildErr = goBuild(root, target.out, target.pkg); buildErr != nil {
				return
			}
		}
		built = b
	})
	return built, buildErr
}

// BuildPackage compiles the main package pkg (a path relative to the
// repository root, e.g. "./test/xdsapp") to dir/name and returns the
// binary's path. It carries the race detector when the test binary does.
// Unlike Build it builds on every call.
func BuildPackage(dir, pkg, name string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	if err := goBuild(root, out, pkg); err != nil {
		return "", err
	}
	return out, nil
}

func goBuild(root, out, pkg string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the repository")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreeAddr returns 127.0.0.1:PORT with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// handedOut holds every address freeAddr returned: the kernel may hand the
// port of a listener just closed to the next bind(:0), and two of a node's
// addresses must never be the same.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func freeAddr() (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port that was not handed out already")
}

// Process is one started meshd (or any) process.
type Process struct {
	Name    string
	Args    []string
	Env     []string
	LogPath string

	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit error, valid after done
}

// Start runs bin with args; output goes to a log file in dir that is
// printed when the test fails. The process is stopped at test cleanup.
func Start(t testing.TB, dir, name, bin string, args []string, env ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Args: args, Env: env, LogPath: filepath.Join(dir, name+".log"), bin: bin}
	p.start(t)
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(p.LogPath); err == nil {
				t.Logf("---- %s log (%s) ----\n%s", p.Name, p.LogPath, tail(b, 200))
			}
		}
	})
	return p
}

func (p *Process) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: log file: %v", p.Name, err)
	}
	fmt.Fprintf(logf, "\n==== start %s %s\n", p.bin, strings.Join(p.Args, " "))
	cmd := exec.Command(p.bin, p.Args...)
	// Race-enabled binaries sleep 1 s at exit by default; a race still exits 66.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("%s: start: %v", p.Name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
}

// Restart starts the process again with the same arguments after it stopped.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	if p.Running() {
		t.Fatalf("%s: restart while running", p.Name)
	}
	p.start(t)
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM to the process (by its PID), waits up to 10 s, then
// SIGKILLs it. It fails the test if the process reported a data race (exit
// code 66) or exited with an error on SIGTERM.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if !p.Running() {
		p.checkExit(t)
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) did not stop within 10s of SIGTERM; killing it", p.Name, p.PID())
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.checkExit(t)
}

// Kill sends SIGKILL (by PID) and waits for the process to exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.err = nil // a killed process's exit status says nothing
}

func (p *Process) checkExit(t testing.TB) {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ee.ExitCode() == 66 {
			t.Errorf("%s: data race detected (see %s)", p.Name, p.LogPath)
		} else if ee.ExitCode() > 0 {
			t.Errorf("%s: exited with %v (see %s)", p.Name, p.err, p.LogPath)
		}
	}
	p.err = nil
}

// Log returns the process's log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func tail(b []byte, lines int) []byte {
	parts := bytes.Split(b, []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return bytes.Join(parts, []byte("\n"))
}

// Eventually polls cond every 20 ms until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitReady polls GET {url}/readyz until it answers 200.
func WaitReady(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	Eventually(t, timeout, url+"/readyz", func() bool {
		return ready(context.Background(), client, url) == nil
	})
}

// Global is a started `meshd global` node.
type Global struct {
	*Process
	// NodeID is the node's --node-id when it differs from the process
	// name (see ID).
	NodeID     string
	DataDir    string
	APIAddr    string
	RaftAddr   string
	GossipAddr string
	SyncAddr   string
}

// URL is the node's API base URL.
func (g *Global) URL() string { return "http://" + g.APIAddr }

// Token reads the admin token the node wrote to its data dir.
func (g *Global) Token(t testing.TB) string {
	t.Helper()
	var tok []byte
	Eventually(t, 10*time.Second, "admin token in "+g.DataDir, func() bool {
		b, err := os.ReadFile(filepath.Join(g.DataDir, "admin-token"))
		tok = bytes.TrimSpace(b)
		return err == nil && len(tok) > 0
	})
	return string(tok)
}

// StartGlobal starts a single-node `meshd global` on free loopback ports
// with its data in a new directory under dir, and waits until it is ready.
func StartGlobal(t testing.TB, bins Binaries, dir, name string, extra ...string) *Global {
	t.Helper()
	g := &Global{DataDir: filepath.Join(dir, name+"-data"), APIAddr: FreeAddr(t), RaftAddr: FreeAddr(t), GossipAddr: FreeAddr(t), SyncAddr: FreeAddr(t)}
	args := append([]string{"global", "--node-id", name, "--data-dir", g.DataDir,
		"--api-addr", g.APIAddr, "--raft-addr", g.RaftAddr, "--gossip-addr", g.GossipAddr, "--sync-addr", g.SyncAddr, "--log-level", "debug"}, extra...)
	g.Process = Start(t, dir, name, bins.Meshd, args)
	g.WaitReady(t, 30*time.Second)
	return g
}

// WaitReady polls the node's /readyz until it answers 200, failing at once
// if the process exits meanwhile.
func (g *Global) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	Eventually(t, timeout, g.URL()+"/readyz", func() bool {
		if !g.Running() {
			t.Fatalf("%s exited while starting (see its log %s):\n%s", g.Name, g.LogPath, tail([]byte(g.Log()), 20))
		}
		return ready(context.Background(), client, g.URL()) == nil
	})
}
