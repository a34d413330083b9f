package store

import (
	"encoding/json"
	"testing"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
)

func TestInitSecretsOnceAndOnlyWhereMissing(t *testing.T) {
	h := newHarness(t)
	if res := h.cmd(CmdInitSecrets, InitSecretsCommand{ZoneTokenKey: []byte("k1")}); res.Err == nil {
		t.Fatal("init-secrets before bootstrap was accepted")
	}
	h.bootstrap(true)
	first := ca.KeyPair{CertPEM: []byte("cert-1"), KeyPEM: []byte("key-1")}
	h.cmd(CmdInitSecrets, InitSecretsCommand{ZoneTokenKey: []byte("k1")})
	meta, _ := h.st.Meta()
	if string(meta.ZoneTokenKey) != "k1" || meta.HasSecrets() {
		t.Fatalf("after the key only: %+v (HasSecrets %v)", meta, meta.HasSecrets())
	}
	h.cmd(CmdInitSecrets, InitSecretsCommand{ZoneTokenKey: []byte("k2"), SyncCA: first})
	h.cmd(CmdInitSecrets, InitSecretsCommand{ZoneTokenKey: []byte("k3"), SyncCA: ca.KeyPair{CertPEM: []byte("cert-2")}})
	meta, _ = h.st.Meta()
	if string(meta.ZoneTokenKey) != "k1" || string(meta.SyncCA.CertPEM) != "cert-1" || !meta.HasSecrets() {
		t.Fatalf("present secrets were replaced: %+v", meta)
	}
	// They survive a snapshot.
	data, err := snapshotBytes(h.fsm)
	if err != nil {
		t.Fatal(err)
	}
	st2 := NewState()
	sink := &memSink{}
	sink.Write(data)
	if err := NewFSM(st2).Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if m2, _ := st2.Meta(); string(m2.SyncCA.KeyPEM) != "key-1" || string(m2.ZoneTokenKey) != "k1" {
		t.Fatalf("secrets after restore: %+v", m2)
	}
}

func TestBatchAppliesEachOperation(t *testing.T) {
	h := newHarness(t)
	h.bootstrap(true)
	body := func(doc string) json.RawMessage {
		b, err := json.Marshal(fixture(t, doc))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := h.tick()
	res := h.cmd(CmdBatch, BatchCommand{Ops: []BatchOp{
		{Put: &PutCommand{Resource: body(mtpYAML("default", "a")), Now: now}},
		{Put: &PutCommand{Resource: body(mtpYAML("missing-mesh", "b")), Now: now}},
		{Put: &PutCommand{Resource: body(mtpYAML("default", "c")), Now: now}},
		{Delete: &DeleteCommand{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "c"}},
		{Delete: &DeleteCommand{Type: api.TypeMeshTrafficPermission, Mesh: "default", Name: "nope"}},
		{},
	}})
	if res.Err != nil || len(res.Batch) != 6 {
		t.Fatalf("batch: %v, %d results", res.Err, len(res.Batch))
	}
	wantErr := []bool{false, true, false, false, true, true}
	for i, w := range wantErr {
		if (res.Batch[i].Err != nil) != w {
			t.Errorf("op %d: err %v, want error %v", i, res.Batch[i].Err, w)
		}
	}
	if _, ok := h.st.Get(key(api.TypeMeshTrafficPermission, "default", "a")); !ok {
		t.Error("a was not stored")
	}
	if _, ok := h.st.Get(key(api.TypeMeshTrafficPermission, "default", "c")); ok {
		t.Error("c was put and deleted in one batch but is still there")
	}
	// One log entry: every change carries its index, and c appears once.
	cs, _, err := h.st.ChangesSince(h.index - 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[api.Key]int{}
	for _, c := range cs {
		seen[c.Key]++
		if c.Revision != h.index {
			t.Errorf("%s at revision %d, want %d", c.Key, c.Revision, h.index)
		}
	}
	if len(cs) != 2 || seen[key(api.TypeMeshTrafficPermission, "default", "c")] != 1 {
		t.Errorf("changes of the batch: %+v", cs)
	}
}
