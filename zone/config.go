package zone

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/zone/syncclient"
)

// Default addresses.
const (
	// DefaultAPIAddr is the zone API's listen address (Kuma's port, on
	// loopback: the zone API needs no token).
	DefaultAPIAddr = "127.0.0.1:5681"
	// DefaultXDSAddr is the xDS server's listen address (Kuma's port).
	DefaultXDSAddr = "127.0.0.1:5678"
)

// DefaultTombstoneTTL is how long the inventory remembers a deletion.
const DefaultTombstoneTTL = 7 * 24 * time.Hour

// Files in DataDir.
const (
	// ReplicaFile holds the zone's replica of global's state.
	ReplicaFile = "replica.db"
	// InventoryFile holds the zone's own resources and its report outbox.
	InventoryFile = "inventory.db"
	// CADir holds the zone's intermediate CAs, one file per mTLS Mesh.
	CADir = "ca"
)

// Config configures one zone control-plane replica.
type Config struct {
	// Zone (required) is the zone's name: a DNS label of at most 63
	// characters, as in the zone token.
	Zone string
	// ReplicaID names this replica of the zone control plane (a zone may
	// run several); global shows it in the zone's insight. Default: the
	// host name.
	ReplicaID string
	// GlobalAddrs (required) are global nodes' sync addresses (host:port).
	// The zone dials one and moves to the next after a failure.
	GlobalAddrs []string
	// TokenFile (required) holds the zone token (meshctl generate
	// zone-token). It is read again at every connection attempt, so a
	// replaced token is picked up without a restart.
	TokenFile string
	// GlobalCAFile is the PEM certificate of the CA that signed global's
	// sync certificate (global's DATA_DIR/sync-ca.crt by default). Required
	// unless Insecure.
	GlobalCAFile string
	// Insecure syncs with global over plaintext gRPC (global started with
	// --sync-insecure). Only when set explicitly; never together with
	// GlobalCAFile.
	Insecure bool
	// DataDir (required) holds replica.db and inventory.db.
	DataDir string
	// APIAddr is the HTTP API's listen address; default DefaultAPIAddr.
	APIAddr string
	// XDSAddr is the xDS server's listen address (gRPC ADS, DESIGN.md §8);
	// default DefaultXDSAddr. Proxies dial it, and the bootstraps the zone
	// generates point at it.
	XDSAddr string
	// XDSAdvertiseAddr is the xDS address proxies dial, put in the
	// bootstraps the zone generates; default the address XDSAddr listens
	// on (set it when XDSAddr is 0.0.0.0 or behind NAT).
	XDSAdvertiseAddr string
	// DataplaneGracePeriod is how long a Dataplane its proxy registered
	// itself outlives the proxy's last stream; default 30s.
	DataplaneGracePeriod time.Duration
	// GossipAddr, when set, runs this replica in a pool with the zone's
	// other replicas (DESIGN.md §7, zone/peers): host:port for memberlist
	// (UDP and TCP). Empty: a zone of one replica.
	GossipAddr string
	// GossipAdvertiseAddr is the gossip address peers reach; default
	// GossipAddr.
	GossipAdvertiseAddr string
	// Join lists other replicas' gossip addresses.
	Join []string
	// GossipKeyFile holds a base64 key of 16, 24 or 32 bytes that encrypts
	// the replicas' gossip; every replica of the zone needs the same key.
	// Empty: plaintext gossip.
	GossipKeyFile string
	// TombstoneTTL is how long a deleted resource's tombstone is kept (so
	// that a replica holding an older version cannot bring it back);
	// default DefaultTombstoneTTL. A replica away longer than that should
	// start with an empty data dir.
	TombstoneTTL time.Duration
	// MaxBodyBytes limits API request bodies; default 1 MiB.
	MaxBodyBytes int64
	// Version is the build version shown at GET /.
	Version string

	// SyncBackoff and SyncHeartbeatInterval tune the sync client (zero
	// values take syncclient's defaults); tests shorten them.
	SyncBackoff           syncclient.Backoff
	SyncHeartbeatInterval time.Duration
}

// Validate checks the configuration and fills defaults. It reads no files:
// New does.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Zone == "":
		errs = append(errs, errors.New("zone: must be set (the zone's name, as in its token)"))
	case !api.IsDNSLabel(c.Zone):
		errs = append(errs, fmt.Errorf("zone: %q is not a valid zone name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", c.Zone))
	}
	if c.ReplicaID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			errs = append(errs, errors.New("replica-id: must be set (the host name is unknown)"))
		}
		c.ReplicaID = h
	}
	if len(c.GlobalAddrs) == 0 {
		errs = append(errs, errors.New("global: at least one global sync address (host:port) is needed"))
	}
	for i, a := range c.GlobalAddrs {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " \t") {
			errs = append(errs, fmt.Errorf("global: address %d (%q) is empty or contains spaces", i+1, a))
		}
	}
	if c.TokenFile == "" {
		errs = append(errs, errors.New("token-file: must be set (a zone token from `meshctl generate zone-token`)"))
	}
	switch {
	case c.Insecure && c.GlobalCAFile != "":
		errs = append(errs, errors.New("global-ca-file and insecure: give one, not both (--insecure syncs over plaintext)"))
	case !c.Insecure && c.GlobalCAFile == "":
		errs = append(errs, errors.New("global-ca-file: must be set to verify global's sync port (global's DATA_DIR/sync-ca.crt), or pass --insecure for plaintext"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: must not be empty"))
	}
	if c.APIAddr == "" {
		c.APIAddr = DefaultAPIAddr
	}
	if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
		errs = append(errs, fmt.Errorf("api-addr: %q is not host:port: %w", c.APIAddr, err))
	}
	if c.XDSAddr == "" {
		c.XDSAddr = DefaultXDSAddr
	}
	if _, _, err := net.SplitHostPort(c.XDSAddr); err != nil {
		errs = append(errs, fmt.Errorf("xds-addr: %q is not host:port: %w", c.XDSAddr, err))
	}
	if c.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(c.GossipAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip-addr: %q is not host:port: %w", c.GossipAddr, err))
		}
	} else if len(c.Join) > 0 || c.GossipKeyFile != "" || c.GossipAdvertiseAddr != "" {
		errs = append(errs, errors.New("gossip-addr: must be set to use join, gossip-key-file or gossip-advertise-addr (they configure the pool of the zone's replicas)"))
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join: address %d (%q) is not host:port", i+1, j))
		}
	}
	if c.XDSAdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.XDSAdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("xds-advertise-addr: %q is not host:port: %w", c.XDSAdvertiseAddr, err))
		}
	}
	if c.DataplaneGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("dataplane-grace-period: %s must not be negative", c.DataplaneGracePeriod))
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = DefaultTombstoneTTL
	}
	if c.TombstoneTTL < time.Minute {
		errs = append(errs, fmt.Errorf("tombstone-ttl: %s is too short (at least 1m; default %s)", c.TombstoneTTL, DefaultTombstoneTTL))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max-body-bytes: %d must not be negative", c.MaxBodyBytes))
	}
	if c.SyncHeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("sync heartbeat interval: %s must not be negative", c.SyncHeartbeatInterval))
	}
	return errors.Join(errs...)
}
