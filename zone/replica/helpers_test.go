package replica

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

const testZone = "zone-1"

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

// openTemp opens a new replica for zone-1 in a temporary directory and closes
// it when the test ends.
func openTemp(t testing.TB) *Replica {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "replica.db"))
}

func openAt(t testing.TB, path string) *Replica {
	t.Helper()
	r, err := Open(path, testLogger(t), Options{Zone: testZone})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// --- fixtures: valid resources in wire form, as global sends them ----------

// wire decodes, prepares (as global does before storing) and encodes a YAML
// resource at revision rev.
func wire(t testing.TB, doc string, rev uint64) *syncpb.Resource {
	t.Helper()
	r, err := api.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("fixture does not decode: %v\n%s", err, doc)
	}
	if err := api.Prepare(r); err != nil {
		t.Fatalf("fixture is invalid: %v\n%s", err, doc)
	}
	r.Revision = rev
	w, err := batch.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// raw builds a wire resource with an arbitrary key and body.
func raw(typ, mesh, name string, rev uint64, body string) *syncpb.Resource {
	return &syncpb.Resource{Type: typ, Mesh: mesh, Name: name, Revision: rev, Body: []byte(body)}
}

func mtp(t testing.TB, mesh, name string, rev uint64) *syncpb.Resource {
	t.Helper()
	return wire(t, fmt.Sprintf(`
type: MeshTrafficPermission
mesh: %s
name: %s
spec:
  targetRef: {kind: Mesh}
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
`, mesh, name), rev)
}

// mtpBody is a MeshTrafficPermission body with the given action (anything
// but Allow, Deny, AllowWithShadowDeny is invalid).
func mtpBody(mesh, name, action string) string {
	return fmt.Sprintf(`{"type":"MeshTrafficPermission","mesh":%q,"name":%q,"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":%q}}]}}`, mesh, name, action)
}

func meshRes(t testing.TB, name string, rev uint64) *syncpb.Resource {
	t.Helper()
	return wire(t, "type: Mesh\nname: "+name+"\n", rev)
}

func zoneIngress(t testing.TB, name, zone string, rev uint64) *syncpb.Resource {
	t.Helper()
	labels := ""
	if zone != "" {
		labels = fmt.Sprintf("labels: {kuma.io/zone: %s}\n", zone)
	}
	z := zone
	if z == "" {
		z = "somewhere"
	}
	return wire(t, fmt.Sprintf(`type: ZoneIngress
name: %s
%szone: %s
networking: {address: 10.0.0.1, port: 10001}
`, name, labels, z), rev)
}

func dataplane(t testing.TB, mesh, name, zone string, rev uint64) *syncpb.Resource {
	t.Helper()
	return wire(t, fmt.Sprintf(`type: Dataplane
mesh: %s
name: %s
labels: {kuma.io/zone: %s}
networking:
  address: 10.0.0.2
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
`, mesh, name, zone), rev)
}

func del(typ, mesh, name string, rev uint64) *syncpb.Deletion {
	return &syncpb.Deletion{Type: typ, Mesh: mesh, Name: name, Revision: rev}
}

func key(typ, mesh, name string) api.Key { return api.Key{Type: typ, Mesh: mesh, Name: name} }

// --- state inspection -----------------------------------------------------

// dump renders every resource the replica holds as "key@revision" → body,
// through the public read API.
func dump(t testing.TB, r *Replica) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range api.Types() {
		for _, res := range r.List(d.Name, "") {
			body, err := json.Marshal(res)
			if err != nil {
				t.Fatalf("marshal %s: %v", res.Key(), err)
			}
			out[res.String()] = string(body)
		}
	}
	return out
}

// revisions renders the held keys with their revisions, sorted.
func revisions(r *Replica) []string {
	var out []string
	for _, d := range api.Types() {
		for _, res := range r.List(d.Name, "") {
			out = append(out, res.String())
		}
	}
	sort.Strings(out)
	return out
}
