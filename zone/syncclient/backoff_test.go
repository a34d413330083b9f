package syncclient

import (
	"testing"
	"time"
)

func TestBackoffDoublesCapsJittersAndResets(t *testing.T) {
	cfg := Config{}
	_ = cfg.Validate() // defaults: 100ms .. 10s, ±20%
	b := backoff{cfg: cfg.Backoff}
	within := func(got, base time.Duration) bool {
		return got >= time.Duration(0.8*float64(base)) && got <= time.Duration(1.2*float64(base))
	}
	bases := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second}
	for i, base := range bases {
		if got := b.next(); !within(got, base) {
			t.Fatalf("delay %d = %s, want %s ±20%%", i+1, got, base)
		}
	}
	b.reset()
	if got := b.next(); !within(got, 100*time.Millisecond) {
		t.Fatalf("after a reset: %s, want 100ms ±20%%", got)
	}

	// The jitter spreads delays over the whole ±20% band, both ways.
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := b.jitter(time.Second)
		if !within(d, time.Second) {
			t.Fatalf("jitter(1s) = %s", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 850*time.Millisecond || hi < 1150*time.Millisecond {
		t.Fatalf("1000 jittered delays only spread over [%s, %s]", lo, hi)
	}
}
