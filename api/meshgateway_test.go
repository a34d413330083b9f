package api

import "testing"

const meshGatewayEdge = `
type: MeshGateway
mesh: default
name: edge-gateway
selectors:
- match:
    kuma.io/service: edge-gateway
tags:
  vhost: foo.example.com
conf:
  listeners:
  - port: 8080
    protocol: HTTP
    hostname: foo.example.com
    tags:
      port: http/8080
  - port: 8080
    protocol: HTTP
    tags:
      port: http/8080
  - port: 8443
    protocol: HTTPS
    hostname: "*.example.com"
    tls:
      mode: TERMINATE
      certificates:
      - secret: example-com-certificate
    resources:
      connectionLimit: 10000
  - port: 9443
    protocol: TLS
    hostname: db.example.com
    tls:
      mode: PASSTHROUGH
  - port: 5432
    protocol: TCP
  - port: 9080
    protocol: HTTP
    crossMesh: true
    hostname: internal.mesh
`

func TestMeshGatewayValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "edge", doc: meshGatewayEdge},
		{name: "cross-mesh HTTPS", doc: `
type: MeshGateway
mesh: default
name: cross-mesh-gateway
selectors:
- match:
    kuma.io/service: cross-mesh-gateway
conf:
  listeners:
  - port: 8443
    protocol: HTTPS
    crossMesh: true
    hostname: default.mesh
    tls:
      certificates:
      - inlineString: pem
`},
	})
}

func TestMeshGatewayDefaults(t *testing.T) {
	r := mustPrepare(t, meshGatewayEdge)
	ls := r.Spec.(*MeshGatewaySpec).Conf.Listeners
	if ls[1].Hostname != "*" || ls[4].Hostname != "*" || ls[0].Hostname != "foo.example.com" {
		t.Errorf("hostname defaults: %q %q %q", ls[0].Hostname, ls[1].Hostname, ls[4].Hostname)
	}
	r = mustPrepare(t, `
type: MeshGateway
mesh: default
name: g
selectors:
- match:
    kuma.io/service: g
conf:
  listeners:
  - port: 443
    protocol: HTTPS
    tls:
      certificates:
      - secret: cert
`)
	if m := r.Spec.(*MeshGatewaySpec).Conf.Listeners[0].TLS.Mode; m != GatewayTLSTerminate {
		t.Errorf("tls mode default = %q", m)
	}
}

func TestMeshGatewayInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no selectors, no listeners", doc: `
type: MeshGateway
mesh: default
name: g
conf: {}
`, want: []string{"conf.listeners", "selectors"}},
		{name: "empty match and bad tags", doc: `
type: MeshGateway
mesh: default
name: g
selectors:
- match: {}
- match:
    kuma.io/service: ""
tags:
  "": x
conf:
  listeners:
  - port: 80
    protocol: HTTP
`, want: []string{"selectors[0].match", `selectors[1].match["kuma.io/service"]`, `tags[""]`}},
		{name: "listener problems", doc: `
type: MeshGateway
mesh: default
name: g
selectors:
- match:
    kuma.io/service: g
conf:
  listeners:
  - port: 0
    protocol: UDP
    hostname: "foo..example.com"
  - port: 443
    protocol: HTTPS
  - port: 80
    protocol: HTTP
    tls:
      certificates:
      - secret: cert
  - port: 8443
    protocol: TLS
    tls:
      mode: TERMINATE
  - port: 5432
    protocol: TCP
    crossMesh: true
  - port: 9443
    protocol: HTTPS
    tls:
      mode: PASSTHROUGH
      certificates:
      - secret: cert
        file: /etc/cert.pem
  - port: 7443
    protocol: TLS
    tls:
      mode: REENCRYPT
`, want: []string{
			"conf.listeners[0].hostname",
			"conf.listeners[0].port",
			"conf.listeners[0].protocol",
			"conf.listeners[1].tls",
			"conf.listeners[2].tls",
			"conf.listeners[3].tls.certificates",
			"conf.listeners[4].crossMesh",
			"conf.listeners[5].tls.certificates",
			"conf.listeners[5].tls.certificates[0]",
			"conf.listeners[5].tls.mode",
			"conf.listeners[6].tls.mode",
		}},
		{name: "port sharing", doc: `
type: MeshGateway
mesh: default
name: g
selectors:
- match:
    kuma.io/service: g
conf:
  listeners:
  - port: 8080
    protocol: HTTP
  - port: 8080
    protocol: HTTP
    hostname: "*"
  - port: 8080
    protocol: HTTP
    hostname: a.example.com
    crossMesh: true
  - port: 8080
    protocol: TCP
    hostname: b.example.com
  - port: 9090
    protocol: HTTP
    hostname: A.Example.com
  - port: 9090
    protocol: HTTP
    hostname: a.example.com
`, want: []string{
			"conf.listeners[1].hostname",
			"conf.listeners[2].port",
			"conf.listeners[3].protocol",
			"conf.listeners[5].hostname",
		}},
		{name: "unknown listener field", doc: `
type: MeshGateway
mesh: default
name: g
selectors:
- match:
    kuma.io/service: g
conf:
  listeners:
  - port: 8080
    protocol: HTTP
    path: /
`, want: []string{"conf.listeners[0].path"}},
	})
}
