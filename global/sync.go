package global

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/rest"
	"github.com/meshfed/meshfed/ca"
	"github.com/meshfed/meshfed/global/syncserver"
	"github.com/meshfed/meshfed/sync/syncpb"
	"github.com/meshfed/meshfed/sync/token"
)

// SyncCAFile is the name of the file, in the data dir, holding the sync CA's
// certificate (public): zones verify global's sync port with it
// (meshd zone --global-ca-file).
const SyncCAFile = "sync-ca.crt"

// serveSync runs the sync port once the cluster's secrets exist: gRPC with
// TLS (a serving certificate issued from the replicated sync CA, or the
// configured files), unless SyncInsecure.
func (s *Server) serveSync(ctx context.Context) error {
	st := s.store.State()
	for {
		changed := st.Watch()
		if meta, _ := st.Meta(); meta.HasSecrets() {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
	meta, _ := st.Meta()
	s.writeDataFile(SyncCAFile, strings.TrimSpace(string(meta.SyncCA.CertPEM)))
	creds, err := s.syncCredentials(meta.SyncCA)
	if err != nil {
		return err
	}
	srv, err := syncserver.New(syncserver.Config{
		NodeID: s.cfg.NodeID, Feed: stateFeed{st: st}, Authenticator: s,
		Reports: zoneReports{s: s}, Insights: s.insights, Admit: s.admitZone, Signer: s,
		HeartbeatInterval: s.cfg.SyncHeartbeatInterval, Metrics: s.syncMetrics,
	}, s.logger.With("component", "sync"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.SyncAddr)
	if err != nil {
		return fmt.Errorf("sync-addr: %w", err)
	}
	gs := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(16<<20))
	syncpb.RegisterSyncServiceServer(gs, srv)
	s.syncServer.Store(srv)
	defer s.syncServer.Store(nil)
	s.logger.Info("sync port serving", "sync", ln.Addr().String(), "tls", !s.cfg.SyncInsecure)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(ln) }()
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			gs.Stop()
		}
		return nil
	case err := <-done:
		return fmt.Errorf("sync: %w", err)
	}
}

func (s *Server) syncCredentials(syncCA ca.KeyPair) (credentials.TransportCredentials, error) {
	if s.cfg.SyncInsecure {
		return insecure.NewCredentials(), nil
	}
	var cert tls.Certificate
	var err error
	if s.cfg.SyncCertFile != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.SyncCertFile, s.cfg.SyncKeyFile)
		if err != nil {
			return nil, fmt.Errorf("sync-tls-cert-file: %w", err)
		}
	} else {
		authority, err := ca.Parse(syncCA)
		if err != nil {
			return nil, fmt.Errorf("sync CA: %w", err)
		}
		pair, err := authority.IssueServer(syncHosts(s.cfg.SyncAddr), 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		if cert, err = tls.X509KeyPair(pair.CertPEM, pair.KeyPEM); err != nil {
			return nil, err
		}
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// syncHosts are the names the sync serving certificate covers: the listen
// host (all loopback and local addresses for a wildcard), localhost and the
// host name.
func syncHosts(addr string) []string {
	host, _, _ := net.SplitHostPort(addr)
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					hosts = append(hosts, n.IP.String())
				}
			}
		}
	} else if host != "" {
		hosts = append(hosts, host)
	}
	return hosts
}

// zoneTokenRequest is the body of POST /tokens/zone.
type zoneTokenRequest struct {
	Zone     string `json:"zone"`
	ValidFor string `json:"validFor"`
}

// zoneTokenRevokeRequest is the body of POST /tokens/zone/revoke: the
// token (whose id is revoked) or its id.
type zoneTokenRevokeRequest struct {
	Token  string `json:"token,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// handleZoneToken issues a zone token: POST /tokens/zone
// {"zone": "zone-1", "validFor": "8760h"} → {"token": "...", "id": "...", "expiresAt": ...}.
func (s *Server) handleZoneToken(r *http.Request, body []byte) (any, error) {
	var req zoneTokenRequest
	v := &api.Validator{}
	if err := json.Unmarshal(body, &req); err != nil {
		v.Add("body", "must be JSON {\"zone\": NAME, \"validFor\": DURATION}: %v", err)
		return nil, v.Err()
	}
	api.ValidateName(v, "zone", req.Zone, 63)
	validFor := 365 * 24 * time.Hour
	if req.ValidFor != "" {
		d, err := api.ParseDuration(req.ValidFor)
		if err != nil || d <= 0 {
			v.Add("validFor", "must be a positive duration such as \"24h\" or \"30d\"")
		}
		validFor = d
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	meta, _ := s.store.State().Meta()
	if !meta.HasSecrets() {
		return nil, &api.UnavailableError{Reason: "the cluster's zone-token key does not exist yet", RetryAfter: time.Second}
	}
	tok, claims, err := token.Issue(ed25519.PrivateKey(meta.ZoneTokenKey), meta.ClusterID, req.Zone, validFor, time.Now())
	if err != nil {
		return nil, err
	}
	s.logger.Info("issued a zone token", "zone", req.Zone, "id", claims.ID, "expires", claims.ExpiresAt)
	return map[string]any{"token": tok, "id": claims.ID, "zone": claims.Zone, "expiresAt": claims.ExpiresAt}, nil
}

// handleZoneTokenRevoke revokes a token by writing a ZoneTokenRevocation
// named after its id.
func (s *Server) handleZoneTokenRevoke(r *http.Request, body []byte) (any, error) {
	var req zoneTokenRevokeRequest
	v := &api.Validator{}
	if err := json.Unmarshal(body, &req); err != nil {
		v.Add("body", "must be JSON {\"token\": TOKEN} or {\"id\": ID}: %v", err)
		return nil, v.Err()
	}
	id, zone := req.ID, ""
	if req.Token != "" {
		meta, _ := s.store.State().Meta()
		if !meta.HasSecrets() {
			return nil, &api.UnavailableError{Reason: "the cluster's zone-token key does not exist yet", RetryAfter: time.Second}
		}
		pub := ed25519.PrivateKey(meta.ZoneTokenKey).Public().(ed25519.PublicKey)
		claims, err := token.Verify(req.Token, pub, meta.ClusterID, time.Now())
		if err != nil && !errors.Is(err, token.ErrExpired) {
			v.Add("token", "%v", err)
			return nil, v.Err()
		}
		id, zone = claims.ID, claims.Zone
	}
	if id == "" {
		v.Add("token", "give the token or its id")
		return nil, v.Err()
	}
	res, _ := api.New(api.TypeZoneTokenRevocation, "", id)
	res.Spec = &api.ZoneTokenRevocationSpec{Zone: zone, Reason: req.Reason}
	if err := api.Prepare(res); err != nil {
		return nil, err
	}
	if _, _, err := s.store.Put(r.Context(), res, rest.WriteOptions{}); err != nil {
		return nil, err
	}
	s.logger.Info("revoked a zone token", "id", id, "zone", zone)
	return map[string]any{"revoked": id, "zone": zone}, nil
}
