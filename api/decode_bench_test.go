package api

import "testing"

var benchBody = []byte(`{"type":"MeshTrafficPermission","mesh":"default","name":"bench-1","labels":{"seq":"s1"},"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`)

// BenchmarkDecodePrepare is the API's per-write cost before Raft: decode a
// JSON body and validate it.
func BenchmarkDecodePrepare(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r, err := Decode(benchBody)
		if err != nil {
			b.Fatal(err)
		}
		if err := Prepare(r); err != nil {
			b.Fatal(err)
		}
	}
}
