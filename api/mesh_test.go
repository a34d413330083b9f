package api

import (
	"testing"
	"time"
)

const meshFull = `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    dpCert:
      rotation:
        expiration: 1d
      requestTimeout: 10s
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
  - name: ca-2
    type: provided
    mode: PERMISSIVE
    dpCert:
      rotation:
        expiration: 12h
    conf:
      cert:
        secret: ca-2-cert
      key:
        secret: ca-2-key
metrics:
  enabledBackend: prometheus-1
  backends:
  - name: prometheus-1
    type: prometheus
    conf:
      port: 5670
      path: /metrics
      skipMTLS: false
      tags:
        kuma.io/service: dataplane-metrics
      tls:
        mode: activeMTLSBackend
tracing:
  defaultBackend: jaeger-collector
  backends:
  - name: jaeger-collector
    type: zipkin
    sampling: 100.0
    conf:
      url: http://jaeger-collector.mesh-observability:9411/api/v2/spans
  - name: zipkin-sampled
    type: zipkin
    sampling: 12.5
    conf:
      url: https://zipkin.example.com/api/v2/spans
      traceId128bit: true
      apiVersion: httpProto
logging:
  defaultBackend: file
  backends:
  - name: logstash
    format: '{"start_time": "%START_TIME%", "source": "%KUMA_SOURCE_SERVICE%"}'
    type: tcp
    conf:
      address: logstash.logging:5000
  - name: file
    type: file
    conf:
      path: /tmp/access.log
networking:
  outbound:
    passthrough: false
routing:
  localityAwareLoadBalancing: true
  zoneEgress: true
`

func TestMeshValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "full", doc: meshFull},
		{name: "minimal", doc: "type: Mesh\nname: default\n"},
		{name: "json", doc: `{"type":"Mesh","name":"payments","labels":{"team":"payments"},"mtls":{"enabledBackend":"ca","backends":[{"name":"ca","type":"builtin","conf":{"caCert":{"RSAbits":4096}}}]}}`},
		{name: "provided with inline material", doc: `
type: Mesh
name: shared-ca
mtls:
  enabledBackend: provided-1
  backends:
  - name: provided-1
    type: provided
    conf:
      cert:
        inlineString: |
          -----BEGIN CERTIFICATE-----
          MIIB
          -----END CERTIFICATE-----
      key:
        inline: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t
`},
	})
}

func TestMeshDefaults(t *testing.T) {
	got := encodeYAML(t, `
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
metrics:
  enabledBackend: prom
  backends:
  - name: prom
    type: prometheus
tracing:
  defaultBackend: zipkin
  backends:
  - name: zipkin
    type: zipkin
    conf:
      url: http://zipkin.local:9411/api/v2/spans
`)
	want := `type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    dpCert:
      rotation:
        expiration: 24h
    mode: STRICT
    conf:
      caCert:
        expiration: 87600h
metrics:
  enabledBackend: prom
  backends:
  - name: prom
    type: prometheus
    conf:
      port: 5670
      path: /metrics
tracing:
  defaultBackend: zipkin
  backends:
  - name: zipkin
    sampling: 100
    type: zipkin
    conf:
      url: http://zipkin.local:9411/api/v2/spans
      apiVersion: httpJson
networking:
  outbound:
    passthrough: true
`
	if got != want {
		t.Errorf("defaults:\n%s\nwant:\n%s", got, want)
	}

	r := mustPrepare(t, meshFull)
	m := r.Spec.(*MeshSpec)
	if b := m.MTLSBackend(); b == nil || b.Name != "ca-1" || b.DPCert.Rotation.Expiration.Duration != 24*time.Hour {
		t.Errorf("MTLSBackend() = %+v", b)
	}
	if m.MTLS.Backends[1].Conf.CACert != nil {
		t.Errorf("a provided backend must not get a caCert default")
	}
	if b := m.MetricsBackend(); b == nil || b.Conf.Port != 5670 {
		t.Errorf("MetricsBackend() = %+v", b)
	}
	if b := m.TracingBackend(""); b == nil || b.Name != "jaeger-collector" {
		t.Errorf("TracingBackend(\"\") = %+v", b)
	}
	if b := m.LoggingBackend("logstash"); b == nil || b.Conf.Address != "logstash.logging:5000" {
		t.Errorf("LoggingBackend(logstash) = %+v", b)
	}
	if m.Passthrough() {
		t.Errorf("Passthrough() = true, want false as set")
	}
	if !(&MeshSpec{}).Passthrough() || (&MeshSpec{}).MTLSEnabled() {
		t.Errorf("an empty Mesh has passthrough on and mTLS off")
	}
}

func TestMeshInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "unknown type and undefined enabled backend", doc: `
type: Mesh
name: default
mtls:
  enabledBackend: ca-2
  backends:
  - name: ca-1
    type: vault
`, want: []string{"mtls.backends[0].type", "mtls.enabledBackend"}},
		{name: "mtls backends: names, conf per type, durations", doc: `
type: Mesh
name: default
mtls:
  backends:
  - name: ca-1
    type: builtin
    mode: LAX
    dpCert:
      rotation:
        expiration: 0s
      requestTimeout: -1s
    conf:
      caCert:
        RSAbits: 1024
        expiration: forever
      cert:
        secret: c
  - name: ca-1
    type: provided
    conf:
      caCert: {}
      cert:
        secret: c
        file: /etc/ca.pem
  - type: provided
    conf:
      cert:
        file: relative/ca.pem
      key:
        inline: "not base64!"
`, want: []string{
			"mtls.backends[0].conf.caCert.RSAbits",
			"mtls.backends[0].conf.caCert.expiration",
			"mtls.backends[0].conf.cert",
			"mtls.backends[0].dpCert.requestTimeout",
			"mtls.backends[0].dpCert.rotation.expiration",
			"mtls.backends[0].mode",
			"mtls.backends[1].conf.caCert",
			"mtls.backends[1].conf.cert",
			"mtls.backends[1].conf.key",
			"mtls.backends[1].name",
			"mtls.backends[2].conf.cert.file",
			"mtls.backends[2].conf.key.inline",
			"mtls.backends[2].name",
		}},
		{name: "metrics", doc: `
type: Mesh
name: default
metrics:
  enabledBackend: prom-2
  backends:
  - name: prom-1
    type: statsd
  - name: prom-1
    type: prometheus
    conf:
      port: 70000
      path: metrics
      tags:
        "bad key!": x
      tls:
        mode: mutual
`, want: []string{
			"metrics.backends[0].type",
			"metrics.backends[1].conf.path",
			"metrics.backends[1].conf.port",
			`metrics.backends[1].conf.tags["bad key!"]`,
			"metrics.backends[1].conf.tls.mode",
			"metrics.backends[1].name",
			"metrics.enabledBackend",
		}},
		{name: "tracing", doc: `
type: Mesh
name: default
tracing:
  defaultBackend: jaeger
  backends:
  - name: zipkin-1
    type: zipkin
    sampling: 150
    conf:
      url: ftp://collector:9411
      apiVersion: v3
  - name: zipkin-2
    type: zipkin
  - name: dd
    type: datadog
    sampling: -1
`, want: []string{
			"tracing.backends[0].conf.apiVersion",
			"tracing.backends[0].conf.url",
			"tracing.backends[0].sampling",
			"tracing.backends[1].conf.url",
			"tracing.backends[2].sampling",
			"tracing.backends[2].type",
			"tracing.defaultBackend",
		}},
		{name: "logging", doc: `
type: Mesh
name: default
logging:
  defaultBackend: missing
  backends:
  - name: file
    type: file
    conf:
      path: access.log
      address: 127.0.0.1:5000
  - name: tcp
    type: tcp
    conf:
      address: logstash
      path: /tmp/x
  - name: tcp-2
    type: tcp
    conf:
      address: logstash:99999
  - name: no-conf
    type: file
  - name: syslog
    type: syslog
`, want: []string{
			"logging.backends[0].conf.address",
			"logging.backends[0].conf.path",
			"logging.backends[1].conf.address",
			"logging.backends[1].conf.path",
			"logging.backends[2].conf.address",
			"logging.backends[3].conf.path",
			"logging.backends[4].type",
			"logging.defaultBackend",
		}},
		{name: "problems in every section at once", doc: `
type: Mesh
name: default
mtls:
  enabledBackend: ca
metrics:
  enabledBackend: prom
tracing:
  defaultBackend: zipkin
logging:
  defaultBackend: file
`, want: []string{"logging.defaultBackend", "metrics.enabledBackend", "mtls.enabledBackend", "tracing.defaultBackend"}},
		{name: "wrong types", doc: `
type: Mesh
name: default
networking:
  outbound:
    passthrough: "yes"
routing:
  zoneEgress: 1
tracing:
  backends:
  - name: z
    type: zipkin
    sampling: high
`, want: []string{"networking.outbound.passthrough", "routing.zoneEgress", "tracing.backends[0].sampling"}},
		{name: "mesh name longer than 63", doc: `
type: Mesh
name: a-very-long-mesh-name-that-goes-on-and-on-and-on-past-sixty-three-chars
`, want: []string{"name"}},
	})
}
