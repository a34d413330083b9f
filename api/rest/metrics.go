package rest

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiMetrics are the API's own metrics. Labels are bounded: route is a
// ServeMux pattern (or "unmatched"), method one of the standard methods (or
// "other").
type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAPIMetrics(reg prometheus.Registerer) (*apiMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshfed_api_requests_total",
		Help: "HTTP API requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meshfed_api_request_duration_seconds",
		Help:    "HTTP API request latency by route pattern and method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method"})
	var err error
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return &apiMetrics{requests: requests, duration: duration}, nil
}

// register registers c, or returns the identical collector already
// registered (several APIs in one process share them).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("rest: register API metrics: %w", err)
	}
	return c, nil
}

func (m *apiMetrics) observe(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	method = metricMethod(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return m
	}
	return "other"
}

// InstrumentHandler records h's requests in the API's metrics
// (meshfed_api_requests_total, meshfed_api_request_duration_seconds) under
// route pattern's path, for the handlers a role serves beside the API (its
// status page, internal calls). pattern is h's ServeMux pattern ("GET
// /global/status"). A nil reg returns h as it is.
func InstrumentHandler(reg prometheus.Registerer, pattern string, h http.Handler) (http.Handler, error) {
	m, err := newAPIMetrics(reg)
	if err != nil || m == nil {
		return h, err
	}
	route := pattern[strings.IndexByte(pattern, ' ')+1:]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { m.observe(route, r.Method, sw.code(), time.Since(start)) }()
		h.ServeHTTP(sw, r)
	}), nil
}

// statusWriter remembers the status code a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
