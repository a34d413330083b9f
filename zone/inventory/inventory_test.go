package inventory

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

const testZone = "zone-1"

func openAt(t testing.TB, path string) *Inventory {
	t.Helper()
	inv, err := Open(path, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Zone: testZone})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	return inv
}

func openTemp(t testing.TB) *Inventory {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "inventory.db"))
}

// prepared decodes and prepares a YAML resource, as the API does before a
// store sees it.
func prepared(t testing.TB, doc string) *api.Resource {
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

func dataplane(t testing.TB, name, address string) *api.Resource {
	t.Helper()
	return prepared(t, fmt.Sprintf(`type: Dataplane
mesh: default
name: %s
networking:
  address: %s
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
`, name, address))
}

func ingress(t testing.TB, name, zone string) *api.Resource {
	t.Helper()
	return prepared(t, fmt.Sprintf(`type: ZoneIngress
name: %s
zone: %s
networking: {address: 10.0.0.1, port: 10001}
`, name, zone))
}

func dpKey(name string) api.Key { return api.Key{Type: api.TypeDataplane, Mesh: "default", Name: name} }

func mustPut(t testing.TB, inv *Inventory, r *api.Resource) *api.Resource {
	t.Helper()
	stored, _, err := inv.Put(r, PutOptions{})
	if err != nil {
		t.Fatalf("Put %s: %v", r.Key(), err)
	}
	return stored
}

// pendingSummary renders the outbox as "seq:+Type/mesh/name" and
// "seq:-Type/mesh/name" entries.
func pendingSummary(inv *Inventory) string {
	var parts []string
	for _, rep := range inv.Pending() {
		for _, u := range rep.GetUpserts() {
			parts = append(parts, fmt.Sprintf("%d:+%s/%s/%s", rep.GetSequence(), u.GetType(), u.GetMesh(), u.GetName()))
		}
		for _, d := range rep.GetDeletes() {
			parts = append(parts, fmt.Sprintf("%d:-%s/%s/%s", rep.GetSequence(), d.GetType(), d.GetMesh(), d.GetName()))
		}
	}
	return strings.Join(parts, " ")
}

func TestPutAndDelete(t *testing.T) {
	inv := openTemp(t)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	dp := dataplane(t, "web-1", "10.0.0.1")
	stored, created, err := inv.Put(dp, PutOptions{Now: now})
	if err != nil || !created {
		t.Fatalf("create: created %v, err %v", created, err)
	}
	if stored.Revision != 1 || !stored.CreationTime.Equal(now) || !stored.ModificationTime.Equal(now) {
		t.Errorf("stored %s created %v modified %v; want revision 1 at %v", stored, stored.CreationTime, stored.ModificationTime, now)
	}
	if stored.Labels[api.LabelZone] != testZone || stored.Labels[api.LabelOrigin] != "zone" {
		t.Errorf("labels %v: want kuma.io/zone and kuma.io/origin pinned", stored.Labels)
	}
	if got, ok := inv.Get(dpKey("web-1")); !ok || got != stored {
		t.Errorf("Get: %v %v", got, ok)
	}
	if got := pendingSummary(inv); got != "1:+Dataplane/default/web-1" {
		t.Errorf("pending %q", got)
	}
	// The report carries the stored resource (revision = its sequence).
	w := inv.Pending()[0].GetUpserts()[0]
	r, err := batch.Decode(w)
	if err != nil || r.Revision != 1 || r.Labels[api.LabelZone] != testZone {
		t.Errorf("report body: %v %v", r, err)
	}

	// Same content again: nothing changes, nothing is reported.
	again, created, err := inv.Put(dataplane(t, "web-1", "10.0.0.1"), PutOptions{Now: now.Add(time.Hour)})
	if err != nil || created || again != stored || inv.Sequence() != 1 {
		t.Errorf("no-op put: %v created %v err %v sequence %d", again, created, err, inv.Sequence())
	}

	// An update: new revision, creation time kept; its report replaces the
	// pending one of the same key.
	later := now.Add(time.Minute)
	upd, created, err := inv.Put(dataplane(t, "web-1", "10.0.0.2"), PutOptions{Now: later, ExpectRevision: 1})
	if err != nil || created || upd.Revision != 2 || !upd.CreationTime.Equal(now) || !upd.ModificationTime.Equal(later) {
		t.Fatalf("update: %v created %v err %v (created %v modified %v)", upd, created, err, upd.CreationTime, upd.ModificationTime)
	}
	if got := pendingSummary(inv); got != "2:+Dataplane/default/web-1" {
		t.Errorf("pending after update %q", got)
	}

	mustPut(t, inv, dataplane(t, "web-2", "10.0.0.3"))
	if got := inv.List(api.TypeDataplane, "default"); len(got) != 2 || got[0].Name != "web-1" || got[1].Name != "web-2" {
		t.Errorf("List: %v", got)
	}
	if got := inv.List(api.TypeDataplane, "other"); len(got) != 0 {
		t.Errorf("List other mesh: %v", got)
	}

	old, err := inv.Delete(dpKey("web-1"), 2)
	if err != nil || old.Revision != 2 {
		t.Fatalf("delete: %v %v", old, err)
	}
	if _, ok := inv.Get(dpKey("web-1")); ok {
		t.Error("deleted resource still there")
	}
	if got := pendingSummary(inv); got != "3:+Dataplane/default/web-2 4:-Dataplane/default/web-1" {
		t.Errorf("pending after delete %q", got)
	}
	if del := inv.Pending()[1].GetDeletes()[0]; del.GetRevision() != 4 {
		t.Errorf("deletion revision %d, want 4", del.GetRevision())
	}
	if _, err := inv.Delete(dpKey("web-1"), 0); err != api.ErrNotFound {
		t.Errorf("delete again: %v, want api.ErrNotFound", err)
	}
}

func TestWritesRefused(t *testing.T) {
	inv := openTemp(t)
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	withLabels := func(r *api.Resource, kv ...string) *api.Resource {
		r.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Labels[kv[i]] = kv[i+1]
		}
		return r
	}
	mesh := prepared(t, "type: Mesh\nname: m\n")

	cases := []struct {
		name   string
		put    *api.Resource
		expect uint64
		check  func(error) bool
		want   string
	}{
		{"global-owned type", mesh, 0, isReadOnly, "owned by the global"},
		{"ingress of another zone", ingress(t, "ingress", "zone-2"), 0, fieldIs("zone"), `must be "zone-1"`},
		{"zone label of another zone", withLabels(dataplane(t, "web-2", "10.0.0.2"), api.LabelZone, "zone-2"), 0, fieldIs(`labels["kuma.io/zone"]`), "the zone sets it"},
		{"origin label global", withLabels(dataplane(t, "web-2", "10.0.0.2"), api.LabelOrigin, "global"), 0, fieldIs(`labels["kuma.io/origin"]`), "the zone sets it"},
		{"stale revision", dataplane(t, "web-1", "10.0.0.9"), 7, isConflict, "at revision 1, expected 7"},
		{"expected revision of a new resource", dataplane(t, "web-3", "10.0.0.9"), 1, isConflict, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := inv.Sequence()
			_, _, err := inv.Put(c.put, PutOptions{ExpectRevision: c.expect})
			if err == nil || !c.check(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Put: %v; want an error containing %q", err, c.want)
			}
			if inv.Sequence() != before || len(inv.Pending()) != 1 {
				t.Errorf("a refused write changed the inventory: sequence %d, pending %d", inv.Sequence(), len(inv.Pending()))
			}
		})
	}
	// Labels that agree with the zone's are fine.
	ok := withLabels(dataplane(t, "web-4", "10.0.0.4"), api.LabelZone, testZone, api.LabelOrigin, "zone", "team", "a")
	if stored := mustPut(t, inv, ok); stored.Labels["team"] != "a" {
		t.Errorf("labels %v", stored.Labels)
	}
	if _, _, err := inv.Put(ingress(t, "ingress", testZone), PutOptions{}); err != nil {
		t.Errorf("own ingress: %v", err)
	}
	if _, err := inv.Delete(api.Key{Type: api.TypeMesh, Name: "default"}, 0); !isReadOnly(err) {
		t.Errorf("delete a Mesh: %v", err)
	}
	if _, err := inv.Delete(dpKey("web-1"), 9); !isConflict(err) {
		t.Errorf("delete at a stale revision: %v", err)
	}
}

func isReadOnly(err error) bool {
	var e *api.ReadOnlyError
	return errors.As(err, &e)
}

func isConflict(err error) bool {
	var e *api.ConflictError
	return errors.As(err, &e)
}

func fieldIs(field string) func(error) bool {
	return func(err error) bool {
		var ve *api.ValidationError
		return errors.As(err, &ve) && len(ve.Errors) == 1 && string(ve.Errors[0].Field) == field
	}
}

func TestAckedAndRejections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	inv := openAt(t, path)
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1")) // 1
	mustPut(t, inv, dataplane(t, "web-2", "10.0.0.2")) // 2

	inv.Acked(1, nil)
	inv.Acked(2, []*syncpb.Rejection{{Type: api.TypeDataplane, Mesh: "default", Name: "web-2", Revision: 2, Reason: "mesh \"default\" does not exist"}})
	st := inv.Status()
	if st.Pending != 0 || st.Acked != 2 || len(st.Rejected) != 1 || st.Rejected[0].Name != "web-2" || st.Rejected[0].Sequence != 2 {
		t.Fatalf("status after acks: %+v", st)
	}
	inv.Acked(42, nil) // unknown: ignored
	if st := inv.Status(); st.Acked != 2 || len(st.Rejected) != 1 {
		t.Errorf("an unknown ack changed the status: %+v", st)
	}

	// Survives a restart.
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	inv = openAt(t, path)
	if st := inv.Status(); st.Acked != 2 || len(st.Rejected) != 1 || st.Sequence != 2 {
		t.Fatalf("status after reopen: %+v", st)
	}

	// A later accepted report of the resource clears its rejection.
	mustPut(t, inv, dataplane(t, "web-2", "10.0.0.3")) // 3
	inv.Acked(3, nil)
	if st := inv.Status(); len(st.Rejected) != 0 || st.Pending != 0 {
		t.Errorf("rejection not cleared: %+v", st)
	}
}

func TestReportsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	inv := openAt(t, path)
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	mustPut(t, inv, dataplane(t, "web-2", "10.0.0.2"))
	if _, err := inv.Delete(dpKey("web-1"), 0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, inv, ingress(t, "ingress", testZone))
	inv.Acked(2, nil)
	want := pendingSummary(inv)
	if want != "3:-Dataplane/default/web-1 4:+ZoneIngress//ingress" {
		t.Fatalf("pending %q", want)
	}
	// No Close: the next Open must find every committed change (bbolt
	// commits are durable); closing only releases the lock.
	_ = inv.Close()
	re := openAt(t, path)
	if got := pendingSummary(re); got != want {
		t.Errorf("pending after reopen %q, want %q", got, want)
	}
	if re.Sequence() != 4 {
		t.Errorf("sequence %d, want 4", re.Sequence())
	}
	if _, ok := re.Get(dpKey("web-2")); !ok {
		t.Error("web-2 lost")
	}
	if _, ok := re.Get(api.Key{Type: api.TypeZoneIngress, Name: "ingress"}); !ok {
		t.Error("ingress lost")
	}
	// Coalescing still works on a reloaded outbox.
	mustPut(t, re, ingress(t, "ingress", testZone).WithMeta(api.Meta{Type: api.TypeZoneIngress, Name: "ingress", Labels: map[string]string{"v": "2"}}))
	if got := pendingSummary(re); got != "3:-Dataplane/default/web-1 5:+ZoneIngress//ingress" {
		t.Errorf("pending after update %q", got)
	}
}

func TestWatch(t *testing.T) {
	inv := openTemp(t)
	w, c := inv.Watch(), inv.Changed()
	select {
	case <-w:
		t.Fatal("watch fired before any report")
	default:
	}
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	for name, ch := range map[string]<-chan struct{}{"Watch": w, "Changed": c} {
		select {
		case <-ch:
		default:
			t.Errorf("%s did not fire on a write", name)
		}
	}
	w = inv.Watch()
	inv.Acked(1, nil)
	select {
	case <-w:
		t.Error("Watch fired on an acknowledgement")
	default:
	}
}

func TestReportTo(t *testing.T) {
	inv := openTemp(t)
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.1"))
	mustPut(t, inv, ingress(t, "ingress", testZone))
	inv.Acked(1, nil)
	inv.Acked(2, nil)
	a := Target{ClusterID: "cluster-a"}
	aZone := Target{ClusterID: "cluster-a", ZoneCreated: "2025-01-01T00:00:00Z"}
	aZoneAgain := Target{ClusterID: "cluster-a", ZoneCreated: "2025-02-01T00:00:00Z"}
	b := Target{ClusterID: "cluster-b"}
	all := "+Dataplane/default/web-1 +ZoneIngress//ingress"

	steps := []struct {
		name     string
		target   Target
		resent   int
		recorded Target
	}{
		{"the first cluster is only recorded", a, 0, a},
		{"the same again", a, 0, a},
		{"no cluster yet: ignored", Target{}, 0, a},
		{"the zone's Zone appears: recorded", aZone, 0, aZone},
		{"the Zone is deleted: nothing yet", a, 0, aZone},
		{"the Zone is created again: everything again", aZoneAgain, 2, aZoneAgain},
		{"another cluster: everything again", b, 2, b},
		{"the Zone appears in it: recorded", Target{ClusterID: "cluster-b", ZoneCreated: "x"}, 0, Target{ClusterID: "cluster-b", ZoneCreated: "x"}},
	}
	for _, st := range steps {
		before := len(inv.Pending())
		w := inv.Watch()
		n, err := inv.ReportTo(st.target)
		if err != nil || n != st.resent || inv.ReportedTo() != st.recorded {
			t.Fatalf("%s: resent %d, err %v, recorded %+v; want %d, %+v", st.name, n, err, inv.ReportedTo(), st.resent, st.recorded)
		}
		fired := false
		select {
		case <-w:
			fired = true
		default:
		}
		if got := len(inv.Pending()) - before; (st.resent > 0) != (got > 0) || fired != (st.resent > 0) {
			t.Errorf("%s: %d new reports, watch fired %v", st.name, got, fired)
		}
		if st.resent > 0 {
			rep := inv.Pending()[len(inv.Pending())-1]
			var keys []string
			for _, u := range rep.GetUpserts() {
				keys = append(keys, fmt.Sprintf("+%s/%s/%s", u.GetType(), u.GetMesh(), u.GetName()))
			}
			if got := strings.Join(keys, " "); got != all {
				t.Errorf("%s: report %q, want %q", st.name, got, all)
			}
			for _, rep := range inv.Pending() {
				inv.Acked(rep.GetSequence(), nil)
			}
		}
	}
	// A later change of one of them is a report of its own.
	_, _ = inv.ReportTo(a)
	if _, err := inv.ReportTo(aZone); err != nil {
		t.Fatal(err)
	}
	before := pendingSummary(inv)
	mustPut(t, inv, dataplane(t, "web-1", "10.0.0.9"))
	if got := pendingSummary(inv); !strings.HasPrefix(got, before) || !strings.HasSuffix(got, ":+Dataplane/default/web-1") {
		t.Errorf("pending %q", got)
	}
	// What was recorded survives a restart.
	path := inv.Path()
	want := inv.ReportedTo()
	_ = inv.Close()
	if got := openAt(t, path).ReportedTo(); got != want {
		t.Errorf("after reopen %+v, want %+v", got, want)
	}
}

func TestReportToChunks(t *testing.T) {
	const limit = 2 << 10
	inv, err := Open(filepath.Join(t.TempDir(), "inventory.db"), nil, Options{Zone: testZone, MaxReportBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	for i := range 25 {
		mustPut(t, inv, dataplane(t, fmt.Sprintf("web-%02d", i), "10.0.0.1"))
	}
	_, _ = inv.ReportTo(Target{ClusterID: "a"})
	for _, rep := range inv.Pending() {
		inv.Acked(rep.GetSequence(), nil)
	}
	if _, err := inv.ReportTo(Target{ClusterID: "b"}); err != nil {
		t.Fatal(err)
	}
	total, reports := 0, inv.Pending()
	for _, rep := range reports {
		size := 0
		for _, u := range rep.GetUpserts() {
			size += proto.Size(u)
		}
		if size > limit {
			t.Errorf("report %d holds %d bytes", rep.GetSequence(), size)
		}
		total += len(rep.GetUpserts())
	}
	if total != 25 || len(reports) < 3 {
		t.Errorf("%d resources reported in %d reports, want 25 in several", total, len(reports))
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.db")
	inv := openAt(t, path)
	t.Run("locked", func(t *testing.T) {
		_, err := Open(path, nil, Options{Zone: testZone, LockTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrLocked) {
			t.Errorf("open while locked: %v", err)
		}
	})
	_ = inv.Close()
	t.Run("another zone", func(t *testing.T) {
		_, err := Open(path, nil, Options{Zone: "zone-2"})
		if !errors.Is(err, ErrWrongZone) {
			t.Errorf("open as another zone: %v", err)
		}
	})
	t.Run("not an inventory", func(t *testing.T) {
		other := filepath.Join(dir, "other.db")
		db, err := bolt.Open(other, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
		_ = db.Close()
		if _, err := Open(other, nil, Options{Zone: testZone}); !errors.Is(err, ErrNotInventory) {
			t.Errorf("open a foreign bbolt file: %v", err)
		}
	})
	t.Run("options", func(t *testing.T) {
		if _, err := Open(path, nil, Options{}); err == nil {
			t.Error("no zone accepted")
		}
	})
	t.Run("closed", func(t *testing.T) {
		if _, _, err := inv.Put(dataplane(t, "x", "10.0.0.1"), PutOptions{}); !errors.Is(err, ErrClosed) {
			t.Errorf("write after close: %v", err)
		}
	})
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	inv := openTemp(t)
	var wg sync.WaitGroup
	const writers, each = 4, 25
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				name := fmt.Sprintf("w%d-%d", w, i)
				if _, _, err := inv.Put(dataplane(t, name, "10.0.0.1"), PutOptions{}); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if _, err := inv.Delete(dpKey(name), 0); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, rep := range inv.Pending() {
				inv.Acked(rep.GetSequence(), nil)
			}
			_ = inv.List(api.TypeDataplane, "")
			_ = inv.Status()
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	if got, want := len(inv.List(api.TypeDataplane, "")), writers*(each-each/5); got != want {
		t.Errorf("%d dataplanes, want %d", got, want)
	}
	if inv.Sequence() != writers*(each+each/5) {
		t.Errorf("sequence %d", inv.Sequence())
	}
}

// TestPutBatch: several resources in one transaction, each checked as Put
// checks it; a refused one does not stop the others; a key twice in a batch
// ends at its last version.
func TestPutBatch(t *testing.T) {
	inv := openTemp(t)
	mustPut(t, inv, dataplane(t, "same", "10.0.0.9"))
	before := inv.Sequence()
	errs, err := inv.PutBatch([]*api.Resource{
		dataplane(t, "web-1", "10.0.0.1"),
		ingress(t, "other", "zone-2"), // another zone's: refused
		dataplane(t, "web-2", "10.0.0.2"),
		dataplane(t, "web-1", "10.0.0.11"), // again: the last version wins
		dataplane(t, "same", "10.0.0.9"),   // unchanged: nothing written
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] == nil || errs[2] != nil || errs[3] != nil || errs[4] != nil {
		t.Fatalf("errors %v: want only the other zone's ingress refused", errs)
	}
	if got := inv.Sequence(); got != before+3 {
		t.Errorf("sequence %d → %d, want three changes", before, got)
	}
	r, _ := inv.Get(dpKey("web-1"))
	if got := r.Spec.(*api.DataplaneSpec).Networking.Address; got != "10.0.0.11" {
		t.Errorf("web-1 at %s, want its last version", got)
	}
	if got := pendingSummary(inv); strings.Count(got, "web-1") != 1 || !strings.Contains(got, "web-2") {
		t.Errorf("pending reports %s: want one for web-1 (the last) and one for web-2", got)
	}
}
