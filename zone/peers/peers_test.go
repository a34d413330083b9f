package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/test/harness"
	"github.com/meshfed/meshfed/zone/inventory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testZone = "zone-1"
	waitFor  = 15 * time.Second
)

// cutTransport is memberlist's real loopback transport with a switch that
// drops everything to the addresses it is cut from (a partition when both
// sides cut each other).
type cutTransport struct {
	memberlist.Transport
	mu  sync.Mutex
	cut map[string]bool
}

func (t *cutTransport) blocked(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cut[addr]
}

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil // lost, as a UDP datagram would be
	}
	return t.Transport.WriteTo(b, addr)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		return nil, fmt.Errorf("dial %s: connection refused (cut)", addr)
	}
	return t.Transport.DialTimeout(addr, timeout)
}

// replica is one zone replica in a test: its inventory and its gossip.
type replica struct {
	id    string
	path  string
	inv   *inventory.Inventory
	peers *Peers
	tr    *cutTransport
	addr  string
	stop  func()
}

type pool struct {
	t        *testing.T
	replicas map[string]*replica
}

func newPool(t *testing.T) *pool { return &pool{t: t, replicas: map[string]*replica{}} }

// start runs replica id (with no periodic push/pull: changes travel by
// direct message, and state is exchanged only when a replica joins or
// rejoins after a partition) (reopening its inventory file when it ran before)
// and joins it to the given replicas.
func (p *pool) start(id string, join ...string) *replica {
	t := p.t
	t.Helper()
	r := p.replicas[id]
	if r == nil {
		r = &replica{id: id, path: filepath.Join(t.TempDir(), "inventory.db")}
		p.replicas[id] = r
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := inventory.Open(r.path, logger, inventory.Options{Zone: testZone, ReplicaID: id})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	r.tr = &cutTransport{Transport: nt, cut: map[string]bool{}}
	r.addr = fmt.Sprintf("127.0.0.1:%d", nt.GetAutoBindPort())
	var joinAddrs []string
	for _, j := range join {
		joinAddrs = append(joinAddrs, p.replicas[j].addr)
	}
	r.inv = inv
	r.peers, err = New(Config{Zone: testZone, ReplicaID: id, Store: inv, Join: joinAddrs, Transport: r.tr, Fast: true,
		PushPullInterval: time.Hour, ReconnectInterval: 300 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.peers.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = inv.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// partition cuts the network between two groups of replicas.
func (p *pool) partition(a, b []string) { p.setCut(a, b, true) }
func (p *pool) heal(a, b []string)      { p.setCut(a, b, false) }

func (p *pool) setCut(a, b []string, cut bool) {
	for _, x := range a {
		for _, y := range b {
			rx, ry := p.replicas[x], p.replicas[y]
			for _, pair := range [][2]*replica{{rx, ry}, {ry, rx}} {
				pair[0].tr.mu.Lock()
				pair[0].tr.cut[pair[1].addr] = cut
				pair[0].tr.mu.Unlock()
			}
		}
	}
}

func dataplane(t testing.TB, name, address string) *api.Resource {
	t.Helper()
	r, err := api.Decode(fmt.Appendf(nil, `{"type":"Dataplane","mesh":"default","name":%q,"networking":{"address":%q,"inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`, name, address))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func put(t testing.TB, r *replica, name, address string) {
	t.Helper()
	if _, _, err := r.inv.Put(dataplane(t, name, address), inventory.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// addressOn returns the address of Dataplane name on r ("" when absent).
func addressOn(r *replica, name string) string {
	dp, ok := r.inv.Get(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: name})
	if !ok {
		return ""
	}
	return dp.Spec.(*api.DataplaneSpec).Networking.Address
}

func waitAddress(t *testing.T, name, want string, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		harness.Eventually(t, waitFor, fmt.Sprintf("Dataplane %s at %q on replica %s", name, want, r.id), func() bool { return addressOn(r, name) == want })
	}
}

func alivePeers(r *replica) int {
	n := 0
	for _, p := range r.peers.Status().Peers {
		if p.State == "alive" {
			n++
		}
	}
	return n
}

func TestChangesReachEveryReplica(t *testing.T) {
	p := newPool(t)
	a := p.start("a")
	b := p.start("b", "a")
	c := p.start("c", "a")
	for _, r := range []*replica{a, b, c} {
		harness.Eventually(t, waitFor, "three alive replicas", func() bool { return alivePeers(r) == 2 })
	}
	put(t, a, "web-1", "10.0.0.1")
	waitAddress(t, "web-1", "10.0.0.1", b, c)
	put(t, c, "web-1", "10.0.0.3")
	waitAddress(t, "web-1", "10.0.0.3", a, b)
	if _, err := b.inv.Delete(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "web-1"}, 0); err != nil {
		t.Fatal(err)
	}
	waitAddress(t, "web-1", "", a, c)
	// Each replica reports what it took to global (its own outbox).
	for _, r := range []*replica{a, b, c} {
		if st := r.inv.Status(); st.Pending == 0 {
			t.Errorf("replica %s has no pending report for the changes it took", r.id)
		}
	}
	if st := a.peers.Status(); st.Sent == 0 || st.Received == 0 {
		t.Errorf("status counts nothing: %+v", st)
	}
}

func TestPartitionHeals(t *testing.T) {
	p := newPool(t)
	a := p.start("a")
	b := p.start("b", "a")
	c := p.start("c", "a")
	for _, r := range []*replica{a, b, c} {
		harness.Eventually(t, waitFor, "three alive replicas", func() bool { return alivePeers(r) == 2 })
	}
	put(t, a, "shared", "10.0.0.1")
	waitAddress(t, "shared", "10.0.0.1", b, c)

	p.partition([]string{"a"}, []string{"b", "c"})
	harness.Eventually(t, waitFor, "a to see b and c dead", func() bool { return alivePeers(a) == 0 })
	put(t, a, "only-a", "10.0.1.1")
	put(t, c, "only-c", "10.0.1.3")
	put(t, a, "shared", "10.0.0.2") // older ...
	put(t, b, "shared", "10.0.0.9") // ... than this one: b's wins
	waitAddress(t, "only-c", "10.0.1.3", b)
	if addressOn(a, "only-c") != "" || addressOn(b, "only-a") != "" {
		t.Fatal("a change crossed the partition")
	}

	p.heal([]string{"a"}, []string{"b", "c"})
	waitAddress(t, "only-a", "10.0.1.1", b, c)
	waitAddress(t, "only-c", "10.0.1.3", a)
	waitAddress(t, "shared", "10.0.0.9", a, b, c)
	harness.Eventually(t, waitFor, "a to see its peers alive again", func() bool { return alivePeers(a) == 2 })
}

func TestRestartedReplicaCatchesUp(t *testing.T) {
	p := newPool(t)
	a := p.start("a")
	b := p.start("b", "a")
	harness.Eventually(t, waitFor, "two replicas", func() bool { return alivePeers(a) == 1 })
	put(t, b, "web-1", "10.0.0.1")
	waitAddress(t, "web-1", "10.0.0.1", a)
	b.stop()
	harness.Eventually(t, waitFor, "a to see b leave", func() bool {
		st := a.peers.Status()
		return len(st.Peers) == 1 && st.Peers[0].State == "left"
	})
	put(t, a, "web-2", "10.0.0.2")
	if _, err := a.inv.Delete(api.Key{Type: api.TypeDataplane, Mesh: "default", Name: "web-1"}, 0); err != nil {
		t.Fatal(err)
	}
	b = p.start("b", "a")
	if addressOn(b, "web-1") != "10.0.0.1" {
		t.Fatal("b did not keep its file")
	}
	waitAddress(t, "web-2", "10.0.0.2", b)
	waitAddress(t, "web-1", "", b)
}

func TestBadRecordsRefusedAlone(t *testing.T) {
	p := newPool(t)
	a := p.start("a")
	good := dataplane(t, "good", "10.0.0.1")
	good.Labels = map[string]string{api.LabelZone: testZone, api.LabelOrigin: "zone"}
	goodBody, _ := good.MarshalJSON()
	bad := dataplane(t, "bad", "10.0.0.2")
	bad.Labels = map[string]string{api.LabelZone: "zone-2", api.LabelOrigin: "zone"}
	badBody, _ := bad.MarshalJSON()
	stamp := inventory.Stamp{Time: time.Now().UnixNano(), Replica: "x"}
	msg, _ := json.Marshal(message{Zone: testZone, From: "x", Records: []inventory.Record{
		{Type: api.TypeDataplane, Mesh: "default", Name: "bad", Stamp: stamp, Resource: badBody},
		{Type: api.TypeDataplane, Mesh: "default", Name: "good", Stamp: stamp, Resource: goodBody},
	}})
	d := &delegate{p: a.peers}
	d.NotifyMsg(msg)
	d.NotifyMsg([]byte("not json"))
	other, _ := json.Marshal(message{Zone: "zone-2", From: "y", Records: []inventory.Record{
		{Type: api.TypeDataplane, Mesh: "default", Name: "good2", Stamp: stamp, Resource: goodBody},
	}})
	d.NotifyMsg(other)
	d.MergeRemoteState([]byte("not gzip"), false)
	if addressOn(a, "good") != "10.0.0.1" || addressOn(a, "bad") != "" || addressOn(a, "good2") != "" {
		t.Fatalf("good=%q bad=%q good2=%q; want only the good record merged", addressOn(a, "good"), addressOn(a, "bad"), addressOn(a, "good2"))
	}
	if st := a.peers.Status(); st.Refused != 1 || st.Received != 1 {
		t.Errorf("status %+v; want 1 merged, 1 refused", st)
	}
}

func TestOtherZoneNotJoined(t *testing.T) {
	p := newPool(t)
	a := p.start("a")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := inventory.Open(filepath.Join(t.TempDir(), "inv.db"), logger, inventory.Options{Zone: "zone-2", ReplicaID: "z2"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inv.Close() }()
	other, err := New(Config{Zone: "zone-2", ReplicaID: "z2", Store: inv, BindAddr: "127.0.0.1:0", Join: []string{a.addr}, Fast: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = other.Run(ctx)
	if n := len(a.peers.Status().Peers); n != 0 {
		t.Errorf("a replica of zone-2 joined zone-1's pool (%d peers)", n)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{BindAddr: "nope", Join: []string{"x"}, SecretKey: []byte("short")}
	err := c.Validate()
	for _, want := range []string{"zone:", "replica-id:", "gossip-addr:", "join:", "gossip-key:", "store:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to name %q", err, want)
		}
	}
}
