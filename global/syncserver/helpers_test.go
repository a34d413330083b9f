package syncserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// waitFor bounds every wait of these tests; the waits themselves end as soon
// as the awaited event happens.
const waitFor = 5 * time.Second

// checkLeaks registers a goleak check that runs after every other cleanup of
// the test (cleanups run last-registered first): call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
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

// --- fake Feed ---------------------------------------------------------------

// fakeFeed is global's state in memory: the latest change of every key (live
// or deleted) with its revision, and a tombstone floor below which
// ChangesSince answers ErrTooOld, as global/store's State does.
type fakeFeed struct {
	mu        sync.Mutex
	clusterID string
	rev       uint64
	floor     uint64
	live      map[api.Key]*api.Resource
	last      map[api.Key]batch.Change
	notify    chan struct{}
	since     []uint64 // the cursors ChangesSince was called with
}

func newFeed(clusterID string) *fakeFeed {
	return &fakeFeed{clusterID: clusterID, live: map[api.Key]*api.Resource{},
		last: map[api.Key]batch.Change{}, notify: make(chan struct{})}
}

func (f *fakeFeed) changed() {
	close(f.notify)
	f.notify = make(chan struct{})
}

// put stores r at the next revision and returns it.
func (f *fakeFeed) put(r *api.Resource) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	m := r.Meta
	m.Revision = f.rev
	cp := r.WithMeta(m)
	f.live[cp.Key()] = cp
	f.last[cp.Key()] = batch.Change{Key: cp.Key(), Revision: f.rev, Resource: cp}
	f.changed()
	return f.rev
}

// del deletes key at the next revision and returns it.
func (f *fakeFeed) del(key api.Key) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	delete(f.live, key)
	f.last[key] = batch.Change{Key: key, Revision: f.rev}
	f.changed()
	return f.rev
}

// forget makes every cursor below rev too old.
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
	f.since = append(f.since, since)
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
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out, f.rev
}

func (f *fakeFeed) Watch() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

func (f *fakeFeed) ClusterID() string { return f.clusterID }

// --- fake Authenticator, Reports, Insights -------------------------------------

// fakeAuth accepts "good-<zone>" for <zone>; anything else is refused.
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

type appliedReport struct {
	zone   string
	report *syncpb.Report
}

// fakeReports records reports; rejectNames are refused, err fails Apply.
type fakeReports struct {
	mu          sync.Mutex
	applied     []appliedReport
	err         error
	rejectNames map[string]bool
}

func (r *fakeReports) Apply(_ context.Context, zone string, rep *syncpb.Report) ([]*syncpb.Rejection, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.applied = append(r.applied, appliedReport{zone: zone, report: rep})
	var rej []*syncpb.Rejection
	for _, u := range rep.GetUpserts() {
		if r.rejectNames[u.GetName()] {
			rej = append(rej, &syncpb.Rejection{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName(),
				Revision: u.GetRevision(), Reason: "refused by the test"})
		}
	}
	return rej, nil
}

func (r *fakeReports) all() []appliedReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]appliedReport(nil), r.applied...)
}

type connectEvent struct {
	zone, replica, node string
}

type ackEvent struct {
	zone, replica string
	revision      uint64
	rejected      []*syncpb.Rejection
}

type disconnectEvent struct {
	zone, replica string
	err           error
}

type fakeInsights struct {
	mu           sync.Mutex
	connected    []connectEvent
	acked        []ackEvent
	disconnected []disconnectEvent
}

func (in *fakeInsights) Connected(zone, replica, node string, _ time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.connected = append(in.connected, connectEvent{zone, replica, node})
}

func (in *fakeInsights) Acked(zone, replica string, rev uint64, rejected []*syncpb.Rejection) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.acked = append(in.acked, ackEvent{zone, replica, rev, rejected})
}

func (in *fakeInsights) Disconnected(zone, replica string, _ time.Time, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.disconnected = append(in.disconnected, disconnectEvent{zone, replica, err})
}

func (in *fakeInsights) snapshot() ([]connectEvent, []ackEvent, []disconnectEvent) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]connectEvent(nil), in.connected...), append([]ackEvent(nil), in.acked...),
		append([]disconnectEvent(nil), in.disconnected...)
}

// --- harness: a sync server on bufconn ----------------------------------------

type harness struct {
	t        *testing.T
	feed     *fakeFeed
	auth     *fakeAuth
	reports  *fakeReports
	insights *fakeInsights
	lis      *bufconn.Listener
	srv      *syncserver.Server
}

const clusterID = "cluster-a"

// newHarness serves a sync server over bufconn with fakes; configure may
// adjust the configuration. Everything stops when the test ends.
func newHarness(t *testing.T, configure func(*syncserver.Config)) *harness {
	t.Helper()
	h := &harness{t: t, feed: newFeed(clusterID), auth: &fakeAuth{},
		reports: &fakeReports{rejectNames: map[string]bool{}}, insights: &fakeInsights{},
		lis: bufconn.Listen(1 << 20)}
	cfg := syncserver.Config{NodeID: "global-1", Feed: h.feed, Authenticator: h.auth,
		Reports: h.reports, Insights: h.insights,
		// Long enough that test zones which do not heartbeat stay connected.
		HeartbeatInterval: time.Minute}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := syncserver.New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("syncserver.New: %v", err)
	}
	h.srv = srv
	gs := grpc.NewServer()
	syncpb.RegisterSyncServiceServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(h.lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return h
}

// zoneConn is a zone's raw stream to the server under test.
type zoneConn struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[syncpb.StreamRequest, syncpb.StreamResponse]
	cancel context.CancelFunc
	msgs   chan *syncpb.StreamResponse
	ended  chan error // the stream's final error (io.EOF never: the server ends with a status)
}

// dial opens a stream; extra dial options are appended (window sizes).
// reading=false leaves the responses unread (a slow zone).
func (h *harness) dial(reading bool, opts ...grpc.DialOption) *zoneConn {
	t := h.t
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return h.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := syncpb.NewSyncServiceClient(cc).Stream(ctx)
	if err != nil {
		cancel()
		_ = cc.Close()
		t.Fatalf("open stream: %v", err)
	}
	z := &zoneConn{t: t, stream: stream, cancel: cancel,
		msgs: make(chan *syncpb.StreamResponse, 10000), ended: make(chan error, 1)}
	var wg sync.WaitGroup
	if reading {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := stream.Recv()
				if err != nil {
					z.ended <- err
					return
				}
				select {
				case z.msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = cc.Close()
	})
	return z
}

func (z *zoneConn) send(m *syncpb.StreamRequest) {
	z.t.Helper()
	if err := z.stream.Send(m); err != nil {
		z.t.Fatalf("send %v: %v", m, err)
	}
}

func (z *zoneConn) hello(h *syncpb.Hello) {
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Hello{Hello: h}})
}

func (z *zoneConn) ack(rev uint64, rejected ...*syncpb.Rejection) {
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Ack{Ack: &syncpb.Ack{Revision: rev, Rejected: rejected}}})
}

func (z *zoneConn) heartbeat() {
	z.send(&syncpb.StreamRequest{Msg: &syncpb.StreamRequest_Heartbeat{Heartbeat: &syncpb.Heartbeat{UnixNano: time.Now().UnixNano()}}})
}

// next returns the next message other than a heartbeat.
func (z *zoneConn) next() *syncpb.StreamResponse {
	z.t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case m := <-z.msgs:
			if m.GetHeartbeat() != nil {
				continue
			}
			return m
		case err := <-z.ended:
			z.ended <- err
			z.t.Fatalf("stream ended while waiting for a message: %v", err)
		case <-timer.C:
			z.t.Fatalf("no message within %s", waitFor)
		}
	}
}

// quiet asserts that no message other than heartbeats arrives within d.
func (z *zoneConn) quiet(d time.Duration) {
	z.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m := <-z.msgs:
			if m.GetHeartbeat() == nil {
				z.t.Fatalf("unexpected message: %v", m)
			}
		case <-timer.C:
			return
		}
	}
}

func (z *zoneConn) welcome() *syncpb.Welcome {
	z.t.Helper()
	m := z.next()
	if m.GetWelcome() == nil {
		z.t.Fatalf("want Welcome, got %v", m)
	}
	return m.GetWelcome()
}

func (z *zoneConn) changes() *syncpb.Changes {
	z.t.Helper()
	m := z.next()
	if m.GetChanges() == nil {
		z.t.Fatalf("want Changes, got %v", m)
	}
	return m.GetChanges()
}

// batchOf reads the parts of one Changes batch (until more = false).
func (z *zoneConn) batchOf() []*syncpb.Changes {
	z.t.Helper()
	var parts []*syncpb.Changes
	for {
		c := z.changes()
		parts = append(parts, c)
		if !c.GetMore() {
			return parts
		}
	}
}

// resetChunks reads the chunks of one Reset (until last = true).
func (z *zoneConn) resetChunks() []*syncpb.Reset {
	z.t.Helper()
	var chunks []*syncpb.Reset
	for {
		m := z.next()
		r := m.GetReset_()
		if r == nil {
			z.t.Fatalf("want Reset, got %v", m)
		}
		chunks = append(chunks, r)
		if r.GetLast() {
			return chunks
		}
	}
}

// end waits for the stream to end and returns its status code.
func (z *zoneConn) end() (codes.Code, error) {
	z.t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case <-z.msgs:
		case err := <-z.ended:
			z.ended <- err
			return status.Code(err), err
		case <-timer.C:
			z.t.Fatalf("the stream did not end within %s", waitFor)
		}
	}
}

// connect dials, says Hello as zone-1 (revision 0) and reads the Welcome.
func (h *harness) connect(zone string, lastRevision uint64, cluster string) (*zoneConn, *syncpb.Welcome) {
	h.t.Helper()
	z := h.dial(true)
	z.hello(&syncpb.Hello{Zone: zone, ReplicaId: zone + "-r1", Token: "good-" + zone,
		ClusterId: cluster, LastRevision: lastRevision})
	return z, z.welcome()
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
	return decode(t, fmt.Sprintf(`
type: MeshTrafficPermission
mesh: %s
name: %s
spec:
  targetRef: {kind: Mesh}
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
`, meshName, name))
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

// names renders the upserts and deletes of some Changes as sorted
// "+Type/mesh/name@rev" and "-Type/mesh/name@rev".
func names(parts ...*syncpb.Changes) []string {
	var out []string
	for _, c := range parts {
		for _, u := range c.GetUpserts() {
			out = append(out, "+"+api.Key{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName()}.String()+fmt.Sprintf("@%d", u.GetRevision()))
		}
		for _, d := range c.GetDeletes() {
			out = append(out, "-"+api.Key{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName()}.String()+fmt.Sprintf("@%d", d.GetRevision()))
		}
	}
	sort.Strings(out)
	return out
}

func resetNames(chunks ...*syncpb.Reset) []string {
	var out []string
	for _, c := range chunks {
		for _, u := range c.GetResources() {
			out = append(out, "+"+api.Key{Type: u.GetType(), Mesh: u.GetMesh(), Name: u.GetName()}.String()+fmt.Sprintf("@%d", u.GetRevision()))
		}
	}
	sort.Strings(out)
	return out
}
