package proxies

import "github.com/prometheus/client_golang/prometheus"

// metrics are the zone's xDS generation metrics (xds/server adds the
// stream-level ones):
//
//	meshfed_zone_xds_pass_seconds               histogram: one generation pass
//	meshfed_zone_xds_proxies_generated_total    counter: proxies given new resources
//	meshfed_zone_xds_generation_errors_total    counter: Meshes or proxies that failed to generate
//	meshfed_zone_xds_registrations_refused_total counter: proxies refused at Connect
//	meshfed_zone_xds_dataplanes_removed_total   counter: self-registered Dataplanes removed after the grace period
//	meshfed_zone_ca_certificates_issued_total   counter: dataplane certificates issued (first and renewals)
type metrics struct {
	passSeconds prometheus.Histogram
	generated   prometheus.Counter
	errors      prometheus.Counter
	refused     prometheus.Counter
	removed     prometheus.Counter
	certsIssued prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshfed_zone_xds_pass_seconds",
			Help:    "Duration of one xDS generation pass (compile changed Meshes, regenerate affected proxies).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		generated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfed_zone_xds_proxies_generated_total",
			Help: "Proxies given newly generated resources.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfed_zone_xds_generation_errors_total",
			Help: "Meshes or proxies whose resources failed to generate (they keep their last ones).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfed_zone_xds_registrations_refused_total",
			Help: "Proxy streams refused at registration (invalid or unknown Dataplane, unknown Mesh).",
		}),
		certsIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfed_zone_ca_certificates_issued_total",
			Help: "Dataplane certificates the zone issued (first ones and renewals).",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshfed_zone_xds_dataplanes_removed_total",
			Help: "Self-registered Dataplanes removed after their proxy was gone for the grace period.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.passSeconds, m.generated, m.errors, m.refused, m.removed, m.certsIssued} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
