package replica

import (
	"fmt"
	"testing"

	"github.com/meshfed/meshfed/sync/syncpb"
)

// BenchmarkApplyChanges measures one ApplyChanges (decode, validate, one
// fsynced bbolt transaction, index update) per op, for batches of 1, 10 and
// 100 upserts of MeshTrafficPermissions that overwrite the same keys. Put the
// temporary directory on the disk of interest (TMPDIR): on tmpfs the fsync
// costs nothing.
func BenchmarkApplyChanges(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			r := openTemp(b)
			batch := make([]*syncpb.Resource, n)
			for i := range batch {
				batch[i] = mtp(b, "default", fmt.Sprintf("policy-%03d", i), 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rev := uint64(i + 1)
				for _, w := range batch {
					w.Revision = rev
				}
				rej, err := r.ApplyChanges(batch, nil, rev)
				if err != nil || len(rej) != 0 {
					b.Fatal(rej, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/resource")
		})
	}
}
