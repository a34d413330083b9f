package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
)

// eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with msg.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, fmt.Sprintf(msg, args...))
		}
		<-tick.C
	}
}

// --- fixtures, in Kuma's universal YAML format ---------------------------

// labelsYAML renders key/value pairs as a YAML flow map line (JSON is YAML).
func labelsYAML(kv ...string) string {
	if len(kv) == 0 {
		return ""
	}
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return "labels: " + string(b) + "\n"
}

func meshYAML(name string, labels ...string) string {
	return fmt.Sprintf(`type: Mesh
name: %s
%smtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
`, name, labelsYAML(labels...))
}

func dataplaneYAML(mesh, name, address string, labels ...string) string {
	return fmt.Sprintf(`type: Dataplane
mesh: %s
name: %s
%snetworking:
  address: %s
  inbound:
    - port: 8080
      servicePort: 80
      tags:
        kuma.io/service: web
        kuma.io/protocol: http
  outbound:
    - port: 10001
      tags:
        kuma.io/service: backend
`, mesh, name, labelsYAML(labels...), address)
}

func mtpYAML(mesh, name string, labels ...string) string {
	return fmt.Sprintf(`type: MeshTrafficPermission
mesh: %s
name: %s
%sspec:
  targetRef:
    kind: Mesh
  from:
    - targetRef:
        kind: Mesh
      default:
        action: Allow
`, mesh, name, labelsYAML(labels...))
}

func meshTimeoutYAML(mesh, name string) string {
	return fmt.Sprintf(`type: MeshTimeout
mesh: %s
name: %s
spec:
  targetRef:
    kind: Mesh
  to:
    - targetRef:
        kind: Mesh
      default:
        connectionTimeout: 5s
        http:
          requestTimeout: 15s
`, mesh, name)
}

func secretYAML(mesh, name, data string) string {
	return fmt.Sprintf(`type: Secret
mesh: %s
name: %s
data: %s
`, mesh, name, data)
}

func zoneYAML(name string, labels ...string) string {
	return fmt.Sprintf("type: Zone\nname: %s\n%senabled: true\n", name, labelsYAML(labels...))
}

// fixture decodes and prepares a resource as the HTTP API would before
// handing it to a store.
func fixture(t testing.TB, doc string) *api.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("fixture does not decode: %v\n%s", err, doc)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatalf("fixture does not validate: %v\n%s", err, doc)
	}
	return r
}

// bare returns an unvalidated resource with just an envelope, for State
// tests that do not go through the FSM.
func bare(typ, mesh, name string, rev uint64, labels ...string) *api.Resource {
	r, err := api.New(typ, mesh, name)
	if err != nil {
		panic(err)
	}
	r.Revision = rev
	if len(labels) > 0 {
		r.Labels = map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			r.Labels[labels[i]] = labels[i+1]
		}
	}
	return r
}

func key(typ, mesh, name string) api.Key { return api.Key{Type: typ, Mesh: mesh, Name: name} }

// --- FSM harness ----------------------------------------------------------

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fsmHarness feeds hand-made raft.Log entries to an FSM with increasing
// indexes and a clock that advances one second per command.
type fsmHarness struct {
	t     testing.TB
	st    *State
	fsm   *FSM
	index uint64
	now   time.Time
}

func newHarness(t testing.TB) *fsmHarness {
	st := NewState()
	return &fsmHarness{t: t, st: st, fsm: NewFSM(st), now: t0}
}

func (h *fsmHarness) tick() time.Time {
	h.now = h.now.Add(time.Second)
	return h.now
}

// applyLog applies one raw entry at the next index.
func (h *fsmHarness) applyLog(typ raft.LogType, data []byte) any {
	h.index++
	return h.fsm.Apply(&raft.Log{Type: typ, Index: h.index, Term: 1, Data: data})
}

func (h *fsmHarness) applyData(data []byte) ApplyResult {
	h.t.Helper()
	out := h.applyLog(raft.LogCommand, data)
	res, ok := out.(ApplyResult)
	if !ok {
		h.t.Fatalf("FSM.Apply returned %T, want ApplyResult", out)
	}
	return res
}

func (h *fsmHarness) cmd(typ CommandType, body any) ApplyResult {
	h.t.Helper()
	data, err := EncodeCommand(typ, body)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.applyData(data)
}

func (h *fsmHarness) bootstrap(createDefault bool) ApplyResult {
	h.t.Helper()
	return h.cmd(CmdBootstrap, BootstrapCommand{
		ClusterID: "c0ffee00-0000-4000-8000-000000000001", AdminToken: strings.Repeat("ab", 32),
		CreateDefaultMesh: createDefault, Now: h.tick(),
	})
}

func (h *fsmHarness) put(r *api.Resource, expect uint64) ApplyResult {
	h.t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.cmd(CmdPut, PutCommand{Resource: body, ExpectRevision: expect, Now: h.tick()})
}

func (h *fsmHarness) putYAML(doc string) ApplyResult {
	h.t.Helper()
	return h.put(fixture(h.t, doc), 0)
}

func (h *fsmHarness) mustPut(doc string) *api.Resource {
	h.t.Helper()
	res := h.putYAML(doc)
	if res.Err != nil {
		h.t.Fatalf("put: %v", res.Err)
	}
	return res.Resource
}

func (h *fsmHarness) del(k api.Key, expect uint64) ApplyResult {
	h.t.Helper()
	return h.cmd(CmdDelete, DeleteCommand{Type: k.Type, Mesh: k.Mesh, Name: k.Name, ExpectRevision: expect})
}

// --- comparing states -----------------------------------------------------

// dump renders a state's content without its overall revision: meta and
// every live resource with its revision, times and body, sorted by key.
func dump(t testing.TB, st *State) string {
	t.Helper()
	st.mu.RLock()
	defer st.mu.RUnlock()
	all := st.index.All()
	sort.Slice(all, func(i, j int) bool { return all[i].Key().String() < all[j].Key().String() })
	var b strings.Builder
	fmt.Fprintf(&b, "bootstrapped=%v meta=%+v\n", st.bootstrapped, st.meta)
	for _, r := range all {
		k := r.Key()
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal %s: %v", k, err)
		}
		fmt.Fprintf(&b, "%s rev=%d %s\n", k, r.Revision, body)
	}
	return b.String()
}

// changesText renders a ChangesSince answer for comparisons and messages.
func changesText(t testing.TB, cs []Change, rev uint64, err error) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "rev=%d err=%v\n", rev, err)
	for _, c := range cs {
		if c.Resource == nil {
			fmt.Fprintf(&b, "  %d %s deleted\n", c.Revision, c.Key)
			continue
		}
		body, jerr := json.Marshal(c.Resource)
		if jerr != nil {
			t.Fatalf("marshal %s: %v", c.Key, jerr)
		}
		fmt.Fprintf(&b, "  %d %s rev=%d %s\n", c.Revision, c.Key, c.Resource.Revision, body)
	}
	return b.String()
}

// checkInvariants verifies a state's indexes agree with each other. It
// returns an error (not t.Fatal) so that goroutines may call it.
func checkInvariants(st *State) error {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var errs []error
	all := st.index.All()
	if len(all) != st.index.Len() {
		errs = append(errs, fmt.Errorf("index: All gives %d resources, Len %d", len(all), st.index.Len()))
	}
	perType := map[string]int{}
	perMesh := map[[2]string]int{}
	for _, r := range all {
		k := r.Key()
		perType[k.Type]++
		perMesh[[2]string{k.Type, k.Mesh}]++
		if got, ok := st.index.Get(k); !ok || got != r {
			errs = append(errs, fmt.Errorf("index: Get(%s) is not the resource All gives", k))
		}
		if r.Revision == 0 || r.Revision > st.revision {
			errs = append(errs, fmt.Errorf("%s at revision %d, state at %d", k, r.Revision, st.revision))
		}
		if st.lastTouch[k] != r.Revision {
			errs = append(errs, fmt.Errorf("%s: lastTouch %d, revision %d", k, st.lastTouch[k], r.Revision))
		}
	}
	tombAt := map[tombstone]bool{}
	for i, tb := range st.tombs {
		tombAt[tb] = true
		if i > 0 && st.tombs[i-1].revision > tb.revision {
			errs = append(errs, fmt.Errorf("tombstones out of order at %d", i))
		}
		if tb.revision > st.revision || tb.revision < st.tombFloor {
			errs = append(errs, fmt.Errorf("tombstone %s@%d outside (floor %d, revision %d)", tb.key, tb.revision, st.tombFloor, st.revision))
		}
	}
	for typ, n := range perType {
		if got := st.index.Count(typ, ""); got != n {
			errs = append(errs, fmt.Errorf("index: Count(%s) = %d, All holds %d", typ, got, n))
		}
		if got := len(st.index.List(typ, "")); got != n {
			errs = append(errs, fmt.Errorf("index: List(%s) holds %d, All %d", typ, got, n))
		}
	}
	for tm, n := range perMesh {
		if got := st.index.Count(tm[0], tm[1]); got != n {
			errs = append(errs, fmt.Errorf("index: Count(%s, %q) = %d, All holds %d", tm[0], tm[1], got, n))
		}
	}
	for k, rev := range st.lastTouch {
		if _, live := st.index.Get(k); !live && !tombAt[tombstone{key: k, revision: rev}] {
			errs = append(errs, fmt.Errorf("%s last touched at %d: neither live nor a tombstone", k, rev))
		}
	}
	for i := 1; i < len(st.changes); i++ {
		if st.changes[i-1].revision > st.changes[i].revision {
			errs = append(errs, fmt.Errorf("change log out of order at %d", i))
		}
	}
	return errors.Join(errs...)
}

// --- snapshots ----------------------------------------------------------

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	failWrites bool
	closed     bool
	cancelled  bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrites {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) reader() io.ReadCloser {
	return io.NopCloser(bytes.NewReader(s.Bytes()))
}

var _ raft.SnapshotSink = (*memSink)(nil)

// snapshotBytes takes and persists a snapshot of f.
func snapshotBytes(f *FSM) ([]byte, error) {
	snap, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		return nil, err
	}
	if !sink.closed || sink.cancelled {
		return nil, fmt.Errorf("sink closed=%v cancelled=%v after a successful Persist", sink.closed, sink.cancelled)
	}
	return sink.Bytes(), nil
}
