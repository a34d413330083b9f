// Package agent is the proxyless gRPC application's side of mTLS
// (`meshd dp grpc-agent`, DESIGN.md §9): grpc-go cannot take certificates
// over SDS, so the agent fetches them for the application and keeps them
// as files, which grpc-go's file_watcher certificate provider reads.
//
// Where it sits in the data flow: the zone issues the proxy's certificate
// (zone/proxies) and serves it, with the Mesh's trust bundle, as two SDS
// secrets of the proxy's node (xds/generate: IdentitySecretName,
// MeshCASecretName). The agent opens an ADS stream as that node, asks for
// the two secrets, and writes DIR/cert.pem (chain), DIR/key.pem and
// DIR/ca.pem — each replaced atomically, the key before the certificate —
// whenever they change (rotation). It also writes DIR/bootstrap.json: the
// application's grpc bootstrap, whose certificate provider
// generate.GRPCCertProvider points at those files, so the application only
// needs GRPC_XDS_BOOTSTRAP=DIR/bootstrap.json.
//
// The agent reconnects with backoff when the zone is away; the files keep
// serving meanwhile (until the certificate expires).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshfed/meshfed/xds/bootstrap"
	"github.com/meshfed/meshfed/xds/generate"
)

// Files the agent writes in Dir.
const (
	CertFile      = "cert.pem"
	KeyFile       = "key.pem"
	CAFile        = "ca.pem"
	BootstrapFile = "bootstrap.json"
)

// UserAgent is the agent's xDS user agent name.
const UserAgent = "meshfed-grpc-agent"

// Config configures an agent.
type Config struct {
	// Mesh and Name (required) are the Dataplane's: the node is
	// "<mesh>.<name>".
	Mesh, Name string
	// ZoneXDS (required) is the zone's xDS address, host:port.
	ZoneXDS string
	// Dir (required) receives the files.
	Dir string
	// Dataplane, when set, is the Dataplane (a JSON object) put in the node
	// metadata of both the agent's stream and the application's bootstrap,
	// so that the proxy registers itself.
	Dataplane json.RawMessage
	// Refresh is how often grpc-go re-reads the files; default 1s.
	Refresh time.Duration
	// Ready, when set, is called once the first certificate is written.
	Ready func()
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Mesh == "" || c.Name == "" {
		errs = append(errs, errors.New("mesh and name: must be set"))
	}
	if _, _, err := net.SplitHostPort(c.ZoneXDS); err != nil {
		errs = append(errs, fmt.Errorf("zone-xds: %q is not host:port: %w", c.ZoneXDS, err))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: must be set"))
	}
	if c.Refresh == 0 {
		c.Refresh = time.Second
	}
	if c.Refresh < 0 {
		errs = append(errs, errors.New("refresh: must not be negative"))
	}
	return errors.Join(errs...)
}

// Agent keeps one proxy's certificate files.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	ready  sync.Once
}

// New checks cfg and writes the bootstrap; it connects nothing (see Run).
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, logger: logger}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dir: %w", err)
	}
	if err := a.writeBootstrap(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) path(name string) string { return filepath.Join(a.cfg.Dir, name) }

// writeBootstrap writes the application's grpc bootstrap.
func (a *Agent) writeBootstrap() error {
	conf, err := json.Marshal(map[string]string{
		"certificate_file":    a.path(CertFile),
		"private_key_file":    a.path(KeyFile),
		"ca_certificate_file": a.path(CAFile),
		// A google.protobuf.Duration in JSON: seconds with an "s".
		"refresh_interval": strconv.FormatFloat(a.cfg.Refresh.Seconds(), 'f', -1, 64) + "s",
	})
	if err != nil {
		return err
	}
	b, err := bootstrap.GRPC(bootstrap.GRPCOptions{
		Node:       bootstrap.Node{Mesh: a.cfg.Mesh, Name: a.cfg.Name, Dataplane: a.cfg.Dataplane},
		XDSAddress: a.cfg.ZoneXDS,
		CertificateProviders: map[string]bootstrap.CertificateProvider{
			generate.GRPCCertProvider: {PluginName: "file_watcher", Config: conf},
		},
	})
	if err != nil {
		return err
	}
	return writeAtomic(a.path(BootstrapFile), b, 0o644)
}

// writeAtomic replaces path with data.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Run keeps the files fresh until ctx ends, reconnecting to the zone with
// backoff.
func (a *Agent) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := a.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.logger.Warn("the stream to the zone ended; reconnecting", "zone_xds", a.cfg.ZoneXDS, "err", err, "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// stream is one ADS stream asking for the proxy's two secrets.
func (a *Agent) stream(ctx context.Context) error {
	cc, err := grpc.NewClient(a.cfg.ZoneXDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		return err
	}
	node := &core.Node{Id: bootstrap.NodeID(a.cfg.Mesh, a.cfg.Name), UserAgentName: UserAgent}
	if len(a.cfg.Dataplane) > 0 {
		var dp structpb.Struct
		if err := dp.UnmarshalJSON(a.cfg.Dataplane); err != nil {
			return fmt.Errorf("dataplane: %w", err)
		}
		node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{bootstrap.MetadataDataplane: structpb.NewStructValue(&dp)}}
	}
	names := []string{generate.IdentitySecretName(a.cfg.Mesh), generate.MeshCASecretName(a.cfg.Mesh)}
	req := &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.SecretType, ResourceNames: names}
	if err := st.Send(req); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the zone ended the stream")
			}
			return err
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names,
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := a.write(resp); err != nil {
			// A NACK: the files keep what they have.
			a.logger.Error("the zone's secrets cannot be written", "err", err)
			ack.VersionInfo = ""
			ack.ErrorDetail = &rpcstatus.Status{Message: err.Error()}
		}
		if err := st.Send(ack); err != nil {
			return err
		}
	}
}

// write stores the secrets of one response (both must be there).
func (a *Agent) write(resp *discovery.DiscoveryResponse) error {
	var identity, bundle *tlsv3.Secret
	for _, any := range resp.GetResources() {
		var s tlsv3.Secret
		if err := any.UnmarshalTo(&s); err != nil {
			return fmt.Errorf("a secret does not decode: %w", err)
		}
		switch s.GetName() {
		case generate.IdentitySecretName(a.cfg.Mesh):
			identity = &s
		case generate.MeshCASecretName(a.cfg.Mesh):
			bundle = &s
		}
	}
	if identity == nil || bundle == nil {
		return nil // not yet both (mTLS off, or still being issued)
	}
	cert := identity.GetTlsCertificate()
	key, chain := cert.GetPrivateKey().GetInlineBytes(), cert.GetCertificateChain().GetInlineBytes()
	ca := bundle.GetValidationContext().GetTrustedCa().GetInlineBytes()
	if len(key) == 0 || len(chain) == 0 || len(ca) == 0 {
		return errors.New("a secret is empty")
	}
	// The key first: grpc-go pairs what it reads, and a new certificate
	// with the old key would be refused; the CA last.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, key, 0o600}, {CertFile, chain, 0o644}, {CAFile, ca, 0o644}} {
		if err := writeAtomic(a.path(f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	a.logger.Info("certificate written", "dir", a.cfg.Dir, "version", resp.GetVersionInfo())
	a.ready.Do(func() {
		if a.cfg.Ready != nil {
			a.cfg.Ready()
		}
	})
	return nil
}
