package global_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/global/clustertest"
)

// linInput is one operation on one key: a write of Value, or a read.
type linInput struct {
	Key   string
	Write bool
	Value string
}

// registerModel is a register per key (the history is partitioned by key):
// a write sets the value, a read returns it.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(linInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "init" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(linInput)
		if in.Write {
			return true, in.Value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(linInput)
		if in.Write {
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		}
		return fmt.Sprintf("get(%s) → %s", in.Key, output)
	},
	DescribeState: func(state any) string { return state.(string) },
}

// history records operations with their call and return times (nanoseconds
// since the start, monotonic).
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	notes []porcupine.Annotation
	// counts by outcome, for the log
	ok, unknown, dropped int
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) note(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, porcupine.Annotation{Tag: "nemesis", Start: int64(time.Since(h.start)), Description: what})
}

// notApplied: the request certainly did not reach a handler, so the write
// certainly did not happen (the node was down or cut from the client).
func notApplied(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Concurrent clients, each bound to one node, write and read (consistent)
// a few keys while the test kills and restarts leaders and partitions nodes;
// porcupine checks the recorded history is linearizable.
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("a 12-second fault-injection run")
	}
	c := clustertest.Start(t, 3, clustertest.Options{})
	keys := []string{"lin-a", "lin-b", "lin-c"}
	seed := c.Leader().Client()
	for _, k := range keys {
		if _, _, err := seed.Put(context.Background(), mtp(t, "default", k, "init"), client.PutOptions{}); err != nil {
			t.Fatalf("seed %s: %v", k, err)
		}
	}
	c.WaitConverged(5 * time.Second)

	h := &history{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 6
	unexpected := make(chan error, workers)
	nodes := c.Nodes()
	for w := range workers {
		n := nodes[w%len(nodes)]
		cl := n.NewClient(client.WithRetry(client.RetryPolicy{Disabled: true}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			unexpected <- runLinClient(h, cl, w, workers, keys, stop)
		}()
	}

	nemesis(t, c, h)
	close(stop)
	wg.Wait()
	for range workers {
		if err := <-unexpected; err != nil {
			t.Errorf("client: %v", err)
		}
	}

	// Everyone back: the final values must be readable everywhere.
	c.Heal()
	for _, n := range c.Nodes() {
		if !n.Running() {
			n.Restart()
		}
	}
	c.WaitLeader(10 * time.Second)
	c.WaitConverged(10 * time.Second)
	for _, n := range c.Nodes() {
		cl := n.Client()
		for _, k := range keys {
			call := h.now()
			r, err := cl.Get(context.Background(), mtpKey(k), client.GetOptions{Consistent: true})
			if err != nil {
				t.Fatalf("final read of %s through %s: %v", k, n.ID(), err)
			}
			h.add(porcupine.Operation{ClientId: 1000, Input: linInput{Key: k}, Call: call, Output: r.Labels["value"], Return: h.now()})
		}
	}
	c.AssertSameState(c.Nodes()...)

	ops := prune(h.ops, h.now()+int64(time.Hour))
	t.Logf("history: %d operations checked (%d acknowledged, %d writes with unknown outcome of which %d were read; %d failed calls dropped)",
		len(ops), h.ok, h.unknown, len(ops)-h.ok-len(keys)*len(c.Nodes()), h.dropped)
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 60*time.Second)
	t.Logf("porcupine: %s (checked in %v)", res, time.Since(checkStart))
	if res != porcupine.Ok {
		info.AddAnnotations(h.notes)
		f, err := os.CreateTemp("", "meshfed-linearizability-*.html")
		if err == nil {
			f.Close()
			err = porcupine.VisualizePath(registerModel, info, f.Name())
		}
		t.Errorf("history is not linearizable (%s); visualization: %s (%v)", res, f.Name(), err)
		logViolation(t, info)
	}
	if h.ok < 200 {
		t.Errorf("only %d acknowledged operations: the run proves little", h.ok)
	}
}

// prune prepares a history for the checker. A write with an unknown outcome
// returns "never" (at end, after everything else). If no read returned its
// value it is dropped: with unique values, a history is linearizable with
// such a write (placed last) exactly when it is without it, and every open
// write multiplies the checker's search.
func prune(ops []porcupine.Operation, end int64) []porcupine.Operation {
	read := map[string]bool{}
	for _, op := range ops {
		if in := op.Input.(linInput); !in.Write {
			read[in.Key+"="+op.Output.(string)] = true
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Return < 0 {
			in := op.Input.(linInput)
			if !read[in.Key+"="+in.Value] {
				continue
			}
			op.Return = end
		}
		out = append(out, op)
	}
	return out
}

// runLinClient does random writes and consistent reads until stop; it
// returns an error for an answer that no fault explains (a 4xx).
func runLinClient(h *history, cl *client.Client, w, workers int, keys []string, stop <-chan struct{}) error {
	proc := w // porcupine client id; a new one after each unknown outcome
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	failed := false
	for seq := 0; ; seq++ {
		wait := time.Duration(0)
		if failed { // do not spin on a node that cannot answer
			wait = 50 * time.Millisecond
		}
		select {
		case <-stop:
			return nil
		case <-time.After(wait):
		}
		failed = false
		key := keys[rng.IntN(len(keys))]
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if rng.IntN(2) == 0 {
			value := fmt.Sprintf("w%d-%d", w, seq)
			call := h.now()
			_, _, err := cl.Put(ctx, mtpFor(key, value), client.PutOptions{})
			ret := h.now()
			cancel()
			var ve *api.ValidationError
			var ce *api.ConflictError
			switch {
			case err == nil:
				h.add(porcupine.Operation{ClientId: proc, Input: linInput{Key: key, Write: true, Value: value}, Call: call, Return: ret})
				h.mu.Lock()
				h.ok++
				h.mu.Unlock()
			case errors.As(err, &ve), errors.As(err, &ce), api.IsNotFound(err):
				return fmt.Errorf("write %s=%s: %w", key, value, err)
			case notApplied(err):
				h.mu.Lock()
				h.dropped++
				h.mu.Unlock()
				failed = true
			default: // may or may not have happened, at any time from now on
				h.add(porcupine.Operation{ClientId: proc, Input: linInput{Key: key, Write: true, Value: value}, Call: call, Return: -1})
				h.mu.Lock()
				h.unknown++
				h.mu.Unlock()
				proc += workers
				failed = true
			}
		} else {
			call := h.now()
			r, err := cl.Get(ctx, mtpKey(key), client.GetOptions{Consistent: true})
			ret := h.now()
			cancel()
			switch {
			case err == nil:
				h.add(porcupine.Operation{ClientId: proc, Input: linInput{Key: key}, Call: call, Output: r.Labels["value"], Return: ret})
				h.mu.Lock()
				h.ok++
				h.mu.Unlock()
			case api.IsNotFound(err):
				return fmt.Errorf("consistent read of %s: %w", key, err)
			default: // a failed read tells nothing
				h.mu.Lock()
				h.dropped++
				h.mu.Unlock()
				failed = true
			}
		}
	}
}

// mtpFor builds the resource written by the clients (no testing.TB in
// their goroutines).
func mtpFor(key, value string) *api.Resource {
	r, err := api.Decode(mtpDoc("default", key, value))
	if err != nil {
		panic(err)
	}
	return r
}

// nemesis kills and restarts the leader and partitions nodes, for about 12
// seconds, from the test goroutine.
func nemesis(t *testing.T, c *clustertest.Cluster, h *history) {
	pause := func(d time.Duration) { <-time.After(d) } // the fault schedule, not a synchronisation
	step := func(what string, fn func()) {
		h.note(what)
		t.Logf("nemesis at %v: %s", time.Since(h.start).Round(time.Millisecond), what)
		fn()
	}
	pause(time.Second)

	leader := c.WaitLeader(10 * time.Second)
	step("kill leader "+leader.ID(), func() { leader.Kill() })
	pause(1500 * time.Millisecond)
	step("restart "+leader.ID(), leader.Restart)
	pause(time.Second)

	leader = c.WaitLeader(10 * time.Second)
	step("isolate leader "+leader.ID(), func() { c.Isolate(leader) })
	pause(2 * time.Second)
	step("heal", c.Heal)
	pause(time.Second)

	leader = c.WaitLeader(10 * time.Second)
	follower := c.Others(leader)[0]
	step("isolate follower "+follower.ID(), func() { c.Isolate(follower) })
	pause(2 * time.Second)
	step("heal", c.Heal)
	pause(time.Second)

	leader = c.WaitLeader(10 * time.Second)
	follower = c.Others(leader)[1]
	step(fmt.Sprintf("partition {%s} | {%s, %s}", leader.ID(), follower.ID(), c.Others(leader, follower)[0].ID()), func() {
		c.Partition([]*clustertest.Node{leader}, c.Others(leader))
	})
	pause(1500 * time.Millisecond)
	step("kill "+follower.ID(), func() { follower.Kill() })
	pause(time.Second)
	step("heal and restart "+follower.ID(), func() { c.Heal(); follower.Restart() })
	pause(time.Second)
}

// logViolation prints, for each key, the longest linearizable prefix
// porcupine found and the operations that end it, to help reading a failure
// without the visualization.
func logViolation(t *testing.T, info porcupine.LinearizationInfo) {
	for _, lins := range info.PartialLinearizationsOperations() {
		var longest []porcupine.Operation
		for _, l := range lins {
			if len(l) > len(longest) {
				longest = l
			}
		}
		if len(longest) == 0 {
			continue
		}
		var tail []string
		for _, op := range longest[max(0, len(longest)-4):] {
			tail = append(tail, fmt.Sprintf("%s [%v, %v]", registerModel.DescribeOperation(op.Input, op.Output),
				time.Duration(op.Call), time.Duration(op.Return)))
		}
		t.Logf("key %s: longest linearizable prefix %d operations, ending %s",
			longest[0].Input.(linInput).Key, len(longest), strings.Join(tail, "; "))
	}
}
