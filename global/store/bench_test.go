package store

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshfed/meshfed/api"
)

// BenchmarkFSMApplyPut measures one put command through FSM.Apply (decode,
// validate, compare with the stored version, index), without Raft. Every
// iteration is a real change: 256 keys, each put alternately with two label
// values.
func BenchmarkFSMApplyPut(b *testing.B) {
	const keys = 256
	h := newHarness(b)
	h.bootstrap(true)
	cmds := make([][]byte, 2*keys)
	for i := range cmds {
		r := fixture(b, dataplaneYAML("default", fmt.Sprintf("web-%d", i%keys), "10.0.0.1", "gen", fmt.Sprint(i/keys)))
		body, err := r.MarshalJSON()
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = mustEncodeB(b, CmdPut, PutCommand{Resource: body, Now: t0})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.index++
		res := h.fsm.Apply(&raft.Log{Type: raft.LogCommand, Index: h.index, Data: cmds[i%len(cmds)]}).(ApplyResult)
		if res.Err != nil || res.Resource.Revision != h.index {
			b.Fatalf("apply %d: %+v", i, res)
		}
	}
}

func mustEncodeB(b *testing.B, typ CommandType, body any) []byte {
	data, err := EncodeCommand(typ, body)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkStateChangesSince measures ChangesSince on a state of 10,000
// resources with 30,000 changes and 2,000 deletions behind it, for a watcher
// that is slightly behind and for one that starts from scratch.
func BenchmarkStateChangesSince(b *testing.B) {
	st := NewState()
	rev := uint64(0)
	const live = 10000
	for i := 0; i < 3*live; i++ {
		rev++
		r := bare(api.TypeMeshTrafficPermission, fmt.Sprintf("m%d", i%10), fmt.Sprintf("p%d", i%live), rev)
		st.apply(rev, func() { st.put(r) })
	}
	for i := 0; i < 2000; i++ {
		rev++
		k := key(api.TypeMeshTrafficPermission, fmt.Sprintf("m%d", i*5%10), fmt.Sprintf("p%d", i*5))
		st.apply(rev, func() { st.remove(k, rev) })
	}
	if n := st.Count(api.TypeMeshTrafficPermission, ""); n != live-2000 {
		b.Fatalf("%d live resources, want %d", n, live-2000)
	}
	for _, bc := range []struct {
		name  string
		since uint64
	}{
		{"behind_by_10", rev - 10},
		{"behind_by_1000", rev - 1000},
		{"from_scratch", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for i := 0; i < b.N; i++ {
				cs, _, err := st.ChangesSince(bc.since)
				if err != nil {
					b.Fatal(err)
				}
				n = len(cs)
			}
			b.ReportMetric(float64(n), "changes/op")
		})
	}
}
