package zone

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
)

// ConfigDump is what GET /meshes/{mesh}/dataplanes/{name}/_config answers
// (meshctl inspect dataplane NAME --config): the xDS resources this zone
// replica serves the Dataplane's proxy now. Private keys are redacted.
type ConfigDump struct {
	Dataplane string `json:"dataplane"`
	Zone      string `json:"zone"`
	Replica   string `json:"replica"`
	// Resources by type (the type URL's last part, e.g. "Cluster"), each
	// with its version and its resources in proto JSON, sorted by name.
	Resources map[string]ConfigDumpType `json:"resources"`
}

// ConfigDumpType is one type's resources.
type ConfigDumpType struct {
	Version string            `json:"version"`
	Items   []json.RawMessage `json:"items"`
}

// dataplaneConfig builds the config dump of mesh/name, or an error
// api/rest maps (not found: no such Dataplane, or its proxy is not
// connected to this replica).
func (s *Server) dataplaneConfig(p *parts, mesh, name string) (*ConfigDump, error) {
	if _, ok := p.view.Get(api.Key{Type: api.TypeDataplane, Mesh: mesh, Name: name}); !ok {
		return nil, fmt.Errorf("dataplane %q in mesh %q: %w", name, mesh, api.ErrNotFound)
	}
	res, versions, ok := p.xds.Resources(mesh + "." + name)
	if !ok {
		return nil, fmt.Errorf("dataplane %q in mesh %q has no proxy connected to zone %q replica %q: %w", name, mesh, s.cfg.Zone, s.cfg.ReplicaID, api.ErrNotFound)
	}
	dump := &ConfigDump{Dataplane: mesh + "." + name, Zone: s.cfg.Zone, Replica: s.cfg.ReplicaID, Resources: map[string]ConfigDumpType{}}
	for url, items := range res {
		t := ConfigDumpType{Version: versions[url]}
		type named struct {
			name string
			json json.RawMessage
		}
		var list []named
		for _, r := range items {
			m := redact(r)
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("encoding a %s: %w", url, err)
			}
			list = append(list, named{resourceName(m), b})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		for _, n := range list {
			t.Items = append(t.Items, n.json)
		}
		dump.Resources[url[strings.LastIndex(url, ".")+1:]] = t
	}
	return dump, nil
}

// redact replaces a secret's private key.
func redact(m proto.Message) proto.Message {
	s, ok := m.(*tlsv3.Secret)
	if !ok || s.GetTlsCertificate().GetPrivateKey() == nil {
		return m
	}
	c := proto.Clone(s).(*tlsv3.Secret)
	c.GetTlsCertificate().PrivateKey = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "[redacted]"}}
	return c
}

func resourceName(m proto.Message) string {
	if n, ok := m.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if n, ok := m.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return ""
}

func (s *Server) serveDataplaneConfig(w http.ResponseWriter, r *http.Request, p *parts) error {
	dump, err := s.dataplaneConfig(p, r.PathValue("mesh"), r.PathValue("name"))
	if err != nil {
		return err
	}
	return restWriteValue(w, r, dump)
}

// restWriteValue answers v with status 200 in the API's formats.
func restWriteValue(w http.ResponseWriter, r *http.Request, v any) error {
	return rest.WriteValue(w, r, http.StatusOK, v)
}
