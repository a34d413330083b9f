package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/meshfed/meshfed/api"
)

// MetadataDataplane is the node metadata key holding the Dataplane
// definition (a JSON object in the Kuma universal format) a proxy presents
// to register itself.
const MetadataDataplane = "dataplane"

// NodeID is the xDS node id of Dataplane name in mesh: "<mesh>.<name>", as
// xds/server parses it (the mesh, a DNS label, has no dot).
func NodeID(mesh, name string) string { return mesh + "." + name }

// Node is the identity both bootstrap formats carry.
type Node struct {
	// Mesh (required) is the Dataplane's Mesh: a DNS label (no dots; the
	// node id is split at its first dot).
	Mesh string
	// Name (required) is the Dataplane's name: an RFC 1123 subdomain of at
	// most 253 characters.
	Name string
	// Zone, when set, is the node's locality zone.
	Zone string
	// Dataplane, when set, is the Dataplane definition as a JSON object
	// (e.g. json.Marshal of an *api.Resource); it is put in the node
	// metadata under MetadataDataplane.
	Dataplane json.RawMessage
}

// validate adds the node's problems to v.
func (n *Node) validate(v *api.Validator) {
	switch {
	case n.Mesh == "":
		v.Add("mesh", "must not be empty")
	case !api.IsDNSLabel(n.Mesh):
		v.Add("mesh", "%q must be a lowercase RFC 1123 label (letters, digits and '-', at most 63 characters, no dots)", n.Mesh)
	}
	api.ValidateName(v, "name", n.Name, 253)
	if n.Zone != "" && !api.IsDNSSubdomain(n.Zone, 63) {
		v.Add("zone", "%q must be a lowercase RFC 1123 subdomain of at most 63 characters", n.Zone)
	}
	if len(n.Dataplane) > 0 {
		checkObject(v, "dataplane", n.Dataplane)
	}
}

// metadata returns the node metadata as JSON fields (nil when there is
// none).
func (n *Node) metadata() map[string]json.RawMessage {
	if len(n.Dataplane) == 0 {
		return nil
	}
	return map[string]json.RawMessage{MetadataDataplane: compact(n.Dataplane)}
}

// checkObject checks that raw is one JSON object.
func checkObject(v *api.Validator, p api.Path, raw json.RawMessage) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		v.Add(p, "must be a JSON object")
	}
}

// compact returns raw without insignificant white space (raw when it is not
// valid JSON; callers checked it).
func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// checkHostPort checks an address "host:port" (host an IP or a DNS name,
// IPv6 in brackets) and returns its parts.
func checkHostPort(v *api.Validator, p api.Path, addr string) (host string, port uint32) {
	if addr == "" {
		v.Add(p, "must not be empty (host:port of the zone's xDS server)")
		return "", 0
	}
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		v.Add(p, "%q must be host:port: %s", addr, err)
		return "", 0
	}
	if !api.IsIPOrHostname(h) {
		v.Add(p, "%q: host %q must be an IP address or a DNS name", addr, h)
	}
	n, err := strconv.ParseUint(ps, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		v.Add(p, "%q: port %q must be between 1 and 65535", addr, ps)
		return h, 0
	}
	return h, uint32(n)
}

// WithDataplane returns bootstrap (either format: both keep the node under
// "node") with node.metadata[MetadataDataplane] set to dataplane, a JSON
// object, replacing any Dataplane already there and keeping the other
// metadata. The result is indented JSON; object keys are sorted.
func WithDataplane(bootstrap []byte, dataplane json.RawMessage) ([]byte, error) {
	v := &api.Validator{}
	checkObject(v, "dataplane", dataplane)
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var top, node, meta map[string]json.RawMessage
	if err := json.Unmarshal(bootstrap, &top); err != nil || top == nil {
		return nil, fmt.Errorf("bootstrap: not a JSON object: %v", err)
	}
	if raw, ok := top["node"]; ok {
		if err := json.Unmarshal(raw, &node); err != nil {
			return nil, fmt.Errorf("bootstrap: node: not a JSON object: %w", err)
		}
	}
	if node == nil {
		node = map[string]json.RawMessage{}
	}
	if raw, ok := node["metadata"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("bootstrap: node.metadata: not a JSON object: %w", err)
		}
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	meta[MetadataDataplane] = compact(dataplane)
	var err error
	if node["metadata"], err = json.Marshal(meta); err != nil {
		return nil, fmt.Errorf("bootstrap: node.metadata: %w", err)
	}
	if top["node"], err = json.Marshal(node); err != nil {
		return nil, fmt.Errorf("bootstrap: node: %w", err)
	}
	return marshalIndent(top)
}

// marshalIndent renders v as two-space indented JSON with a final newline.
func marshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
