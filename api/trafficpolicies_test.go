package api

import "testing"

func TestTrafficTraceValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "all traffic", doc: `
type: TrafficTrace
mesh: default
name: trace-all-traffic
selectors:
- match:
    kuma.io/service: '*'
conf:
  backend: jaeger-collector
`},
		{name: "mesh default backend", doc: `
type: TrafficTrace
mesh: default
name: trace-web
selectors:
- match:
    kuma.io/service: web
    version: v2
- match:
    kuma.io/service: backend_kuma-demo_svc_8080
`},
	})
	tt := mustPrepare(t, "type: TrafficTrace\nmesh: m\nname: t\nselectors:\n- match:\n    kuma.io/service: '*'\n").Spec.(*TrafficTraceSpec)
	if tt.BackendName() != "" {
		t.Errorf("BackendName() = %q", tt.BackendName())
	}
}

func TestTrafficTraceInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no selectors", doc: "type: TrafficTrace\nmesh: default\nname: t\nconf:\n  backend: zipkin\n", want: []string{"selectors"}},
		{name: "empty match and bad tags", doc: `
type: TrafficTrace
mesh: default
name: t
selectors:
- match: {}
- {}
- match:
    kuma.io/service: "* *"
    "bad!": x
`, want: []string{
			"selectors[0].match",
			"selectors[1].match",
			`selectors[2].match["kuma.io/service"]`,
			`selectors[2].match["bad!"]`,
		}},
		{name: "unknown conf field", doc: `
type: TrafficTrace
mesh: default
name: t
selectors:
- match:
    kuma.io/service: '*'
conf:
  backend: zipkin
  sampling: 10
`, want: []string{"conf.sampling"}},
	})
}

func TestTrafficLogValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "all traffic", doc: `
type: TrafficLog
mesh: default
name: all-traffic
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: '*'
conf:
  backend: file
`},
		{name: "web to backend, default backend", doc: `
type: TrafficLog
mesh: default
name: web-to-backend
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
    kuma.io/protocol: http
`},
	})
}

func TestTrafficLogInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no sources, no destinations", doc: "type: TrafficLog\nmesh: default\nname: l\n", want: []string{"destinations", "sources"}},
		{name: "empty matches", doc: `
type: TrafficLog
mesh: default
name: l
sources:
- match: {}
destinations:
- match:
    kuma.io/service: web
- match: {}
`, want: []string{"destinations[1].match", "sources[0].match"}},
		{name: "selector is not a list", doc: `
type: TrafficLog
mesh: default
name: l
sources:
  match:
    kuma.io/service: web
destinations: []
`, want: []string{"sources"}},
	})
}

func TestSelectorMatches(t *testing.T) {
	tags := map[string]string{"kuma.io/service": "web", "version": "v1"}
	for _, tc := range []struct {
		match map[string]string
		want  bool
	}{
		{map[string]string{"kuma.io/service": "*"}, true},
		{map[string]string{"kuma.io/service": "web", "version": "v1"}, true},
		{map[string]string{"kuma.io/service": "web", "version": "v2"}, false},
		{map[string]string{"team": "*"}, false},
		{nil, false},
	} {
		if got := (Selector{Match: tc.match}).Matches(tags); got != tc.want {
			t.Errorf("Matches(%v) = %v, want %v", tc.match, got, tc.want)
		}
	}
}
