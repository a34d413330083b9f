package rest

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshfed/meshfed/api"
)

// Media types the API produces. Bodies are JSON unless the Accept header
// prefers YAML.
const (
	mediaJSON = "application/json"
	mediaYAML = "application/yaml"
)

var yamlMediaTypes = map[string]bool{
	"application/yaml": true, "application/x-yaml": true, "text/yaml": true, "text/x-yaml": true,
}

// wantsYAML reports whether the request's Accept header prefers YAML over
// JSON. A missing header, a wildcard, or a tie with an explicitly listed
// JSON type that comes first all mean JSON.
func wantsYAML(r *http.Request) bool {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return false
	}
	bestYAML, bestJSON := -1.0, -1.0
	yamlPos, jsonPos := -1, -1
	jsonExplicit := false
	pos := 0
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			pos++
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil {
					q = f
				}
			}
			switch {
			case yamlMediaTypes[mt]:
				if q > bestYAML {
					bestYAML, yamlPos = q, pos
				}
			case mt == mediaJSON:
				if q > bestJSON || (q == bestJSON && !jsonExplicit) {
					bestJSON, jsonPos, jsonExplicit = q, pos, true
				}
			case mt == "*/*" || mt == "application/*":
				if q > bestJSON {
					bestJSON, jsonPos, jsonExplicit = q, pos, false
				}
			}
		}
	}
	if bestYAML <= 0 {
		return false
	}
	if bestYAML != bestJSON {
		return bestYAML > bestJSON
	}
	// A tie: a wildcard loses to the explicit YAML; explicit types go by order.
	return !jsonExplicit || yamlPos < jsonPos
}

// writeValue answers v (anything encoding/json handles, including
// *api.Resource) as JSON, or as YAML with the same key order when the
// client asks for it.
func writeValue(w http.ResponseWriter, r *http.Request, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "&" in next links readable
	if err := enc.Encode(v); err != nil {
		return err
	}
	data := buf.Bytes()
	ct := mediaJSON
	if wantsYAML(r) {
		var err error
		if data, err = api.JSONToOrderedYAML(data); err != nil {
			return err
		}
		ct = mediaYAML
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
	return nil
}

// etag is the ETag of a stored resource: its quoted revision.
func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// parseBoolParam reads an optional boolean query parameter.
func parseBoolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, badParam(name, "must be true or false, not %q", s)
	}
	return b, nil
}

// readOptions reads ?consistent=true or the X-Meshfed-Consistent header.
func readOptions(r *http.Request) (ReadOptions, error) {
	c, err := parseBoolParam(r, "consistent")
	if err != nil {
		return ReadOptions{}, err
	}
	if h := r.Header.Get("X-Meshfed-Consistent"); h != "" {
		b, err := strconv.ParseBool(h)
		if err != nil {
			return ReadOptions{}, badParam("X-Meshfed-Consistent", "must be true or false, not %q", h)
		}
		c = c || b
	}
	return ReadOptions{Consistent: c}, nil
}

// writeOptions reads the expected revision from If-Match: "N" or
// ?revision=N. Both may be given only if they agree.
func writeOptions(r *http.Request) (WriteOptions, error) {
	var fromHeader, fromQuery uint64
	if h := strings.TrimSpace(r.Header.Get("If-Match")); h != "" {
		s := strings.TrimPrefix(h, "W/")
		n, err := strconv.ParseUint(strings.Trim(s, `"`), 10, 64)
		if err != nil || len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' || n == 0 {
			return WriteOptions{}, badParam("If-Match", `must be one quoted revision such as "42" (the resource's ETag), not %s`, h)
		}
		fromHeader = n
	}
	if q := r.URL.Query().Get("revision"); q != "" {
		n, err := strconv.ParseUint(q, 10, 64)
		if err != nil || n == 0 {
			return WriteOptions{}, badParam("revision", "must be a positive integer, not %q", q)
		}
		fromQuery = n
	}
	if fromHeader != 0 && fromQuery != 0 && fromHeader != fromQuery {
		return WriteOptions{}, badParam("revision", "is %d but If-Match asks for %d", fromQuery, fromHeader)
	}
	return WriteOptions{ExpectRevision: max(fromHeader, fromQuery)}, nil
}
