package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

const (
	tMTP  = api.TypeMeshTrafficPermission
	tMesh = api.TypeMesh
	tZI   = api.TypeZoneIngress
	tDP   = api.TypeDataplane
)

type wantRejection struct {
	key      string // Type/mesh/name
	revision uint64
	reason   []string // substrings of the reason
}

func checkRejections(t *testing.T, got []*syncpb.Rejection, want []wantRejection) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rejections, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		k := key(g.Type, g.Mesh, g.Name).String()
		if g.Type == "" && g.Name == "" {
			k = ""
		}
		if k != w.key || g.Revision != w.revision {
			t.Errorf("rejection %d is %s@%d, want %s@%d", i, k, g.Revision, w.key, w.revision)
		}
		for _, s := range w.reason {
			if !strings.Contains(g.Reason, s) {
				t.Errorf("rejection %d reason %q does not contain %q", i, g.Reason, s)
			}
		}
	}
}

func TestApplyChanges(t *testing.T) {
	// Every case starts from this state, applied at revision 10.
	base := func(t *testing.T) *Replica {
		r := openTemp(t)
		rej, err := r.ApplyChanges([]*syncpb.Resource{
			meshRes(t, "default", 1),
			mtp(t, "default", "p1", 5),
			mtp(t, "default", "p2", 10),
		}, nil, 10)
		if err != nil || len(rej) != 0 {
			t.Fatalf("base: %v %v", rej, err)
		}
		return r
	}
	baseState := []string{"Mesh/default@1", "MeshTrafficPermission/default/p1@5", "MeshTrafficPermission/default/p2@10"}

	cases := []struct {
		name     string
		upserts  func(t *testing.T) []*syncpb.Resource
		deletes  []*syncpb.Deletion
		revision uint64
		wantErr  error // errors.Is target; nil: success
		wantRev  uint64
		want     []string // revisions(r) after
		rejected []wantRejection
	}{
		{
			name: "upsert new and update existing",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{mtp(t, "default", "p3", 11), mtp(t, "default", "p1", 12)}
			},
			revision: 12, wantRev: 12,
			want: []string{"Mesh/default@1", "MeshTrafficPermission/default/p1@12", "MeshTrafficPermission/default/p2@10", "MeshTrafficPermission/default/p3@11"},
		},
		{
			name:     "delete existing",
			deletes:  []*syncpb.Deletion{del(tMTP, "default", "p1", 11)},
			revision: 11, wantRev: 11,
			want: []string{"Mesh/default@1", "MeshTrafficPermission/default/p2@10"},
		},
		{
			name:     "delete of unknown keys is a no-op, revision still moves",
			deletes:  []*syncpb.Deletion{del(tMTP, "default", "nope", 11), del("NoSuchType", "", "x", 11), nil},
			revision: 11, wantRev: 11,
			want: baseState,
		},
		{
			name: "upserts before deletes, later upsert of a key wins",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{mtp(t, "default", "p3", 11), mtp(t, "default", "p3", 12), mtp(t, "default", "p4", 12)}
			},
			deletes:  []*syncpb.Deletion{del(tMTP, "default", "p4", 13)},
			revision: 13, wantRev: 13,
			want: []string{"Mesh/default@1", "MeshTrafficPermission/default/p1@5", "MeshTrafficPermission/default/p2@10", "MeshTrafficPermission/default/p3@12"},
		},
		{
			name: "invalid resource among valid ones: others applied, old version kept",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{
					mtp(t, "default", "p3", 11),
					raw(tMTP, "default", "p1", 12, mtpBody("default", "p1", "Maybe")),
					mtp(t, "default", "p4", 13),
				}
			},
			revision: 13, wantRev: 13,
			want: []string{"Mesh/default@1", "MeshTrafficPermission/default/p1@5", "MeshTrafficPermission/default/p2@10", "MeshTrafficPermission/default/p3@11", "MeshTrafficPermission/default/p4@13"},
			rejected: []wantRejection{{key: "MeshTrafficPermission/default/p1", revision: 12,
				reason: []string{"invalid: spec.from[0].default.action: must be one of"}}},
		},
		{
			name: "body does not match its key",
			upserts: func(t *testing.T) []*syncpb.Resource {
				w := mtp(t, "default", "p2", 11)
				w.Name = "p1" // key says p1, body says p2
				return []*syncpb.Resource{w}
			},
			revision: 11, wantRev: 11,
			want: baseState,
			rejected: []wantRejection{{key: "MeshTrafficPermission/default/p1", revision: 11,
				reason: []string{"MeshTrafficPermission/default/p2", "does not match its key"}}},
		},
		{
			name: "malformed body, unknown type, empty entry",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{
					raw(tMTP, "default", "p1", 11, `{"type":`),
					raw("MeshTeleport", "default", "x", 11, `{"type":"MeshTeleport","mesh":"default","name":"x"}`),
					nil,
				}
			},
			revision: 11, wantRev: 11,
			want: baseState,
			rejected: []wantRejection{
				{key: "MeshTrafficPermission/default/p1", revision: 11, reason: []string{"cannot decode", "malformed JSON"}},
				{key: "MeshTeleport/default/x", revision: 11, reason: []string{"cannot decode", `unknown type "MeshTeleport"`}},
				{key: "", reason: []string{"empty resource"}},
			},
		},
		{
			name: "invalid envelope: mesh on a global-scoped type",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{raw(tMesh, "default", "other", 11, `{"type":"Mesh","mesh":"default","name":"other"}`)}
			},
			revision: 11, wantRev: 11,
			want:     baseState,
			rejected: []wantRejection{{key: "Mesh/default/other", revision: 11, reason: []string{"invalid", "mesh: must be empty"}}},
		},
		{
			name: "zone-owned resources: other zones' accepted, this zone's and unlabeled refused",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{
					zoneIngress(t, "zone-2-ingress", "zone-2", 11),
					zoneIngress(t, "own-ingress", testZone, 11),
					zoneIngress(t, "anon-ingress", "", 11),
					dataplane(t, "default", "remote-dp", "zone-2", 11),
					dataplane(t, "default", "own-dp", testZone, 11),
				}
			},
			revision: 11, wantRev: 11,
			want: append(slices.Clone(baseState), "Dataplane/default/remote-dp@11", "ZoneIngress/zone-2-ingress@11"),
			rejected: []wantRejection{
				{key: "ZoneIngress/own-ingress", revision: 11, reason: []string{"owned by this zone", "kuma.io/zone: zone-1"}},
				{key: "ZoneIngress/anon-ingress", revision: 11, reason: []string{"no kuma.io/zone label"}},
				{key: "Dataplane/default/own-dp", revision: 11, reason: []string{"owned by this zone"}},
			},
		},
		{
			name: "same revision is allowed (parts of a chunked Changes)",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{mtp(t, "default", "p3", 10)}
			},
			revision: 10, wantRev: 10,
			want: append(slices.Clone(baseState), "MeshTrafficPermission/default/p3@10"),
		},
		{
			name: "older revision is an error and nothing is written",
			upserts: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{mtp(t, "default", "p3", 9)}
			},
			deletes:  []*syncpb.Deletion{del(tMTP, "default", "p1", 9)},
			revision: 9, wantErr: &RevisionError{}, wantRev: 10,
			want: baseState,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := base(t)
			var ups []*syncpb.Resource
			if tc.upserts != nil {
				ups = tc.upserts(t)
			}
			rej, err := r.ApplyChanges(ups, tc.deletes, tc.revision)
			if tc.wantErr != nil {
				var re *RevisionError
				if !errors.As(err, &re) || re.Current != 10 || re.Got != tc.revision {
					t.Fatalf("err = %v, want a RevisionError 10 ← %d", err, tc.revision)
				}
			} else if err != nil {
				t.Fatalf("ApplyChanges: %v", err)
			}
			checkRejections(t, rej, tc.rejected)
			if got := r.Revision(); got != tc.wantRev {
				t.Errorf("revision = %d, want %d", got, tc.wantRev)
			}
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, revisions(r)); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			// What memory says is what the file holds.
			path := r.Path()
			before := dump(t, r)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			again := openAt(t, path)
			if diff := cmp.Diff(before, dump(t, again)); diff != "" {
				t.Errorf("reopened state differs (-memory +file):\n%s", diff)
			}
			if again.Revision() != tc.wantRev {
				t.Errorf("reopened revision = %d, want %d", again.Revision(), tc.wantRev)
			}
		})
	}
}

// A newer global may send a field this zone does not know: the resource is
// rejected with the decoder's field path, and the previous version stays.
func TestUnknownFieldFromNewerGlobal(t *testing.T) {
	r := openTemp(t)
	old := wire(t, `
type: MeshTimeout
mesh: default
name: timeouts
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 5s}}]
`, 3)
	if _, err := r.ApplyChanges([]*syncpb.Resource{old}, nil, 3); err != nil {
		t.Fatal(err)
	}
	newer := raw(api.TypeMeshTimeout, "default", "timeouts", 4,
		`{"type":"MeshTimeout","mesh":"default","name":"timeouts","spec":{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"5s","quantumTimeout":"1s"}}]}}`)
	rej, err := r.ApplyChanges([]*syncpb.Resource{newer}, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	checkRejections(t, rej, []wantRejection{{key: "MeshTimeout/default/timeouts", revision: 4,
		reason: []string{"cannot decode", "spec.to[0].default.quantumTimeout: unknown field"}}})
	got, ok := r.Get(key(api.TypeMeshTimeout, "default", "timeouts"))
	if !ok || got.Revision != 3 {
		t.Fatalf("previous version not kept: %v %v", got, ok)
	}
	if r.Revision() != 4 {
		t.Errorf("revision = %d, want 4", r.Revision())
	}
}

func TestReset(t *testing.T) {
	const cluster = "cluster-a"
	base := func(t *testing.T) *Replica {
		r := openTemp(t)
		if _, err := r.Reset([]*syncpb.Resource{meshRes(t, "default", 1), mtp(t, "default", "p1", 5), mtp(t, "default", "p2", 10)}, 10, cluster); err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name      string
		resources func(t *testing.T) []*syncpb.Resource
		revision  uint64
		cluster   string
		wantErr   bool
		wantRev   uint64
		wantClust string
		want      []string
		rejected  []wantRejection
	}{
		{
			name: "replaces everything",
			resources: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{meshRes(t, "other", 20), mtp(t, "other", "q", 21)}
			},
			revision: 30, cluster: cluster, wantRev: 30, wantClust: cluster,
			want: []string{"Mesh/other@20", "MeshTrafficPermission/other/q@21"},
		},
		{
			name:     "empty reset empties",
			revision: 30, cluster: cluster, wantRev: 30, wantClust: cluster,
		},
		{
			name: "same cluster: a rejected resource keeps its previous version",
			resources: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{
					raw(tMTP, "default", "p1", 25, mtpBody("default", "p1", "Maybe")),
					raw(tMTP, "default", "new", 25, mtpBody("default", "new", "Maybe")),
					mtp(t, "default", "p3", 26),
				}
			},
			revision: 30, cluster: cluster, wantRev: 30, wantClust: cluster,
			want: []string{"MeshTrafficPermission/default/p1@5", "MeshTrafficPermission/default/p3@26"},
			rejected: []wantRejection{
				{key: "MeshTrafficPermission/default/p1", revision: 25, reason: []string{"spec.from[0].default.action"}},
				{key: "MeshTrafficPermission/default/new", revision: 25, reason: []string{"spec.from[0].default.action"}},
			},
		},
		{
			name: "other cluster: nothing of the old state survives, lower revision allowed",
			resources: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{
					raw(tMTP, "default", "p1", 2, mtpBody("default", "p1", "Maybe")),
					mtp(t, "default", "p3", 3),
				}
			},
			revision: 3, cluster: "cluster-b", wantRev: 3, wantClust: "cluster-b",
			want:     []string{"MeshTrafficPermission/default/p3@3"},
			rejected: []wantRejection{{key: "MeshTrafficPermission/default/p1", revision: 2, reason: []string{"invalid"}}},
		},
		{
			name: "same cluster, older revision: error, nothing written",
			resources: func(t *testing.T) []*syncpb.Resource {
				return []*syncpb.Resource{mtp(t, "default", "p3", 3)}
			},
			revision: 9, cluster: cluster, wantErr: true, wantRev: 10, wantClust: cluster,
			want: []string{"Mesh/default@1", "MeshTrafficPermission/default/p1@5", "MeshTrafficPermission/default/p2@10"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := base(t)
			var res []*syncpb.Resource
			if tc.resources != nil {
				res = tc.resources(t)
			}
			rej, err := r.Reset(res, tc.revision, tc.cluster)
			if tc.wantErr {
				var re *RevisionError
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want a RevisionError", err)
				}
			} else if err != nil {
				t.Fatalf("Reset: %v", err)
			}
			checkRejections(t, rej, tc.rejected)
			if r.Revision() != tc.wantRev || r.ClusterID() != tc.wantClust {
				t.Errorf("revision %d cluster %q, want %d %q", r.Revision(), r.ClusterID(), tc.wantRev, tc.wantClust)
			}
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, revisions(r)); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			path := r.Path()
			before := dump(t, r)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			again := openAt(t, path)
			if diff := cmp.Diff(before, dump(t, again)); diff != "" {
				t.Errorf("reopened state differs (-memory +file):\n%s", diff)
			}
			if again.Revision() != tc.wantRev || again.ClusterID() != tc.wantClust {
				t.Errorf("reopened: revision %d cluster %q", again.Revision(), again.ClusterID())
			}
		})
	}
}

// A restarted zone serves exactly what it had: resources with their
// revisions and bodies, the revision and the cluster id.
func TestReopenKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	r, err := Open(path, testLogger(t), Options{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reset([]*syncpb.Resource{meshRes(t, "default", 1), mtp(t, "default", "a", 2)}, 5, "cluster-a"); err != nil {
		t.Fatal(err)
	}
	secret := wire(t, "type: Secret\nmesh: default\nname: s\ndata: aGVsbG8=\n", 6)
	if _, err := r.ApplyChanges([]*syncpb.Resource{secret, zoneIngress(t, "zi-2", "zone-2", 7), mtp(t, "default", "b", 8)},
		[]*syncpb.Deletion{del(tMTP, "default", "a", 8)}, 8); err != nil {
		t.Fatal(err)
	}
	want := dump(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %o, want 600", perm)
	}

	again := openAt(t, path)
	if again.Revision() != 8 || again.ClusterID() != "cluster-a" {
		t.Errorf("revision %d cluster %q, want 8 cluster-a", again.Revision(), again.ClusterID())
	}
	if diff := cmp.Diff(want, dump(t, again)); diff != "" {
		t.Errorf("state after reopen (-before +after):\n%s", diff)
	}
	if got := revisions(again); !slices.Equal(got, []string{"Mesh/default@1", "MeshTrafficPermission/default/b@8", "Secret/default/s@6", "ZoneIngress/zi-2@7"}) {
		t.Errorf("keys after reopen: %v", got)
	}
	if n := again.Count(api.TypeSecret, "default"); n != 1 {
		t.Errorf("Count(Secret, default) = %d", n)
	}
}

func TestReads(t *testing.T) {
	r := openTemp(t)
	if _, err := r.ApplyChanges([]*syncpb.Resource{
		mtp(t, "b", "z", 1), mtp(t, "a", "xy", 1), mtp(t, "b", "a", 1), mtp(t, "a", "x", 1),
		meshRes(t, "a", 1), meshRes(t, "b", 1),
	}, nil, 1); err != nil {
		t.Fatal(err)
	}
	names := func(rs []*api.Resource) []string {
		var out []string
		for _, res := range rs {
			out = append(out, res.Mesh+"/"+res.Name)
		}
		return out
	}
	for _, tc := range []struct {
		typ, mesh string
		want      []string
	}{
		{tMTP, "", []string{"a/x", "a/xy", "b/a", "b/z"}},
		{tMTP, "b", []string{"b/a", "b/z"}},
		{tMTP, "c", nil},
		{tMesh, "", []string{"/a", "/b"}},
		{"NoSuchType", "", nil},
	} {
		if got := names(r.List(tc.typ, tc.mesh)); !slices.Equal(got, tc.want) {
			t.Errorf("List(%s, %q) = %v, want %v", tc.typ, tc.mesh, got, tc.want)
		}
		if got := r.Count(tc.typ, tc.mesh); got != len(tc.want) {
			t.Errorf("Count(%s, %q) = %d, want %d", tc.typ, tc.mesh, got, len(tc.want))
		}
	}
	if res, ok := r.Get(key(tMTP, "a", "x")); !ok || res.Name != "x" || res.Revision != 1 {
		t.Errorf("Get = %v %v", res, ok)
	}
	if _, ok := r.Get(key(tMTP, "a", "nope")); ok {
		t.Error("Get of a missing key found something")
	}
	if r.Len() != 6 {
		t.Errorf("Len = %d", r.Len())
	}
}

func TestWatch(t *testing.T) {
	r := openTemp(t)
	fired := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	steps := []struct {
		name  string
		do    func() error
		fires bool
	}{
		{"upsert", func() error { _, err := r.ApplyChanges([]*syncpb.Resource{mtp(t, "m", "a", 1)}, nil, 1); return err }, true},
		{"nothing changed", func() error {
			_, err := r.ApplyChanges(nil, []*syncpb.Deletion{del(tMTP, "m", "gone", 1)}, 1)
			return err
		}, false},
		{"only rejected", func() error {
			_, err := r.ApplyChanges([]*syncpb.Resource{raw(tMTP, "m", "b", 1, mtpBody("m", "b", "Maybe"))}, nil, 1)
			return err
		}, false},
		{"revision moves", func() error { _, err := r.ApplyChanges(nil, nil, 2); return err }, true},
		{"delete", func() error { _, err := r.ApplyChanges(nil, []*syncpb.Deletion{del(tMTP, "m", "a", 3)}, 3); return err }, true},
		{"refused older revision", func() error { _, _ = r.ApplyChanges(nil, nil, 1); return nil }, false},
		{"reset", func() error { _, err := r.Reset(nil, 4, "c"); return err }, true},
	}
	for _, s := range steps {
		ch := r.Watch()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := fired(ch); got != s.fires {
			t.Errorf("%s: watch fired = %v, want %v", s.name, got, s.fires)
		}
		if s.fires && fired(r.Watch()) {
			t.Errorf("%s: the next watch is already closed", s.name)
		}
	}
}

// Readers running during writes always see a committed state, whole: each
// write replaces resource "gen-(i-1)" by "gen-i" at revision i, so a reader
// sees exactly one gen-* resource, between the revisions it read before and
// after.
func TestConcurrentReadersDuringWrites(t *testing.T) {
	r := openTemp(t)
	const writes = 60
	fixtures := make([]*syncpb.Resource, writes+1)
	for i := 1; i <= writes; i++ {
		fixtures[i] = mtp(t, "m", fmt.Sprintf("gen-%03d", i), uint64(i))
	}
	if _, err := r.ApplyChanges([]*syncpb.Resource{fixtures[1]}, nil, 1); err != nil {
		t.Fatal(err)
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for reads := 0; reads < 10 || !done.Load(); reads++ {
				_ = r.Watch()
				before := r.Revision()
				list := r.List(tMTP, "m")
				after := r.Revision()
				if len(list) != 1 {
					errs <- fmt.Errorf("reader saw %d gen resources at revision %d..%d", len(list), before, after)
					return
				}
				rev := list[0].Revision
				if rev < before || rev > after {
					errs <- fmt.Errorf("reader saw %s between revisions %d and %d", list[0], before, after)
					return
				}
				if got, ok := r.Get(list[0].Key()); ok && got.Revision < rev {
					errs <- fmt.Errorf("Get went back: %s after %s", got, list[0])
					return
				}
				if n := r.Count(tMTP, ""); n != 1 {
					errs <- fmt.Errorf("Count = %d", n)
					return
				}
			}
		}()
	}
	for i := 2; i <= writes; i++ {
		prev := fixtures[i-1]
		if _, err := r.ApplyChanges([]*syncpb.Resource{fixtures[i]}, []*syncpb.Deletion{del(tMTP, "m", prev.Name, uint64(i))}, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r.Revision() != writes {
		t.Errorf("revision = %d", r.Revision())
	}
}

// Concurrent writers are serialized; the replica ends at the highest
// revision, holding every write.
func TestConcurrentWriters(t *testing.T) {
	r := openTemp(t)
	var wg sync.WaitGroup
	for i := 1; i <= 8; i++ {
		res := mtp(t, "m", fmt.Sprintf("w%d", i), uint64(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A writer that loses the race to a higher revision is refused.
			_, err := r.ApplyChanges([]*syncpb.Resource{res}, nil, res.Revision)
			var re *RevisionError
			if err != nil && !errors.As(err, &re) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if r.Revision() != 8 {
		t.Errorf("revision = %d, want 8", r.Revision())
	}
	if _, ok := r.Get(key(tMTP, "m", "w8")); !ok {
		t.Error("the highest revision's write is missing")
	}
}

func TestClose(t *testing.T) {
	r := openTemp(t)
	if _, err := r.ApplyChanges([]*syncpb.Resource{mtp(t, "m", "a", 1)}, nil, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.ApplyChanges([]*syncpb.Resource{mtp(t, "m", "b", 2)}, nil, 2); !errors.Is(err, ErrClosed) {
		t.Errorf("ApplyChanges after Close: %v", err)
	}
	if _, err := r.Reset(nil, 2, "c"); !errors.Is(err, ErrClosed) {
		t.Errorf("Reset after Close: %v", err)
	}
	if _, ok := r.Get(key(tMTP, "m", "a")); !ok || r.Revision() != 1 {
		t.Error("reads after Close should keep answering from memory, unchanged")
	}
}

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{{}, {Zone: "z", LockTimeout: -1}} {
		if _, err := Open(filepath.Join(dir, "x.db"), nil, o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}
