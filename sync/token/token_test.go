package token

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueVerify(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	other, _ := NewKey()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tok, claims, err := Issue(key, "cluster-a", "zone-1", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(tok, pub, "cluster-a", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got != claims || got.Zone != "zone-1" || got.ClusterID != "cluster-a" || len(got.ID) != 32 {
		t.Fatalf("claims %+v, issued %+v", got, claims)
	}
	otherTok, _, _ := Issue(other, "cluster-a", "zone-1", time.Hour, now)
	foreign, _, _ := Issue(key, "cluster-b", "zone-1", time.Hour, now)
	cases := []struct {
		name  string
		token string
		at    time.Time
		want  error
	}{
		{"missing", " ", now, ErrMissing},
		{"garbage", "not.a.token", now, ErrMalformed},
		{"tampered", tok[:len(tok)-4] + "AAAA", now, ErrSignature},
		{"other key", otherTok, now, ErrSignature},
		{"expired", tok, now.Add(2 * time.Hour), ErrExpired},
		{"other cluster", foreign, now, ErrCluster},
	}
	for _, c := range cases {
		if _, err := Verify(c.token, pub, "cluster-a", c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if _, _, err := Issue(key, "c", "", time.Hour, now); err == nil || !strings.Contains(err.Error(), "zone") {
		t.Errorf("empty zone: %v", err)
	}
	if _, _, err := Issue(key, "c", "z", 0, now); err == nil {
		t.Error("zero validity accepted")
	}
}
