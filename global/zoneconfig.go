package global

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/syncserver"
)

// GET /meshes/{mesh}/dataplanes/{name}/_config on global: the config dump
// of a zone's Dataplane (the xDS its proxy is served), asked of the zone.
// Global never dials zones, so the question travels on the zone's sync
// stream (syncserver.RequestConfig); only the node serving that stream can
// ask it, and another node forwards the question to that node
// (POST /_internal/zones/config). The zone's JSON is answered as it is.
//
// The Dataplane is named on global as "<zone>.<name>" (zoneResourceName);
// the zone knows it by its kuma.io/display-name. When the Dataplane's
// insight shows the zone replica serving its proxy, that replica is asked
// (another one has no config for it).

// configTimeout bounds the wait for a zone's answer (a forwarded request
// waits a little longer than the node it is forwarded to).
const configTimeout = 8 * time.Second

// zoneConfigRequest is the body of POST /_internal/zones/config.
type zoneConfigRequest struct {
	Zone    string `json:"zone"`
	Replica string `json:"replica,omitempty"`
	Mesh    string `json:"mesh"`
	Name    string `json:"name"`
}

// zoneConfigAnswer is its answer: the zone's JSON, or the zone's refusal,
// or NoSession when the node serves no stream of the zone (any more).
type zoneConfigAnswer struct {
	JSON      json.RawMessage `json:"json,omitempty"`
	Error     string          `json:"error,omitempty"`
	NoSession bool            `json:"noSession,omitempty"`
}

// zoneConfigError is a zone's refusal: 404 with the zone's message.
type zoneConfigError struct{ msg string }

func (e *zoneConfigError) Error() string { return e.msg }
func (e *zoneConfigError) Unwrap() error { return api.ErrNotFound }

func (s *Server) handleDataplaneConfig(w http.ResponseWriter, r *http.Request) error {
	mesh, name := r.PathValue("mesh"), r.PathValue("name")
	st := s.store.State()
	dp, ok := st.Get(api.Key{Type: api.TypeDataplane, Mesh: mesh, Name: name})
	if !ok {
		return fmt.Errorf("dataplane %q in mesh %q (on global a zone's Dataplane is named ZONE.NAME): %w", name, mesh, api.ErrNotFound)
	}
	zone := dp.Labels[api.LabelZone]
	if zone == "" {
		return fmt.Errorf("dataplane %q in mesh %q has no %s label: no zone to ask for its config: %w", name, mesh, api.LabelZone, api.ErrNotFound)
	}
	local := dp.Labels[api.LabelDisplayName]
	if local == "" {
		local = strings.TrimPrefix(name, zone+".")
	}
	replica := ""
	if ins, ok := st.Get(api.Key{Type: api.TypeDataplaneInsight, Mesh: mesh, Name: name}); ok {
		replica = liveReplica(ins)
	}
	ctx, cancel := context.WithTimeout(r.Context(), configTimeout+2*time.Second)
	defer cancel()
	body, err := s.zoneConfig(ctx, zone, replica, mesh, local)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
	return nil
}

// liveReplica is the zone replica serving the newest live xDS stream of a
// DataplaneInsight's proxy ("" when none is live).
func liveReplica(ins *api.Resource) string {
	spec, ok := ins.Spec.(*api.DataplaneInsightSpec)
	if !ok {
		return ""
	}
	var best *api.DiscoverySubscription
	for i, sub := range spec.Subscriptions {
		if sub.DisconnectTime == nil && (best == nil || !sub.ConnectTime.Before(best.ConnectTime)) {
			best = &spec.Subscriptions[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.ControlPlaneInstanceID
}

// zoneConfig asks zone (its replica, or any when "" or not live) for the
// config dump of mesh/name: through this node's stream of it, else through
// the node serving one.
func (s *Server) zoneConfig(ctx context.Context, zone, replica, mesh, name string) ([]byte, error) {
	z, ok := s.store.State().Get(api.Key{Type: api.TypeZone, Name: zone})
	if !ok {
		return nil, &api.UnavailableError{Reason: fmt.Sprintf("zone %q is not known to global: it has never connected", zone), RetryAfter: time.Second}
	}
	zs := s.zoneState(z, time.Now())
	// The nodes that can ask: the one serving the replica's stream, or
	// those serving any of the zone's.
	nodes := zs.status.GlobalNodes
	if replica != "" {
		nodes = nil
		for _, rs := range zs.status.ReplicaStatus {
			if rs.ReplicaID == replica {
				nodes = []string{rs.GlobalNode}
			}
		}
		if nodes == nil { // not live: another replica answers better than none
			replica, nodes = "", zs.status.GlobalNodes
		}
	}
	ans, err := s.localZoneConfig(ctx, zoneConfigRequest{Zone: zone, Replica: replica, Mesh: mesh, Name: name})
	if err != nil {
		return nil, err
	}
	if !ans.NoSession {
		return ans.result(zone)
	}
	if !zs.status.Online {
		return nil, &api.UnavailableError{Reason: fmt.Sprintf("zone %q is offline (%s): global can only ask a connected zone for a config dump",
			zone, zs.status.OfflineReason), RetryAfter: 5 * time.Second}
	}
	tried := []string{s.cfg.NodeID}
	for _, node := range nodes {
		if node == s.cfg.NodeID {
			continue // asked above: its stream has just ended
		}
		body, _ := json.Marshal(zoneConfigRequest{Zone: zone, Replica: replica, Mesh: mesh, Name: name})
		var peer zoneConfigAnswer
		if err := s.callPeer(ctx, http.MethodPost, node, "/_internal/zones/config", body, &peer); err != nil {
			return nil, err
		}
		if !peer.NoSession {
			return peer.result(zone)
		}
		tried = append(tried, node)
	}
	return nil, &api.UnavailableError{Reason: fmt.Sprintf("no global node serves a stream of zone %q right now (asked %s): it may be reconnecting; retry",
		zone, strings.Join(tried, ", ")), RetryAfter: time.Second}
}

// result is the zone's JSON, or its refusal as a 404.
func (a zoneConfigAnswer) result(zone string) ([]byte, error) {
	if a.Error != "" {
		return nil, &zoneConfigError{msg: a.Error}
	}
	if len(a.JSON) == 0 {
		return nil, fmt.Errorf("zone %q answered an empty config dump", zone)
	}
	return a.JSON, nil
}

// localZoneConfig asks the zone over this node's stream of it. A zone's
// refusal is an answer (Error), and so is having no stream (NoSession);
// an error is anything else (no answer in time, the stream ended).
func (s *Server) localZoneConfig(ctx context.Context, req zoneConfigRequest) (zoneConfigAnswer, error) {
	srv := s.syncServer.Load()
	if srv == nil {
		return zoneConfigAnswer{NoSession: true}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	b, err := srv.RequestConfigFrom(ctx, req.Zone, req.Replica, req.Mesh, req.Name)
	var ze *syncserver.ZoneError
	switch {
	case err == nil:
		return zoneConfigAnswer{JSON: b}, nil
	case errors.As(err, &ze):
		return zoneConfigAnswer{Error: ze.Error()}, nil
	case errors.Is(err, syncserver.ErrNoSession):
		return zoneConfigAnswer{NoSession: true}, nil
	case errors.Is(err, syncserver.ErrSessionEnded):
		return zoneConfigAnswer{}, &api.UnavailableError{Reason: err.Error() + "; retry", RetryAfter: time.Second}
	case errors.Is(err, context.DeadlineExceeded):
		return zoneConfigAnswer{}, &api.UnavailableError{Reason: fmt.Sprintf("zone %q did not answer within %s: %v", req.Zone, configTimeout, err), RetryAfter: time.Second}
	default:
		return zoneConfigAnswer{}, err
	}
}

// handleZoneConfig answers POST /_internal/zones/config from this node's
// streams only (never forwarding again).
func (s *Server) handleZoneConfig(r *http.Request, body []byte) (any, error) {
	var req zoneConfigRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Zone == "" || req.Mesh == "" || req.Name == "" {
		return nil, &api.ValidationError{Errors: []api.FieldError{{Field: "body", Message: "must be JSON {\"zone\", \"mesh\", \"name\"[, \"replica\"]}"}}}
	}
	return s.localZoneConfig(r.Context(), req)
}
