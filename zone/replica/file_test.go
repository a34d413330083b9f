package replica

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// editBolt opens path as a plain bbolt database and runs fn in a write
// transaction: how the tests forge foreign and damaged files.
func editBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// validReplica writes a closed replica file with one resource.
func validReplica(t *testing.T, path string) {
	t.Helper()
	r, err := Open(path, testLogger(t), Options{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reset([]*syncpb.Resource{mtp(t, "default", "a", 3)}, 3, "cluster-a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, path string)
		zone    string
		want    error
		msg     []string
	}{
		{
			name:    "not a database: a short text file",
			prepare: func(t *testing.T, path string) { writeFile(t, path, []byte("hello, I am not a database\n")) },
			want:    ErrCorrupt, msg: []string{"invalid database"},
		},
		{
			name:    "not a database: pages of garbage",
			prepare: func(t *testing.T, path string) { writeFile(t, path, []byte(strings.Repeat("garbage!", 4096))) },
			want:    ErrCorrupt,
		},
		{
			name: "both meta pages damaged",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				pageSize := os.Getpagesize()
				for _, off := range []int{16 + 32, pageSize + 16 + 32} { // inside each meta (after the page header and magic/version/pagesize)
					for i := 0; i < 16; i++ {
						data[off+i] ^= 0xff
					}
				}
				writeFile(t, path, data)
			},
			want: ErrCorrupt,
		},
		{
			name: "a bbolt file of something else",
			prepare: func(t *testing.T, path string) {
				editBolt(t, path, func(tx *bolt.Tx) error {
					_, err := tx.CreateBucket([]byte("logs"))
					return err
				})
			},
			want: ErrNotReplica, msg: []string{`"logs"`},
		},
		{
			name: "format version from the future",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				editBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte("2")) })
			},
			want: ErrUnsupportedFormat, msg: []string{"format version 2", "reads version 1"},
		},
		{
			name: "no format version",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				editBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyFormat) })
			},
			want: ErrNotReplica,
		},
		{
			name:    "another zone's replica",
			prepare: validReplica,
			zone:    "zone-2",
			want:    ErrWrongZone, msg: []string{`written for zone "zone-1"`, `this is zone "zone-2"`},
		},
		{
			name: "a record that does not decode",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				editBolt(t, path, func(tx *bolt.Tx) error {
					return tx.Bucket(bucketResources).Put(storageKey(tMTP, "default", "b"), []byte{0xff, 0xff, 0xff})
				})
			},
			want: ErrCorrupt, msg: []string{"MeshTrafficPermission/default/b"},
		},
		{
			name: "a record under another key",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				editBolt(t, path, func(tx *bolt.Tx) error {
					b := tx.Bucket(bucketResources)
					v := append([]byte(nil), b.Get(storageKey(tMTP, "default", "a"))...)
					return b.Put(storageKey(tMTP, "default", "z"), v)
				})
			},
			want: ErrCorrupt, msg: []string{"wrong key"},
		},
		{
			name: "a damaged revision",
			prepare: func(t *testing.T, path string) {
				validReplica(t, path)
				editBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyRevision, []byte{1, 2}) })
			},
			want: ErrCorrupt, msg: []string{"revision"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "replica.db")
			tc.prepare(t, path)
			zone := tc.zone
			if zone == "" {
				zone = testZone
			}
			r, err := Open(path, testLogger(t), Options{Zone: zone})
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %q", err, tc.want)
			}
			for _, s := range append([]string{path}, tc.msg...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			t.Log(err)
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenEmptyFileStartsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	writeFile(t, path, nil)
	r := openAt(t, path)
	if r.Revision() != 0 || r.ClusterID() != "" || r.Len() != 0 {
		t.Errorf("new replica: revision %d cluster %q len %d", r.Revision(), r.ClusterID(), r.Len())
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	openAt(t, path)
	_, err := Open(path, testLogger(t), Options{Zone: testZone, LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// A write whose transaction fails changes nothing: not memory, not the
// revision, and watchers are not woken.
func TestFailedWriteLeavesStateUnchanged(t *testing.T) {
	r := openTemp(t)
	if _, err := r.Reset([]*syncpb.Resource{mtp(t, "m", "a", 1)}, 1, "c"); err != nil {
		t.Fatal(err)
	}
	before := dump(t, r)
	// Swap the file handle for a read-only one: every transaction fails.
	r.wmu.Lock()
	if err := r.db.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := bolt.Open(r.path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.db = ro
	r.wmu.Unlock()

	watch := r.Watch()
	if _, err := r.ApplyChanges([]*syncpb.Resource{mtp(t, "m", "b", 2)}, []*syncpb.Deletion{del(tMTP, "m", "a", 2)}, 2); err == nil {
		t.Fatal("ApplyChanges on a read-only file succeeded")
	}
	if _, err := r.Reset([]*syncpb.Resource{mtp(t, "m", "b", 2)}, 2, "d"); err == nil {
		t.Fatal("Reset on a read-only file succeeded")
	}
	select {
	case <-watch:
		t.Error("watch fired for a failed write")
	default:
	}
	if r.Revision() != 1 || r.ClusterID() != "c" {
		t.Errorf("revision %d cluster %q after failed writes", r.Revision(), r.ClusterID())
	}
	if diff := fmt.Sprint(dump(t, r)); diff != fmt.Sprint(before) {
		t.Errorf("state changed: %s", diff)
	}
}

// crashChildEnv names the file a child process writes to until it is killed.
const crashChildEnv = "MESHFED_REPLICA_CRASH_CHILD"

// A process killed (SIGKILL) in the middle of its writes leaves a file that
// opens, at a revision at least the last one it reported committed, with the
// state of exactly that revision: each write i replaces gen-(i-1) by gen-i.
func TestCrashMidWrite(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "replica.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		n, ok := strings.CutPrefix(line, "committed ")
		if !ok {
			continue
		}
		reported, _ = strconv.ParseUint(n, 10, 64)
		if reported >= 25 {
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if reported < 25 {
		t.Fatalf("child reported only %d commits before it ended", reported)
	}

	r := openAt(t, path)
	rev := r.Revision()
	if rev < reported {
		t.Fatalf("revision %d is behind the last reported commit %d", rev, reported)
	}
	list := r.List(tMTP, "m")
	if len(list) != 1 || list[0].Name != fmt.Sprintf("gen-%06d", rev) || list[0].Revision != rev {
		t.Fatalf("state after the crash at revision %d: %v", rev, list)
	}
	t.Logf("killed after %d reported commits; file at revision %d", reported, rev)
}

func crashChild(t *testing.T, path string) {
	r, err := Open(path, testLogger(t), Options{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); ; i++ {
		res := mtp(t, "m", fmt.Sprintf("gen-%06d", i), i)
		var dels []*syncpb.Deletion
		if i > 1 {
			dels = append(dels, del(api.TypeMeshTrafficPermission, "m", fmt.Sprintf("gen-%06d", i-1), i))
		}
		if _, err := r.ApplyChanges([]*syncpb.Resource{res}, dels, i); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("committed %d\n", i)
	}
}
