package rest

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/api"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes int64 = 1 << 20

// Info is what GET / answers (Kuma's index document, plus the role).
type Info struct {
	// Product is always "Meshfed" (filled in when empty).
	Product string `json:"product"`
	// Tagline is a short free text, e.g. "Meshfed global control plane".
	Tagline string `json:"tagline"`
	// Version is the build version.
	Version string `json:"version"`
	// Role is "global" or "zone" (filled in from Config.Role when empty).
	Role string `json:"role"`
	// InstanceID identifies this control-plane process (node or replica).
	InstanceID string `json:"instanceId"`
	// ClusterID identifies the federation (global) or zone cluster.
	ClusterID string `json:"clusterId"`
}

// Config configures the HTTP API handler. The zero value of every optional
// field is usable; Store and Role are required.
type Config struct {
	// Role is the role of the control plane serving the API. Writes (PUT,
	// DELETE) of a type owned by the other role are refused with 405 and
	// *api.ReadOnlyError before the store is asked. Required.
	Role api.Role
	// Store is the role's store. Required.
	Store Store
	// Info returns the document served at GET /. Nil serves
	// Info{Product: "Meshfed", Role: Role}.
	Info func() Info
	// Authenticate checks a bearer token. When set, every endpoint except
	// GET /, /healthz and /readyz (and /metrics unless MetricsAuth) requires
	// "Authorization: Bearer TOKEN" and answers 401 otherwise. Nil disables
	// authentication. Implementations should compare in constant time.
	Authenticate func(token string) bool
	// MaxBodyBytes limits a request body; larger bodies get 413. Zero means
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// Ready reports whether the control plane can serve (GET /readyz: 200
	// "ok", or 503 with the error's text). Nil means always ready.
	Ready func() error
	// Metrics serves GET /metrics (typically promhttp.HandlerFor the
	// process's registry). Nil answers 404.
	Metrics http.Handler
	// MetricsAuth makes /metrics require the bearer token like the resource
	// endpoints. The default (false) serves /metrics without authentication,
	// as Kuma does: Prometheus scrapers usually carry no token, and the
	// metrics hold counts and latencies, never resource contents.
	MetricsAuth bool
	// Registerer receives the API's own metrics: meshfed_api_requests_total
	// {route,method,code} and meshfed_api_request_duration_seconds
	// {route,method}, where route is the ServeMux pattern, never the raw URL.
	// Nil disables them. When several APIs share one registerer (meshd dev),
	// the collectors are shared; wrap the registerer with a distinguishing
	// label (prometheus.WrapRegistererWith) to tell them apart.
	Registerer prometheus.Registerer
	// Logger receives one Debug line per request and an Error line per
	// internal error. Nil discards.
	Logger *slog.Logger
	// Routes are a role's own endpoints (global's zone overviews and
	// per-resource status), served beside the resource routes with the same
	// authentication, error shape, metrics and request log. Their patterns
	// must not conflict with the resource routes (see NewHandler).
	Routes []Route
}

// Route is an extra endpoint of Config.Routes.
type Route struct {
	// Pattern is an http.ServeMux pattern with a method, e.g.
	// "GET /zones/{name}/_overview". It must be more specific than the
	// resource routes it overlaps: "GET /zones/{name}/_status" is, but
	// "GET /{plural}/{name}/_status" conflicts with "GET /meshes/{mesh}/{plural}".
	Pattern string
	// Public routes need no token.
	Public bool
	// Handler answers the request; a returned error is answered as in
	// errors.go (nothing must have been written then). WriteValue and
	// WriteList answer in the API's formats.
	Handler func(w http.ResponseWriter, r *http.Request) error
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	switch c.Role {
	case api.RoleGlobal, api.RoleZone:
	case "":
		errs = append(errs, errors.New("rest: Role must be set"))
	default:
		errs = append(errs, fmt.Errorf("rest: Role must be %q or %q, not %q", api.RoleGlobal, api.RoleZone, c.Role))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("rest: Store must be set"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("rest: MaxBodyBytes must not be negative, got %d", c.MaxBodyBytes))
	}
	for i, rt := range c.Routes {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok || method == "" || !strings.HasPrefix(path, "/") {
			errs = append(errs, fmt.Errorf("rest: Routes[%d]: pattern %q must be \"METHOD /path\"", i, rt.Pattern))
		}
		if rt.Handler == nil {
			errs = append(errs, fmt.Errorf("rest: Routes[%d] (%s): Handler must be set", i, rt.Pattern))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with unset optional fields filled in.
func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
