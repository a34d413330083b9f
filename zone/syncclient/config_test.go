package syncclient_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/global/syncserver"
)

// TestConfigRequests: global's config requests are answered by
// Config.ConfigDumper off the stream's loop, concurrently, each with its
// own answer; a dumper's error reaches global as the zone's message; a
// dumper slower than ConfigDumpTimeout is answered with a timeout while
// the stream goes on; a zone without a dumper says so.
func TestConfigRequests(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	release := make(chan struct{})
	cfg := config(tempReplica(t), g.addr)
	cfg.ConfigDumpTimeout = 200 * time.Millisecond
	cfg.ConfigDumper = func(ctx context.Context, mesh, name string) ([]byte, error) {
		switch {
		case name == "slow":
			<-ctx.Done() // honours ctx, late
			return nil, ctx.Err()
		case name == "blocked":
			<-release // ignores ctx: the answer must not wait for it
			return []byte(`{}`), nil
		case strings.HasPrefix(name, "web-"):
			return fmt.Appendf(nil, `{"dataplane":"%s.%s"}`, mesh, name), nil
		}
		return nil, fmt.Errorf("dataplane %q in mesh %q: not found", name, mesh)
	}
	defer close(release)
	runClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	eventually(t, "a config dump through the zone's stream", func() bool {
		_, err := g.srv.RequestConfig(ctx, zoneName, "default", "web-0")
		return err == nil
	})

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("web-%d", i)
			b, err := g.srv.RequestConfig(ctx, zoneName, "default", name)
			// At most maxConfigDumps run at once; the others are told the
			// zone is busy.
			var ze *syncserver.ZoneError
			if errors.As(err, &ze) && strings.Contains(ze.Message, "busy") {
				return
			}
			if want := `{"dataplane":"default.` + name + `"}`; err != nil || string(b) != want {
				t.Errorf("%s: %s, %v; want %s", name, b, err, want)
			}
		}()
	}
	wg.Wait()

	var ze *syncserver.ZoneError
	if _, err := g.srv.RequestConfig(ctx, zoneName, "default", "nope"); !errors.As(err, &ze) || ze.Message != `dataplane "nope" in mesh "default": not found` {
		t.Errorf("a dumper's error: %v, want a *ZoneError with its text", err)
	}
	for _, name := range []string{"slow", "blocked"} {
		if _, err := g.srv.RequestConfig(ctx, zoneName, "default", name); !errors.As(err, &ze) || !strings.Contains(ze.Message, "did not finish within 200ms") {
			t.Errorf("%s dumper: %v, want the zone's timeout", name, err)
		}
	}
	if b, err := g.srv.RequestConfig(ctx, zoneName, "default", "web-9"); err != nil || len(b) == 0 {
		t.Errorf("after timeouts: %s, %v", b, err)
	}
}

// TestConfigRequestsWithoutDumper: a zone that does not serve config dumps
// answers so (it does not leave global waiting).
func TestConfigRequestsWithoutDumper(t *testing.T) {
	checkLeaks(t)
	feed := newFeed()
	seed(t, feed)
	g := startNode(t, "global-1", feed, nil)
	runClient(t, config(tempReplica(t), g.addr))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var err error
	eventually(t, "the zone's answer", func() bool {
		_, err = g.srv.RequestConfig(ctx, zoneName, "default", "web-1")
		return !errors.Is(err, syncserver.ErrNoSession)
	})
	var ze *syncserver.ZoneError
	if !errors.As(err, &ze) || ze.Message != "this zone does not serve config dumps" {
		t.Errorf("without a dumper: %v", err)
	}
}
