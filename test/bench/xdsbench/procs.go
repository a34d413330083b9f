package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/api/client"
)

// handedOut remembers every address freeAddr returned: the kernel may hand
// the port of a listener just closed to the next bind(:0).
var handedOut = map[string]bool{}

// freeAddr returns 127.0.0.1:PORT with a port that was free a moment ago.
func freeAddr() (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no free port that was not handed out already")
}

// buildMeshd compiles ./cmd/meshd of this module into dir.
func buildMeshd(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run xdsbench from inside the meshfed module, or pass -meshd")
	}
	bin := filepath.Join(dir, "meshd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/meshd")
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/meshd: %v\n%s", err, b)
	}
	return bin, nil
}

// process is one started meshd; its output goes to LogPath.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func start(dir, name, bin string, args ...string) (*process, error) {
	p := &process{name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "==== %s %s\n", bin, strings.Join(args, " "))
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process (by its PID), and SIGKILL after 15 s.
func (p *process) stop() {
	if p == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cluster is one `meshd global` and one `meshd zone` against it.
type cluster struct {
	dir       string
	global    *process
	zone      *process
	globalAPI string
	zoneAPI   string
	xdsAddr   string
	pprofAddr string
}

func (c *cluster) stop() {
	c.zone.stop()
	c.global.stop()
}

func (c *cluster) logs() string {
	var paths []string
	for _, p := range []*process{c.global, c.zone} {
		if p != nil {
			paths = append(paths, p.logPath)
		}
	}
	return strings.Join(paths, ", ")
}

type clusterOptions struct {
	meshd       string
	gracePeriod time.Duration
	pprof       bool
}

// startCluster starts a fresh global and a zone "zone-1" with their data in
// dir, and waits until the zone holds the default Mesh.
func startCluster(ctx context.Context, dir string, o clusterOptions) (*cluster, error) {
	c := &cluster{dir: dir}
	addrs := make([]string, 7)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	c.globalAPI, c.zoneAPI, c.xdsAddr = addrs[0], addrs[4], addrs[5]
	globalData := filepath.Join(dir, "global-data")
	var err error
	c.global, err = start(dir, "global", o.meshd, "global", "--node-id", "bench", "--data-dir", globalData,
		"--api-addr", addrs[0], "--raft-addr", addrs[1], "--gossip-addr", addrs[2], "--sync-addr", addrs[3],
		"--log-level", "warn")
	if err != nil {
		return c, err
	}
	gurl := "http://" + c.globalAPI
	if err := waitFor(ctx, c.global, 30*time.Second, "global /readyz", func() bool { return get(gurl+"/readyz") == http.StatusOK }); err != nil {
		return c, err
	}
	var token []byte
	if err := waitFor(ctx, c.global, 10*time.Second, "global's admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(globalData, "admin-token"))
		token = bytes.TrimSpace(b)
		return err == nil && len(token) > 0
	}); err != nil {
		return c, err
	}
	caFile := filepath.Join(globalData, "sync-ca.crt")
	if err := waitFor(ctx, c.global, 30*time.Second, caFile, func() bool {
		st, err := os.Stat(caFile)
		return err == nil && st.Size() > 0
	}); err != nil {
		return c, err
	}
	gc, err := client.New(gurl, string(token))
	if err != nil {
		return c, err
	}
	tok, err := gc.GenerateZoneToken(ctx, "zone-1", "")
	if err != nil {
		return c, fmt.Errorf("zone token: %w", err)
	}
	tokenFile := filepath.Join(dir, "zone-1.token")
	if err := os.WriteFile(tokenFile, []byte(tok.Token+"\n"), 0o600); err != nil {
		return c, err
	}
	args := []string{"zone", "--zone", "zone-1", "--global", addrs[3],
		"--data-dir", filepath.Join(dir, "zone-data"), "--api-addr", c.zoneAPI, "--xds-addr", c.xdsAddr,
		"--token-file", tokenFile, "--global-ca-file", caFile, "--log-level", "warn",
		"--dataplane-grace-period", o.gracePeriod.String()}
	if o.pprof {
		c.pprofAddr = addrs[6]
		args = append(args, "--pprof-addr", c.pprofAddr)
	}
	c.zone, err = start(dir, "zone", o.meshd, args...)
	if err != nil {
		return c, err
	}
	zurl := "http://" + c.zoneAPI
	if err := waitFor(ctx, c.zone, 30*time.Second, "zone /readyz and the default Mesh", func() bool {
		return get(zurl+"/readyz") == http.StatusOK && get(zurl+"/meshes/default") == http.StatusOK
	}); err != nil {
		return c, err
	}
	return c, nil
}

// waitFor polls cond every 20 ms until it holds, p exits, or timeout passes.
func waitFor(ctx context.Context, p *process, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if p != nil && !p.running() {
			return fmt.Errorf("%s exited while waiting for %s (log %s)", p.name, what, p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// get returns the status of GET url (0 on a transport error).
func get(url string) int {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// putJSON PUTs body to url and returns an error unless it answers 2xx.
func putJSON(url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// procStat is a process's resident memory and CPU time so far.
type procStat struct {
	rssKiB int64
	cpu    time.Duration // utime + stime
}

// readProc reads /proc/PID/status (VmRSS) and /proc/PID/stat (utime,
// stime in clock ticks of 1/100 s).
func readProc(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				st.rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return st, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	st.cpu = time.Duration(utime+stime) * 10 * time.Millisecond
	return st, nil
}

// selfCPU is this process's own CPU time (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// metricSum sums every sample of the metric name in a Prometheus text
// exposition at url (0 when the metric has no sample).
func metricSum(url string, names ...string) (map[string]float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	for _, n := range names {
		out[n] = 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if _, ok := out[name]; !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, nil
}
