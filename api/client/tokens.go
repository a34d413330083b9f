package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ZoneToken is a zone token issued by global (POST /tokens/zone).
type ZoneToken struct {
	// Token is the signed token a zone presents (meshd zone --token-file).
	Token string `json:"token"`
	// ID identifies the token, e.g. to revoke it.
	ID string `json:"id"`
	// Zone is the only zone the token is valid for.
	Zone      string    `json:"zone"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// GenerateZoneToken asks global for a token for zone, valid for validFor
// (a duration such as "24h", "30d" or "1y"; "" leaves global's default of
// one year). It needs the admin token. Every call issues a new token; the
// earlier ones stay valid until they expire or are revoked.
func (c *Client) GenerateZoneToken(ctx context.Context, zone, validFor string) (*ZoneToken, error) {
	body, err := json.Marshal(map[string]string{"zone": zone, "validFor": validFor})
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, segments: []string{"tokens", "zone"}, body: body})
	if err != nil {
		return nil, err
	}
	var out ZoneToken
	if err := json.Unmarshal(resp.body, &out); err != nil || out.Token == "" {
		return nil, fmt.Errorf("POST /tokens/zone: unexpected answer %q: %v", truncate(resp.body), err)
	}
	return &out, nil
}

// ZoneTokenRevocation names the zone token to revoke: the token itself or
// its id (exactly one), and why.
type ZoneTokenRevocation struct {
	Token  string `json:"token,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RevokedZoneToken is global's answer to a revocation.
type RevokedZoneToken struct {
	// ID is the revoked token's id.
	ID string `json:"revoked"`
	// Zone is the token's zone (empty when it was revoked by id alone).
	Zone string `json:"zone"`
}

// RevokeZoneToken revokes a zone token (POST /tokens/zone/revoke): global
// refuses it from then on, on every node. It needs the admin token.
// Revoking a token twice is not an error.
func (c *Client) RevokeZoneToken(ctx context.Context, rev ZoneTokenRevocation) (*RevokedZoneToken, error) {
	if (rev.Token == "") == (rev.ID == "") {
		return nil, errors.New("revoke zone token: give the token or its id (exactly one)")
	}
	body, err := json.Marshal(rev)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, segments: []string{"tokens", "zone", "revoke"}, body: body})
	if err != nil {
		return nil, err
	}
	var out RevokedZoneToken
	if err := json.Unmarshal(resp.body, &out); err != nil || out.ID == "" {
		return nil, fmt.Errorf("POST /tokens/zone/revoke: unexpected answer %q: %v", truncate(resp.body), err)
	}
	return &out, nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
