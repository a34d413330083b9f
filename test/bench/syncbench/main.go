// Command syncbench measures global → zone sync in one process: a real
// global.Server (Raft, HTTP API, sync port over loopback TCP + TLS) and zone
// sync clients with their replicas.
//
//	go run ./test/bench/syncbench [-zones 10] [-changes 1000] [-writers 16] [-streams 100]
//
// It prints three figures:
//  1. propagation: for every (change, zone), the time from the API's
//     acknowledgement of a PUT to the zone's replica reaching its revision
//     (p50/p99/max), with sequential and concurrent writers;
//  2. resume cost: messages and bytes a zone reconnecting after -changes
//     changes receives until caught up, against a fresh zone's full Reset;
//  3. memory per connected zone stream (HeapInuse after GC).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/stats"

	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/global"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

func main() {
	zones := flag.Int("zones", 10, "zones connected during the propagation runs")
	changes := flag.Int("changes", 1000, "policy changes per run")
	writers := flag.Int("writers", 16, "concurrent writers of the concurrent run")
	streams := flag.Int("streams", 100, "zone streams connected for the memory figure")
	flag.Parse()
	if err := run(*zones, *changes, *writers, *streams); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
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

func waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// node is the in-process global node.
type node struct {
	cfg    global.Config
	token  string
	syncCA []byte
	api    string
	hc     *http.Client
	stop   func()
}

func startGlobal(dir string) (*node, error) {
	cfg := global.Config{
		NodeID: "g1", DataDir: dir, APIAddr: freeAddr(), RaftAddr: freeAddr(),
		GossipAddr: freeAddr(), SyncAddr: freeAddr(),
		SyncHeartbeatInterval: time.Second, InsightFlushInterval: 100 * time.Millisecond,
	}
	srv, err := global.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	n := &node{cfg: cfg, api: "http://" + cfg.APIAddr,
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	n.stop = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "global:", err)
		}
	}
	err = waitFor(30*time.Second, "global ready", func() bool {
		resp, err := http.Get(n.api + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false
		}
		tok, err1 := os.ReadFile(filepath.Join(dir, global.AdminTokenFile))
		caPEM, err2 := os.ReadFile(filepath.Join(dir, global.SyncCAFile))
		n.token, n.syncCA = strings.TrimSpace(string(tok)), caPEM
		return err1 == nil && err2 == nil && n.token != "" && len(caPEM) > 0
	})
	if err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

func (n *node) call(method, path string, body []byte) (int, http.Header, []byte, error) {
	req, _ := http.NewRequest(method, n.api+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out, nil
}

func (n *node) zoneToken(zone string) (string, error) {
	body, _ := json.Marshal(map[string]string{"zone": zone, "validFor": "1h"})
	code, _, out, err := n.call("POST", "/tokens/zone", body)
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("zone token: %d %s", code, out)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		return "", fmt.Errorf("zone token answer %s: %v", out, err)
	}
	return tok.Token, nil
}

// put writes one MeshTrafficPermission and returns its revision (ETag) and
// the time the API's answer arrived.
func (n *node) put(name string, i int) (uint64, time.Time, error) {
	action := "Allow"
	if i%2 == 1 {
		action = "Deny"
	}
	body := fmt.Sprintf(`{"type":"MeshTrafficPermission","mesh":"default","name":%q,"spec":{"from":[{"targetRef":{"kind":"MeshService","name":"svc-%d"},"default":{"action":%q}}]}}`, name, i, action)
	code, hdr, out, err := n.call("PUT", "/meshes/default/meshtrafficpermissions/"+name, []byte(body))
	at := time.Now()
	if err != nil {
		return 0, at, err
	}
	if code != 200 && code != 201 {
		return 0, at, fmt.Errorf("put %s: %d %s", name, code, out)
	}
	rev, err := strconv.ParseUint(strings.Trim(hdr.Get("ETag"), `"`), 10, 64)
	if err != nil {
		return 0, at, fmt.Errorf("put %s: ETag %q: %v", name, hdr.Get("ETag"), err)
	}
	return rev, at, nil
}

// revision reads global's current revision: a write's ETag is the latest we
// know of; /global/status is not needed.
func (n *node) latestRevision() (uint64, error) {
	rev, _, err := n.put("bench-marker", 0)
	return rev, err
}

// counters counts what a zone's client receives: gRPC messages and their
// wire length (stats handler), and bytes read from the TCP connection (TLS
// records and HTTP/2 framing included).
type counters struct {
	msgs, payload, tcp atomic.Int64
}

type snapshot struct{ msgs, payload, tcp int64 }

func (c *counters) snap() snapshot {
	return snapshot{c.msgs.Load(), c.payload.Load(), c.tcp.Load()}
}

func (c *counters) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c *counters) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *counters) HandleConn(context.Context, stats.ConnStats)                       {}
func (c *counters) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		c.msgs.Add(1)
		c.payload.Add(int64(in.WireLength))
	}
}

type countConn struct {
	net.Conn
	c *counters
}

func (cc *countConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.tcp.Add(int64(n))
	return n, err
}

// memReplica is a replica that keeps only its revision and cluster id (the
// memory figure is about streams, not about the zones' copies of the state).
type memReplica struct {
	mu      sync.Mutex
	rev     uint64
	cluster string
}

func (m *memReplica) ApplyChanges(_ []*syncpb.Resource, _ []*syncpb.Deletion, rev uint64) ([]*syncpb.Rejection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev = rev
	return nil, nil
}

func (m *memReplica) Reset(_ []*syncpb.Resource, rev uint64, cluster string) ([]*syncpb.Rejection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev, m.cluster = rev, cluster
	return nil, nil
}

func (m *memReplica) Revision() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

func (m *memReplica) ClusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cluster
}

// zone is one zone's sync client and replica.
type zone struct {
	name   string
	rep    syncclient.Replica
	file   *replica.Replica // nil for a memReplica
	client *syncclient.Client
	cnt    *counters
	stop   func()
}

func startZone(addr string, pool []grpc.DialOption, name, tok string, rep syncclient.Replica, cnt *counters) (*zone, error) {
	opts := append([]grpc.DialOption(nil), pool...)
	if cnt != nil {
		opts = append(opts, grpc.WithStatsHandler(cnt),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", a)
				if err != nil {
					return nil, err
				}
				return &countConn{Conn: c, c: cnt}, nil
			}))
	}
	cfg := syncclient.Config{
		Zone: name, ReplicaID: name + "-r1", GlobalAddrs: []string{addr}, Token: tok,
		DialOptions:       opts,
		Replica:           rep,
		HeartbeatInterval: time.Second,
		Backoff:           syncclient.Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond},
	}
	c, err := syncclient.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	z := &zone{name: name, rep: rep, client: c, cnt: cnt}
	z.file, _ = rep.(*replica.Replica)
	var once sync.Once
	z.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	return z, nil
}

func openReplica(dir, name string) (*replica.Replica, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return replica.Open(filepath.Join(dir, name+".db"), nil, replica.Options{Zone: name})
}

func tlsOpts(caPEM []byte) ([]grpc.DialOption, error) {
	pool, err := ca.CertPool(caPEM)
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool}))}, nil
}

// seen is a zone's timeline: the time each revision was first observed.
type seen struct {
	mu  sync.Mutex
	at  []time.Time
	rev []uint64
}

func watch(ctx context.Context, r *replica.Replica, s *seen) {
	var last uint64
	for {
		ch := r.Watch()
		if rev := r.Revision(); rev != last {
			now := time.Now()
			last = rev
			s.mu.Lock()
			s.at, s.rev = append(s.at, now), append(s.rev, rev)
			s.mu.Unlock()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// reached is when the zone first held revision rev or later.
func (s *seen) reached(rev uint64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.rev), func(i int) bool { return s.rev[i] >= rev })
	if i == len(s.rev) {
		return time.Time{}, false
	}
	return s.at[i], true
}

type ack struct {
	rev uint64
	at  time.Time
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.5) - 1
	i = min(max(i, 0), len(d)-1)
	return d[i]
}

func run(nZones, nChanges, nWriters, nStreams int) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "syncbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g, err := startGlobal(filepath.Join(dir, "global"))
	if err != nil {
		return err
	}
	defer g.stop()
	opts, err := tlsOpts(g.syncCA)
	if err != nil {
		return err
	}
	fmt.Printf("syncbench: 1 global node (in-process, Raft+bolt with fsync), sync over loopback TCP+TLS; GOMAXPROCS=%d\n", runtime.GOMAXPROCS(0))

	// 1. Propagation.
	zones := make([]*zone, nZones)
	timelines := make([]*seen, nZones)
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	for i := range zones {
		name := fmt.Sprintf("zone-%d", i+1)
		tok, err := g.zoneToken(name)
		if err != nil {
			return err
		}
		rep, err := openReplica(filepath.Join(dir, "zones"), name)
		if err != nil {
			return err
		}
		defer rep.Close()
		z, err := startZone(g.cfg.SyncAddr, opts, name, tok, rep, &counters{})
		if err != nil {
			return err
		}
		defer func() { z.stop() }()
		zones[i], timelines[i] = z, &seen{}
		go watch(wctx, rep, timelines[i])
	}
	rev0, err := g.latestRevision()
	if err != nil {
		return err
	}
	if err := waitAll(zones, rev0, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("\n1. propagation: %d zones, %d MeshTrafficPermission PUTs per run (new names), API ack → zone replica at ≥ that revision\n", nZones, nChanges)
	fmt.Printf("   %-22s %9s %9s %9s %9s %8s %9s\n", "run", "writes/s", "p50", "p99", "max", "pairs", "<0 (ack late)")
	for _, w := range []int{1, nWriters} {
		acks := make([]ack, nChanges)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, w)
		t0 := time.Now()
		prefix := fmt.Sprintf("w%d", w)
		for range w {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= nChanges {
						return
					}
					rev, at, err := g.put(fmt.Sprintf("%s-%d", prefix, i), i)
					if err != nil {
						errs <- err
						return
					}
					acks[i] = ack{rev, at}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(t0)
		select {
		case err := <-errs:
			return err
		default:
		}
		var top uint64
		for _, a := range acks {
			top = max(top, a.rev)
		}
		if err := waitAll(zones, top, 30*time.Second); err != nil {
			return err
		}
		var lat []time.Duration
		early := 0
		for _, a := range acks {
			for _, tl := range timelines {
				t, ok := tl.reached(a.rev)
				if !ok {
					return fmt.Errorf("a zone never reached revision %d", a.rev)
				}
				d := t.Sub(a.at)
				if d < 0 {
					early++
					d = 0
				}
				lat = append(lat, d)
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p99 := percentile(lat, 0.99)
		met := "met"
		if p99 >= 100*time.Millisecond {
			met = "NOT met"
		}
		fmt.Printf("   %-22s %9.0f %9s %9s %9s %8d %9d   target p99 < 100ms: %s\n",
			fmt.Sprintf("%d writer(s)", w), float64(nChanges)/elapsed.Seconds(),
			fmtD(percentile(lat, 0.5)), fmtD(p99), fmtD(lat[len(lat)-1]), len(lat), early, met)
	}
	wcancel()

	// 2. Resume cost.
	z := zones[0]
	z.stop()
	before := z.file.Revision()
	var top uint64
	for i := range nChanges {
		if top, _, err = g.put(fmt.Sprintf("resume-%d", i), i); err != nil {
			return err
		}
	}
	tok, err := g.zoneToken(z.name)
	if err != nil {
		return err
	}
	cnt := &counters{}
	t0 := time.Now()
	z2, err := startZone(g.cfg.SyncAddr, opts, z.name, tok, z.file, cnt)
	if err != nil {
		return err
	}
	defer z2.stop()
	if err := waitAll([]*zone{z2}, top, 30*time.Second); err != nil {
		return err
	}
	resume, resumeT := cnt.snap(), time.Since(t0)

	freshRep, err := openReplica(filepath.Join(dir, "fresh"), "zone-fresh")
	if err != nil {
		return err
	}
	defer freshRep.Close()
	ftok, err := g.zoneToken("zone-fresh")
	if err != nil {
		return err
	}
	fcnt := &counters{}
	t0 = time.Now()
	fz, err := startZone(g.cfg.SyncAddr, opts, "zone-fresh", ftok, freshRep, fcnt)
	if err != nil {
		return err
	}
	defer fz.stop()
	if err := waitAll([]*zone{fz}, top, 30*time.Second); err != nil {
		return err
	}
	reset, resetT := fcnt.snap(), time.Since(t0)
	fmt.Printf("\n2. resume cost: zone-1 offline from revision %d while %d policies were created (global at %d, %d resources in the zone's replica)\n",
		before, nChanges, top, freshRep.Len())
	fmt.Printf("   %-34s %6s %12s %12s %10s\n", "", "msgs", "grpc bytes", "tcp bytes", "time")
	fmt.Printf("   %-34s %6d %12d %12d %10s\n", "resume (Hello at last revision)", resume.msgs, resume.payload, resume.tcp, fmtD(resumeT))
	fmt.Printf("   %-34s %6d %12d %12d %10s\n", "full Reset (fresh empty replica)", reset.msgs, reset.payload, reset.tcp, fmtD(resetT))
	fmt.Printf("   resume/reset: %.1f%% of gRPC bytes (%d B per change resumed)\n",
		100*float64(resume.payload)/float64(reset.payload), resume.payload/int64(nChanges))

	// 3. Memory per stream.
	for _, z := range zones[1:] {
		z.stop()
	}
	z2.stop()
	fz.stop()
	toks := make([]string, nStreams)
	for i := range toks {
		if toks[i], err = g.zoneToken(fmt.Sprintf("mem-%d", i)); err != nil {
			return err
		}
	}
	withGlobal, err := memPerStream(g.cfg.SyncAddr, opts, toks, top)
	if err != nil {
		return err
	}
	stub, err := startStub()
	if err != nil {
		return err
	}
	defer stub.stop()
	sopts, err := tlsOpts(stub.caPEM)
	if err != nil {
		return err
	}
	clientsOnly, err := memPerStream(stub.addr, sopts, toks, 0)
	if err != nil {
		return err
	}
	fmt.Printf("\n3. memory: HeapInuse after GC, before and after %d zone sync clients (in-memory replicas keeping only the revision) connected and caught up\n", nStreams)
	fmt.Printf("   against global:           %8.1f KiB per zone stream (global's server side + client side, one process)\n", withGlobal/1024)
	fmt.Printf("   against a stub server:    %8.1f KiB per zone stream (client side + a stub that only holds the stream)\n", clientsOnly/1024)
	fmt.Printf("   global server side ≈      %8.1f KiB per zone stream (difference; the stub's own per-stream cost is left out)\n", (withGlobal-clientsOnly)/1024)
	fmt.Printf("\ntotal run time %s\n", time.Since(start).Round(time.Second))
	return nil
}

func fmtD(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

func waitAll(zones []*zone, rev uint64, timeout time.Duration) error {
	return waitFor(timeout, fmt.Sprintf("zones at revision %d", rev), func() bool {
		for _, z := range zones {
			if z.rep.Revision() < rev {
				return false
			}
		}
		return true
	})
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// memPerStream connects one client per token to addr, waits until all are
// welcomed (and at revision rev or later), and returns the HeapInuse growth
// per client. The clients are stopped before it returns.
func memPerStream(addr string, opts []grpc.DialOption, toks []string, rev uint64) (float64, error) {
	time.Sleep(200 * time.Millisecond) // let stopped streams wind down
	before := heapInuse()
	zs := make([]*zone, len(toks))
	defer func() {
		for _, z := range zs {
			if z != nil {
				z.stop()
			}
		}
	}()
	for i, tok := range toks {
		z, err := startZone(addr, opts, fmt.Sprintf("mem-%d", i), tok, &memReplica{}, nil)
		if err != nil {
			return 0, err
		}
		zs[i] = z
	}
	err := waitFor(60*time.Second, "all streams connected", func() bool {
		for _, z := range zs {
			if !z.client.Status().Connected || z.rep.Revision() < rev {
				return false
			}
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	time.Sleep(500 * time.Millisecond) // acks, insights
	after := heapInuse()
	return (float64(after) - float64(before)) / float64(len(toks)), nil
}

// stub is a sync server that welcomes every zone and then only reads (and
// answers nothing but heartbeats): the client side's cost, measured against
// it, has no global behind it.
type stub struct {
	syncpb.UnimplementedSyncServiceServer
	addr  string
	caPEM []byte
	stop  func()
}

func startStub() (*stub, error) {
	root, err := ca.NewRoot("syncbench stub", time.Hour, ca.KeyOptions{})
	if err != nil {
		return nil, err
	}
	auth, err := ca.Parse(root)
	if err != nil {
		return nil, err
	}
	kp, err := auth.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	s := &stub{addr: ln.Addr().String(), caPEM: root.CertPEM}
	syncpb.RegisterSyncServiceServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	s.stop = srv.Stop
	return s, nil
}

func (s *stub) Stream(st grpc.BidiStreamingServer[syncpb.StreamRequest, syncpb.StreamResponse]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	w := &syncpb.Welcome{GlobalNode: "stub", ClusterId: "stub", HeartbeatIntervalMs: 1000}
	if err := st.Send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Welcome{Welcome: w}}); err != nil {
		return err
	}
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if m.GetHeartbeat() != nil {
			hb := &syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Heartbeat{Heartbeat: &syncpb.Heartbeat{UnixNano: time.Now().UnixNano()}}}
			if err := st.Send(hb); err != nil {
				return err
			}
		}
	}
}
