package api

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Path is a field path in the Kuma body, as users see it:
// "mtls.backends[0].type", "spec.from[1].default.action", "labels[\"team\"]".
type Path string

// Field returns p extended by a field name.
func (p Path) Field(name string) Path {
	if p == "" {
		return Path(name)
	}
	return p + "." + Path(name)
}

// Index returns p extended by a list index.
func (p Path) Index(i int) Path { return p + Path("["+strconv.Itoa(i)+"]") }

// Key returns p extended by a map key.
func (p Path) Key(k string) Path { return p + Path("["+strconv.Quote(k)+"]") }

// FieldError is one validation problem.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every problem found in one resource (or request).
// The HTTP API answers it with 400 and the list as JSON.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		if fe.Field != "" {
			b.WriteString(fe.Field)
			b.WriteString(": ")
		}
		b.WriteString(fe.Message)
	}
	return b.String()
}

// Validator collects field errors; a Spec's Validate method reports to it.
type Validator struct {
	errs []FieldError
}

// Add records a problem at p.
func (v *Validator) Add(p Path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: string(p), Message: fmt.Sprintf(format, args...)})
}

// Required records "must not be empty" at p when s is empty and reports
// whether s was present.
func (v *Validator) Required(p Path, s string) bool {
	if s == "" {
		v.Add(p, "must not be empty")
		return false
	}
	return true
}

// OneOf records a problem at p unless s is one of allowed. An empty s is
// accepted only when allowEmpty.
func (v *Validator) OneOf(p Path, s string, allowEmpty bool, allowed ...string) {
	if s == "" && allowEmpty {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.Add(p, "%s", mustBeOneOf(allowed))
}

// mustBeOneOf is the message for a value outside allowed.
func mustBeOneOf(allowed []string) string {
	if len(allowed) == 1 {
		return "must be " + allowed[0]
	}
	return "must be one of " + strings.Join(allowed, ", ")
}

// Range records a problem at p unless lo <= n <= hi.
func (v *Validator) Range(p Path, n, lo, hi float64) {
	if n < lo || n > hi {
		v.Add(p, "must be between %v and %v", lo, hi)
	}
}

// Port records a problem at p unless 1 <= port <= 65535.
func (v *Validator) Port(p Path, port uint32) {
	if port < 1 || port > 65535 {
		v.Add(p, "must be a port between 1 and 65535")
	}
}

// OK reports whether no problem has been recorded.
func (v *Validator) OK() bool { return len(v.errs) == 0 }

// Err returns a *ValidationError with every recorded problem, or nil.
func (v *Validator) Err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: append([]FieldError(nil), v.errs...)}
}

var (
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// IsDNSSubdomain reports whether s is an RFC 1123 subdomain of at most max
// characters: dot-separated lowercase labels of letters, digits and '-'.
func IsDNSSubdomain(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) > 63 || !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidateName checks a resource or mesh name: an RFC 1123 subdomain of at
// most max characters.
func ValidateName(v *Validator, p Path, name string, max int) {
	switch {
	case name == "":
		v.Add(p, "must not be empty")
	case len(name) > max:
		v.Add(p, "must be at most %d characters", max)
	case !IsDNSSubdomain(name, max):
		v.Add(p, "must be a lowercase RFC 1123 subdomain (letters, digits, '-' and '.', starting and ending with a letter or digit)")
	}
}

// ValidateLabel checks one label (or tag) key and value: the key is an
// optional DNS-subdomain prefix and '/', then a name of at most 63
// characters; the value is at most 63 characters of the same alphabet, or
// empty.
func ValidateLabel(v *Validator, p Path, key, value string) {
	validateLabelKey(v, p, key)
	if value != "" && (len(value) > 63 || !labelNameRE.MatchString(value)) {
		v.Add(p, "value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", value)
	}
}

func validateLabelKey(v *Validator, p Path, key string) {
	name := key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		prefix := key[:i]
		name = key[i+1:]
		if !IsDNSSubdomain(prefix, 253) {
			v.Add(p, "key prefix %q must be a DNS subdomain", prefix)
		}
	}
	if name == "" || len(name) > 63 || !labelNameRE.MatchString(name) {
		v.Add(p, "key %q must be a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", key)
	}
}

// Well-known tags.
const (
	// TagService names the service a dataplane inbound belongs to.
	TagService = "kuma.io/service"
	// TagProtocol is the protocol of an inbound: http, http2, grpc, tcp or kafka.
	TagProtocol = "kuma.io/protocol"
	// TagZone is the zone a resource comes from; global pins it on what a
	// zone reports.
	TagZone = "kuma.io/zone"
)

// IsTagValue reports whether s is a valid tag value: 1 to 253 printable
// characters, none of them a space. Tag values are freer than label values:
// Kuma's service names ("backend_kuma-demo_svc_8080"), ports ("http/8080")
// and the selector wildcard "*" are all tag values.
func IsTagValue(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// ValidateTag checks one tag of a Dataplane, selector or targetRef: the key
// follows the label key rules (see ValidateLabel), the value IsTagValue. p
// is the path of the tag itself (tags["version"]).
func ValidateTag(v *Validator, p Path, key, value string) {
	validateLabelKey(v, p, key)
	switch {
	case value == "":
		v.Add(p, "value must not be empty")
	case !IsTagValue(value):
		v.Add(p, "value %q must be at most 253 printable characters without spaces", value)
	}
}

// ValidateTags checks every tag of a map (in key order), reporting each at
// p.Key(key).
func ValidateTags(v *Validator, p Path, tags map[string]string) {
	for _, k := range sortedKeys(tags) {
		ValidateTag(v, p.Key(k), k, tags[k])
	}
}

// requireServiceTag reports a missing or empty kuma.io/service tag. An empty
// value is left to ValidateTags, which reports it at the tag's own path.
func requireServiceTag(v *Validator, p Path, tags map[string]string) {
	if _, ok := tags[TagService]; !ok {
		v.Add(p, "must contain the %q tag", TagService)
	}
}

var hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$`)

// IsHostname reports whether s is a DNS host name: at most 253 characters
// of dot-separated labels (letters, digits and '-', at most 63 each), the
// last of which is not all digits (so "10.0.0.300" is neither an IP nor a
// host name).
func IsHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) > 63 || !hostLabelRE.MatchString(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// IsDNSLabel reports whether s is one lowercase RFC 1123 label of at most 63
// characters.
func IsDNSLabel(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

// IsIP reports whether s is an IPv4 or IPv6 address.
func IsIP(s string) bool { return net.ParseIP(s) != nil }

// IsIPOrHostname reports whether s is an IP address or a DNS host name.
func IsIPOrHostname(s string) bool { return IsIP(s) || IsHostname(s) }

// validateAddress reports a required IP-or-hostname address.
func validateAddress(v *Validator, p Path, s string, required bool) {
	switch {
	case s == "":
		if required {
			v.Add(p, "must not be empty")
		}
	case !IsIPOrHostname(s):
		v.Add(p, "must be an IP address or a DNS name, not %q", s)
	}
}

// validateHostPort reports a required "host:port" address.
func validateHostPort(v *Validator, p Path, s string) {
	if s == "" {
		v.Add(p, "must not be empty")
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || !IsIPOrHostname(host) {
		v.Add(p, "must be host:port, not %q", s)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 32); err != nil || n < 1 || n > 65535 {
		v.Add(p, "port must be between 1 and 65535, not %q", port)
	}
}

// checkDuration reports an unparseable or negative optional duration.
func checkDuration(v *Validator, p Path, d *Duration) {
	if d != nil {
		d.Check(v, p)
	}
}

// checkPositiveDuration reports an optional duration that is unparseable,
// negative or zero.
func checkPositiveDuration(v *Validator, p Path, d *Duration) {
	if d == nil {
		return
	}
	if d.bad == "" && d.Duration == 0 {
		v.Add(p, "must be greater than zero")
		return
	}
	d.Check(v, p)
}

// requiredOneOf reports s unless it is one of allowed; an empty s is
// reported as "must not be empty".
func requiredOneOf(v *Validator, p Path, s string, allowed ...string) bool {
	if !v.Required(p, s) {
		return false
	}
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	v.Add(p, "%s", mustBeOneOf(allowed))
	return false
}

// checkUnique reports at path(i) every name that repeats an earlier one
// ("duplicate <what> "x""), and "must not be empty" for empty names.
func checkUnique(v *Validator, what string, names []string, path func(i int) Path) {
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case n == "":
			v.Add(path(i), "must not be empty")
		case seen[n]:
			v.Add(path(i), "duplicate %s %q", what, n)
		}
		seen[n] = true
	}
}
