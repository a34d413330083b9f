package server

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's own metrics (see the package doc). Labels are
// bounded: kind has two values, type_url the handful of xDS types a proxy
// asks for.
type metrics struct {
	streams   *prometheus.GaugeVec
	responses *prometheus.CounterVec
	acks      *prometheus.CounterVec
	nacks     *prometheus.CounterVec
	setDur    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshfed_xds_streams",
			Help: "ADS streams whose node the registrar accepted, by proxy kind (envoy, grpc).",
		}, []string{"kind"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfed_xds_responses_total",
			Help: "xDS responses sent, by type_url.",
		}, []string{"type_url"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfed_xds_acks_total",
			Help: "xDS requests acknowledging the last response of their type, by type_url.",
		}, []string{"type_url"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshfed_xds_nacks_total",
			Help: "xDS requests rejecting the last response of their type (error_detail set), by type_url.",
		}, []string{"type_url"}),
		setDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshfed_xds_set_resources_duration_seconds",
			Help:    "Time SetResources takes (hashing new resources, updating the cache, waking watches).",
			Buckets: []float64{1e-6, 5e-6, 25e-6, 1e-4, 5e-4, 2.5e-3, .01, .05, .25, 1},
		}),
	}
	for _, k := range []string{"envoy", "grpc"} {
		m.streams.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.responses, m.acks, m.nacks, m.setDur} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("xds server metrics: %w (one server per registerer; wrap it with prometheus.WrapRegistererWith to run several)", err)
			}
			return nil, fmt.Errorf("xds server metrics: %w", err)
		}
	}
	return m, nil
}
