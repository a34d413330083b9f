// Command xdsbench measures a real `meshd zone` serving xDS to many
// simulated Envoy proxies. For every size it starts a fresh `meshd global`
// and `meshd zone` (loopback, free ports, data in a temp dir, zone token
// from global's API), then opens one ADS state-of-the-world stream per
// simulated proxy, spread over a few gRPC connections.
//
//	go run ./test/bench/xdsbench [-meshd ./bin/meshd] [-proxies 500,1000] [-services 500]
//
// A simulated proxy behaves like Envoy: node id "default.<name>",
// user_agent_name "envoy", its Dataplane in node metadata "dataplane" (so it
// registers itself); it asks CDS and LDS (wildcard), then EDS for its EDS
// clusters and RDS for the route names of its listeners' HTTP connection
// managers, and ACKs every response. Proxy i serves svc-(i mod S) (inbound
// 10.x.y.z:8080, kuma.io/protocol http) and calls K other services chosen at
// random (fixed seed).
//
// It prints, per size N:
//  1. connect: from opening all N streams at once until every proxy has its
//     config: "first" = LDS, CDS and every EDS and RDS it asked for at the
//     time; "full" = its final config (all K outbounds as HTTP listeners with
//     RDS, their clusters, their CLAs with every endpoint of the service,
//     their routes). p50/p99/max over proxies; "total" is the last one.
//  2. endpoint change: with all N connected, one new Dataplane of a service
//     PUT on the zone API; per subscriber of that service (a proxy with an
//     outbound to it), the time from the PUT until its EDS holds the new
//     endpoint. Repeated -changes times with different services.
//  3. the zone's VmRSS before connecting and with all N at full config, per
//     proxy, and its CPU time (utime+stime) in each phase.
//  4. meshfed_xds_nacks_total of the zone (should be 0).
//
// Figures are printed, never asserted. The simulated proxies run in this
// process, on the same cores as the zone: their CPU time is printed too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type options struct {
	meshd         string
	sizes         []int
	services      int
	outbounds     int
	conns         int
	changes       int
	seed          uint64
	timeout       time.Duration
	grace         time.Duration
	keep          bool
	cpuprofile    string
	cpuprofileN   int
	cpuprofileSec int
	changeProfile string
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.meshd, "meshd", "", "meshd binary (default: go build ./cmd/meshd into the temp dir)")
	flag.StringVar(&sizes, "proxies", "500,1000", "comma-separated numbers of simulated proxies, one run each")
	flag.IntVar(&o.services, "services", 500, "services S; proxy i serves svc-(i mod S)")
	flag.IntVar(&o.outbounds, "outbounds", 5, "outbounds K per proxy, to random other services")
	flag.IntVar(&o.conns, "conns", 16, "gRPC connections the streams are spread over")
	flag.IntVar(&o.changes, "changes", 20, "endpoint changes measured per size")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed of the outbounds and the changed services")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "longest wait for all proxies to reach full config")
	flag.DurationVar(&o.grace, "grace-period", 10*time.Second, "zone --dataplane-grace-period")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (logs, data) after a successful run")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the zone during the connect phase to this file")
	flag.IntVar(&o.cpuprofileN, "cpuprofile-proxies", 0, "size whose connect phase is profiled (default: the largest)")
	flag.IntVar(&o.cpuprofileSec, "cpuprofile-seconds", 30, "length of the CPU profile (the change phase waits for its end)")
	flag.StringVar(&o.changeProfile, "cpuprofile-change", "", "write a CPU profile of the zone during the change phase of the -cpuprofile-proxies size to this file")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "xdsbench: -proxies: %q is not a positive number\n", s)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if (o.cpuprofile != "" || o.changeProfile != "") && o.cpuprofileN == 0 {
		o.cpuprofileN = slices.Max(o.sizes)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "xdsbench:", err)
		os.Exit(1)
	}
}

// result is one size's figures.
type result struct {
	n                       int
	first, full             []time.Duration
	total                   time.Duration
	registered              time.Duration // until the zone accepted all N streams
	streamErrors            int64
	change                  []time.Duration
	subscribers             []int
	changeMissed            int
	putLat                  []time.Duration
	rssBefore, rssAfter     int64   // KiB
	heapBefore, heapAfter   float64 // bytes in use after a forced GC
	heapSettled             float64 // the same once the zone's reports to global are acknowledged
	settleTime              time.Duration
	cpuConnect, cpuChange   time.Duration
	selfConnect, selfChange time.Duration
	nacks, responses        float64
	generated               float64
	passes, passSeconds     float64
	changePasses            float64
	changePassSeconds       float64
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "xdsbench")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if ok && !o.keep {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "xdsbench: logs and data kept in %s\n", dir)
		}
	}()
	if o.meshd == "" {
		fmt.Fprintln(os.Stderr, "xdsbench: go build ./cmd/meshd")
		if o.meshd, err = buildMeshd(dir); err != nil {
			return err
		}
	}
	fmt.Printf("xdsbench: meshd global + meshd zone (fresh per size, loopback, --log-level warn), simulated Envoys in this process;\n")
	fmt.Printf("  S=%d services, K=%d outbounds per proxy, streams over %d gRPC connections, %d endpoint changes per size, %d cores\n",
		o.services, o.outbounds, o.conns, o.changes, runtime.NumCPU())
	var results []*result
	for _, n := range o.sizes {
		r, err := runSize(o, dir, n)
		if err != nil {
			return fmt.Errorf("%d proxies: %w", n, err)
		}
		results = append(results, r)
	}
	printResults(o, results)
	ok = true
	return nil
}

func runSize(o options, root string, n int) (res *result, err error) {
	dir := fmt.Sprintf("%s/n%d", root, n)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	profile := o.cpuprofile != "" && n == o.cpuprofileN
	changeProfile := o.changeProfile != "" && n == o.cpuprofileN
	c, err := startCluster(ctx, dir, clusterOptions{meshd: o.meshd, gracePeriod: o.grace, pprof: true})
	defer func() {
		if c != nil {
			if err != nil {
				err = fmt.Errorf("%w (process logs: %s)", err, c.logs())
			}
			c.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	zurl := "http://" + c.zoneAPI
	res = &result{n: n}

	// The fleet: proxy i serves svc-(i mod S) and calls K others among the
	// services that have an instance.
	nSvc := min(n, o.services)
	if nSvc <= o.outbounds {
		return nil, fmt.Errorf("%d services with instances: need more than -outbounds %d", nSvc, o.outbounds)
	}
	rng := rand.New(rand.NewPCG(o.seed, uint64(n)))
	f := &fleet{expect: map[string]int{}, full: make(chan struct{})}
	for i := range n {
		dp := &dataplane{name: fmt.Sprintf("dp-%d", i), ip: ipOf(10, i), service: i % o.services}
		for len(dp.outbound) < o.outbounds {
			s := rng.IntN(nSvc)
			if s != dp.service && !slices.Contains(dp.outbound, s) {
				dp.outbound = append(dp.outbound, s)
			}
		}
		p := &proxy{f: f, dp: dp, outSet: map[string]bool{}}
		for _, s := range dp.outbound {
			p.outSet[serviceName(s)] = true
		}
		f.expect[serviceName(dp.service)]++
		f.proxies = append(f.proxies, p)
	}
	nodes := make([]*core.Node, n)
	for i, p := range f.proxies {
		nd, err := p.dp.node()
		if err != nil {
			return nil, err
		}
		nodes[i] = nd
	}
	for range o.conns {
		cc, err := grpc.NewClient(c.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		cc.Connect()
		f.conns = append(f.conns, cc)
	}

	before, err := readProc(c.zone.pid())
	if err != nil {
		return nil, err
	}
	res.rssBefore = before.rssKiB
	if res.heapBefore, err = liveHeap(c, zurl, dir); err != nil {
		return nil, err
	}
	var profDone chan error
	if profile {
		profDone = make(chan error, 1)
		go func() { profDone <- fetchProfile(c.pprofAddr, o.cpuprofileSec, o.cpuprofile) }()
		time.Sleep(100 * time.Millisecond) // let the profile start
	}

	// 1. Connect all N at once.
	self0 := selfCPU()
	streamCtx, stopStreams := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopStreams()
		wg.Wait()
	}()
	f.start = time.Now()
	for i, p := range f.proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(streamCtx, f.conns[i%len(f.conns)], nodes[i])
		}()
	}
	regDone := make(chan time.Duration, 1)
	go func() { regDone <- waitRegistered(streamCtx, zurl, n, f.start) }()
	if err := waitFull(f, c, o.timeout); err != nil {
		return nil, err
	}
	res.total = time.Since(f.start)
	select {
	case res.registered = <-regDone:
	case <-time.After(2 * time.Second):
	}
	res.selfConnect = selfCPU() - self0
	after, err := readProc(c.zone.pid())
	if err != nil {
		return nil, err
	}
	res.rssAfter, res.cpuConnect = after.rssKiB, after.cpu-before.cpu
	if res.heapAfter, err = liveHeap(c, zurl, dir); err != nil {
		return nil, err
	}
	// Settled: once global has acknowledged the zone's reports (the
	// registrations and insights the connect produced), the outbox and the
	// write buffers are gone; two GCs also empty sync.Pool's victim cache.
	settleStart := time.Now()
	for time.Since(settleStart) < 2*time.Minute {
		m, err := metricSum(zurl+"/metrics", "meshfed_zone_reports_pending")
		if err == nil && m["meshfed_zone_reports_pending"] == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.settleTime = time.Since(settleStart)
	if _, err = liveHeap(c, zurl, dir); err != nil {
		return nil, err
	}
	if res.heapSettled, err = liveHeap(c, zurl, dir); err != nil {
		return nil, err
	}
	for _, p := range f.proxies {
		res.first = append(res.first, time.Duration(p.first.Load()))
		res.full = append(res.full, time.Duration(p.full.Load()))
	}
	res.streamErrors = f.streamErrors.Load()
	m, err := metricSum(zurl+"/metrics", "meshfed_zone_xds_proxies_generated_total",
		"meshfed_zone_xds_pass_seconds_count", "meshfed_zone_xds_pass_seconds_sum")
	if err != nil {
		return nil, err
	}
	res.generated, res.passes, res.passSeconds = m["meshfed_zone_xds_proxies_generated_total"],
		m["meshfed_zone_xds_pass_seconds_count"], m["meshfed_zone_xds_pass_seconds_sum"]
	fmt.Fprintf(os.Stderr, "xdsbench: %d proxies: full config after %s (first p50 %s, full p50 %s); zone RSS %d → %d KiB, CPU %s; %d stream errors\n",
		n, fmtD(res.total), fmtD(pct(res.first, 0.5)), fmtD(pct(res.full, 0.5)), res.rssBefore, res.rssAfter, fmtD(res.cpuConnect), res.streamErrors)
	if profile {
		// The heap in use with all N at full config, beside the CPU profile.
		if err := fetch(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", c.pprofAddr), 30*time.Second, o.cpuprofile+".heap"); err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
		fmt.Fprintf(os.Stderr, "xdsbench: zone heap profile at full config written to %s.heap\n", o.cpuprofile)
	}
	if profDone != nil {
		fmt.Fprintf(os.Stderr, "xdsbench: waiting for the %ds CPU profile to end\n", o.cpuprofileSec)
		if err := <-profDone; err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		fmt.Fprintf(os.Stderr, "xdsbench: zone CPU profile of the connect phase written to %s\n", o.cpuprofile)
	}

	// 2. Endpoint changes.
	cpu0, self1 := after.cpu, selfCPU()
	if profDone != nil {
		st, err := readProc(c.zone.pid())
		if err != nil {
			return nil, err
		}
		cpu0 = st.cpu
	}
	if changeProfile {
		profDone = make(chan error, 1)
		go func() { profDone <- fetchProfile(c.pprofAddr, o.cpuprofileSec, o.changeProfile) }()
		time.Sleep(100 * time.Millisecond)
	}
	subscribers := map[string][]*proxy{}
	for _, p := range f.proxies {
		for s := range p.outSet {
			subscribers[s] = append(subscribers[s], p)
		}
	}
	order := rng.Perm(nSvc)
	done := 0
	for k := 0; k < len(order) && done < o.changes; k++ {
		svc := serviceName(order[k])
		subs := subscribers[svc]
		if len(subs) == 0 {
			continue
		}
		done++
		extra := &dataplane{name: fmt.Sprintf("extra-%d", done), ip: ipOf(200, done), service: order[k]}
		pr := &probe{id: int64(done), service: svc, addr: extra.ip, left: len(subs), done: make(chan struct{})}
		f.probe.Store(pr)
		pr.start = time.Now()
		if err := putJSON(zurl+"/meshes/default/dataplanes/"+extra.name, extra.docJSON()); err != nil {
			return nil, err
		}
		res.putLat = append(res.putLat, time.Since(pr.start))
		select {
		case <-pr.done:
		case <-time.After(30 * time.Second):
		}
		f.probe.Store(nil)
		pr.mu.Lock()
		res.change = append(res.change, pr.lat...)
		res.changeMissed += pr.left
		res.subscribers = append(res.subscribers, len(subs))
		pr.mu.Unlock()
	}
	st, err := readProc(c.zone.pid())
	if err != nil {
		return nil, err
	}
	res.cpuChange, res.selfChange = st.cpu-cpu0, selfCPU()-self1
	if changeProfile {
		if err := <-profDone; err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		fmt.Fprintf(os.Stderr, "xdsbench: zone CPU profile of the change phase written to %s\n", o.changeProfile)
	}

	// 4. NACKs.
	m, err = metricSum(zurl+"/metrics", "meshfed_xds_nacks_total", "meshfed_xds_responses_total",
		"meshfed_zone_xds_pass_seconds_count", "meshfed_zone_xds_pass_seconds_sum")
	if err != nil {
		return nil, err
	}
	res.nacks, res.responses = m["meshfed_xds_nacks_total"], m["meshfed_xds_responses_total"]
	res.changePasses = m["meshfed_zone_xds_pass_seconds_count"] - res.passes
	res.changePassSeconds = m["meshfed_zone_xds_pass_seconds_sum"] - res.passSeconds
	fmt.Fprintf(os.Stderr, "xdsbench: %d proxies: %d endpoint changes, p99 %s, %d subscribers missed; NACKs %.0f\n",
		n, len(res.putLat), fmtD(pct(res.change, 0.99)), res.changeMissed, res.nacks)
	return res, nil
}

// waitFull waits until every proxy has full config, reporting progress
// every 10 s; on timeout it describes a few proxies that lack something.
func waitFull(f *fleet, c *cluster, timeout time.Duration) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case <-f.full:
			return nil
		case <-tick.C:
			msg := ""
			if e := f.lastStreamError.Load(); e != nil {
				msg = ", last stream error: " + *e
			}
			fmt.Fprintf(os.Stderr, "xdsbench:   %s: %d/%d first, %d/%d full, %d responses, %d stream errors%s\n",
				fmtD(time.Since(f.start)), f.firstDone.Load(), len(f.proxies), f.fullDone.Load(), len(f.proxies),
				f.responses.Load(), f.streamErrors.Load(), msg)
			if !c.zone.running() {
				return errors.New("the zone exited")
			}
		case <-deadline:
			var lacking []string
			for _, p := range f.proxies {
				if p.full.Load() == 0 {
					lacking = append(lacking, p.status())
					if len(lacking) == 5 {
						break
					}
				}
			}
			return fmt.Errorf("after %s only %d/%d proxies have full config (%d first); some of the others:\n  %s",
				timeout, f.fullDone.Load(), len(f.proxies), f.firstDone.Load(), strings.Join(lacking, "\n  "))
		}
	}
}

// waitRegistered polls the zone's meshfed_xds_streams every 250 ms and
// returns the time since start at which it first reached n (0 if ctx ends
// first).
func waitRegistered(ctx context.Context, zurl string, n int, start time.Time) time.Duration {
	for ctx.Err() == nil {
		if m, err := metricSum(zurl+"/metrics", "meshfed_xds_streams"); err == nil && m["meshfed_xds_streams"] >= float64(n) {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return 0
}

// liveHeap forces a GC in the zone (a heap profile with gc=1 does) and
// returns the heap in use right after it: the zone's live memory.
func liveHeap(c *cluster, zurl, dir string) (float64, error) {
	if err := fetch(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", c.pprofAddr), 60*time.Second, filepath.Join(dir, "gc.heap")); err != nil {
		return 0, fmt.Errorf("forcing a GC: %w", err)
	}
	m, err := metricSum(zurl+"/metrics", "go_memstats_heap_inuse_bytes")
	if err != nil {
		return 0, err
	}
	return m["go_memstats_heap_inuse_bytes"], nil
}

// fetchProfile saves a CPU profile of seconds from the zone's pprof port.
func fetchProfile(addr string, seconds int, path string) error {
	return fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), time.Duration(seconds+30)*time.Second, path)
}

// fetch saves the body of GET url to path.
func fetch(url string, timeout time.Duration, path string) error {
	hc := &http.Client{Timeout: timeout}
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ipOf is a distinct 10.a.b.c address for i (never dialed).
func ipOf(a, i int) string {
	return fmt.Sprintf("10.%d.%d.%d", a+i/65536, (i/256)%256, i%256)
}

// pct is the q-quantile (nearest rank) of d; 0 for none.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtD(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func printResults(o options, rs []*result) {
	fmt.Printf("\n1. connect: all N streams opened at once → every proxy has its config (first: all it asked for; full: final, every endpoint)\n")
	fmt.Printf("   %6s %10s %9s %9s %9s %9s %9s %9s %7s %10s %7s %9s   %s\n",
		"N", "registered", "first p50", "first p99", "full p50", "full p99", "full max", "total", "stream", "generated", "passes", "pass time", "target N=500 total < 2s")
	for _, r := range rs {
		verdict := ""
		if r.n <= 500 {
			verdict = pass(r.total < 2*time.Second)
		}
		fmt.Printf("   %6d %10s %9s %9s %9s %9s %9s %9s %7d %10.0f %7.0f %9s   %s\n",
			r.n, fmtD(r.registered), fmtD(pct(r.first, 0.5)), fmtD(pct(r.first, 0.99)), fmtD(pct(r.full, 0.5)), fmtD(pct(r.full, 0.99)),
			fmtD(pct(r.full, 1)), fmtD(r.total), r.streamErrors, r.generated, r.passes,
			fmtD(time.Duration(r.passSeconds*float64(time.Second))), verdict)
	}
	fmt.Printf("   (registered = until the zone's meshfed_xds_streams reached N, sampled every 250 ms; stream = stream errors and reconnects; generated = proxies given new resources by the zone,\n")
	fmt.Printf("    passes / pass time = the zone's generation passes and their summed duration, both from its /metrics)\n")

	fmt.Printf("\n2. endpoint change: PUT one new Dataplane of a service on the zone API → its subscribers' EDS holds the new endpoint\n")
	fmt.Printf("   %6s %7s %16s %9s %9s %9s %8s %9s %7s %10s   %s\n", "N", "changes", "subscribers", "p50", "p99", "max", "missed", "PUT p50", "passes", "pass mean", "target p99 < 1s")
	for _, r := range rs {
		total := 0
		for _, s := range r.subscribers {
			total += s
		}
		avg := 0.0
		if len(r.subscribers) > 0 {
			avg = float64(total) / float64(len(r.subscribers))
		}
		passMean := time.Duration(0)
		if r.changePasses > 0 {
			passMean = time.Duration(r.changePassSeconds / r.changePasses * float64(time.Second))
		}
		fmt.Printf("   %6d %7d %16s %9s %9s %9s %8d %9s %7.0f %10s   %s\n", r.n, len(r.putLat), fmt.Sprintf("%d (%.0f avg)", total, avg),
			fmtD(pct(r.change, 0.5)), fmtD(pct(r.change, 0.99)), fmtD(pct(r.change, 1)), r.changeMissed,
			fmtD(pct(r.putLat, 0.5)), r.changePasses, fmtD(passMean), pass(r.changeMissed == 0 && pct(r.change, 0.99) < time.Second))
	}

	fmt.Printf("   (PUT p50 = the zone API's answer to the PUT; passes / pass mean = the zone's generation passes during this phase)\n")
	fmt.Printf("\n3. zone process: live heap (in use after a forced GC) and VmRSS, before connecting and with all N at full config; CPU (utime+stime) per phase; this process's CPU beside it\n")
	fmt.Printf("   %6s %10s %10s %12s %14s %9s %9s %11s %12s %11s %11s %11s   %s\n", "N", "heap bef", "heap aft", "heap KB/prx", "settled KB/prx", "RSS bef", "RSS aft", "RSS KiB/prx",
		"zone CPU con", "bench CPU", "zone CPU chg", "bench CPU", "target < 50 KB/proxy (settled heap)")
	for _, r := range rs {
		per := float64(r.rssAfter-r.rssBefore) / float64(r.n)
		heapPer := (r.heapAfter - r.heapBefore) / float64(r.n) / 1000
		settledPer := (r.heapSettled - r.heapBefore) / float64(r.n) / 1000
		fmt.Printf("   %6d %6.0f MiB %6.0f MiB %12.1f %8.1f (%4s) %5d MiB %5d MiB %11.1f %12s %11s %11s %11s   %s\n", r.n, r.heapBefore/(1<<20), r.heapAfter/(1<<20), heapPer,
			settledPer, fmtD(r.settleTime), r.rssBefore/1024, r.rssAfter/1024, per,
			fmtD(r.cpuConnect), fmtD(r.selfConnect), fmtD(r.cpuChange), fmtD(r.selfChange), pass(settledPer < 50))
	}
	fmt.Printf("   (heap aft: at full config; settled: once global acknowledged the zone's reports (time in parentheses), after two forced GCs)\n")
	fmt.Printf("   (RSS is the live heap plus the Go collector's headroom, GOGC=100 by default: up to about twice the live heap)\n")

	fmt.Printf("\n4. zone /metrics after both phases\n")
	fmt.Printf("   %6s %22s %28s\n", "N", "meshfed_xds_nacks_total", "meshfed_xds_responses_total")
	for _, r := range rs {
		fmt.Printf("   %6d %22.0f %28.0f\n", r.n, r.nacks, r.responses)
	}
}

func pass(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}
