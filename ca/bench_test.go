package ca

import (
	"testing"
	"time"
)

func benchIssuer(b *testing.B) *Issuer {
	b.Helper()
	root := mustRoot(b, "bench", RootOptions{Now: time.Now()})
	csr, key, err := NewIntermediateRequest("bench", "zone-1", KeyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cert, err := SignIntermediate(root, csr, IntermediateOptions{Mesh: "bench", Zone: "zone-1"})
	if err != nil {
		b.Fatal(err)
	}
	return mustIssuer(b, KeyPair{CertPEM: cert, KeyPEM: key})
}

var benchTags = map[string]string{"kuma.io/protocol": "http", "version": "v1", "kuma.io/zone": "zone-1"}

// BenchmarkIssueLeafECDSA: one zone issuing dataplane leaves (ECDSA P-256
// key generation + signing by a shared ECDSA intermediate), serially.
func BenchmarkIssueLeafECDSA(b *testing.B) {
	iss := benchIssuer(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.IssueLeaf(LeafOptions{Mesh: "bench", Service: "backend", Tags: benchTags}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// BenchmarkIssueLeafParallel: the same Issuer shared by GOMAXPROCS
// goroutines.
func BenchmarkIssueLeafParallel(b *testing.B) {
	iss := benchIssuer(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := iss.IssueLeaf(LeafOptions{Mesh: "bench", Service: "backend", Tags: benchTags}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "leaves/s")
}

// BenchmarkNewMeshRootRSA2048: global creating a builtin RSA-2048 Mesh root
// (dominated by RSA key generation, which varies a lot run to run).
func BenchmarkNewMeshRootRSA2048(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewMeshRoot("bench", RootOptions{KeyType: KeyRSA, RSABits: 2048}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewMeshRootECDSA for comparison.
func BenchmarkNewMeshRootECDSA(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewMeshRoot("bench", RootOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
