package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
)

// Error matchers: nil when err is what the case expects.

func isNil(err error) error {
	if err != nil {
		return fmt.Errorf("unexpected error: %w", err)
	}
	return nil
}

func isConflict(err error) error {
	var ce *api.ConflictError
	if !errors.As(err, &ce) {
		return fmt.Errorf("want *api.ConflictError, got %T %v", err, err)
	}
	return nil
}

func isNotFound(err error) error {
	if !errors.Is(err, api.ErrNotFound) {
		return fmt.Errorf("want api.ErrNotFound, got %T %v", err, err)
	}
	return nil
}

func isValidationAt(field string) func(error) error {
	return func(err error) error {
		var ve *api.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("want *api.ValidationError, got %T %v", err, err)
		}
		for _, fe := range ve.Errors {
			if fe.Field == field {
				return nil
			}
		}
		return fmt.Errorf("no error at field %q: %v", field, ve)
	}
}

func isAnyError(err error) error {
	if err == nil {
		return errors.New("want an error, got nil")
	}
	return nil
}

func TestFSMBootstrap(t *testing.T) {
	tests := []struct {
		name string
		run  func(h *fsmHarness)
	}{
		{"creates the default mesh", func(h *fsmHarness) {
			res := h.bootstrap(true)
			if res.Err != nil || !res.Created || res.Resource == nil {
				t.Fatalf("bootstrap = %+v", res)
			}
			m, ok := h.st.Get(key(api.TypeMesh, "", "default"))
			if !ok || m != res.Resource {
				t.Fatalf("default mesh not stored: %v %v", m, ok)
			}
			if m.Revision != h.index || !m.CreationTime.Equal(h.now) || !m.ModificationTime.Equal(h.now) {
				t.Errorf("default mesh %s created %v modified %v; want revision %d at %v", m, m.CreationTime, m.ModificationTime, h.index, h.now)
			}
			meta, done := h.st.Meta()
			if !done || meta.ClusterID == "" || len(meta.AdminToken) != 64 {
				t.Errorf("meta = %+v, bootstrapped %v", meta, done)
			}
		}},
		{"second bootstrap is a no-op", func(h *fsmHarness) {
			first := h.bootstrap(true)
			before := dump(t, h.st)
			res := h.cmd(CmdBootstrap, BootstrapCommand{ClusterID: "other", AdminToken: "other", CreateDefaultMesh: true, Now: h.tick()})
			if res.Err != nil || res.Created || res.Resource != nil {
				t.Fatalf("second bootstrap = %+v", res)
			}
			if after := dump(t, h.st); after != before {
				t.Errorf("second bootstrap changed the state:\n%s\nwas\n%s", after, before)
			}
			if m, _ := h.st.Get(key(api.TypeMesh, "", "default")); m != first.Resource {
				t.Error("default mesh replaced")
			}
		}},
		{"second bootstrap does not bring a deleted default mesh back", func(h *fsmHarness) {
			h.bootstrap(true)
			if res := h.del(key(api.TypeMesh, "", "default"), 0); res.Err != nil {
				t.Fatal(res.Err)
			}
			h.bootstrap(true)
			if n := h.st.Count(api.TypeMesh, ""); n != 0 {
				t.Errorf("%d meshes after re-bootstrap", n)
			}
		}},
		{"SkipDefaultMesh", func(h *fsmHarness) {
			res := h.bootstrap(false)
			if res.Err != nil || res.Created || res.Resource != nil {
				t.Fatalf("bootstrap = %+v", res)
			}
			if n := h.st.Count(api.TypeMesh, ""); n != 0 {
				t.Errorf("%d meshes", n)
			}
			if _, done := h.st.Meta(); !done {
				t.Error("not bootstrapped")
			}
		}},
		{"missing cluster id is refused", func(h *fsmHarness) {
			res := h.cmd(CmdBootstrap, BootstrapCommand{AdminToken: "x", CreateDefaultMesh: true})
			if res.Err == nil {
				t.Fatal("no error")
			}
			if _, done := h.st.Meta(); done || h.st.Count(api.TypeMesh, "") != 0 {
				t.Error("state changed")
			}
			// A valid bootstrap still works afterwards.
			if res := h.bootstrap(true); res.Err != nil || !res.Created {
				t.Fatalf("bootstrap after a refused one = %+v", res)
			}
		}},
		{"malformed body", func(h *fsmHarness) {
			res := h.applyData([]byte(`{"type":"bootstrap","body":"not an object"}`))
			if res.Err == nil {
				t.Fatal("no error")
			}
			if _, done := h.st.Meta(); done {
				t.Error("bootstrapped by a malformed command")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(newHarness(t)) })
	}
}

func TestFSMPut(t *testing.T) {
	// Every case starts from: bootstrap without default mesh, Mesh "demo"
	// (e.mesh) and MeshTrafficPermission demo/allow (e.mtp).
	type env struct {
		h    *fsmHarness
		mesh *api.Resource // Mesh demo as first stored
		mtp  *api.Resource
	}
	tests := []struct {
		name string
		// do issues the command under test and returns its result.
		do  func(e *env) ApplyResult
		err func(error) error
		// changed: the command must create a new revision (at h.index) of
		// the returned resource; otherwise the state must be unchanged.
		changed bool
		created bool
		check   func(t *testing.T, e *env, res ApplyResult)
	}{
		{
			name: "create", changed: true, created: true, err: isNil,
			do: func(e *env) ApplyResult { return e.h.putYAML(dataplaneYAML("demo", "web-1", "10.0.0.1")) },
			check: func(t *testing.T, e *env, res ApplyResult) {
				r := res.Resource
				if !r.CreationTime.Equal(e.h.now) || !r.ModificationTime.Equal(e.h.now) {
					t.Errorf("times %v / %v, want %v", r.CreationTime, r.ModificationTime, e.h.now)
				}
			},
		},
		{
			name: "update keeps creation time", changed: true, created: false, err: isNil,
			do: func(e *env) ApplyResult { return e.h.putYAML(mtpYAML("demo", "allow", "team", "payments")) },
			check: func(t *testing.T, e *env, res ApplyResult) {
				r := res.Resource
				if !r.CreationTime.Equal(e.mtp.CreationTime) || !r.ModificationTime.Equal(e.h.now) || r.ModificationTime.Equal(r.CreationTime) {
					t.Errorf("times %v / %v; want creation %v, modification %v", r.CreationTime, r.ModificationTime, e.mtp.CreationTime, e.h.now)
				}
				if r.Labels["team"] != "payments" {
					t.Errorf("labels %v", r.Labels)
				}
			},
		},
		{
			name: "update of the spec", changed: true, created: false, err: isNil,
			do: func(e *env) ApplyResult {
				return e.h.putYAML(strings.Replace(mtpYAML("demo", "allow"), "action: Allow", "action: Deny", 1))
			},
		},
		{
			name: "unchanged put creates no revision", changed: false, err: isNil,
			do: func(e *env) ApplyResult { return e.h.putYAML(mtpYAML("demo", "allow")) },
			check: func(t *testing.T, e *env, res ApplyResult) {
				if res.Resource != e.mtp || res.Created {
					t.Errorf("result %+v, want the stored resource, not created", res)
				}
			},
		},
		{
			name: "unchanged put of a global resource", changed: false, err: isNil,
			do: func(e *env) ApplyResult { return e.h.putYAML(meshYAML("demo")) },
			check: func(t *testing.T, e *env, res ApplyResult) {
				if res.Resource != e.mesh {
					t.Errorf("result %v, want the stored mesh", res.Resource)
				}
			},
		},
		{
			name: "expected revision matches", changed: true, err: isNil,
			do: func(e *env) ApplyResult {
				return e.h.put(fixture(e.h.t, mtpYAML("demo", "allow", "v", "2")), e.mtp.Revision)
			},
		},
		{
			name: "stale expected revision", err: isConflict,
			do: func(e *env) ApplyResult {
				return e.h.put(fixture(e.h.t, mtpYAML("demo", "allow", "v", "2")), e.mtp.Revision-1)
			},
		},
		{
			name: "stale expected revision on an unchanged put", err: isConflict,
			do: func(e *env) ApplyResult { return e.h.put(fixture(e.h.t, mtpYAML("demo", "allow")), e.mtp.Revision+1) },
		},
		{
			name: "expected revision of a missing resource", err: isConflict,
			do: func(e *env) ApplyResult { return e.h.put(fixture(e.h.t, mtpYAML("demo", "other")), 3) },
		},
		{
			name: "mesh-scoped put into a missing mesh", err: isValidationAt("mesh"),
			do: func(e *env) ApplyResult { return e.h.putYAML(dataplaneYAML("nope", "web-1", "10.0.0.1")) },
		},
		{
			name: "invalid name", err: isValidationAt("name"),
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Mesh","name":"Not_A_Name"}`), Now: e.h.tick()})
			},
		},
		{
			name: "invalid spec", err: isValidationAt("networking.address"),
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Dataplane","mesh":"demo","name":"dp","networking":{"inbound":[{"port":80,"tags":{"kuma.io/service":"web"}}]}}`), Now: e.h.tick()})
			},
		},
		{
			name: "mesh on a global type", err: isValidationAt("mesh"),
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Zone","mesh":"demo","name":"zone-1"}`), Now: e.h.tick()})
			},
		},
		{
			name: "unknown resource type", err: isValidationAt("type"),
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Nope","name":"x"}`), Now: e.h.tick()})
			},
		},
		{
			name: "unknown field", err: isValidationAt("networking.colour"),
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Dataplane","mesh":"demo","name":"dp","networking":{"address":"10.0.0.1","colour":"red"}}`), Now: e.h.tick()})
			},
		},
		{
			name: "resource is not an object", err: isAnyError,
			do: func(e *env) ApplyResult {
				return e.h.cmd(CmdPut, PutCommand{Resource: json.RawMessage(`[1,2]`), Now: e.h.tick()})
			},
		},
		{
			name: "malformed put body", err: isAnyError,
			do: func(e *env) ApplyResult { return e.h.applyData([]byte(`{"type":"put","body":{"resource":7}}`)) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.bootstrap(false)
			e := &env{h: h, mesh: h.mustPut(meshYAML("demo")), mtp: h.mustPut(mtpYAML("demo", "allow"))}
			before, beforeRev := dump(t, h.st), h.st.Revision()

			res := tt.do(e)
			if err := tt.err(res.Err); err != nil {
				t.Fatal(err)
			}
			changes, _, err := h.st.ChangesSince(beforeRev)
			if err != nil {
				t.Fatal(err)
			}
			if tt.changed {
				r := res.Resource
				if r == nil || r.Revision != h.index || res.Created != tt.created {
					t.Fatalf("result %+v (resource %v); want revision %d, created %v", res, r, h.index, tt.created)
				}
				if got, _ := h.st.Get(r.Key()); got != r {
					t.Errorf("Get(%s) = %v, want the returned resource", r.Key(), got)
				}
				if len(changes) != 1 || changes[0].Resource != r || changes[0].Revision != h.index {
					t.Errorf("ChangesSince(%d) = %+v, want just %s", beforeRev, changes, r)
				}
			} else {
				if after := dump(t, h.st); after != before {
					t.Errorf("state changed:\n%s\nwas\n%s", after, before)
				}
				if len(changes) != 0 {
					t.Errorf("ChangesSince(%d) = %+v, want none", beforeRev, changes)
				}
			}
			if tt.check != nil {
				tt.check(t, e, res)
			}
			if err := checkInvariants(h.st); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFSMDelete(t *testing.T) {
	tests := []struct {
		name    string
		do      func(h *fsmHarness) ApplyResult
		err     func(error) error
		removed []api.Key // in tombstone order; empty: state unchanged
	}{
		{
			name: "policy", err: isNil,
			do:      func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeMeshTrafficPermission, "a", "allow"), 0) },
			removed: []api.Key{key(api.TypeMeshTrafficPermission, "a", "allow")},
		},
		{
			name: "missing resource", err: isNotFound,
			do: func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeMeshTrafficPermission, "a", "nope"), 0) },
		},
		{
			name: "resource in another mesh's name", err: isNotFound,
			do: func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeSecret, "c", "ca"), 0) },
		},
		{
			name: "expected revision matches", err: isNil,
			do: func(h *fsmHarness) ApplyResult {
				k := key(api.TypeSecret, "a", "ca")
				r, _ := h.st.Get(k)
				return h.del(k, r.Revision)
			},
			removed: []api.Key{key(api.TypeSecret, "a", "ca")},
		},
		{
			name: "stale expected revision", err: isConflict,
			do: func(h *fsmHarness) ApplyResult {
				k := key(api.TypeSecret, "a", "ca")
				r, _ := h.st.Get(k)
				return h.del(k, r.Revision+1)
			},
		},
		{
			name: "mesh with a dataplane is refused", err: isConflict,
			do: func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeMesh, "", "b"), 0) },
		},
		{
			name: "mesh cascades to what it owns, in registry then name order", err: isNil,
			do: func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeMesh, "", "a"), 0) },
			removed: []api.Key{
				key(api.TypeSecret, "a", "ca"),
				key(api.TypeSecret, "a", "tls"),
				key(api.TypeMeshTrafficPermission, "a", "allow"),
				key(api.TypeMeshTrafficPermission, "a", "deny"),
				key(api.TypeMeshTimeout, "a", "timeouts"),
				key(api.TypeMesh, "", "a"),
			},
		},
		{
			name: "empty mesh", err: isNil,
			do:      func(h *fsmHarness) ApplyResult { return h.del(key(api.TypeMesh, "", "empty"), 0) },
			removed: []api.Key{key(api.TypeMesh, "", "empty")},
		},
		{
			name: "mesh after its dataplane is gone", err: isNil,
			do: func(h *fsmHarness) ApplyResult {
				if res := h.del(key(api.TypeDataplane, "b", "web-1"), 0); res.Err != nil {
					h.t.Fatal(res.Err)
				}
				return h.del(key(api.TypeMesh, "", "b"), 0)
			},
			removed: []api.Key{
				key(api.TypeDataplane, "b", "web-1"), // by the first delete
				key(api.TypeSecret, "b", "ca"),
				key(api.TypeMeshTrafficPermission, "b", "allow"),
				key(api.TypeMesh, "", "b"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.bootstrap(false)
			for _, doc := range []string{
				meshYAML("a"), meshYAML("b"), meshYAML("c"), meshYAML("empty"), zoneYAML("zone-1"),
				mtpYAML("a", "deny"), mtpYAML("a", "allow"), secretYAML("a", "tls", "dGxzCg=="), secretYAML("a", "ca", "Y2EK"),
				meshTimeoutYAML("a", "timeouts"),
				mtpYAML("b", "allow"), secretYAML("b", "ca", "Y2EK"), dataplaneYAML("b", "web-1", "10.0.0.1"),
				mtpYAML("c", "allow"), mtpYAML("c", "deny"),
			} {
				h.mustPut(doc)
			}
			before, beforeRev := dump(t, h.st), h.st.Revision()
			liveBefore := map[api.Key]*api.Resource{}
			for _, r := range h.st.index.All() {
				liveBefore[r.Key()] = r
			}

			res := tt.do(h)
			if err := tt.err(res.Err); err != nil {
				t.Fatal(err)
			}
			if err := checkInvariants(h.st); err != nil {
				t.Fatal(err)
			}
			changes, _, err := h.st.ChangesSince(beforeRev)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.removed) == 0 {
				if after := dump(t, h.st); after != before {
					t.Errorf("state changed:\n%s\nwas\n%s", after, before)
				}
				if len(changes) != 0 {
					t.Errorf("changes: %+v", changes)
				}
				return
			}
			if want := tt.removed[len(tt.removed)-1]; res.Resource == nil || res.Resource.Key() != want {
				t.Errorf("result resource %v, want the deleted %s", res.Resource, want)
			}
			var got []api.Key
			gone := map[api.Key]bool{}
			for _, c := range changes {
				if c.Resource != nil {
					t.Errorf("change %+v is not a deletion", c)
				}
				if c.Revision > h.index || c.Revision <= beforeRev {
					t.Errorf("change %+v outside (%d, %d]", c, beforeRev, h.index)
				}
				got = append(got, c.Key)
				gone[c.Key] = true
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.removed) {
				t.Errorf("tombstones\n %v\nwant\n %v", got, tt.removed)
			}
			// Everything else is untouched: same pointer, same revision.
			for k, r := range liveBefore {
				now, ok := h.st.Get(k)
				switch {
				case gone[k] && ok:
					t.Errorf("%s still present", k)
				case !gone[k] && now != r:
					t.Errorf("%s changed: %v -> %v", k, r, now)
				}
			}
		})
	}
}

func TestFSMCommandErrorsChangeNothing(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"unknown command type", mustEncode(t, "frobnicate", map[string]string{"x": "y"})},
		{"empty command type", []byte(`{"body":{}}`)},
		{"not JSON", []byte("\x00\x01 garbage")},
		{"empty entry", nil},
		{"JSON but not an object", []byte(`[1,2,3]`)},
		{"body of the wrong shape", []byte(`{"type":"delete","body":[1]}`)},
		{"put without a resource", []byte(`{"type":"put","body":{}}`)},
		{"delete of an unknown type", mustEncode(t, CmdDelete, DeleteCommand{Type: "Nope", Name: "x"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.bootstrap(true)
			h.mustPut(mtpYAML("default", "allow"))
			before, beforeRev := dump(t, h.st), h.st.Revision()
			if res := h.applyData(tt.data); res.Err == nil {
				t.Fatalf("no error for %q", tt.data)
			}
			if after := dump(t, h.st); after != before {
				t.Errorf("state changed:\n%s\nwas\n%s", after, before)
			}
			if cs, _, _ := h.st.ChangesSince(beforeRev); len(cs) != 0 {
				t.Errorf("changes: %+v", cs)
			}
			// The FSM keeps working.
			if res := h.putYAML(mtpYAML("default", "allow", "after", "error")); res.Err != nil || res.Resource.Revision != h.index {
				t.Errorf("put after the error: %+v", res)
			}
		})
	}
}

func mustEncode(t *testing.T, typ CommandType, body any) []byte {
	t.Helper()
	b, err := EncodeCommand(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMIgnoresNonCommandLogs(t *testing.T) {
	h := newHarness(t)
	h.bootstrap(true)
	put := mustEncode(t, CmdPut, PutCommand{Resource: json.RawMessage(`{"type":"Mesh","name":"sneaky"}`), Now: t0})
	before, beforeRev := dump(t, h.st), h.st.Revision()
	w := h.st.Watch()
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated} {
		if out := h.applyLog(typ, put); out != nil {
			t.Errorf("%v entry: Apply returned %v, want nil", typ, out)
		}
	}
	if after := dump(t, h.st); after != before || h.st.Revision() != beforeRev {
		t.Errorf("state changed (revision %d -> %d):\n%s", beforeRev, h.st.Revision(), after)
	}
	select {
	case <-w:
		t.Error("watchers woken by a non-command entry")
	default:
	}
}
