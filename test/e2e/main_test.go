// Package e2e holds end-to-end tests that run the real meshd and meshctl
// binaries (built once, with the race detector when the tests have it) and
// talk to them only through their public interfaces: the HTTP API, the
// meshctl command line, signals and the files in the data dir.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/test/harness"
)

// bins are the meshd and meshctl built by TestMain.
var bins harness.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshfed-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bins, err = harness.Build(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// httpClient is shared by every API call of the tests; no call may hang.
var httpClient = &http.Client{Timeout: 15 * time.Second}

// apiNode is a control plane reached over HTTP with its admin token.
type apiNode struct {
	base  string // http://host:port
	token string
}

func newAPINode(t testing.TB, g *harness.Global) *apiNode {
	t.Helper()
	return &apiNode{base: g.URL(), token: g.Token(t)}
}

// result is one HTTP answer, fully read.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// etag returns the answer's ETag as a revision, failing unless it is a
// quoted positive integer.
func (r result) etag(t testing.TB) uint64 {
	t.Helper()
	return parseETag(t, r.header.Get("ETag"))
}

var etagRE = regexp.MustCompile(`^"([0-9]+)"$`)

func parseETag(t testing.TB, h string) uint64 {
	t.Helper()
	m := etagRE.FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("ETag %q is not a quoted integer", h)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("ETag %q is not a positive revision", h)
	}
	return n
}

// errorBody is the API's error shape.
type errorBody struct {
	Title   string `json:"title"`
	Details string `json:"details"`
	Causes  []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"causes"`
	Owner string `json:"owner"`
}

func (r result) errBody(t testing.TB) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body is not the API's JSON shape: %v\n%s", err, r.body)
	}
	return b
}

// fields returns the field paths of a 400's causes, in order.
func (b errorBody) fields() []string {
	out := make([]string, len(b.Causes))
	for i, c := range b.Causes {
		out[i] = c.Field
	}
	return out
}

// object decodes a JSON object answer.
func (r result) object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// request makes one HTTP call. headers are name, value pairs. auth adds
// the node's bearer token.
func (n *apiNode) request(t testing.TB, auth bool, method, path string, body io.Reader, headers ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.base+path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if auth && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: data}
}

// do is an authenticated call with an optional string body.
func (n *apiNode) do(t testing.TB, method, path, body string, headers ...string) result {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return n.request(t, true, method, path, r, headers...)
}

func (n *apiNode) get(t testing.TB, path string, headers ...string) result {
	t.Helper()
	return n.do(t, http.MethodGet, path, "", headers...)
}

func (n *apiNode) put(t testing.TB, path, body string, headers ...string) result {
	t.Helper()
	return n.do(t, http.MethodPut, path, body, headers...)
}

func (n *apiNode) del(t testing.TB, path string, headers ...string) result {
	t.Helper()
	return n.do(t, http.MethodDelete, path, "", headers...)
}

// expect fails unless r has the status.
func expect(t testing.TB, r result, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %s, want %d", what, r, status)
	}
}

// mustPut writes a resource and fails unless the answer is 200 or 201;
// it returns the revision from the ETag.
func (n *apiNode) mustPut(t testing.TB, path, body string) uint64 {
	t.Helper()
	r := n.put(t, path, body)
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		t.Fatalf("PUT %s: %s", path, r)
	}
	return r.etag(t)
}

// dig walks a decoded JSON/YAML document: keys for objects, ints for lists.
func dig(t testing.TB, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: %v is not an object in %v", path[:i+1], path[:i], doc)
			}
			v, ok := m[k]
			if !ok {
				t.Fatalf("%v: no key %q in %v", path[:i+1], k, m)
			}
			cur = v
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: %v is not a list with index %d in %v", path[:i+1], path[:i], k, doc)
			}
			cur = l[k]
		}
	}
	return cur
}

// mtpYAML is a valid MeshTrafficPermission body with optional labels.
func mtpYAML(mesh, name string, labels map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "type: MeshTrafficPermission\nmesh: %s\nname: %s\n", mesh, name)
	if len(labels) > 0 {
		b.WriteString("labels:\n")
		for k, v := range labels {
			fmt.Fprintf(&b, "  %s: %q\n", k, v)
		}
	}
	b.WriteString(`spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
`)
	return b.String()
}

// createMesh creates a Mesh with no backends.
func (n *apiNode) createMesh(t testing.TB, name string) uint64 {
	t.Helper()
	r := n.put(t, "/meshes/"+name, "type: Mesh\nname: "+name+"\n")
	expect(t, r, http.StatusCreated, "create mesh "+name)
	return r.etag(t)
}

// ctl runs the meshctl binary in an isolated environment: its own HOME and
// config file, and only the MESHCTL_* variables the test sets.
type ctl struct {
	home   string
	config string
	env    []string // extra NAME=VALUE
}

func newCtl(t testing.TB, env ...string) *ctl {
	t.Helper()
	home := t.TempDir()
	return &ctl{home: home, config: filepath.Join(home, "meshctl-config.yaml"), env: env}
}

// ctlResult is one meshctl run.
type ctlResult struct {
	stdout, stderr string
	code           int
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run executes meshctl with args; stdin may be empty.
func (c *ctl) run(t testing.TB, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Meshctl, args...)
	cmd.Env = append(cleanEnv("MESHCTL_", "HOME="), append([]string{"HOME=" + c.home, "MESHCTL_CONFIG=" + c.config}, c.env...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("meshctl %s: %v", strings.Join(args, " "), err)
		}
		if ctx.Err() != nil {
			t.Fatalf("meshctl %s: did not finish within 60s", strings.Join(args, " "))
		}
		res.code = ee.ExitCode()
	}
	if res.code == 66 {
		t.Fatalf("meshctl %s: data race:\n%s", strings.Join(args, " "), res.stderr)
	}
	return res
}

// ok runs meshctl and fails unless it exits 0.
func (c *ctl) ok(t testing.TB, stdin string, args ...string) ctlResult {
	t.Helper()
	r := c.run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("meshctl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fails runs meshctl and fails unless it exits non-zero.
func (c *ctl) fails(t testing.TB, stdin string, args ...string) ctlResult {
	t.Helper()
	r := c.run(t, stdin, args...)
	if r.code == 0 {
		t.Fatalf("meshctl %s succeeded, want a failure: %s", strings.Join(args, " "), r)
	}
	return r
}

// writeFile writes content to a new file in a temp dir and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cleanEnv returns the test's environment without the variables that start
// with one of the prefixes, and with the race runtime's one-second sleep at
// exit turned off: the CLI runs dozens of times, and a race it finds still
// fails the run (exit code 66).
func cleanEnv(drop ...string) []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GORACE="); ok {
			gorace = v + " " + gorace
			continue
		}
		keep := true
		for _, p := range drop {
			keep = keep && !strings.HasPrefix(kv, p)
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}
