package batch

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

type fakeFeed struct {
	changes []Change
	all     []*api.Resource
	rev     uint64
	tooOld  bool
}

func (f *fakeFeed) ChangesSince(rev uint64) ([]Change, uint64, error) {
	if f.tooOld {
		return nil, f.rev, ErrTooOld
	}
	var out []Change
	for _, c := range f.changes {
		if c.Revision > rev {
			out = append(out, c)
		}
	}
	return out, f.rev, nil
}

func (f *fakeFeed) All() ([]*api.Resource, uint64) { return f.all, f.rev }

func policy(t *testing.T, mesh, name string, rev uint64) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(fmt.Sprintf(`
type: MeshTrafficPermission
mesh: %s
name: %s
spec:
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
`, mesh, name)))
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	r.Revision = rev
	return r
}

func TestSinceChunksFiltersAndOrders(t *testing.T) {
	feed := &fakeFeed{rev: 100}
	for i := 1; i <= 40; i++ {
		r := policy(t, "default", fmt.Sprintf("p%02d", i), uint64(i))
		feed.changes = append(feed.changes, Change{Key: r.Key(), Revision: r.Revision, Resource: r})
	}
	feed.changes = append(feed.changes, Change{Key: api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "gone"}, Revision: 41})
	feed.changes = append(feed.changes, Change{Key: api.Key{Type: api.TypeMeshTrafficPermission, Mesh: "other", Name: "x"}, Revision: 42, Resource: policy(t, "other", "x", 42)})
	one, _ := Encode(feed.changes[0].Resource)
	max := 5 * proto.Size(one)
	b := &Builder{Feed: feed, MaxBytes: max, Filter: func(k api.Key, _ *api.Resource) bool { return k.Mesh != "other" }}

	msgs, rev, err := b.Since(10)
	if err != nil || rev != 100 {
		t.Fatalf("Since: rev %d err %v", rev, err)
	}
	var names []string
	deletes := 0
	for i, m := range msgs {
		size := 0
		for _, u := range m.Upserts {
			size += proto.Size(u)
			names = append(names, u.Name)
		}
		for _, d := range m.Deletes {
			size += proto.Size(d)
			deletes++
		}
		if size > max {
			t.Errorf("message %d holds %d bytes, over the %d limit", i, size, max)
		}
		if m.Revision != 100 || m.More != (i < len(msgs)-1) {
			t.Errorf("message %d: revision %d more %v", i, m.Revision, m.More)
		}
	}
	if len(names) != 30 || names[0] != "p11" || names[29] != "p40" || deletes != 1 {
		t.Fatalf("got %d upserts (%v...) and %d deletes, want p11..p40 and 1", len(names), names[:1], deletes)
	}
	if len(msgs) < 6 {
		t.Errorf("30 resources at 5 per message came in %d messages", len(msgs))
	}

	if msgs, _, _ := b.Since(100); len(msgs) != 0 {
		t.Errorf("nothing changed since 100, got %d messages", len(msgs))
	}
	feed.tooOld = true
	if _, _, err := b.Since(1); !errors.Is(err, ErrTooOld) {
		t.Errorf("too old: %v", err)
	}
}

func TestResetChunks(t *testing.T) {
	feed := &fakeFeed{rev: 7}
	for i := 0; i < 12; i++ {
		feed.all = append(feed.all, policy(t, "default", fmt.Sprintf("r%02d", i), uint64(i+1)))
	}
	one, _ := Encode(feed.all[0])
	b := &Builder{Feed: feed, MaxBytes: 4 * proto.Size(one)}
	chunks, rev, err := b.Reset()
	if err != nil || rev != 7 {
		t.Fatal(rev, err)
	}
	total := 0
	for i, c := range chunks {
		total += len(c.Resources)
		if c.Last != (i == len(chunks)-1) || c.Revision != 7 {
			t.Errorf("chunk %d: last %v revision %d", i, c.Last, c.Revision)
		}
	}
	if total != 12 || len(chunks) != 3 {
		t.Errorf("%d resources in %d chunks, want 12 in 3", total, len(chunks))
	}
	empty := &Builder{Feed: &fakeFeed{rev: 3}}
	if chunks, _, _ := empty.Reset(); len(chunks) != 1 || !chunks[0].Last || len(chunks[0].Resources) != 0 {
		t.Errorf("empty reset: %v", chunks)
	}
}

func TestEncodeDecode(t *testing.T) {
	r := policy(t, "default", "p", 9)
	w, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(w)
	if err != nil || back.Key() != r.Key() || back.Revision != 9 {
		t.Fatalf("round trip: %v %v", back, err)
	}
	bad := proto.Clone(w).(*syncpb.Resource)
	bad.Name = "other"
	if _, err := Decode(bad); err == nil {
		t.Error("a body that does not match its key was accepted")
	}
	if _, err := Decode(&syncpb.Resource{Type: "Mesh", Name: "x", Body: []byte("{")}); err == nil {
		t.Error("a malformed body was accepted")
	}
}
