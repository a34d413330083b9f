package ca

import (
	"math"
	"time"
)

// Renewal defaults for dataplane leaves: renew at 80% of the lifetime, ±5%
// of the lifetime, so a fleet issued together does not renew together
// (24h leaves renew between 18h00 and 20h24).
const (
	DefaultRenewFraction = 0.8
	DefaultRenewJitter   = 0.05
)

// RenewAt is when to renew a certificate valid from notBefore to notAfter.
//
// Data flow: the zone schedules each dataplane leaf's renewal with
// RenewAt(leaf.NotBefore, leaf.NotAfter, DefaultRenewFraction,
// DefaultRenewJitter, rnd) and its own intermediate's with HalfLife.
//
// Formula, with life = notAfter - notBefore and u = rnd() in [0, 1):
//
//	f = clamp(fraction + jitter*(2u - 1), 0, 1)
//	RenewAt = notBefore + f*life
//
// so the result lies in [notBefore + (fraction-jitter)*life,
// notBefore + (fraction+jitter)*life] intersected with [notBefore,
// notAfter]; jitter is a fraction of the whole lifetime, not of fraction.
// A nil rnd means u = 0.5 (no jitter). A given rnd (for instance
// rand.New(rand.NewPCG(1, 2)).Float64) makes it deterministic. A NaN
// fraction or jitter counts as 0; a non-positive life returns notBefore.
func RenewAt(notBefore, notAfter time.Time, fraction, jitter float64, rnd func() float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	if math.IsNaN(fraction) {
		fraction = 0
	}
	if math.IsNaN(jitter) || jitter < 0 {
		jitter = 0
	}
	u := 0.5
	if rnd != nil {
		u = rnd()
	}
	f := fraction + jitter*(2*u-1)
	f = math.Max(0, math.Min(1, f))
	return notBefore.Add(time.Duration(f * float64(life)))
}

// HalfLife is the middle of [notBefore, notAfter]: when a zone renews its
// intermediate, leaving the other half to ride out a global outage.
func HalfLife(notBefore, notAfter time.Time) time.Time {
	if !notAfter.After(notBefore) {
		return notBefore
	}
	return notBefore.Add(notAfter.Sub(notBefore) / 2)
}
