package ca

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Identities carried in certificates (URI SANs):
//
//	Mesh root         spiffe://<mesh>
//	zone intermediate spiffe://<mesh>/zone/<zone>
//	dataplane leaf    spiffe://<mesh>/<service>   plus kuma://<tag>/<value> per other tag
//
// The mesh is the SPIFFE trust domain. The service and tag values are
// path-escaped (url.PathEscape), so a value holding '/' or '*' stays one
// segment; Kuma-style names (letters, digits, '-', '_', '.') come out
// unchanged, as in Kuma.

// ServiceTag is the tag whose value is the SPIFFE service, not a kuma:// URI.
const ServiceTag = "kuma.io/service"

// checkMesh: a mesh is a SPIFFE trust domain: lowercase letters, digits,
// '.', '-' and '_' (the API's mesh names, RFC 1123 subdomains, all fit).
func checkMesh(mesh string) error {
	if !isName(mesh, false) {
		return fmt.Errorf("%w: mesh %q must be 1 to 253 lowercase letters, digits, '.', '-' or '_'", ErrInvalidName, mesh)
	}
	return nil
}

// checkZone: a zone name is one path segment of the same alphabet.
func checkZone(zone string) error {
	if !isName(zone, false) {
		return fmt.Errorf("%w: zone %q must be 1 to 253 lowercase letters, digits, '.', '-' or '_'", ErrInvalidName, zone)
	}
	return nil
}

func isName(s string, upper bool) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case upper && c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

// checkTagKey: a tag key becomes the host and first path segments of a
// kuma:// URI, so it is letters, digits, '.', '-', '_' and inner '/' (the
// API's label-key alphabet).
func checkTagKey(key string) error {
	ok := key != "" && key[0] != '/' && key[len(key)-1] != '/' && !strings.Contains(key, "//")
	for _, part := range strings.Split(key, "/") {
		ok = ok && isName(part, true)
	}
	if !ok {
		return fmt.Errorf("%w: tag key %q must be letters, digits, '.', '-', '_' and inner '/'", ErrInvalidName, key)
	}
	return nil
}

// SPIFFEID is the identity of a service's dataplanes in a Mesh:
// spiffe://<mesh>/<service>, the service path-escaped.
func SPIFFEID(mesh, service string) string {
	return "spiffe://" + mesh + "/" + url.PathEscape(service)
}

// ParseSPIFFEID is the inverse of SPIFFEID. It accepts only the canonical
// form SPIFFEID produces (one path segment, valid mesh, no query, fragment,
// port or user), so a zone identity spiffe://<mesh>/zone/<zone> is refused.
func ParseSPIFFEID(id string) (mesh, service string, err error) {
	u, err := url.Parse(id)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrNotSPIFFE, id, err)
	}
	if u.Scheme != "spiffe" || u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", "", fmt.Errorf("%w: %q is not of the form spiffe://<mesh>/<service>", ErrNotSPIFFE, id)
	}
	if err := checkMesh(u.Host); err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrNotSPIFFE, id, err)
	}
	seg, ok := strings.CutPrefix(u.EscapedPath(), "/")
	if !ok || seg == "" || strings.Contains(seg, "/") {
		return "", "", fmt.Errorf("%w: %q must have exactly one path segment (the service)", ErrNotSPIFFE, id)
	}
	service, err = url.PathUnescape(seg)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrNotSPIFFE, id, err)
	}
	if SPIFFEID(u.Host, service) != id {
		return "", "", fmt.Errorf("%w: %q is not in canonical form (want %q)", ErrNotSPIFFE, id, SPIFFEID(u.Host, service))
	}
	return u.Host, service, nil
}

// MeshID is the identity of a Mesh root: spiffe://<mesh>.
func MeshID(mesh string) string { return "spiffe://" + mesh }

// ZoneID is the identity of a zone's intermediate CA in a Mesh:
// spiffe://<mesh>/zone/<zone>.
func ZoneID(mesh, zone string) string { return "spiffe://" + mesh + "/zone/" + zone }

// parseZoneID is the inverse of ZoneID; ok is false for anything else.
func parseZoneID(id string) (mesh, zone string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", "", false
	}
	mesh, zone, ok = strings.Cut(rest, "/zone/")
	if !ok || checkMesh(mesh) != nil || checkZone(zone) != nil {
		return "", "", false
	}
	return mesh, zone, true
}

// TagURI is the URI SAN of one dataplane tag: kuma://<key>/<value>, the
// value path-escaped ("kuma://kuma.io/protocol/http", "kuma://version/v1").
func TagURI(key, value string) string {
	return "kuma://" + key + "/" + url.PathEscape(value)
}

// leafURIs returns the URI SANs of a dataplane leaf: the SPIFFE ID first,
// then TagURI for every tag but ServiceTag, sorted by key.
func leafURIs(mesh, service string, tags map[string]string) ([]*url.URL, error) {
	if err := checkMesh(mesh); err != nil {
		return nil, err
	}
	if service == "" {
		return nil, fmt.Errorf("%w: service must not be empty", ErrInvalidName)
	}
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		if k == ServiceTag {
			if v != service {
				return nil, fmt.Errorf("%w: tag %s=%q differs from Service %q", ErrInvalidName, ServiceTag, v, service)
			}
			continue
		}
		if err := checkTagKey(k); err != nil {
			return nil, err
		}
		if v == "" {
			return nil, fmt.Errorf("%w: tag %q has an empty value", ErrInvalidName, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	uris := make([]*url.URL, 0, 1+len(keys))
	u, err := parseURI(SPIFFEID(mesh, service))
	if err != nil {
		return nil, err
	}
	uris = append(uris, u)
	for _, k := range keys {
		u, err := parseURI(TagURI(k, tags[k]))
		if err != nil {
			return nil, err
		}
		uris = append(uris, u)
	}
	return uris, nil
}

// parseURI parses s and checks it encodes back to exactly s (what goes into
// the certificate is u.String()).
func parseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: URI %q: %w", ErrInvalidName, s, err)
	}
	if u.String() != s {
		return nil, fmt.Errorf("%w: URI %q does not round-trip (got %q)", ErrInvalidName, s, u.String())
	}
	return u, nil
}
