package global_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
	"github.com/meshfed/meshfed/global/clustertest"
)

// mtpDoc is a MeshTrafficPermission in Kuma's universal format, with one
// label carrying a value the tests can recognise.
func mtpDoc(mesh, name, value string) []byte {
	return fmt.Appendf(nil, `{"type":"MeshTrafficPermission","mesh":%q,"name":%q,"labels":{"value":%q},
"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`, mesh, name, value)
}

// mtp is mtpDoc decoded, for the API client.
func mtp(t testing.TB, mesh, name, value string) *api.Resource {
	t.Helper()
	r, err := api.Decode(mtpDoc(mesh, name, value))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return r
}

func mtpKey(name string) api.Key {
	return api.Key{Type: "MeshTrafficPermission", Mesh: "default", Name: name}
}

func mtpURL(n *clustertest.Node, name string) string {
	return n.URL() + "/meshes/default/meshtrafficpermissions/" + name
}

// rawResponse is one HTTP answer, read whole.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// do makes one HTTP call (no retries) to a node's API with the admin token
// (hdr: more header name, value pairs).
func do(t testing.TB, c *clustertest.Cluster, n *clustertest.Node, method, url string, body []byte, hdr ...string) rawResponse {
	t.Helper()
	r, err := tryDo(c, n, method, url, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func tryDo(c *clustertest.Cluster, n *clustertest.Node, method, url string, body []byte, hdr ...string) (rawResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return rawResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token())
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := n.HTTPClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// labelValue reads the "value" label of a resource answer.
func labelValue(t testing.TB, body []byte) string {
	t.Helper()
	var v struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v.Labels["value"]
}

// writer writes new resources one after another (w-0, w-1, ...) through
// the given nodes in turn, with the API client's retries, and records every
// acknowledged write with its revision.
type writer struct {
	prefix string
	stop   chan struct{}
	once   sync.Once
	done   chan struct{}

	mu     sync.Mutex
	acked  map[string]uint64 // name → acknowledged revision
	order  []string
	errs   []error
	ackAt  []time.Time
	failAt []time.Time
}

func startWriter(t testing.TB, prefix string, nodes ...*clustertest.Node) *writer {
	t.Helper()
	w := &writer{prefix: prefix, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string]uint64{}}
	clients := make([]*client.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = n.Client()
	}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			name := fmt.Sprintf("%s-%d", prefix, i)
			r, err := api.Decode(mtpDoc("default", name, name))
			if err != nil {
				panic(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			stored, _, err := clients[i%len(clients)].Put(ctx, r, client.PutOptions{})
			cancel()
			w.mu.Lock()
			if err != nil {
				w.errs = append(w.errs, fmt.Errorf("%s through %s: %w", name, nodes[i%len(nodes)].ID(), err))
				w.failAt = append(w.failAt, time.Now())
			} else {
				w.acked[name] = stored.Revision
				w.order = append(w.order, name)
				w.ackAt = append(w.ackAt, time.Now())
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// Stop stops the writer and waits for its last write; it may be called
// again.
func (w *writer) Stop() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// Acked counts acknowledged writes; AckedAfter those acknowledged after t.
func (w *writer) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.order)
}

func (w *writer) AckedAfter(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.ackAt {
		if at.After(t) {
			n++
		}
	}
	return n
}

// WaitAcked waits until at least n writes were acknowledged after t.
func (w *writer) WaitAcked(tb testing.TB, timeout time.Duration, after time.Time, n int) {
	tb.Helper()
	clustertest.Eventually(tb, timeout, func() error {
		if got := w.AckedAfter(after); got < n {
			return fmt.Errorf("%d writes acknowledged (%d errors so far: %v)", got, len(w.Errors()), lastErr(w.Errors()))
		}
		return nil
	}, "%d acknowledged writes", n)
}

func lastErr(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[len(errs)-1]
}

func (w *writer) Errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// AssertDurable fails the test unless every acknowledged write is on every
// given node, at its acknowledged revision or later.
func (w *writer) AssertDurable(t testing.TB, nodes ...*clustertest.Node) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range nodes {
		lost := 0
		for name, rev := range w.acked {
			r, ok := n.Store().State().Get(mtpKey(name))
			if !ok || r.Revision < rev {
				lost++
				if lost <= 5 {
					t.Errorf("%s: acknowledged write %s (revision %d) lost: %v", n.ID(), name, rev, r)
				}
			}
		}
		if lost > 0 {
			t.Errorf("%s lost %d of %d acknowledged writes", n.ID(), lost, len(w.acked))
		}
	}
}

// tryGet GETs url with a bearer token (none if empty) on a fresh client.
func tryGet(url, token string) (rawResponse, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return rawResponse{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}
