package api

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const dataplaneWeb = `
type: Dataplane
mesh: default
name: web-01
networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  inbound:
  - port: 11011
    servicePort: 11012
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
      version: v1
      team: frontend
  - port: 11013
    serviceAddress: 127.0.0.1
    tags:
      kuma.io/service: web-admin
      kuma.io/protocol: grpc
    health:
      ready: true
  - port: 11011
    address: 192.168.0.2
    tags:
      kuma.io/service: web
  outbound:
  - port: 33033
    tags:
      kuma.io/service: backend
  - port: 33033
    address: 127.0.0.2
    tags:
      kuma.io/service: backend_kuma-demo_svc_8080
metrics:
  type: prometheus
  conf:
    port: 1234
    skipMTLS: true
`

func TestDataplaneValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "sidecar", doc: dataplaneWeb},
		{name: "builtin gateway", doc: `
type: Dataplane
mesh: default
name: edge-gateway-1
networking:
  address: edge.zone-1.internal
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge-gateway
`},
		{name: "delegated gateway with outbounds", doc: `
type: Dataplane
mesh: default
name: kong-1
networking:
  address: fd00::10
  gateway:
    tags:
      kuma.io/service: kong
  outbound:
  - port: 10001
    tags:
      kuma.io/service: backend
`},
	})
}

func TestDataplaneDefaultsAndHelpers(t *testing.T) {
	r := mustPrepare(t, dataplaneWeb)
	dp := r.Spec.(*DataplaneSpec)
	if got := dp.Networking.Outbound[0].Address; got != "127.0.0.1" {
		t.Errorf("outbound address default = %q, want 127.0.0.1", got)
	}
	if got := dp.Services(); !slices.Equal(got, []string{"web", "web-admin"}) {
		t.Errorf("Services() = %v", got)
	}
	if got := dp.Tags(); len(got) != 3 || got[1]["kuma.io/service"] != "web-admin" {
		t.Errorf("Tags() = %v", got)
	}
	if p := dp.Networking.Inbound[0].WorkloadPort(); p != 11012 {
		t.Errorf("WorkloadPort() = %d", p)
	}
	if p := dp.Networking.Inbound[1].WorkloadPort(); p != 11013 {
		t.Errorf("WorkloadPort() = %d", p)
	}

	gw := mustPrepare(t, `
type: Dataplane
mesh: default
name: gw
networking:
  address: 10.0.0.5
  gateway:
    tags:
      kuma.io/service: kong
`).Spec.(*DataplaneSpec)
	if gw.Networking.Gateway.Type != GatewayDelegated || !gw.IsGateway() {
		t.Errorf("gateway type default = %q", gw.Networking.Gateway.Type)
	}
	if got := gw.Services(); !slices.Equal(got, []string{"kong"}) {
		t.Errorf("gateway Services() = %v", got)
	}

	mesh := mustPrepare(t, meshFull).Spec.(*MeshSpec)
	skip := true
	want := &MetricsBackend{Name: "prometheus-1", Type: "prometheus", Conf: &PrometheusConf{
		Port: 1234, Path: "/metrics", Tags: map[string]string{"kuma.io/service": "dataplane-metrics"},
		SkipMTLS: &skip, TLS: &PrometheusTLS{Mode: "activeMTLSBackend"},
	}}
	if diff := cmp.Diff(want, dp.EffectiveMetrics(mesh)); diff != "" {
		t.Errorf("EffectiveMetrics (-want +got):\n%s", diff)
	}
	if mesh.MetricsBackend().Conf.Port != 5670 {
		t.Errorf("EffectiveMetrics modified the Mesh")
	}
	if got := gw.EffectiveMetrics(&MeshSpec{}); got != nil {
		t.Errorf("no metrics anywhere: EffectiveMetrics = %+v, want nil", got)
	}
	if got := gw.EffectiveMetrics(mesh); got == nil || got.Conf.Port != 5670 {
		t.Errorf("mesh metrics only: EffectiveMetrics = %+v", got)
	}
}

func TestDataplaneInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no address, no inbound, no gateway", doc: `
type: Dataplane
mesh: default
name: dp
networking: {}
`, want: []string{"networking", "networking.address"}},
		{name: "inbound problems", doc: `
type: Dataplane
mesh: default
name: dp
networking:
  address: 10.0.0.1
  advertisedAddress: "not an address"
  inbound:
  - port: 0
    servicePort: 70000
    serviceAddress: localhost
    tags:
      version: v1
  - port: 8080
    address: web.local
    tags:
      kuma.io/service: web
      kuma.io/protocol: udp
      owner: "two words"
  - port: 8080
    tags:
      kuma.io/service: ""
  - port: 8080
    tags:
      kuma.io/service: web
`, want: []string{
			"networking.advertisedAddress",
			"networking.inbound[0].port",
			"networking.inbound[0].serviceAddress",
			"networking.inbound[0].servicePort",
			"networking.inbound[0].tags",
			"networking.inbound[1].address",
			`networking.inbound[1].tags["kuma.io/protocol"]`,
			`networking.inbound[1].tags["owner"]`,
			`networking.inbound[2].tags["kuma.io/service"]`,
			"networking.inbound[3].port",
		}},
		{name: "inbound and gateway together", doc: `
type: Dataplane
mesh: default
name: dp
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
  gateway:
    type: EXTERNAL
    tags:
      app: edge
`, want: []string{"networking.gateway", "networking.gateway.tags", "networking.gateway.type"}},
		{name: "outbound problems", doc: `
type: Dataplane
mesh: default
name: dp
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
  outbound:
  - port: 10001
    tags:
      kuma.io/service: backend
  - port: 10001
    address: 127.0.0.1
    tags:
      kuma.io/service: redis
  - port: 10002
    address: localhost
  - port: 65536
    tags:
      kuma.io/service: db
`, want: []string{
			"networking.outbound[1].port",
			"networking.outbound[2].address",
			"networking.outbound[2].tags",
			"networking.outbound[3].port",
		}},
		{name: "metrics override", doc: `
type: Dataplane
mesh: default
name: dp
networking:
  address: 10.0.0.1
  gateway:
    tags:
      kuma.io/service: gw
metrics:
  type: statsd
  conf:
    path: stats
    port: 0
`, want: []string{"metrics.conf.path", "metrics.type"}},
		{name: "unknown field in inbound", doc: `
type: Dataplane
mesh: default
name: dp
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    protocol: http
    tags:
      kuma.io/service: web
`, want: []string{"networking.inbound[0].protocol"}},
	})
}

func TestDecodeDataplane(t *testing.T) {
	doc := "type: Dataplane\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound: [{port: 80, tags: {kuma.io/service: web}}]\n"
	dp, err := DecodeDataplane([]byte(doc), "default", "web-1")
	if err != nil || dp.Mesh != "default" || dp.Name != "web-1" {
		t.Fatalf("DecodeDataplane = %v, %v; want mesh filled in", dp, err)
	}
	if dp, err := DecodeDataplane([]byte(doc), "default", ""); err != nil || dp.Name != "web-1" {
		t.Fatalf("an empty name takes the document's: %v, %v", dp, err)
	}
	for _, c := range []struct{ doc, mesh, name, want string }{
		{"type: Mesh\nname: x\n", "default", "x", "type: must be Dataplane"},
		{doc, "default", "web-2", `name: "web-1" does not match the requested name "web-2"`},
		{strings.Replace(doc, "port: 80", "port: 0", 1), "default", "web-1", "networking.inbound[0].port"},
		{"not: [yaml", "default", "web-1", ""},
	} {
		if _, err := DecodeDataplane([]byte(c.doc), c.mesh, c.name); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeDataplane(%q) = %v; want an error with %q", c.doc, err, c.want)
		}
	}
}
