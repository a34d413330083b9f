package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/xds/generate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it):\n--- got\n%s", path, got)
	}
}

// testDataplane is a proxyless gRPC Dataplane in the Kuma universal format.
func testDataplane(t *testing.T) json.RawMessage {
	t.Helper()
	r := &api.Resource{
		Meta: api.Meta{Type: api.TypeDataplane, Mesh: "default", Name: "echo-1",
			Labels: map[string]string{generate.LabelProxy: generate.ProxyGRPC}},
		Spec: &api.DataplaneSpec{Networking: api.DataplaneNetworking{
			Address: "10.0.0.1",
			Inbound: []api.DataplaneInbound{{Port: 8080, Tags: map[string]string{api.TagService: "echo", api.TagProtocol: "grpc"}}},
		}},
	}
	if err := api.Prepare(r); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGRPCGolden(t *testing.T) {
	cases := []struct {
		name string
		opts GRPCOptions
	}{
		{"grpc-minimal.json", GRPCOptions{Node: Node{Mesh: "default", Name: "echo-1"}, XDSAddress: "127.0.0.1:5678"}},
		{"grpc-dataplane.json", GRPCOptions{
			Node:       Node{Mesh: "default", Name: "echo-1", Zone: "zone-1", Dataplane: testDataplane(t)},
			XDSAddress: "zone-1.cp.example.com:5678",
			CertificateProviders: map[string]CertificateProvider{"default": {
				PluginName: "file_watcher",
				Config:     json.RawMessage(`{"certificate_file": "/certs/cert.pem", "private_key_file": "/certs/key.pem", "ca_certificate_file": "/certs/ca.pem", "refresh_interval": "600s"}`),
			}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := GRPC(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b)

			// grpc-go's own parser accepts it (the public entry points: the
			// xds resolver and the xDS-enabled server, which also insists on
			// server_listener_resource_name_template).
			if _, err := xds.NewXDSResolverWithConfigForTesting(b); err != nil {
				t.Fatalf("grpc-go resolver refuses the bootstrap: %v", err)
			}
			s, err := xds.NewGRPCServer(xds.BootstrapContentsForTesting(b))
			if err != nil {
				t.Fatalf("grpc-go server refuses the bootstrap: %v", err)
			}
			s.Stop()

			var doc struct {
				Node struct {
					ID       string                     `json:"id"`
					Metadata map[string]json.RawMessage `json:"metadata"`
				} `json:"node"`
				Template string `json:"server_listener_resource_name_template"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Node.ID != "default.echo-1" || doc.Template != generate.GRPCServerListenerTemplate {
				t.Errorf("node id %q, template %q", doc.Node.ID, doc.Template)
			}
			if tc.opts.Dataplane != nil {
				r, err := api.DecodeJSON(doc.Node.Metadata[MetadataDataplane])
				if err != nil || r.Name != "echo-1" || r.Mesh != "default" {
					t.Errorf("metadata dataplane: %v %+v", err, r)
				}
			}
		})
	}
}

func TestEnvoyGolden(t *testing.T) {
	cases := []struct {
		name      string
		opts      EnvoyOptions
		discovery cluster.Cluster_DiscoveryType
	}{
		{"envoy-minimal.json", EnvoyOptions{Node: Node{Mesh: "default", Name: "web-1"}, XDSAddress: "127.0.0.1:5678"}, cluster.Cluster_STATIC},
		{"envoy-dataplane.json", EnvoyOptions{
			Node:       Node{Mesh: "default", Name: "echo-1", Zone: "zone-1", Dataplane: testDataplane(t)},
			XDSAddress: "zone-1.cp.example.com:5678",
			Service:    "echo",
			AdminPort:  19901,
		}, cluster.Cluster_STRICT_DNS},
		{"envoy-ipv6.json", EnvoyOptions{Node: Node{Mesh: "default", Name: "web-1"}, XDSAddress: "[::1]:5678"}, cluster.Cluster_STATIC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Envoy(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, out)

			// The JSON is a valid Bootstrap again once parsed, Anys included.
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(out, &b); err != nil {
				t.Fatalf("protojson: %v", err)
			}
			if err := ValidateEnvoy(&b); err != nil {
				t.Fatalf("ValidateEnvoy: %v", err)
			}
			c := b.GetStaticResources().GetClusters()[0]
			if c.GetName() != XDSCluster || c.GetType() != tc.discovery {
				t.Errorf("xds cluster %q type %v, want %q %v", c.GetName(), c.GetType(), XDSCluster, tc.discovery)
			}
			var po upstreamhttp.HttpProtocolOptions
			if err := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(&po); err != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
				t.Errorf("xds cluster is not HTTP/2: %v %v", err, &po)
			}
			if got := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName(); got != XDSCluster {
				t.Errorf("ADS cluster %q", got)
			}
			if b.GetNode().GetId() != NodeID(tc.opts.Mesh, tc.opts.Name) {
				t.Errorf("node id %q", b.GetNode().GetId())
			}
			if tc.opts.Dataplane != nil {
				dp, err := b.GetNode().GetMetadata().GetFields()[MetadataDataplane].MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				if r, err := api.DecodeJSON(dp); err != nil || r.Name != "echo-1" {
					t.Errorf("metadata dataplane: %v %+v", err, r)
				}
			}
		})
	}
}

// TestValidateEnvoyUnpacksAny: a broken typed config inside an Any is
// caught, though ValidateAll alone passes.
func TestValidateEnvoyUnpacksAny(t *testing.T) {
	b, err := EnvoyProto(EnvoyOptions{Node: Node{Mesh: "default", Name: "web-1"}, XDSAddress: "127.0.0.1:5678"})
	if err != nil {
		t.Fatal(err)
	}
	c := b.StaticResources.Clusters[0]
	bad, err := c.TypedExtensionProtocolOptions[httpProtocolOptionsKey].UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	bad.(*upstreamhttp.HttpProtocolOptions).UpstreamProtocolOptions = nil // required oneof
	if err := c.TypedExtensionProtocolOptions[httpProtocolOptionsKey].MarshalFrom(bad); err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll looks into the Any after all: %v", err)
	}
	if err := ValidateEnvoy(b); err == nil || !strings.Contains(err.Error(), "typed_extension_protocol_options") {
		t.Fatalf("ValidateEnvoy = %v, want an error in typed_extension_protocol_options", err)
	}
}

func TestOptionsErrors(t *testing.T) {
	ok := Node{Mesh: "default", Name: "web-1"}
	cases := []struct {
		name   string
		grpc   *GRPCOptions
		envoy  *EnvoyOptions
		fields []string // every field named in the error
	}{
		{"empty", &GRPCOptions{}, nil, []string{"mesh", "name", "xdsAddress"}},
		{"mesh with a dot", &GRPCOptions{Node: Node{Mesh: "a.b", Name: "x"}, XDSAddress: "h:1"}, nil, []string{"mesh"}},
		{"upper-case name", &GRPCOptions{Node: Node{Mesh: "m", Name: "Web"}, XDSAddress: "h:1"}, nil, []string{"name"}},
		{"name too long", &GRPCOptions{Node: Node{Mesh: "m", Name: strings.Repeat("a", 254)}, XDSAddress: "h:1"}, nil, []string{"name"}},
		{"no port", &GRPCOptions{Node: ok, XDSAddress: "127.0.0.1"}, nil, []string{"xdsAddress"}},
		{"port 0", &GRPCOptions{Node: ok, XDSAddress: "127.0.0.1:0"}, nil, []string{"xdsAddress"}},
		{"port too big", &GRPCOptions{Node: ok, XDSAddress: "127.0.0.1:65536"}, nil, []string{"xdsAddress"}},
		{"bad host", &GRPCOptions{Node: ok, XDSAddress: "bad_host:5678"}, nil, []string{"xdsAddress"}},
		{"dataplane not an object", &GRPCOptions{Node: Node{Mesh: "m", Name: "n", Dataplane: json.RawMessage(`[1]`)}, XDSAddress: "h:1"}, nil, []string{"dataplane"}},
		{"bad zone", &GRPCOptions{Node: Node{Mesh: "m", Name: "n", Zone: "Z!"}, XDSAddress: "h:1"}, nil, []string{"zone"}},
		{"certificate provider", &GRPCOptions{Node: ok, XDSAddress: "h:1",
			CertificateProviders: map[string]CertificateProvider{"default": {Config: json.RawMessage(`"x"`)}}}, nil,
			[]string{`certificateProviders["default"].pluginName`, `certificateProviders["default"].config`}},
		{"envoy admin port", nil, &EnvoyOptions{Node: ok, XDSAddress: "h:1", AdminPort: 70000}, []string{"adminPort"}},
		{"envoy timeout", nil, &EnvoyOptions{Node: ok, XDSAddress: "h:1", ConnectTimeout: -1}, []string{"connectTimeout"}},
		{"envoy service", nil, &EnvoyOptions{Node: ok, XDSAddress: "h:1", Service: "a b"}, []string{"service"}},
		{"envoy empty", nil, &EnvoyOptions{}, []string{"mesh", "name", "xdsAddress"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.grpc != nil {
				_, err = GRPC(*tc.grpc)
			} else {
				_, err = Envoy(*tc.envoy)
			}
			var ve *api.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *api.ValidationError", err)
			}
			got := map[string]bool{}
			for _, fe := range ve.Errors {
				got[string(fe.Field)] = true
			}
			for _, f := range tc.fields {
				if !got[f] {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			if len(got) != len(tc.fields) {
				t.Errorf("error %q names %d fields, want %v", err, len(got), tc.fields)
			}
		})
	}
}

func TestWithDataplane(t *testing.T) {
	dp := testDataplane(t)
	grpcB, err := GRPC(GRPCOptions{Node: Node{Mesh: "default", Name: "echo-1"}, XDSAddress: "127.0.0.1:5678"})
	if err != nil {
		t.Fatal(err)
	}
	envoyB, err := Envoy(EnvoyOptions{Node: Node{Mesh: "default", Name: "echo-1"}, XDSAddress: "127.0.0.1:5678"})
	if err != nil {
		t.Fatal(err)
	}
	withMeta := []byte(`{"node": {"id": "default.echo-1", "metadata": {"other": 1, "dataplane": {"old": true}}}, "x": [1]}`)
	cases := []struct {
		name  string
		in    []byte
		check func(t *testing.T, out []byte)
	}{
		{"grpc", grpcB, func(t *testing.T, out []byte) {
			want, err := GRPC(GRPCOptions{Node: Node{Mesh: "default", Name: "echo-1", Dataplane: dp}, XDSAddress: "127.0.0.1:5678"})
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, out, want) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
			if _, err := xds.NewXDSResolverWithConfigForTesting(out); err != nil {
				t.Errorf("grpc-go: %v", err)
			}
		}},
		{"envoy", envoyB, func(t *testing.T, out []byte) {
			want, err := Envoy(EnvoyOptions{Node: Node{Mesh: "default", Name: "echo-1", Dataplane: dp}, XDSAddress: "127.0.0.1:5678"})
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, out, want) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(out, &b); err != nil {
				t.Fatal(err)
			}
			if err := ValidateEnvoy(&b); err != nil {
				t.Error(err)
			}
		}},
		{"keeps other metadata", withMeta, func(t *testing.T, out []byte) {
			want := []byte(`{"node": {"id": "default.echo-1", "metadata": {"other": 1, "dataplane": ` + string(dp) + `}}, "x": [1]}`)
			if !jsonEqual(t, out, want) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
		}},
		{"no node yet", []byte(`{}`), func(t *testing.T, out []byte) {
			want := []byte(`{"node": {"metadata": {"dataplane": ` + string(dp) + `}}}`)
			if !jsonEqual(t, out, want) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := WithDataplane(tc.in, dp)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, out)
		})
	}
	for _, bad := range []struct{ bootstrap, dataplane string }{
		{`[]`, `{}`}, {`{"node": 1}`, `{}`}, {`{"node": {"metadata": []}}`, `{}`}, {`{}`, `"dp"`}, {`{}`, ``},
	} {
		if _, err := WithDataplane([]byte(bad.bootstrap), json.RawMessage(bad.dataplane)); err == nil {
			t.Errorf("WithDataplane(%s, %s) succeeded", bad.bootstrap, bad.dataplane)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
