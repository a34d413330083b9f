// Command apibench measures a single global node's HTTP API: write and read
// throughput and latency with concurrent clients. It starts a real
// `meshd global` on loopback (fresh data dir, Raft with fsync), so the figures
// include HTTP, validation, Raft commit to bolt and the FSM.
//
//	go run ./test/bench/apibench -meshd ./bin/meshd [-clients 1,16,64] [-duration 5s]
//
// It prints one line per (operation, clients): ops/s, p50, p99, max.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	meshd := flag.String("meshd", "./bin/meshd", "meshd binary")
	clientsFlag := flag.String("clients", "1,16,64", "comma-separated concurrency levels")
	duration := flag.Duration("duration", 5*time.Second, "duration of each run")
	keys := flag.Int("keys", 1000, "distinct resources written")
	flag.Parse()
	if err := run(*meshd, *clientsFlag, *duration, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "apibench:", err)
		os.Exit(1)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func run(meshd, clientsFlag string, duration time.Duration, keys int) error {
	dir, err := os.MkdirTemp("", "apibench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	api, raftAddr, gossipAddr, syncAddr := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	cmd := exec.Command(meshd, "global", "--node-id", "bench", "--data-dir", dir,
		"--api-addr", api, "--raft-addr", raftAddr, "--gossip-addr", gossipAddr, "--sync-addr", syncAddr, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	base := "http://" + api
	var token []byte
	deadline := time.Now().Add(30 * time.Second)
	for len(token) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("meshd did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				token, _ = os.ReadFile(filepath.Join(dir, "admin-token"))
				token = bytes.TrimSpace(token)
			}
		}
	}
	var levels []int
	for _, s := range strings.Split(clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive number", s)
		}
		levels = append(levels, n)
	}
	fmt.Printf("meshd global, 1 node, loopback, %d distinct keys, %s per run, GOMAXPROCS of meshd = %d cores\n", keys, duration, numCPU())
	fmt.Printf("%-6s %8s %10s %9s %9s %9s %7s\n", "op", "clients", "ops/s", "p50", "p99", "max", "errors")
	for _, op := range []string{"write", "read"} {
		for _, n := range levels {
			r := load(base, string(token), op, n, duration, keys)
			fmt.Printf("%-6s %8d %10.0f %9s %9s %9s %7d\n", op, n, r.opsPerSec, r.p50, r.p99, r.max, r.errors)
		}
	}
	return nil
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

type result struct {
	opsPerSec     float64
	p50, p99, max time.Duration
	errors        int
}

func load(base, token, op string, clients int, d time.Duration, keys int) result {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var mine []time.Duration
			myErrs := 0
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("bench-%d", (c*7919+i)%keys)
				url := base + "/meshes/default/meshtrafficpermissions/" + name
				var req *http.Request
				if op == "write" {
					body := fmt.Sprintf(`{"type":"MeshTrafficPermission","mesh":"default","name":%q,"labels":{"seq":"s%d"},"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`, name, i)
					req, _ = http.NewRequest(http.MethodPut, url, strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest(http.MethodGet, url, nil)
				}
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := hc.Do(req)
				ok := err == nil && resp.StatusCode < 300
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					break
				}
				if !ok {
					myErrs++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += myErrs
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{errors: errs}
	if len(lat) > 0 {
		r.opsPerSec = float64(len(lat)) / elapsed.Seconds()
		r.p50 = lat[len(lat)/2].Round(10 * time.Microsecond)
		r.p99 = lat[len(lat)*99/100].Round(10 * time.Microsecond)
		r.max = lat[len(lat)-1].Round(10 * time.Microsecond)
	}
	return r
}
