package api

import (
	"encoding/base64"
	"net/url"
	"path"
	"strings"
	"time"
)

// MeshSpec is the body of a Mesh (Kuma's mesh.v1alpha1.Mesh, inline): the
// tenant's mTLS, metrics, tracing and logging backends and its networking
// and routing switches.
type MeshSpec struct {
	// MTLS mirrors Kuma's Mesh.mtls: the CA backends and which one is on.
	MTLS *MTLS `json:"mtls,omitempty"`
	// Metrics mirrors Kuma's Mesh.metrics.
	Metrics *Metrics `json:"metrics,omitempty"`
	// Tracing mirrors Kuma's Mesh.tracing.
	Tracing *Tracing `json:"tracing,omitempty"`
	// Logging mirrors Kuma's Mesh.logging.
	Logging *Logging `json:"logging,omitempty"`
	// Networking mirrors Kuma's Mesh.networking.
	Networking *MeshNetworking `json:"networking,omitempty"`
	// Routing mirrors Kuma's Mesh.routing.
	Routing *MeshRouting `json:"routing,omitempty"`
}

// mTLS backend types and modes.
const (
	MTLSBuiltin  = "builtin"
	MTLSProvided = "provided"

	MTLSModeStrict     = "STRICT"
	MTLSModePermissive = "PERMISSIVE"
)

// Defaults of the Mesh.
const (
	DefaultDPCertExpiration = 24 * time.Hour
	DefaultCAExpiration     = 10 * 365 * 24 * time.Hour
	DefaultPrometheusPort   = 5670
	DefaultPrometheusPath   = "/metrics"
	DefaultTracingSampling  = 100.0
	ZipkinAPIHTTPJSON       = "httpJson"
	ZipkinAPIHTTPProto      = "httpProto"
)

// MTLS mirrors Kuma's Mesh.Mtls: the Mesh's CA backends. mTLS is on when
// EnabledBackend names one of them.
type MTLS struct {
	// EnabledBackend names the backend in use; empty turns mTLS off.
	EnabledBackend string `json:"enabledBackend,omitempty"`
	// Backends are the CA backends (unique names).
	Backends []MTLSBackend `json:"backends,omitempty"`
}

// MTLSBackend mirrors Kuma's CertificateAuthorityBackend.
type MTLSBackend struct {
	// Name is required and unique in the Mesh.
	Name string `json:"name"`
	// Type is builtin (a CA the control plane generates) or provided (the
	// user's certificate and key).
	Type string `json:"type"`
	// DPCert controls the dataplane certificates issued by this backend.
	DPCert *DPCert `json:"dpCert,omitempty"`
	// Mode is STRICT (only mTLS traffic) or PERMISSIVE (plaintext
	// accepted too); default STRICT.
	Mode string `json:"mode,omitempty"`
	// Conf holds the type's configuration: CACert for builtin, Cert and
	// Key for provided.
	Conf *MTLSBackendConf `json:"conf,omitempty"`
}

// DPCert mirrors Kuma's CertificateAuthorityBackend.DpCert.
type DPCert struct {
	// Rotation sets the certificates' lifetime.
	Rotation *DPCertRotation `json:"rotation,omitempty"`
	// RequestTimeout bounds how long a dataplane waits for its
	// certificate.
	RequestTimeout *Duration `json:"requestTimeout,omitempty"`
}

// DPCertRotation mirrors Kuma's DpCert.Rotation.
type DPCertRotation struct {
	// Expiration is the lifetime of a dataplane certificate; default 24h.
	Expiration *Duration `json:"expiration,omitempty"`
}

// MTLSBackendConf is the per-type "conf" of an mTLS backend. Kuma types it
// by the backend type (BuiltinCertificateAuthorityConfig or
// ProvidedCertificateAuthorityConfig); here both parts are optional fields
// and validation allows only the part that fits the type.
type MTLSBackendConf struct {
	// CACert (builtin only) shapes the generated root certificate.
	CACert *BuiltinCACert `json:"caCert,omitempty"`
	// Cert (provided only, required) is the CA certificate (PEM).
	Cert *DataSource `json:"cert,omitempty"`
	// Key (provided only, required) is the CA private key (PEM).
	Key *DataSource `json:"key,omitempty"`
}

// BuiltinCACert mirrors Kuma's BuiltinCertificateAuthorityConfig.CaCert.
type BuiltinCACert struct {
	// RSABits is the RSA key size, 2048 to 8192; 0 means an ECDSA key.
	RSABits uint32 `json:"RSAbits,omitempty"`
	// Expiration is the root's lifetime; default 10y.
	Expiration *Duration `json:"expiration,omitempty"`
}

// DataSource mirrors Kuma's system.v1alpha1.DataSource: exactly one of a
// Secret name (in the same Mesh), a file on the control plane's host,
// base64 inline bytes or an inline string.
type DataSource struct {
	Secret       string `json:"secret,omitempty"`
	File         string `json:"file,omitempty"`
	Inline       string `json:"inline,omitempty"`
	InlineString string `json:"inlineString,omitempty"`
}

// validateDataSource reports a DataSource that does not set exactly one
// source, and a malformed one.
func validateDataSource(v *Validator, p Path, ds *DataSource) {
	if ds == nil {
		v.Add(p, "must not be empty")
		return
	}
	n := 0
	for _, s := range []string{ds.Secret, ds.File, ds.Inline, ds.InlineString} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		v.Add(p, "must set exactly one of secret, file, inline, inlineString")
	}
	if ds.Secret != "" {
		ValidateName(v, p.Field("secret"), ds.Secret, 253)
	}
	if ds.File != "" && !path.IsAbs(ds.File) {
		v.Add(p.Field("file"), "must be an absolute path")
	}
	if ds.Inline != "" {
		if _, err := base64.StdEncoding.DecodeString(ds.Inline); err != nil {
			v.Add(p.Field("inline"), "must be standard base64: %s", err)
		}
	}
}

// Metrics mirrors Kuma's Mesh.Metrics.
type Metrics struct {
	// EnabledBackend names the backend every dataplane exposes; empty
	// means no metrics.
	EnabledBackend string `json:"enabledBackend,omitempty"`
	// Backends are the metrics backends (unique names).
	Backends []MetricsBackend `json:"backends,omitempty"`
}

// MetricsBackend mirrors Kuma's MetricsBackend. It is also the shape of a
// Dataplane's metrics override, where Name is optional and unset fields of
// Conf are taken from the Mesh's enabled backend.
type MetricsBackend struct {
	// Name is required (and unique) in a Mesh.
	Name string `json:"name,omitempty"`
	// Type must be prometheus.
	Type string `json:"type"`
	// Conf is the prometheus configuration.
	Conf *PrometheusConf `json:"conf,omitempty"`
}

// Metrics backend types and prometheus TLS modes.
const (
	MetricsPrometheus = "prometheus"

	PrometheusTLSActiveMTLSBackend = "activeMTLSBackend"
	PrometheusTLSProvidedTLS       = "providedTLS"
	PrometheusTLSDisabled          = "disabled"
)

// PrometheusConf mirrors Kuma's PrometheusMetricsBackendConfig: the stats
// listener every dataplane opens.
type PrometheusConf struct {
	// Port of the stats listener; default 5670.
	Port uint32 `json:"port,omitempty"`
	// Path of the scrape endpoint; default /metrics.
	Path string `json:"path,omitempty"`
	// Tags are added to every metric as labels.
	Tags map[string]string `json:"tags,omitempty"`
	// SkipMTLS serves the endpoint in plaintext even when mTLS is on.
	SkipMTLS *bool `json:"skipMTLS,omitempty"`
	// TLS configures the endpoint's TLS.
	TLS *PrometheusTLS `json:"tls,omitempty"`
}

// PrometheusTLS mirrors Kuma's PrometheusTlsConfig.
type PrometheusTLS struct {
	// Mode is activeMTLSBackend (default), providedTLS or disabled.
	Mode string `json:"mode,omitempty"`
}

func (b *MetricsBackend) defaults() {
	if b.Type != MetricsPrometheus {
		return
	}
	if b.Conf == nil {
		b.Conf = &PrometheusConf{}
	}
	if b.Conf.Port == 0 {
		b.Conf.Port = DefaultPrometheusPort
	}
	if b.Conf.Path == "" {
		b.Conf.Path = DefaultPrometheusPath
	}
	if b.Conf.TLS != nil && b.Conf.TLS.Mode == "" {
		b.Conf.TLS.Mode = PrometheusTLSActiveMTLSBackend
	}
}

// validate reports the backend's type and conf problems (not its name).
// Port 0 and an empty path are accepted: they mean "inherit" in a
// Dataplane override and are defaulted in a Mesh.
func (b *MetricsBackend) validate(v *Validator, p Path) {
	requiredOneOf(v, p.Field("type"), b.Type, MetricsPrometheus)
	c := b.Conf
	if c == nil {
		return
	}
	cp := p.Field("conf")
	if c.Port != 0 {
		v.Port(cp.Field("port"), c.Port)
	}
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		v.Add(cp.Field("path"), "must start with /")
	}
	for _, k := range sortedKeys(c.Tags) {
		ValidateLabel(v, cp.Field("tags").Key(k), k, c.Tags[k])
	}
	if c.TLS != nil {
		v.OneOf(cp.Field("tls").Field("mode"), c.TLS.Mode, true,
			PrometheusTLSActiveMTLSBackend, PrometheusTLSProvidedTLS, PrometheusTLSDisabled)
	}
}

// Tracing mirrors Kuma's Mesh.Tracing.
type Tracing struct {
	// DefaultBackend is used by TrafficTraces that name no backend.
	DefaultBackend string `json:"defaultBackend,omitempty"`
	// Backends are the tracing backends (unique names).
	Backends []TracingBackend `json:"backends,omitempty"`
}

// TracingZipkin is the only tracing backend type.
const TracingZipkin = "zipkin"

// TracingBackend mirrors Kuma's TracingBackend.
type TracingBackend struct {
	// Name is required and unique.
	Name string `json:"name"`
	// Sampling is the percentage of traced requests, 0 to 100; default
	// 100.
	Sampling *float64 `json:"sampling,omitempty"`
	// Type must be zipkin.
	Type string `json:"type"`
	// Conf is the zipkin configuration.
	Conf *ZipkinConf `json:"conf,omitempty"`
}

// ZipkinConf mirrors Kuma's ZipkinTracingBackendConfig.
type ZipkinConf struct {
	// URL of the collector (required, absolute http or https).
	URL string `json:"url"`
	// TraceID128bit makes 128-bit trace ids.
	TraceID128bit bool `json:"traceId128bit,omitempty"`
	// APIVersion is httpJson (default) or httpProto.
	APIVersion string `json:"apiVersion,omitempty"`
}

// Logging mirrors Kuma's Mesh.Logging.
type Logging struct {
	// DefaultBackend is used by TrafficLogs that name no backend.
	DefaultBackend string `json:"defaultBackend,omitempty"`
	// Backends are the logging backends (unique names).
	Backends []LoggingBackend `json:"backends,omitempty"`
}

// Logging backend types.
const (
	LoggingFile = "file"
	LoggingTCP  = "tcp"
)

// LoggingBackend mirrors Kuma's LoggingBackend.
type LoggingBackend struct {
	// Name is required and unique.
	Name string `json:"name"`
	// Format is the Envoy access log format; empty means Kuma's default.
	Format string `json:"format,omitempty"`
	// Type is file or tcp.
	Type string `json:"type"`
	// Conf holds Path (file) or Address (tcp).
	Conf *LoggingConf `json:"conf,omitempty"`
}

// LoggingConf is the per-type "conf" of a logging backend (Kuma's
// FileLoggingBackendConfig or TcpLoggingBackendConfig); only the field of
// the backend's type may be set.
type LoggingConf struct {
	// Path (file) is the absolute path of the log file.
	Path string `json:"path,omitempty"`
	// Address (tcp) is the host:port of the log collector.
	Address string `json:"address,omitempty"`
}

// MeshNetworking mirrors Kuma's Mesh.Networking.
type MeshNetworking struct {
	Outbound *MeshOutbound `json:"outbound,omitempty"`
}

// MeshOutbound mirrors Kuma's Mesh.Networking.Outbound.
type MeshOutbound struct {
	// Passthrough lets dataplanes reach destinations outside the Mesh;
	// default true.
	Passthrough *bool `json:"passthrough,omitempty"`
}

// MeshRouting mirrors Kuma's Mesh.Routing.
type MeshRouting struct {
	// LocalityAwareLoadBalancing prefers endpoints in the caller's zone.
	LocalityAwareLoadBalancing bool `json:"localityAwareLoadBalancing,omitempty"`
	// ZoneEgress sends traffic leaving the zone through a ZoneEgress.
	ZoneEgress bool `json:"zoneEgress,omitempty"`
}

func durPtr(d time.Duration) *Duration { x := Dur(d); return &x }

// Default implements Spec: dataplane certificates live 24h and builtin CAs
// 10 years, mode STRICT, prometheus on port 5670 at /metrics, tracing
// sampling 100 with zipkin httpJson, and outbound passthrough on.
func (s *MeshSpec) Default() {
	if m := s.MTLS; m != nil {
		for i := range m.Backends {
			b := &m.Backends[i]
			if b.DPCert == nil {
				b.DPCert = &DPCert{}
			}
			if b.DPCert.Rotation == nil {
				b.DPCert.Rotation = &DPCertRotation{}
			}
			if b.DPCert.Rotation.Expiration == nil {
				b.DPCert.Rotation.Expiration = durPtr(DefaultDPCertExpiration)
			}
			if b.Mode == "" {
				b.Mode = MTLSModeStrict
			}
			if b.Type == MTLSBuiltin {
				if b.Conf == nil {
					b.Conf = &MTLSBackendConf{}
				}
				if b.Conf.CACert == nil {
					b.Conf.CACert = &BuiltinCACert{}
				}
				if b.Conf.CACert.Expiration == nil {
					b.Conf.CACert.Expiration = durPtr(DefaultCAExpiration)
				}
			}
		}
	}
	if m := s.Metrics; m != nil {
		for i := range m.Backends {
			m.Backends[i].defaults()
		}
	}
	if t := s.Tracing; t != nil {
		for i := range t.Backends {
			b := &t.Backends[i]
			if b.Sampling == nil {
				x := DefaultTracingSampling
				b.Sampling = &x
			}
			if b.Type == TracingZipkin {
				if b.Conf == nil {
					b.Conf = &ZipkinConf{}
				}
				if b.Conf.APIVersion == "" {
					b.Conf.APIVersion = ZipkinAPIHTTPJSON
				}
			}
		}
	}
	if s.Networking == nil {
		s.Networking = &MeshNetworking{}
	}
	if s.Networking.Outbound == nil {
		s.Networking.Outbound = &MeshOutbound{}
	}
	if s.Networking.Outbound.Passthrough == nil {
		t := true
		s.Networking.Outbound.Passthrough = &t
	}
}

// Validate implements Spec.
func (s *MeshSpec) Validate(v *Validator, at Path) {
	if m := s.MTLS; m != nil {
		p := at.Field("mtls")
		names := make([]string, len(m.Backends))
		for i := range m.Backends {
			names[i] = m.Backends[i].Name
			m.Backends[i].validate(v, p.Field("backends").Index(i))
		}
		checkBackends(v, p, "enabledBackend", m.EnabledBackend, names)
	}
	if m := s.Metrics; m != nil {
		p := at.Field("metrics")
		names := make([]string, len(m.Backends))
		for i := range m.Backends {
			names[i] = m.Backends[i].Name
			m.Backends[i].validate(v, p.Field("backends").Index(i))
		}
		checkBackends(v, p, "enabledBackend", m.EnabledBackend, names)
	}
	if t := s.Tracing; t != nil {
		p := at.Field("tracing")
		names := make([]string, len(t.Backends))
		for i := range t.Backends {
			names[i] = t.Backends[i].Name
			t.Backends[i].validate(v, p.Field("backends").Index(i))
		}
		checkBackends(v, p, "defaultBackend", t.DefaultBackend, names)
	}
	if l := s.Logging; l != nil {
		p := at.Field("logging")
		names := make([]string, len(l.Backends))
		for i := range l.Backends {
			names[i] = l.Backends[i].Name
			l.Backends[i].validate(v, p.Field("backends").Index(i))
		}
		checkBackends(v, p, "defaultBackend", l.DefaultBackend, names)
	}
}

// checkBackends reports empty and duplicate backend names and a selected
// backend (enabledBackend or defaultBackend, field sel of p) that is not
// defined.
func checkBackends(v *Validator, p Path, sel, selected string, names []string) {
	list := p.Field("backends")
	checkUnique(v, "backend name", names, func(i int) Path { return list.Index(i).Field("name") })
	if selected == "" {
		return
	}
	for _, n := range names {
		if n == selected {
			return
		}
	}
	v.Add(p.Field(sel), "backend %q is not defined in %s", selected, list)
}

func (b *MTLSBackend) validate(v *Validator, p Path) {
	requiredOneOf(v, p.Field("type"), b.Type, MTLSBuiltin, MTLSProvided)
	v.OneOf(p.Field("mode"), b.Mode, true, MTLSModeStrict, MTLSModePermissive)
	if d := b.DPCert; d != nil {
		dp := p.Field("dpCert")
		if d.Rotation != nil {
			checkPositiveDuration(v, dp.Field("rotation").Field("expiration"), d.Rotation.Expiration)
		}
		checkDuration(v, dp.Field("requestTimeout"), d.RequestTimeout)
	}
	cp := p.Field("conf")
	c := b.Conf
	if c == nil {
		c = &MTLSBackendConf{}
	}
	switch b.Type {
	case MTLSBuiltin:
		if c.Cert != nil {
			v.Add(cp.Field("cert"), "must not be set for a builtin backend")
		}
		if c.Key != nil {
			v.Add(cp.Field("key"), "must not be set for a builtin backend")
		}
		if ca := c.CACert; ca != nil {
			if ca.RSABits != 0 && (ca.RSABits < 2048 || ca.RSABits > 8192) {
				v.Add(cp.Field("caCert").Field("RSAbits"), "must be 0 (an ECDSA key) or between 2048 and 8192")
			}
			checkPositiveDuration(v, cp.Field("caCert").Field("expiration"), ca.Expiration)
		}
	case MTLSProvided:
		if c.CACert != nil {
			v.Add(cp.Field("caCert"), "must not be set for a provided backend")
		}
		validateDataSource(v, cp.Field("cert"), c.Cert)
		validateDataSource(v, cp.Field("key"), c.Key)
	}
}

func (b *TracingBackend) validate(v *Validator, p Path) {
	requiredOneOf(v, p.Field("type"), b.Type, TracingZipkin)
	if b.Sampling != nil {
		v.Range(p.Field("sampling"), *b.Sampling, 0, 100)
	}
	if b.Type != TracingZipkin {
		return
	}
	c := b.Conf
	if c == nil {
		c = &ZipkinConf{}
	}
	cp := p.Field("conf")
	if v.Required(cp.Field("url"), c.URL) {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.Add(cp.Field("url"), "must be an absolute http or https URL")
		}
	}
	v.OneOf(cp.Field("apiVersion"), c.APIVersion, true, ZipkinAPIHTTPJSON, ZipkinAPIHTTPProto)
}

func (b *LoggingBackend) validate(v *Validator, p Path) {
	requiredOneOf(v, p.Field("type"), b.Type, LoggingFile, LoggingTCP)
	c := b.Conf
	if c == nil {
		c = &LoggingConf{}
	}
	cp := p.Field("conf")
	switch b.Type {
	case LoggingFile:
		if v.Required(cp.Field("path"), c.Path) && !path.IsAbs(c.Path) {
			v.Add(cp.Field("path"), "must be an absolute path")
		}
		if c.Address != "" {
			v.Add(cp.Field("address"), "must not be set for a file backend")
		}
	case LoggingTCP:
		validateHostPort(v, cp.Field("address"), c.Address)
		if c.Path != "" {
			v.Add(cp.Field("path"), "must not be set for a tcp backend")
		}
	}
}

// MTLSBackend returns the enabled mTLS backend, or nil when mTLS is off.
func (s *MeshSpec) MTLSBackend() *MTLSBackend {
	if s.MTLS == nil || s.MTLS.EnabledBackend == "" {
		return nil
	}
	for i := range s.MTLS.Backends {
		if s.MTLS.Backends[i].Name == s.MTLS.EnabledBackend {
			return &s.MTLS.Backends[i]
		}
	}
	return nil
}

// MTLSEnabled reports whether the Mesh has an enabled mTLS backend.
func (s *MeshSpec) MTLSEnabled() bool { return s.MTLSBackend() != nil }

// MetricsBackend returns the enabled metrics backend, or nil.
func (s *MeshSpec) MetricsBackend() *MetricsBackend {
	if s.Metrics == nil || s.Metrics.EnabledBackend == "" {
		return nil
	}
	for i := range s.Metrics.Backends {
		if s.Metrics.Backends[i].Name == s.Metrics.EnabledBackend {
			return &s.Metrics.Backends[i]
		}
	}
	return nil
}

// TracingBackend returns the named tracing backend (the default one when
// name is empty), or nil.
func (s *MeshSpec) TracingBackend(name string) *TracingBackend {
	if s.Tracing == nil {
		return nil
	}
	if name == "" {
		name = s.Tracing.DefaultBackend
	}
	for i := range s.Tracing.Backends {
		if s.Tracing.Backends[i].Name == name {
			return &s.Tracing.Backends[i]
		}
	}
	return nil
}

// LoggingBackend returns the named logging backend (the default one when
// name is empty), or nil.
func (s *MeshSpec) LoggingBackend(name string) *LoggingBackend {
	if s.Logging == nil {
		return nil
	}
	if name == "" {
		name = s.Logging.DefaultBackend
	}
	for i := range s.Logging.Backends {
		if s.Logging.Backends[i].Name == name {
			return &s.Logging.Backends[i]
		}
	}
	return nil
}

// Passthrough reports whether outbound passthrough is on (the default).
func (s *MeshSpec) Passthrough() bool {
	if s.Networking == nil || s.Networking.Outbound == nil || s.Networking.Outbound.Passthrough == nil {
		return true
	}
	return *s.Networking.Outbound.Passthrough
}
