package global_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every in-process
// cluster must shut Raft, gossip and HTTP down completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
