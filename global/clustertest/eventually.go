package clustertest

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually and Within re-check their condition.
const PollInterval = 20 * time.Millisecond

// Eventually polls cond until it returns nil, and fails the test (with
// cond's last error and what) if timeout passes first. Call it from the
// test goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() error, what string, args ...any) {
	t.Helper()
	if err := Within(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", fmt.Sprintf(what, args...), timeout, err)
	}
}

// Within polls cond until it returns nil (then returns nil) or timeout
// passes (then returns cond's last error). Safe in any goroutine.
func Within(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}
