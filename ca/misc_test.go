package ca

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestSPIFFEID(t *testing.T) {
	for _, c := range []struct{ mesh, service, id string }{
		{"default", "backend", "spiffe://default/backend"},
		{"payments", "backend_kuma-demo_svc_8080", "spiffe://payments/backend_kuma-demo_svc_8080"},
		{"m", "web/v2", "spiffe://m/web%2Fv2"},
		{"m", "a b", "spiffe://m/a%20b"},
	} {
		if got := SPIFFEID(c.mesh, c.service); got != c.id {
			t.Errorf("SPIFFEID(%q, %q) = %q, want %q", c.mesh, c.service, got, c.id)
		}
		m, s, err := ParseSPIFFEID(c.id)
		if err != nil || m != c.mesh || s != c.service {
			t.Errorf("ParseSPIFFEID(%q) = %q, %q, %v", c.id, m, s, err)
		}
	}
	for _, bad := range []string{
		"", "backend", "http://m/web", "spiffe://m", "spiffe://m/", "spiffe://m/zone/zone-1",
		"spiffe://M/web", "spiffe://m:80/web", "spiffe://u@m/web", "spiffe://m/web?x=1", "spiffe://m/web#f",
		"spiffe://m/w%65b", "spiffe:m/web", "spiffe://m/%zz",
	} {
		if _, _, err := ParseSPIFFEID(bad); !errors.Is(err, ErrNotSPIFFE) {
			t.Errorf("ParseSPIFFEID(%q): err %v, want ErrNotSPIFFE", bad, err)
		}
	}
	if got := ZoneID("m", "zone-1"); got != "spiffe://m/zone/zone-1" {
		t.Errorf("ZoneID = %q", got)
	}
	if got := TagURI("kuma.io/protocol", "http"); got != "kuma://kuma.io/protocol/http" {
		t.Errorf("TagURI = %q", got)
	}
}

func TestRenewAt(t *testing.T) {
	nb := t0
	na := t0.Add(24 * time.Hour)
	life := na.Sub(nb)
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := nb.Add(time.Duration(0.75*float64(life))), nb.Add(time.Duration(0.85*float64(life)))
	minSeen, maxSeen := na, nb
	for range 100000 {
		at := RenewAt(nb, na, DefaultRenewFraction, DefaultRenewJitter, r.Float64)
		if at.Before(lo) || at.After(hi) {
			t.Fatalf("RenewAt %s outside [%s, %s]", at, lo, hi)
		}
		if at.Before(minSeen) {
			minSeen = at
		}
		if at.After(maxSeen) {
			maxSeen = at
		}
	}
	// The draws cover the window (not all at one instant).
	if minSeen.Sub(lo) > time.Minute || hi.Sub(maxSeen) > time.Minute {
		t.Errorf("draws span %s..%s, want close to %s..%s", minSeen, maxSeen, lo, hi)
	}
	// Deterministic with a given source.
	a := RenewAt(nb, na, 0.8, 0.05, rand.New(rand.NewPCG(7, 7)).Float64)
	b := RenewAt(nb, na, 0.8, 0.05, rand.New(rand.NewPCG(7, 7)).Float64)
	if !a.Equal(b) {
		t.Errorf("same seed, %s != %s", a, b)
	}
	fixed := func(u float64) func() float64 { return func() float64 { return u } }
	for name, c := range map[string]struct {
		fraction, jitter float64
		rnd              func() float64
		nb, na           time.Time
		want             time.Time
	}{
		"nil rnd: no jitter":     {0.8, 0.05, nil, nb, na, nb.Add(time.Duration(0.8 * float64(life)))},
		"u=0: lower bound":       {0.8, 0.05, fixed(0), nb, na, nb.Add(time.Duration(0.75 * float64(life)))},
		"u=0.5: centre":          {0.8, 0.05, fixed(0.5), nb, na, nb.Add(time.Duration(0.8 * float64(life)))},
		"clamped at notAfter":    {0.99, 0.1, fixed(0.999999), nb, na, na},
		"clamped at notBefore":   {0.01, 0.1, fixed(0), nb, na, nb},
		"negative jitter = 0":    {0.5, -1, fixed(0), nb, na, nb.Add(life / 2)},
		"NaN fraction = 0":       {math.NaN(), 0, nil, nb, na, nb},
		"zero life":              {0.8, 0.05, fixed(0.3), nb, nb, nb},
		"inverted":               {0.8, 0.05, fixed(0.3), na, nb, na},
		"half life of 90 days":   {0.5, 0, nil, nb, nb.Add(90 * 24 * time.Hour), nb.Add(45 * 24 * time.Hour)},
		"fraction above 1 = end": {1.5, 0, nil, nb, na, na},
	} {
		if got := RenewAt(c.nb, c.na, c.fraction, c.jitter, c.rnd); !got.Equal(c.want) {
			t.Errorf("%s: RenewAt = %s, want %s", name, got, c.want)
		}
	}
	if got := HalfLife(nb, na); !got.Equal(nb.Add(12 * time.Hour)) {
		t.Errorf("HalfLife = %s", got)
	}
	if got := HalfLife(na, nb); !got.Equal(na) {
		t.Errorf("HalfLife(inverted) = %s", got)
	}
}

func TestBundle(t *testing.T) {
	a := mustRoot(t, "a", RootOptions{})
	b := mustRoot(t, "b", RootOptions{})
	ab := append(append([]byte{}, a.CertPEM...), b.CertPEM...)
	got, err := Bundle(a.CertPEM, nil, ab, []byte("\n  \n"), b.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ab) {
		t.Errorf("bundle:\n%s\nwant a then b once each", got)
	}
	certs, err := parseCerts(got)
	if err != nil || len(certs) != 2 {
		t.Fatalf("%d certs: %v", len(certs), err)
	}
	for name, c := range map[string]struct {
		in       [][]byte
		sentinel error
		msg      string
	}{
		"nothing":        {nil, ErrNotPEM, "bundle: no PEM"},
		"only empty":     {[][]byte{nil, []byte(" ")}, ErrNotPEM, "bundle: no PEM"},
		"garbage":        {[][]byte{a.CertPEM, []byte("junk")}, ErrNotPEM, "bundle input 1"},
		"trailing junk":  {[][]byte{append(append([]byte{}, a.CertPEM...), "junk"...)}, ErrNotPEM, "trailing data"},
		"a private key":  {[][]byte{a.CertPEM, a.KeyPEM}, ErrNotCertificate, `bundle input 1: not an X.509 certificate: found a PEM "PRIVATE KEY" block`},
		"bad DER":        {[][]byte{pemBlock("CERTIFICATE", []byte("x"))}, ErrNotCertificate, "bundle input 0"},
		"ok (one input)": {[][]byte{b.CertPEM}, nil, ""},
	} {
		_, err := Bundle(c.in...)
		wantErr(t, name, err, c.sentinel, c.msg)
	}
	if _, err := CertPool(got); err != nil {
		t.Error(err)
	}
	if strings.Count(string(got), "BEGIN CERTIFICATE") != 2 {
		t.Error("duplicates kept")
	}
}
