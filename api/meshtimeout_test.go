package api

import (
	"testing"
	"time"
)

func TestMeshTimeoutValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "mesh-wide", doc: `
type: MeshTimeout
name: timeout-global
mesh: default
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
      connectionTimeout: 2s
      http:
        requestTimeout: 2s
        streamIdleTimeout: 1h
        maxStreamDuration: 0s
        maxConnectionDuration: 1d
        requestHeadersTimeout: 500ms
  from:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
      connectionTimeout: 2s
      http:
        requestTimeout: 2s
`},
		{name: "to one service only", doc: `
type: MeshTimeout
name: web-to-backend
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      kuma.io/service: web
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      http:
        requestTimeout: 1m30s
`},
		{name: "gateway", doc: `
type: MeshTimeout
name: gateway-timeouts
mesh: default
spec:
  targetRef:
    kind: MeshGateway
    name: edge-gateway
  from:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 5m
`},
	})

	r := mustPrepare(t, "type: MeshTimeout\nmesh: m\nname: t\nspec:\n  from:\n  - targetRef:\n      kind: Mesh\n    default:\n      idleTimeout: 1m30s\n")
	s := r.Spec.(*MeshTimeoutSpec)
	if s.TargetRef == nil || s.TargetRef.Kind != TargetMesh {
		t.Errorf("targetRef default = %+v", s.TargetRef)
	}
	if d := s.From[0].Default.IdleTimeout; d == nil || d.Duration != 90*time.Second {
		t.Errorf("idleTimeout = %v", d)
	}
}

func TestMeshTimeoutInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "neither to nor from", doc: "type: MeshTimeout\nmesh: default\nname: t\nspec:\n  targetRef:\n    kind: Mesh\n", want: []string{"spec"}},
		{name: "empty defaults and bad kinds", doc: `
type: MeshTimeout
mesh: default
name: t
spec:
  targetRef:
    kind: Dataplane
    name: web-01
  to:
  - targetRef:
      kind: MeshSubset
      tags:
        version: v1
    default: {}
  - targetRef:
      kind: MeshService
      name: backend
    default:
      http: {}
  from:
  - targetRef:
      kind: MeshService
      name: web
    default:
      connectionTimeout: 1s
`, want: []string{
			"spec.from[0].targetRef.kind",
			"spec.targetRef.kind",
			"spec.to[0].default",
			"spec.to[0].targetRef.kind",
			"spec.to[1].default.http",
		}},
		{name: "bad durations everywhere", doc: `
type: MeshTimeout
mesh: default
name: t
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      connectionTimeout: -5s
      idleTimeout: ten seconds
      http:
        requestTimeout: 1x
        maxStreamDuration: 10
`, want: []string{
			"spec.to[0].default.connectionTimeout",
			"spec.to[0].default.http.maxStreamDuration",
			"spec.to[0].default.http.requestTimeout",
			"spec.to[0].default.idleTimeout",
		}},
		{name: "unknown timeout", doc: `
type: MeshTimeout
mesh: default
name: t
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      http:
        responseTimeout: 5s
`, want: []string{"spec.to[0].default.http.responseTimeout"}},
	})
}
