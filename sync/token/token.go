// Package token issues and verifies zone tokens: the credential a zone
// presents in its sync Hello. A token is a JWT signed by the global
// cluster's Ed25519 key, scoped to one zone name and one cluster, with an
// expiry and a unique id by which it can be revoked.
//
// Where it sits: global issues tokens (API, meshctl generate zone-token) and
// verifies them when a zone opens its stream; the zone only carries the
// string. Revocation is the caller's check (global keeps the revoked ids in
// its replicated store).
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	audience      = "meshfed-sync"
	subjectPrefix = "zone:"
	issuerPrefix  = "meshfed:"
)

// Claims is what a zone token says.
type Claims struct {
	Zone      string
	ClusterID string
	ID        string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Errors callers branch on; each names the problem plainly.
var (
	ErrMissing   = errors.New("no zone token")
	ErrMalformed = errors.New("zone token is malformed")
	ErrSignature = errors.New("zone token signature is not valid for this cluster")
	ErrExpired   = errors.New("zone token has expired")
	ErrCluster   = errors.New("zone token was issued by another cluster")
)

// NewKey makes a signing key.
func NewKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// Issue signs a token for zone, valid for validFor from now.
func Issue(key ed25519.PrivateKey, clusterID, zone string, validFor time.Duration, now time.Time) (string, Claims, error) {
	if zone == "" {
		return "", Claims{}, errors.New("zone must not be empty")
	}
	if validFor <= 0 {
		return "", Claims{}, errors.New("validity must be positive")
	}
	idBytes := make([]byte, 16)
	if _, err := rand.Read(idBytes); err != nil {
		return "", Claims{}, err
	}
	c := Claims{Zone: zone, ClusterID: clusterID, ID: hex.EncodeToString(idBytes),
		IssuedAt: now.UTC().Truncate(time.Second), ExpiresAt: now.UTC().Add(validFor).Truncate(time.Second)}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
		Issuer:    issuerPrefix + clusterID,
		Subject:   subjectPrefix + zone,
		Audience:  jwt.ClaimStrings{audience},
		ID:        c.ID,
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
	})
	s, err := tok.SignedString(key)
	if err != nil {
		return "", Claims{}, fmt.Errorf("sign zone token: %w", err)
	}
	return s, c, nil
}

// Verify checks a token's signature, expiry, audience and cluster, and
// returns its claims. The zone name and revocation are the caller's checks.
func Verify(tokenString string, pub ed25519.PublicKey, clusterID string, now time.Time) (Claims, error) {
	tokenString = strings.TrimSpace(tokenString)
	if tokenString == "" {
		return Claims{}, ErrMissing
	}
	var rc jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tokenString, &rc, func(t *jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return Claims{}, ErrSignature
	default:
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c := Claims{ID: rc.ID, Zone: strings.TrimPrefix(rc.Subject, subjectPrefix), ClusterID: strings.TrimPrefix(rc.Issuer, issuerPrefix)}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time.UTC()
	}
	if rc.ExpiresAt != nil {
		c.ExpiresAt = rc.ExpiresAt.Time.UTC()
	}
	if !strings.HasPrefix(rc.Subject, subjectPrefix) || c.Zone == "" || c.ID == "" {
		return Claims{}, fmt.Errorf("%w: it names no zone or id", ErrMalformed)
	}
	if c.ClusterID != clusterID {
		return Claims{}, ErrCluster
	}
	return c, nil
}
