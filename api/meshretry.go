package api

import (
	"strconv"
	"strings"
)

// MeshRetrySpec is the spec of a MeshRetry (Kuma's meshretry v1alpha1):
// how the dataplanes its targetRef selects retry failed TCP connections,
// HTTP requests and gRPC calls to the destinations in to.
type MeshRetrySpec struct {
	// TargetRef selects the dataplanes; default {kind: Mesh}. Allowed
	// kinds: Mesh, MeshSubset, MeshService, MeshServiceSubset,
	// MeshGateway.
	TargetRef *TargetRef `json:"targetRef,omitempty"`
	// To (required, non-empty); targetRef kinds Mesh or MeshService.
	To []MeshRetryTo `json:"to,omitempty"`
}

// MeshRetryTo is one to entry of a MeshRetry.
type MeshRetryTo struct {
	TargetRef TargetRef     `json:"targetRef"`
	Default   MeshRetryConf `json:"default"`
}

// MeshRetryConf mirrors Kuma's MeshRetry Conf: at least one of TCP, HTTP,
// GRPC.
type MeshRetryConf struct {
	TCP  *MeshRetryTCP  `json:"tcp,omitempty"`
	HTTP *MeshRetryHTTP `json:"http,omitempty"`
	GRPC *MeshRetryGRPC `json:"grpc,omitempty"`
}

// MeshRetryTCP mirrors Kuma's MeshRetry TCP.
type MeshRetryTCP struct {
	// MaxConnectAttempt (at least 1) is how many times to try connecting.
	MaxConnectAttempt uint32 `json:"maxConnectAttempt"`
}

// MeshRetryHTTP mirrors Kuma's MeshRetry HTTP (without the retriable
// header matchers, rate-limited back-off and host selection).
type MeshRetryHTTP struct {
	// NumRetries is the number of retries; unset means Envoy's default.
	NumRetries *uint32 `json:"numRetries,omitempty"`
	// PerTryTimeout bounds each attempt.
	PerTryTimeout *Duration `json:"perTryTimeout,omitempty"`
	// BackOff spaces the attempts.
	BackOff *BackOff `json:"backOff,omitempty"`
	// RetryOn lists the conditions that trigger a retry: the HTTPRetryOn
	// values or an HTTP status code ("503").
	RetryOn []string `json:"retryOn,omitempty"`
}

// MeshRetryGRPC mirrors Kuma's MeshRetry GRPC.
type MeshRetryGRPC struct {
	// NumRetries is the number of retries; unset means Envoy's default.
	NumRetries *uint32 `json:"numRetries,omitempty"`
	// PerTryTimeout bounds each attempt.
	PerTryTimeout *Duration `json:"perTryTimeout,omitempty"`
	// BackOff spaces the attempts.
	BackOff *BackOff `json:"backOff,omitempty"`
	// RetryOn lists gRPC status conditions: Canceled, DeadlineExceeded,
	// Internal, ResourceExhausted, Unavailable.
	RetryOn []string `json:"retryOn,omitempty"`
}

// BackOff mirrors Kuma's MeshRetry BackOff: exponential back-off with
// jitter between BaseInterval and MaxInterval.
type BackOff struct {
	BaseInterval *Duration `json:"baseInterval,omitempty"`
	MaxInterval  *Duration `json:"maxInterval,omitempty"`
}

// HTTPRetryOn lists the named HTTP retry conditions; an HTTP status code
// ("503") is also accepted.
var HTTPRetryOn = []string{
	"5XX", "GatewayError", "Reset", "Retriable4xx", "ConnectFailure", "EnvoyRatelimited",
	"RefusedStream", "Http3PostConnectFailure",
	"HttpMethodConnect", "HttpMethodDelete", "HttpMethodGet", "HttpMethodHead",
	"HttpMethodOptions", "HttpMethodPatch", "HttpMethodPost", "HttpMethodPut", "HttpMethodTrace",
}

// GRPCRetryOn lists the gRPC retry conditions, as Kuma spells them.
var GRPCRetryOn = []string{"Canceled", "DeadlineExceeded", "Internal", "ResourceExhausted", "Unavailable"}

// grpcRetryOnAliases maps Envoy's spelling of the gRPC conditions to
// Kuma's; Default rewrites them.
var grpcRetryOnAliases = map[string]string{
	"canceled":           "Canceled",
	"cancelled":          "Canceled",
	"deadline-exceeded":  "DeadlineExceeded",
	"internal":           "Internal",
	"resource-exhausted": "ResourceExhausted",
	"unavailable":        "Unavailable",
}

// Default implements Spec: the top-level targetRef defaults to the Mesh, and
// gRPC conditions written as Envoy spells them ("deadline-exceeded") are
// stored as Kuma spells them ("DeadlineExceeded").
func (s *MeshRetrySpec) Default() {
	if s.TargetRef == nil {
		s.TargetRef = MeshTargetRef()
	}
	for i := range s.To {
		if g := s.To[i].Default.GRPC; g != nil {
			for j, c := range g.RetryOn {
				if k, ok := grpcRetryOnAliases[c]; ok {
					g.RetryOn[j] = k
				}
			}
		}
	}
}

// Validate implements Spec.
func (s *MeshRetrySpec) Validate(v *Validator, at Path) {
	if s.TargetRef != nil {
		ValidateTargetRef(v, at.Field("targetRef"), *s.TargetRef,
			TargetMesh, TargetMeshSubset, TargetMeshService, TargetMeshServiceSubset, TargetMeshGateway)
	}
	tp := at.Field("to")
	if len(s.To) == 0 {
		v.Add(tp, "must not be empty")
	}
	for i, item := range s.To {
		p := tp.Index(i)
		ValidateTargetRef(v, p.Field("targetRef"), item.TargetRef, TargetMesh, TargetMeshService)
		item.Default.validate(v, p.Field("default"))
	}
}

func (c *MeshRetryConf) validate(v *Validator, p Path) {
	if c.TCP == nil && c.HTTP == nil && c.GRPC == nil {
		v.Add(p, "must set at least one of tcp, http, grpc")
	}
	if t := c.TCP; t != nil && t.MaxConnectAttempt < 1 {
		v.Add(p.Field("tcp").Field("maxConnectAttempt"), "must be at least 1")
	}
	if h := c.HTTP; h != nil {
		hp := p.Field("http")
		checkPositiveDuration(v, hp.Field("perTryTimeout"), h.PerTryTimeout)
		h.BackOff.validate(v, hp.Field("backOff"))
		for i, cond := range h.RetryOn {
			if !isHTTPRetryOn(cond) {
				v.Add(hp.Field("retryOn").Index(i), "must be one of %s, or an HTTP status code", strings.Join(HTTPRetryOn, ", "))
			}
		}
	}
	if g := c.GRPC; g != nil {
		gp := p.Field("grpc")
		checkPositiveDuration(v, gp.Field("perTryTimeout"), g.PerTryTimeout)
		g.BackOff.validate(v, gp.Field("backOff"))
		for i, cond := range g.RetryOn {
			v.OneOf(gp.Field("retryOn").Index(i), cond, false, GRPCRetryOn...)
		}
	}
}

func (b *BackOff) validate(v *Validator, p Path) {
	if b == nil {
		return
	}
	checkPositiveDuration(v, p.Field("baseInterval"), b.BaseInterval)
	checkPositiveDuration(v, p.Field("maxInterval"), b.MaxInterval)
	if b.BaseInterval != nil && b.MaxInterval != nil && b.BaseInterval.bad == "" && b.MaxInterval.bad == "" &&
		b.MaxInterval.Duration < b.BaseInterval.Duration {
		v.Add(p.Field("maxInterval"), "must not be less than baseInterval (%s)", b.BaseInterval)
	}
}

func isHTTPRetryOn(s string) bool {
	for _, c := range HTTPRetryOn {
		if s == c {
			return true
		}
	}
	if len(s) != 3 {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 100 && n <= 599
}
