package api

import (
	"slices"
	"testing"
)

func TestMeshRetryValid(t *testing.T) {
	runValid(t, []validCase{
		{name: "web to backend", doc: `
type: MeshRetry
name: web-to-backend-retry-policy
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: web
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      tcp:
        maxConnectAttempt: 5
      http:
        numRetries: 10
        perTryTimeout: 1s
        backOff:
          baseInterval: 15s
          maxInterval: 20m
        retryOn:
        - 5XX
        - GatewayError
        - HttpMethodGet
        - "429"
      grpc:
        numRetries: 5
        perTryTimeout: 2s
        backOff:
          baseInterval: 5s
          maxInterval: 1m
        retryOn:
        - DeadlineExceeded
        - Unavailable
`},
		{name: "mesh-wide, zero retries allowed", doc: `
type: MeshRetry
name: retry-all
mesh: default
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      http:
        numRetries: 0
`},
	})
}

func TestMeshRetryDefaults(t *testing.T) {
	r := mustPrepare(t, `
type: MeshRetry
name: grpc
mesh: default
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      grpc:
        retryOn:
        - deadline-exceeded
        - resource-exhausted
        - Canceled
`)
	s := r.Spec.(*MeshRetrySpec)
	if s.TargetRef == nil || s.TargetRef.Kind != TargetMesh {
		t.Errorf("targetRef default = %+v", s.TargetRef)
	}
	if got := s.To[0].Default.GRPC.RetryOn; !slices.Equal(got, []string{"DeadlineExceeded", "ResourceExhausted", "Canceled"}) {
		t.Errorf("gRPC retryOn = %v", got)
	}
	if n := s.To[0].Default.HTTP; n != nil {
		t.Errorf("http must stay unset")
	}
	checkRoundTrip(t, r)
}

func TestMeshRetryInvalid(t *testing.T) {
	runInvalid(t, []invalidCase{
		{name: "no to", doc: "type: MeshRetry\nmesh: default\nname: r\nspec:\n  targetRef:\n    kind: Mesh\n", want: []string{"spec.to"}},
		{name: "from is not allowed", doc: `
type: MeshRetry
mesh: default
name: r
spec:
  from:
  - targetRef:
      kind: Mesh
    default:
      tcp:
        maxConnectAttempt: 1
`, want: []string{"spec.from"}},
		{name: "every section wrong", doc: `
type: MeshRetry
mesh: default
name: r
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
      tcp:
        maxConnectAttempt: 0
      http:
        perTryTimeout: 0s
        backOff:
          baseInterval: 10s
          maxInterval: 1s
        retryOn:
        - 5xx
        - "600"
        - ConnectFailure
        - "42"
      grpc:
        backOff:
          baseInterval: nope
        retryOn:
        - Unavailable
        - NotFound
`, want: []string{
			"spec.targetRef.kind",
			"spec.to[0].default",
			"spec.to[0].targetRef.kind",
			"spec.to[1].default.grpc.backOff.baseInterval",
			"spec.to[1].default.grpc.retryOn[1]",
			"spec.to[1].default.http.backOff.maxInterval",
			"spec.to[1].default.http.perTryTimeout",
			"spec.to[1].default.http.retryOn[0]",
			"spec.to[1].default.http.retryOn[1]",
			"spec.to[1].default.http.retryOn[3]",
			"spec.to[1].default.tcp.maxConnectAttempt",
		}},
		{name: "numRetries negative and retryOn not a list", doc: `
type: MeshRetry
mesh: default
name: r
spec:
  to:
  - targetRef:
      kind: Mesh
    default:
      http:
        numRetries: -1
        retryOn: 5XX
`, want: []string{"spec.to[0].default.http.numRetries", "spec.to[0].default.http.retryOn"}},
	})
}
