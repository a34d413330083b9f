package syncclient_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/zone/replica"
	"github.com/meshfed/meshfed/zone/syncclient"
)

func TestInitialSyncFromEmptyThenLiveChangesAreAcked(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	rep := tempReplica(t)
	before := time.Now()
	c, _ := runClient(t, config(rep, g.addr))

	converged(t, rep, feed)
	if rep.ClusterID() != clusterID {
		t.Errorf("replica cluster id = %q, want %q (learned with the first state)", rep.ClusterID(), clusterID)
	}
	eventually(t, "the ack of the initial state", func() bool { return g.insights.lastAck().revision == feed.revision() })
	s := c.Status()
	if !s.Connected || s.GlobalNode != "global-1" || s.GlobalAddr != g.addr || s.ConnectedSince.Before(before) ||
		s.Revision != feed.revision() || s.LastError != nil || s.Refused {
		t.Fatalf("status = %+v", s)
	}
	hellos, _ := g.rec.snapshot()
	if len(hellos) != 1 || hellos[0].GetLastRevision() != 0 || hellos[0].GetClusterId() != "" ||
		hellos[0].GetZone() != zoneName || hellos[0].GetReplicaId() != "zone-1-a" {
		t.Fatalf("hellos = %v", hellos)
	}

	// Live: an upsert, an update, a deletion.
	feed.put(mtp(t, "default", "new"))
	feed.put(mesh(t, "default"))
	feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))
	converged(t, rep, feed)
	eventually(t, "the ack of the last change", func() bool { return g.insights.lastAck().revision == feed.revision() })
	if _, ok := rep.Get(key(api.TypeMeshTrafficPermission, "default", "allow-all")); ok {
		t.Error("the deleted policy is still held")
	}
	if chunks, welcomes := g.rec.sentResets(); chunks+welcomes != 0 {
		t.Errorf("the server sent a reset (%d chunks, %d welcomes)", chunks, welcomes)
	}
}

// wantExcept is what zone-1 should hold of the feed, without names.
func wantExcept(feed *fakeFeed, names ...string) []string {
	return slices.DeleteFunc(feed.want(zoneName), func(s string) bool {
		for _, n := range names {
			if strings.Contains(s, "/"+n+"@") {
				return true
			}
		}
		return false
	})
}

func TestRejectedResourceIsAckedAndDoesNotBlockOthers(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	feed.put(invalidMTP(t, "default", "bad-initial"))
	g := startNode(t, "global-1", feed, nil)
	rep := tempReplica(t)
	runClient(t, config(rep, g.addr))

	converge := func() {
		t.Helper()
		eventually(t, "the replica without the invalid policies", func() bool {
			return rep.Revision() == feed.revision() && slices.Equal(held(rep), wantExcept(feed, "bad-initial", "bad"))
		})
	}
	checkAck := func(name string) {
		t.Helper()
		eventually(t, "the ack", func() bool { return g.insights.lastAck().revision == feed.revision() })
		ack := g.insights.lastAck()
		if len(ack.rejected) != 1 || ack.rejected[0].GetName() != name || !strings.Contains(ack.rejected[0].GetReason(), "invalid") {
			t.Fatalf("ack at %d rejected %v, want %s as invalid", ack.revision, ack.rejected, name)
		}
	}
	converge()
	checkAck("bad-initial")

	// In a live batch, with valid changes around it.
	feed.putAll(mtp(t, "default", "good-1"), invalidMTP(t, "default", "bad"), mtp(t, "default", "good-2"))
	converge()
	checkAck("bad")
	if _, ok := rep.Get(key(api.TypeMeshTrafficPermission, "default", "good-2")); !ok {
		t.Fatal("a valid policy after the rejected one was not applied")
	}
	// Later changes keep flowing.
	feed.put(mtp(t, "default", "later"))
	converge()
	eventually(t, "a clean ack", func() bool {
		a := g.insights.lastAck()
		return a.revision == feed.revision() && len(a.rejected) == 0
	})
}

func TestReconnectToAnotherGlobalNodeResumesWithoutReset(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	a := startNode(t, "global-1", feed, nil)
	b := startNode(t, "global-2", feed, nil)
	rep := tempReplica(t)
	c, _ := runClient(t, config(rep, a.addr, b.addr))
	converged(t, rep, feed)
	if got := c.Status().GlobalNode; got != "global-1" {
		t.Fatalf("connected to %q first, want global-1", got)
	}
	r0 := rep.Revision()

	a.stop()
	feed.put(mtp(t, "default", "while-moving"))
	feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))
	converged(t, rep, feed)
	s := c.Status()
	if !s.Connected || s.GlobalNode != "global-2" || s.GlobalAddr != b.addr {
		t.Fatalf("status = %+v, want connected to global-2", s)
	}
	if s.LastError == nil {
		t.Error("the lost stream left no error in the status")
	}
	hellos, _ := b.rec.snapshot()
	if len(hellos) == 0 || hellos[0].GetLastRevision() != r0 || hellos[0].GetClusterId() != clusterID {
		t.Fatalf("global-2 saw hellos %v, want one at revision %d of %s", hellos, r0, clusterID)
	}
	for _, n := range []*node{a, b} {
		if chunks, welcomes := n.rec.sentResets(); chunks+welcomes != 0 {
			t.Errorf("%s sent a reset (%d chunks, %d welcomes)", n.id, chunks, welcomes)
		}
	}
	eventually(t, "global-2 to record the ack", func() bool { return b.insights.lastAck().revision == feed.revision() })
}

func TestRestartWithExistingReplicaResumesWithoutReset(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	path := filepath.Join(t.TempDir(), "replica.db")

	rep := openReplica(t, path)
	_, stop := runClient(t, config(rep, g.addr))
	converged(t, rep, feed)
	stop()
	r0 := rep.Revision()
	if err := rep.Close(); err != nil {
		t.Fatal(err)
	}

	// Global moves on while the zone is down.
	feed.put(mtp(t, "default", "while-down"))
	feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))

	rep = openReplica(t, path)
	if rep.Revision() != r0 || rep.ClusterID() != clusterID {
		t.Fatalf("reopened replica at %d of %q, want %d of %q", rep.Revision(), rep.ClusterID(), r0, clusterID)
	}
	runClient(t, config(rep, g.addr))
	converged(t, rep, feed)
	hellos, _ := g.rec.snapshot()
	if len(hellos) != 2 || hellos[1].GetLastRevision() != r0 || hellos[1].GetClusterId() != clusterID {
		t.Fatalf("hellos = %v, want the second at revision %d of %s", hellos, r0, clusterID)
	}
	if chunks, welcomes := g.rec.sentResets(); chunks+welcomes != 0 {
		t.Errorf("the server sent a reset (%d chunks, %d welcomes)", chunks, welcomes)
	}
}

func TestResetWhenTheReplicaCannotResume(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, rep *replica.Replica, feed *fakeFeed)
	}{
		{"another cluster", func(t *testing.T, rep *replica.Replica, _ *fakeFeed) {
			stale, err := batch.Encode(mtp(t, "default", "stale"))
			if err != nil {
				t.Fatal(err)
			}
			stale.Revision = 40
			if _, err := rep.Reset([]*syncpb.Resource{stale}, 50, "cluster-b"); err != nil {
				t.Fatal(err)
			}
		}},
		{"older than global's tombstones", func(t *testing.T, rep *replica.Replica, feed *fakeFeed) {
			all, rev := feed.All()
			var res []*syncpb.Resource
			for _, r := range all {
				if syncserver.DefaultFilter(zoneName)(r.Key(), r) {
					w, err := batch.Encode(r)
					if err != nil {
						t.Fatal(err)
					}
					res = append(res, w)
				}
			}
			stale, err := batch.Encode(mtp(t, "default", "stale"))
			if err != nil {
				t.Fatal(err)
			}
			stale.Revision = rev
			if _, err := rep.Reset(append(res, stale), rev, clusterID); err != nil {
				t.Fatal(err)
			}
			// Global deleted "stale" and more, then forgot the deletions.
			feed.put(mtp(t, "default", "stale"))
			feed.del(key(api.TypeMeshTrafficPermission, "default", "stale"))
			feed.del(key(api.TypeMeshTrafficPermission, "default", "allow-all"))
			feed.put(mtp(t, "default", "after"))
			feed.forget(feed.revision())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			feed := newFeed()
			seed(t, feed)
			for i := range 10 {
				feed.put(mtp(t, "default", fmt.Sprintf("p-%02d", i)))
			}
			one, err := batch.Encode(mtp(t, "default", "p-00"))
			if err != nil {
				t.Fatal(err)
			}
			g := startNode(t, "global-1", feed, func(c *syncserver.Config) { c.MaxMessageBytes = 3 * proto.Size(one) })
			rep := tempReplica(t)
			tc.prepare(t, rep, feed)

			runClient(t, config(rep, g.addr))
			converged(t, rep, feed)
			if rep.ClusterID() != clusterID {
				t.Errorf("cluster id = %q", rep.ClusterID())
			}
			chunks, welcomes := g.rec.sentResets()
			if welcomes != 1 || chunks < 3 {
				t.Errorf("server sent %d reset welcomes and %d chunks, want 1 and several", welcomes, chunks)
			}
			eventually(t, "the ack of the reset", func() bool { return g.insights.lastAck().revision == feed.revision() })
		})
	}
}

// countingReplica records the writes the client makes.
type countingReplica struct {
	*replica.Replica
	mu     sync.Mutex
	writes []string // "apply@rev:upserts" or "reset@rev:resources"
}

func (c *countingReplica) ApplyChanges(u []*syncpb.Resource, d []*syncpb.Deletion, rev uint64) ([]*syncpb.Rejection, error) {
	c.mu.Lock()
	c.writes = append(c.writes, fmt.Sprintf("apply@%d:%d", rev, len(u)))
	c.mu.Unlock()
	return c.Replica.ApplyChanges(u, d, rev)
}

func (c *countingReplica) Reset(res []*syncpb.Resource, rev uint64, cluster string) ([]*syncpb.Rejection, error) {
	c.mu.Lock()
	c.writes = append(c.writes, fmt.Sprintf("reset@%d:%d", rev, len(res)))
	c.mu.Unlock()
	return c.Replica.Reset(res, rev, cluster)
}

func (c *countingReplica) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

func TestChunkedChangesAreAppliedInOneWrite(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	for i := range 10 {
		feed.put(mtp(t, "default", fmt.Sprintf("p-%02d", i)))
	}
	one, err := batch.Encode(mtp(t, "default", "p-00"))
	if err != nil {
		t.Fatal(err)
	}
	g := startNode(t, "global-1", feed, func(c *syncserver.Config) { c.MaxMessageBytes = 3 * proto.Size(one) })
	rep := &countingReplica{Replica: tempReplica(t)}
	runClient(t, config(rep, g.addr))
	converged(t, rep.Replica, feed)
	r0 := feed.revision()
	// The first state of an empty replica: one Reset with all 13 resources.
	if got, want := rep.log(), []string{fmt.Sprintf("reset@%d:13", r0)}; !slices.Equal(got, want) {
		t.Fatalf("writes = %v, want %v", got, want)
	}

	var batch []*api.Resource
	for i := range 12 {
		batch = append(batch, mtp(t, "default", fmt.Sprintf("q-%02d", i)))
	}
	r1 := feed.putAll(batch...)
	converged(t, rep.Replica, feed)
	if got, want := rep.log(), []string{fmt.Sprintf("reset@%d:13", r0), fmt.Sprintf("apply@%d:12", r1)}; !slices.Equal(got, want) {
		t.Fatalf("writes = %v, want %v", got, want)
	}
	_, sent := g.rec.snapshot()
	parts := 0
	for _, m := range sent {
		if m.GetChanges().GetRevision() == r1 {
			parts++
		}
	}
	if parts < 3 {
		t.Fatalf("the batch went in %d parts; the test needs it chunked", parts)
	}
	eventually(t, "one ack of the batch", func() bool { return g.insights.lastAck().revision == r1 })
	g.insights.mu.Lock()
	defer g.insights.mu.Unlock()
	if n := len(g.insights.acked); n != 2 {
		t.Fatalf("%d acks, want 2 (the initial state and the batch)", n)
	}
}

func report(t *testing.T, seq uint64, dpNames ...string) *syncpb.Report {
	t.Helper()
	r := &syncpb.Report{Sequence: seq}
	for _, n := range dpNames {
		w, err := batch.Encode(dataplane(t, "default", n, zoneName))
		if err != nil {
			t.Fatal(err)
		}
		r.Upserts = append(r.Upserts, w)
	}
	return r
}

func TestReportsAreSentAndAcked(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	g.store.rejectNames["bad-dp"] = true
	zr := newZoneReports()
	zr.add(report(t, 1, "web-1"))
	zr.add(report(t, 2, "web-2", "bad-dp"))
	cfg := config(tempReplica(t), g.addr)
	cfg.Reports = zr
	runClient(t, cfg)

	eventually(t, "the pending reports to be acked", func() bool { return slices.Equal(zr.ackedSeqs(), []uint64{1, 2}) })
	zr.mu.Lock()
	rej := zr.acked[2]
	zr.mu.Unlock()
	if len(rej) != 1 || rej[0].GetName() != "bad-dp" {
		t.Fatalf("report 2 rejections = %v", rej)
	}

	// A new report while connected.
	zr.add(report(t, 3, "web-3"))
	eventually(t, "report 3 to be acked", func() bool { return slices.Equal(zr.ackedSeqs(), []uint64{1, 2, 3}) })
	committed, attempts := g.store.snapshot()
	if !slices.Equal(committed, []uint64{1, 2, 3}) || attempts[1] != 1 || attempts[2] != 1 || attempts[3] != 1 {
		t.Fatalf("committed %v, attempts %v", committed, attempts)
	}
}

func TestUnacknowledgedReportsAreSentAgainAfterReconnect(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	g.store.failOnce[2] = true // the first stream ends Unavailable at report 2
	zr := newZoneReports()
	for seq := uint64(1); seq <= 3; seq++ {
		zr.add(report(t, seq, fmt.Sprintf("web-%d", seq)))
	}
	cfg := config(tempReplica(t), g.addr)
	cfg.Reports = zr
	c, _ := runClient(t, cfg)

	eventually(t, "every report to be acked", func() bool { return slices.Equal(zr.ackedSeqs(), []uint64{1, 2, 3}) })
	committed, attempts := g.store.snapshot()
	if !slices.Equal(committed, []uint64{1, 2, 3}) {
		t.Fatalf("committed %v", committed)
	}
	if attempts[1] != 1 || attempts[2] != 2 || attempts[3] != 1 {
		t.Fatalf("attempts = %v: want report 1 once (acked before the failure), 2 twice, 3 once", attempts)
	}
	if status.Code(c.Status().LastError) != codes.Unavailable {
		t.Errorf("last error = %v, want the Unavailable that ended the first stream", c.Status().LastError)
	}
	g.insights.mu.Lock()
	defer g.insights.mu.Unlock()
	if g.insights.connected != 2 {
		t.Errorf("%d streams, want 2", g.insights.connected)
	}
}

func TestRefusedTokenIsShownAndRetried(t *testing.T) {
	cases := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"invalid token", "forged", codes.Unauthenticated},
		{"another zone's token", "good-zone-2", codes.PermissionDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			feed := newFeed()
			seed(t, feed)
			g := startNode(t, "global-1", feed, nil)
			rep := tempReplica(t)
			var token atomic.Value
			token.Store(tc.token)
			cfg := config(rep, g.addr)
			cfg.Token = ""
			cfg.TokenFunc = func() (string, error) { return token.Load().(string), nil }
			c, _ := runClient(t, cfg)

			eventually(t, "several refused attempts", func() bool { return g.auth.count() >= 3 })
			s := c.Status()
			if s.Connected || !s.Refused || status.Code(s.LastError) != tc.code || s.Failures < 2 || s.Revision != 0 {
				t.Fatalf("status = %+v", s)
			}

			// The operator fixes the token: the next attempt connects.
			token.Store("good-" + zoneName)
			converged(t, rep, feed)
			eventually(t, "connected", func() bool { return c.Status().Connected })
			if s := c.Status(); s.Refused || s.Failures != 0 {
				t.Fatalf("status after the fix = %+v", s)
			}
		})
	}
}

func TestTokenFuncErrorIsShownAndRetried(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	g := startNode(t, "global-1", feed, nil)
	var calls atomic.Int32
	cfg := config(tempReplica(t), g.addr)
	cfg.Token = ""
	cfg.TokenFunc = func() (string, error) {
		calls.Add(1)
		return "", errors.New("open /etc/meshfed/zone-token: no such file or directory")
	}
	c, _ := runClient(t, cfg)
	eventually(t, "several attempts", func() bool { return calls.Load() >= 3 })
	if s := c.Status(); s.Connected || s.LastError == nil || !strings.Contains(s.LastError.Error(), "no such file") {
		t.Fatalf("status = %+v", s)
	}
	if g.auth.count() != 0 {
		t.Error("dialed global without a token")
	}
}

// muteGlobal answers Hello with a Welcome (or not at all) and then says
// nothing.
type muteGlobal struct {
	syncpb.UnimplementedSyncServiceServer
	welcome bool
	streams atomic.Int32
}

func (m *muteGlobal) Stream(s syncpb.SyncService_StreamServer) error {
	m.streams.Add(1)
	if _, err := s.Recv(); err != nil {
		return err
	}
	if m.welcome {
		w := &syncpb.Welcome{GlobalNode: "mute", ClusterId: clusterID, HeartbeatIntervalMs: 50}
		if err := s.Send(&syncpb.StreamResponse{Msg: &syncpb.StreamResponse_Welcome{Welcome: w}}); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

func TestSilentGlobalIsDropped(t *testing.T) {
	cases := []struct {
		name    string
		welcome bool
		reason  string
	}{
		{"no welcome", false, "no Welcome"},
		{"silent after welcome", true, "global silent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			mute := &muteGlobal{welcome: tc.welcome}
			gs := grpc.NewServer()
			syncpb.RegisterSyncServiceServer(gs, mute)
			lis := listen(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = gs.Serve(lis)
			}()
			defer func() {
				gs.Stop()
				<-done
			}()

			cfg := config(tempReplica(t), lis.Addr().String())
			cfg.HeartbeatInterval = 50 * time.Millisecond
			c, stop := runClient(t, cfg)
			defer stop()
			eventually(t, "the client to give up on the silent global", func() bool {
				err := c.Status().LastError
				return err != nil && strings.Contains(err.Error(), tc.reason)
			})
			if status.Code(c.Status().LastError) != codes.DeadlineExceeded {
				t.Errorf("last error = %v", c.Status().LastError)
			}
			eventually(t, "a new attempt", func() bool { return mute.streams.Load() >= 2 })
		})
	}
}

func TestConfigValidate(t *testing.T) {
	rep := tempReplica(t)
	creds := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	cases := []struct {
		name   string
		mutate func(c *syncclient.Config)
		want   string // "" = valid
	}{
		{"valid", func(*syncclient.Config) {}, ""},
		{"no zone", func(c *syncclient.Config) { c.Zone = "" }, "zone must not be empty"},
		{"no replica id", func(c *syncclient.Config) { c.ReplicaID = "" }, "replica id"},
		{"no address", func(c *syncclient.Config) { c.GlobalAddrs = nil }, "global address"},
		{"empty address", func(c *syncclient.Config) { c.GlobalAddrs = []string{"a:1", ""} }, "global address 2 is empty"},
		{"no token", func(c *syncclient.Config) { c.Token = "" }, "token"},
		{"token and token func", func(c *syncclient.Config) { c.TokenFunc = func() (string, error) { return "", nil } }, "token"},
		{"no replica", func(c *syncclient.Config) { c.Replica = nil }, "replica must be set"},
		{"max under min", func(c *syncclient.Config) { c.Backoff = syncclient.Backoff{Min: time.Second, Max: time.Millisecond} }, "backoff"},
		{"jitter too big", func(c *syncclient.Config) { c.Backoff.Jitter = 1 }, "jitter"},
		{"negative heartbeat", func(c *syncclient.Config) { c.HeartbeatInterval = -time.Second }, "heartbeat"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := syncclient.Config{Zone: zoneName, ReplicaID: "a", GlobalAddrs: []string{"127.0.0.1:5685"},
				Token: "t", Replica: rep, DialOptions: creds}
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if cfg.Backoff.Min != 100*time.Millisecond || cfg.Backoff.Max != 10*time.Second ||
					cfg.Backoff.Jitter != 0.2 || cfg.Backoff.ResetAfter != 30*time.Second || cfg.HeartbeatInterval != 5*time.Second {
					t.Fatalf("defaults not filled: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.want)
			}
			if _, err := syncclient.New(cfg, nil); err == nil {
				t.Fatal("New accepted an invalid configuration")
			}
		})
	}
}

func TestNewRefusesDialOptionsWithoutCredentials(t *testing.T) {
	checkLeaks(t)
	cfg := config(tempReplica(t), "127.0.0.1:5685")
	cfg.DialOptions = nil
	if _, err := syncclient.New(cfg, nil); err == nil {
		t.Fatal("New accepted dial options without transport credentials")
	}
}

func TestRunOnceAtATime(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	g := startNode(t, "global-1", feed, nil)
	c, _ := runClient(t, config(tempReplica(t), g.addr))
	eventually(t, "connected", func() bool { return c.Status().Connected })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Run(ctx); err == nil {
		t.Fatal("a second Run was allowed")
	}
}

// fakeSigner answers certificate requests with the zone and CSR it saw.
type fakeSigner struct{ calls atomic.Int32 }

func (s *fakeSigner) SignIntermediate(_ context.Context, zone string, req *syncpb.CertificateRequest) *syncpb.CertificateResponse {
	s.calls.Add(1)
	if req.GetMesh() == "refused" {
		return &syncpb.CertificateResponse{Error: "mesh refused has no mTLS"}
	}
	return &syncpb.CertificateResponse{CertificatePem: []byte(zone + ":" + string(req.GetCsrPem())), TrustBundlePem: []byte("root")}
}

// TestSignIntermediate: a certificate request waits for a welcomed stream,
// travels on it, and gets global's answer (or its refusal) back, matched by
// request id.
func TestSignIntermediate(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	signer := &fakeSigner{}
	g := startNode(t, "global-1", feed, func(c *syncserver.Config) { c.Signer = signer })
	rep := tempReplica(t)
	c, _ := runClient(t, config(rep, g.addr))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			csr := fmt.Sprintf("csr-%d", i)
			resp, err := c.SignIntermediate(ctx, &syncpb.CertificateRequest{Mesh: "default", Backend: "ca-1", CsrPem: []byte(csr)})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if got := string(resp.GetCertificatePem()); got != zoneName+":"+csr || resp.GetMesh() != "default" || resp.GetBackend() != "ca-1" {
				t.Errorf("request %d answered %v", i, resp)
			}
		}()
	}
	wg.Wait()
	resp, err := c.SignIntermediate(ctx, &syncpb.CertificateRequest{Mesh: "refused", Backend: "x", CsrPem: []byte("c")})
	if err != nil || !strings.Contains(resp.GetError(), "no mTLS") || len(resp.GetCertificatePem()) != 0 {
		t.Fatalf("refusal: %v, %v", resp, err)
	}
	if n := signer.calls.Load(); n != 6 {
		t.Errorf("global signed %d requests, want 6", n)
	}
	// Without a stream, a request waits until ctx ends.
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	c2, err := syncclient.New(config(tempReplica(t), g.addr), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.SignIntermediate(short, &syncpb.CertificateRequest{Mesh: "default"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("without a stream: %v, want the context's deadline", err)
	}
}
