package syncclient_test

// The client is tested against the real global sync server (global/syncserver)
// with fakes behind it (feed, token check, report store, insights), and the
// real zone replica (zone/replica) in a temporary directory. Only tests import
// global: the import rules (test/layout) hold for the packages themselves.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// *replica.Replica is what the client writes in production.
var _ syncclient.Replica = (*replica.Replica)(nil)

const (
	waitFor   = 10 * time.Second
	clusterID = "cluster-a"
	zoneName  = "zone-1"
)

// checkLeaks registers a goleak check that runs after every other cleanup of
// the test: call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func testLogger(t testing.TB, prefix string) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t, prefix}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct {
	t      testing.TB
	prefix string
}

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- global's side: a feed, fakes, and sync servers on loopback ---------------

// fakeFeed is global's state in memory (latest change per key, tombstone
// floor for ErrTooOld), shared by every node of a test.
type fakeFeed struct {
	mu     sync.Mutex
	rev    uint64
	floor  uint64
	live   map[api.Key]*api.Resource
	last   map[api.Key]batch.Change
	notify chan struct{}
}

func newFeed() *fakeFeed {
	return &fakeFeed{live: map[api.Key]*api.Resource{}, last: map[api.Key]batch.Change{}, notify: make(chan struct{})}
}

func (f *fakeFeed) put(r *api.Resource) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	m := r.Meta
	m.Revision = f.rev
	cp := r.WithMeta(m)
	f.live[cp.Key()] = cp
	f.last[cp.Key()] = batch.Change{Key: cp.Key(), Revision: f.rev, Resource: cp}
	close(f.notify)
	f.notify = make(chan struct{})
	return f.rev
}

// putAll stores rs at consecutive revisions with one wake-up, so that a
// session sends them in one batch.
func (f *fakeFeed) putAll(rs ...*api.Resource) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		f.rev++
		m := r.Meta
		m.Revision = f.rev
		cp := r.WithMeta(m)
		f.live[cp.Key()] = cp
		f.last[cp.Key()] = batch.Change{Key: cp.Key(), Revision: f.rev, Resource: cp}
	}
	close(f.notify)
	f.notify = make(chan struct{})
	return f.rev
}

func (f *fakeFeed) del(key api.Key) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	delete(f.live, key)
	f.last[key] = batch.Change{Key: key, Revision: f.rev}
	close(f.notify)
	f.notify = make(chan struct{})
	return f.rev
}

func (f *fakeFeed) forget(rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = rev
}

func (f *fakeFeed) revision() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev
}

func (f *fakeFeed) ChangesSince(since uint64) ([]batch.Change, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if since < f.floor {
		return nil, f.rev, batch.ErrTooOld
	}
	var out []batch.Change
	for _, c := range f.last {
		if c.Revision > since {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, f.rev, nil
}

func (f *fakeFeed) All() ([]*api.Resource, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*api.Resource, 0, len(f.live))
	for _, r := range f.live {
		out = append(out, r)
	}
	return out, f.rev
}

func (f *fakeFeed) Watch() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

func (f *fakeFeed) ClusterID() string { return clusterID }

// want renders what zone should hold of the feed: "Type/mesh/name@rev".
func (f *fakeFeed) want(zone string) []string {
	all, _ := f.All()
	filter := syncserver.DefaultFilter(zone)
	var out []string
	for _, r := range all {
		if filter(r.Key(), r) {
			out = append(out, r.String())
		}
	}
	slices.Sort(out)
	return out
}

// fakeAuth accepts "good-<zone>" for <zone>.
type fakeAuth struct {
	mu    sync.Mutex
	calls int
}

func (a *fakeAuth) Authenticate(token string) (string, error) {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	if zone, ok := strings.CutPrefix(token, "good-"); ok && zone != "" {
		return zone, nil
	}
	return "", errors.New("zone token signature is not valid for this cluster")
}

func (a *fakeAuth) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// fakeStore is global's report store: it records the reports it committed;
// failOnce makes the first attempt at a sequence fail; rejectNames are
// refused.
type fakeStore struct {
	mu          sync.Mutex
	committed   []uint64 // sequences, in commit order
	attempts    map[uint64]int
	failOnce    map[uint64]bool
	rejectNames map[string]bool
}

func newStore() *fakeStore {
	return &fakeStore{attempts: map[uint64]int{}, failOnce: map[uint64]bool{}, rejectNames: map[string]bool{}}
}

func (s *fakeStore) Apply(_ context.Context, zone string, rep *syncpb.Report) ([]*syncpb.Rejection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := rep.GetSequence()
	s.attempts[seq]++
	if zone != zoneName {
		return nil, fmt.Errorf("report from %q", zone)
	}
	if s.failOnce[seq] && s.attempts[seq] == 1 {
		return nil, errors.New("raft: no leader")
	}
	s.committed = append(s.committed, seq)
	var rej []*syncpb.Rejection
	for _, u := range rep.GetUpserts() {
		if s.rejectNames[u.GetName()] {
			rej = append(rej, &syncpb.Rejection{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName(), Reason: "refused by the test"})
		}
	}
	return rej, nil
}

func (s *fakeStore) snapshot() ([]uint64, map[uint64]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	attempts := map[uint64]int{}
	for k, v := range s.attempts {
		attempts[k] = v
	}
	return slices.Clone(s.committed), attempts
}

type ackEvent struct {
	revision uint64
	rejected []*syncpb.Rejection
}

type fakeInsights struct {
	mu           sync.Mutex
	connected    int
	acked        []ackEvent
	disconnected int
}

func (in *fakeInsights) Connected(string, string, string, time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.connected++
}

func (in *fakeInsights) Acked(_, _ string, rev uint64, rejected []*syncpb.Rejection) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.acked = append(in.acked, ackEvent{rev, rejected})
}

func (in *fakeInsights) Disconnected(string, string, time.Time, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.disconnected++
}

// lastAck returns the last acknowledgement (zero if none).
func (in *fakeInsights) lastAck() ackEvent {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.acked) == 0 {
		return ackEvent{}
	}
	return in.acked[len(in.acked)-1]
}

// recorder keeps what a node's streams received (Hellos) and sent.
type recorder struct {
	mu     sync.Mutex
	hellos []*syncpb.Hello
	sent   []*syncpb.StreamResponse
}

func (r *recorder) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &recordingStream{ServerStream: ss, r: r})
}

type recordingStream struct {
	grpc.ServerStream
	r *recorder
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*syncpb.StreamRequest); ok && err == nil && req.GetHello() != nil {
		s.r.mu.Lock()
		s.r.hellos = append(s.r.hellos, proto.Clone(req.GetHello()).(*syncpb.Hello))
		s.r.mu.Unlock()
	}
	return err
}

func (s *recordingStream) SendMsg(m any) error {
	if resp, ok := m.(*syncpb.StreamResponse); ok {
		s.r.mu.Lock()
		s.r.sent = append(s.r.sent, proto.Clone(resp).(*syncpb.StreamResponse))
		s.r.mu.Unlock()
	}
	return s.ServerStream.SendMsg(m)
}

func (r *recorder) snapshot() ([]*syncpb.Hello, []*syncpb.StreamResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hellos), slices.Clone(r.sent)
}

// sentResets counts the Reset chunks and the Welcomes with reset = true.
func (r *recorder) sentResets() (chunks, welcomes int) {
	_, sent := r.snapshot()
	for _, m := range sent {
		if m.GetReset_() != nil {
			chunks++
		}
		if m.GetWelcome().GetReset_() {
			welcomes++
		}
	}
	return chunks, welcomes
}

// node is one global node's sync server on a loopback port.
type node struct {
	id       string
	addr     string
	auth     *fakeAuth
	store    *fakeStore
	insights *fakeInsights
	rec      *recorder
	srv      *syncserver.Server
	gs       *grpc.Server
	done     chan struct{}
	stopOnce sync.Once
}

func startNode(t *testing.T, id string, feed *fakeFeed, configure func(*syncserver.Config)) *node {
	t.Helper()
	n := &node{id: id, auth: &fakeAuth{}, store: newStore(), insights: &fakeInsights{}, rec: &recorder{}, done: make(chan struct{})}
	cfg := syncserver.Config{NodeID: id, Feed: feed, Authenticator: n.auth, Reports: n.store, Insights: n.insights}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := syncserver.New(cfg, testLogger(t, id+": "))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr, n.srv = lis.Addr().String(), srv
	n.gs = grpc.NewServer(grpc.StreamInterceptor(n.rec.intercept))
	syncpb.RegisterSyncServiceServer(n.gs, srv)
	go func() {
		defer close(n.done)
		_ = n.gs.Serve(lis)
	}()
	t.Cleanup(n.stop)
	return n
}

// stop stops the node: its streams end and its port refuses connections.
func (n *node) stop() {
	n.stopOnce.Do(func() {
		n.gs.Stop()
		<-n.done
	})
}

// --- the zone's side ---------------------------------------------------------

// zoneReports is the zone's source of reports.
type zoneReports struct {
	mu      sync.Mutex
	pending []*syncpb.Report
	acked   map[uint64][]*syncpb.Rejection
	notify  chan struct{}
}

func newZoneReports() *zoneReports {
	return &zoneReports{acked: map[uint64][]*syncpb.Rejection{}, notify: make(chan struct{})}
}

func (z *zoneReports) add(r *syncpb.Report) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.pending = append(z.pending, r)
	close(z.notify)
	z.notify = make(chan struct{})
}

func (z *zoneReports) PendingAfter(after uint64, limit int) []*syncpb.Report {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []*syncpb.Report
	for _, r := range z.pending {
		if r.GetSequence() > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out
}

func (z *zoneReports) Acked(seq uint64, rejected []*syncpb.Rejection) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.acked[seq] = rejected
	z.pending = slices.DeleteFunc(z.pending, func(r *syncpb.Report) bool { return r.GetSequence() == seq })
}

func (z *zoneReports) Watch() <-chan struct{} {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.notify
}

func (z *zoneReports) ackedSeqs() []uint64 {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []uint64
	for s := range z.acked {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// openReplica opens zone-1's replica at path; it is closed when the test
// ends (after the client, whose cleanup is registered later).
func openReplica(t *testing.T, path string) *replica.Replica {
	t.Helper()
	r, err := replica.Open(path, testLogger(t, "replica: "), replica.Options{Zone: zoneName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func tempReplica(t *testing.T) *replica.Replica {
	t.Helper()
	return openReplica(t, filepath.Join(t.TempDir(), "replica.db"))
}

// config is a client configuration for zone-1 against addrs.
func config(rep syncclient.Replica, addrs ...string) syncclient.Config {
	return syncclient.Config{
		Zone: zoneName, ReplicaID: "zone-1-a", GlobalAddrs: addrs, Token: "good-" + zoneName,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Replica:     rep,
		Backoff:     syncclient.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	}
}

// runClient starts a client; it is stopped (and Run must return nil) by the
// returned function or when the test ends.
func runClient(t *testing.T, cfg syncclient.Config) (*syncclient.Client, func()) {
	t.Helper()
	c, err := syncclient.New(cfg, testLogger(t, "zone: "))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("Run did not return within %s of its context's end", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// held renders what the replica holds, as fakeFeed.want.
func held(r *replica.Replica) []string {
	var out []string
	for _, d := range api.Types() {
		for _, res := range r.List(d.Name, "") {
			out = append(out, res.String())
		}
	}
	slices.Sort(out)
	return out
}

// converged waits until the replica holds what zone-1 should hold of the
// feed, at the feed's revision.
func converged(t *testing.T, r *replica.Replica, feed *fakeFeed) {
	t.Helper()
	eventually(t, "the replica to converge", func() bool {
		return r.Revision() == feed.revision() && slices.Equal(held(r), feed.want(zoneName))
	})
}

// --- fixtures ---------------------------------------------------------------

func decode(t testing.TB, doc string) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("fixture does not decode: %v\n%s", err, doc)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatalf("fixture is invalid: %v\n%s", err, doc)
	}
	return r
}

func mesh(t testing.TB, name string) *api.Resource {
	return decode(t, "type: Mesh\nname: "+name+"\n")
}

func mtp(t testing.TB, meshName, name string) *api.Resource {
	return decode(t, mtpDoc(meshName, name, "Allow"))
}

func mtpDoc(meshName, name, action string) string {
	return fmt.Sprintf(`{"type":"MeshTrafficPermission","mesh":%q,"name":%q,"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":%q}}]}}`, meshName, name, action)
}

// invalidMTP is a policy global should never have accepted (an unknown
// action): it decodes, but the zone's validation refuses it.
func invalidMTP(t testing.TB, meshName, name string) *api.Resource {
	t.Helper()
	r, err := api.DecodeJSON([]byte(mtpDoc(meshName, name, "Maybe")))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func zoneIngress(t testing.TB, name, zone string) *api.Resource {
	return decode(t, fmt.Sprintf(`type: ZoneIngress
name: %s
labels: {kuma.io/zone: %s}
zone: %s
networking: {address: 10.0.0.1, port: 10001}
`, name, zone, zone))
}

func dataplane(t testing.TB, meshName, name, zone string) *api.Resource {
	return decode(t, fmt.Sprintf(`type: Dataplane
mesh: %s
name: %s
labels: {kuma.io/zone: %s}
networking:
  address: 10.0.0.2
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
`, meshName, name, zone))
}

func key(typ, meshName, name string) api.Key { return api.Key{Type: typ, Mesh: meshName, Name: name} }

// seed fills the feed: a Mesh, a policy, zone-1's Dataplane (not sent to
// zones) and zone-2's ZoneIngress (sent to zone-1).
func seed(t *testing.T, f *fakeFeed) {
	t.Helper()
	f.put(mesh(t, "default"))
	f.put(mtp(t, "default", "allow-all"))
	f.put(dataplane(t, "default", "web-1", zoneName))
	f.put(zoneIngress(t, "zi-2", "zone-2"))
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}
