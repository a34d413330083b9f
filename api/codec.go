package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// Envelope keys of the Kuma universal format.
var envelopeKeys = map[string]bool{
	"type": true, "mesh": true, "name": true, "labels": true,
	"creationTime": true, "modificationTime": true,
}

// MarshalJSON encodes a resource in Kuma's universal format: the envelope
// first, then the Spec's fields inline (classic types) or under "spec".
func (r *Resource) MarshalJSON() ([]byte, error) {
	d, err := Lookup(r.Type)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	writeJSON(&b, r.Type)
	if r.Mesh != "" {
		b.WriteString(`,"mesh":`)
		writeJSON(&b, r.Mesh)
	}
	b.WriteString(`,"name":`)
	writeJSON(&b, r.Name)
	if !r.CreationTime.IsZero() {
		b.WriteString(`,"creationTime":`)
		writeJSON(&b, r.CreationTime.UTC())
	}
	if !r.ModificationTime.IsZero() {
		b.WriteString(`,"modificationTime":`)
		writeJSON(&b, r.ModificationTime.UTC())
	}
	if len(r.Labels) > 0 {
		b.WriteString(`,"labels":`)
		writeJSON(&b, r.Labels) // encoding/json sorts map keys
	}
	spec := r.Spec
	if spec == nil {
		spec = d.New()
	}
	body, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	if d.Inline {
		body = bytes.TrimSpace(body)
		if len(body) < 2 || body[0] != '{' {
			return nil, fmt.Errorf("encode %s: spec is not a JSON object", r.Key())
		}
		if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) > 0 {
			b.WriteByte(',')
			b.Write(inner)
		}
	} else {
		b.WriteString(`,"spec":`)
		b.Write(body)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) {
	data, _ := json.Marshal(v) // strings, times and string maps always encode
	b.Write(data)
}

// DecodeJSON decodes one resource from its Kuma JSON body. Unknown fields and
// values of the wrong JSON type are reported as field errors. creationTime and
// modificationTime in the input are kept (stores overwrite them on write).
// Defaults are not applied and nothing is validated: see Prepare.
func DecodeJSON(data []byte) (*Resource, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, &ValidationError{Errors: []FieldError{{Message: "a resource must be a mapping of fields (type, name, ...), not " + describeJSONValue(data)}}}
	}
	v := &Validator{}
	var typ string
	if t, ok := raw["type"]; !ok {
		v.Add("type", "must not be empty")
		return nil, v.Err()
	} else if err := json.Unmarshal(t, &typ); err != nil {
		v.Add("type", "must be a string")
		return nil, v.Err()
	}
	d, err := Lookup(typ)
	if err != nil {
		v.Add("type", "%s", err)
		return nil, v.Err()
	}
	r := &Resource{Meta: Meta{Type: d.Name}}
	decodeField(v, raw, "mesh", &r.Mesh)
	decodeField(v, raw, "name", &r.Name)
	decodeField(v, raw, "labels", &r.Labels)
	decodeField(v, raw, "creationTime", &r.CreationTime)
	decodeField(v, raw, "modificationTime", &r.ModificationTime)

	spec := d.New()
	var body []byte
	var root Path
	if d.Inline {
		rest := map[string]json.RawMessage{}
		for k, val := range raw {
			if !envelopeKeys[k] {
				rest[k] = val
			}
		}
		body, _ = json.Marshal(rest)
	} else {
		root = "spec"
		for k := range raw {
			if !envelopeKeys[k] && k != "spec" {
				v.Add(Path(k), "unknown field: %s fields belong under spec", d.Name)
			}
		}
		body = raw["spec"]
		if len(body) == 0 || string(body) == "null" {
			body = []byte("{}")
		}
	}
	// encoding/json reports only the first problem, without list indices
	// (and unknown fields without any path), so check the shape of the
	// whole body against the Spec type first, then decode.
	before := len(v.errs)
	var generic any
	gen := json.NewDecoder(bytes.NewReader(body))
	gen.UseNumber()
	if err := gen.Decode(&generic); err == nil {
		checkShape(v, root, generic, reflect.TypeOf(spec))
	}
	if len(v.errs) == before {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(spec); err != nil {
			addDecodeError(v, root, err)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	r.Spec = spec
	return r, nil
}

// describeJSONValue names the kind of a JSON value that should have been an
// object: "a string", "a list", "malformed JSON (...)".
func describeJSONValue(data []byte) string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return "malformed JSON (" + jsonErrText(err) + ")"
	}
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case nil:
		return "null"
	}
	return "that value"
}

func decodeField(v *Validator, raw map[string]json.RawMessage, key string, into any) {
	val, ok := raw[key]
	if !ok || string(val) == "null" {
		return
	}
	if err := json.Unmarshal(val, into); err != nil {
		v.Add(Path(key), "invalid value: %s", jsonErrText(err))
	}
}

// addDecodeError turns an encoding/json error into a field error.
func addDecodeError(v *Validator, root Path, err error) {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		p := root
		if te.Field != "" {
			p = root.Field(te.Field)
		}
		v.Add(p, "must be a %s, not a JSON %s", goTypeName(te.Type.String()), te.Value)
	case errors.As(err, &se):
		v.Add(root, "malformed JSON: %s", se)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		v.Add(root.Field(name), "unknown field")
	default:
		v.Add(root, "%s", jsonErrText(err))
	}
}

func jsonErrText(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "api."), strings.HasPrefix(t, "struct"):
		return "object"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "integer"
	case strings.HasPrefix(t, "float"):
		return "number"
	case t == "bool":
		return "boolean"
	}
	return t
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkShape reports every value in val (a JSON document decoded into any
// with UseNumber) that does not fit the Go type t: object keys that name no
// field ("unknown field") and values of the wrong JSON type, each at its full
// path (list indices and map keys included). Keys must match the JSON field
// names exactly; encoding/json's case-insensitive matching is not accepted.
// null fits every type. Types that decode themselves (Duration) are left to
// their UnmarshalJSON.
func checkShape(v *Validator, p Path, val any, t reflect.Type) {
	if val == nil {
		return
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(v, p, val, t.Elem())
	case reflect.Interface:
		// anything goes
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			shapeMismatch(v, p, "an object", val)
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			ft, ok := fields[k]
			if !ok {
				v.Add(p.Field(k), "unknown field")
				continue
			}
			checkShape(v, p.Field(k), m[k], ft)
		}
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok {
			shapeMismatch(v, p, "an object", val)
			return
		}
		if t.Key().Kind() != reflect.String {
			return
		}
		for _, k := range sortedKeys(m) {
			checkShape(v, p.Key(k), m[k], t.Elem())
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if _, ok := val.(string); !ok {
				shapeMismatch(v, p, "a base64 string", val)
			}
			return
		}
		l, ok := val.([]any)
		if !ok {
			shapeMismatch(v, p, "a list", val)
			return
		}
		for i, e := range l {
			checkShape(v, p.Index(i), e, t.Elem())
		}
	case reflect.String:
		if _, ok := val.(string); !ok {
			shapeMismatch(v, p, "a string", val)
		}
	case reflect.Bool:
		if _, ok := val.(bool); !ok {
			shapeMismatch(v, p, "a boolean", val)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := val.(json.Number)
		if !ok {
			shapeMismatch(v, p, "an integer", val)
		} else if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			v.Add(p, "must be an integer between %d and %d, not %s", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1, n)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, ok := val.(json.Number)
		if !ok {
			shapeMismatch(v, p, "an integer", val)
		} else if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			v.Add(p, "must be an integer between 0 and %d, not %s", uint64(math.MaxUint64)>>(64-t.Bits()), n)
		}
	case reflect.Float32, reflect.Float64:
		n, ok := val.(json.Number)
		if !ok {
			shapeMismatch(v, p, "a number", val)
		} else if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			v.Add(p, "must be a number, not %s", n)
		}
	}
}

func shapeMismatch(v *Validator, p Path, want string, got any) {
	hint := ""
	switch got.(type) {
	case json.Number, bool:
		if want == "a string" {
			hint = " (quote the value in YAML)"
		}
	}
	v.Add(p, "must be %s, not a JSON %s%s", want, jsonKind(got), hint)
}

func jsonKind(val any) string {
	switch val.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	}
	return "null"
}

// jsonFields maps the JSON names of a struct type's fields to their types,
// following encoding/json's rules for tags and untagged embedded structs.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, sub := range jsonFields(ft) {
					if _, taken := out[k]; !taken {
						out[k] = sub
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// Decode decodes one resource from YAML or JSON (JSON is YAML).
func Decode(data []byte) (*Resource, error) {
	// JSON input skips the YAML parser: it is half the cost of a write.
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return DecodeJSON(t)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, &ValidationError{Errors: []FieldError{{Message: "malformed YAML: " + err.Error()}}}
	}
	return DecodeJSON(j)
}

// DocumentError is a problem in one document of a multi-document input.
type DocumentError struct {
	Index int // 0-based document index
	Err   error
}

func (e *DocumentError) Error() string { return fmt.Sprintf("document %d: %s", e.Index+1, e.Err) }
func (e *DocumentError) Unwrap() error { return e.Err }

// DecodeAll decodes every document of a multi-document YAML (or a single
// JSON) input. Empty documents are skipped. It stops at nothing: the result
// holds every document that decoded, and the error joins one DocumentError
// per document that did not.
func DecodeAll(r io.Reader) ([]*Resource, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out []*Resource
	var errs []error
	for i, doc := range splitYAMLDocuments(data) {
		if len(bytes.TrimSpace(stripYAMLComments(doc))) == 0 {
			continue
		}
		res, err := Decode(doc)
		if err != nil {
			errs = append(errs, &DocumentError{Index: i, Err: err})
			continue
		}
		out = append(out, res)
	}
	return out, errors.Join(errs...)
}

// splitYAMLDocuments splits on lines that are exactly "---" (optionally
// followed by spaces or a comment).
func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- #")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

func stripYAMLComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// MarshalYAML encodes a resource as YAML with the same key order as its JSON.
func MarshalYAML(r *Resource) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return JSONToOrderedYAML(j)
}

// JSONToOrderedYAML converts JSON to YAML keeping the order of object keys
// (sigs.k8s.io/yaml sorts them, which buries "type" and "name").
func JSONToOrderedYAML(j []byte) ([]byte, error) {
	var ms yamlv2.MapSlice
	if err := yamlv2.Unmarshal(j, &ms); err != nil {
		var anyv any
		if err2 := yamlv2.Unmarshal(j, &anyv); err2 != nil {
			return nil, err
		}
		return yamlv2.Marshal(anyv)
	}
	return yamlv2.Marshal(ms)
}

// Duration is a time.Duration written as Go duration text ("24h", "1m30s",
// "250ms") in JSON and YAML, as Kuma writes them. A value that does not parse
// is kept, not refused, so that validation can report it with its field path
// next to every other problem: call Check from the Spec's Validate.
type Duration struct {
	time.Duration
	bad string // the unparseable input, if any
}

// Dur is shorthand for building a Duration.
func Dur(d time.Duration) Duration { return Duration{Duration: d} }

func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes the duration text; an unparseable input is written back
// as it came, so that a resource relayed by a client (meshctl → API) keeps
// the problem for the server to report.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.bad != "" {
		return []byte(d.bad), nil
	}
	return json.Marshal(d.String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		*d = Duration{bad: string(b)}
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		*d = Duration{bad: string(b)}
		return nil
	}
	*d = Duration{Duration: v}
	return nil
}

// ParseDuration parses Go duration text ("1h30m", "250ms") and, as Kuma
// does, a whole number of days or years ("1d", "10y"; a year is 365 days).
func ParseDuration(s string) (time.Duration, error) {
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'y') {
		count, err := strconv.ParseUint(s[:n-1], 10, 32)
		if err == nil {
			unit := 24 * time.Hour
			if s[n-1] == 'y' {
				unit *= 365
			}
			return time.Duration(count) * unit, nil
		}
	}
	return time.ParseDuration(s)
}

// Check reports an unparseable or negative duration at p.
func (d Duration) Check(v *Validator, p Path) {
	switch {
	case d.bad != "":
		v.Add(p, "must be a duration such as \"10s\" or \"24h\", not %s", d.bad)
	case d.Duration < 0:
		v.Add(p, "must not be negative")
	}
}

// sortedKeys returns m's keys in order (for deterministic output).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
