package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
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
	v.Add(p, "must be one of %s", strings.Join(allowed, ", "))
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
	if value != "" && (len(value) > 63 || !labelNameRE.MatchString(value)) {
		v.Add(p, "value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", value)
	}
}
