package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/api/client"
)

func TestZoneTokens(t *testing.T) {
	ctx := context.Background()
	t.Run("generate", func(t *testing.T) {
		s, url := serve(t, answer{status: 200, body: `{"token":"abc.def.ghi","id":"t1","zone":"zone-1","expiresAt":"2030-01-02T03:04:05Z"}`})
		c, _ := client.New(url, "admin", client.WithRetry(fast))
		tok, err := c.GenerateZoneToken(ctx, "zone-1", "30d")
		if err != nil || tok.Token != "abc.def.ghi" || tok.ID != "t1" || tok.Zone != "zone-1" || tok.ExpiresAt.Year() != 2030 {
			t.Fatalf("GenerateZoneToken: %+v %v", tok, err)
		}
		r := s.request(0)
		if r.method != "POST" || r.path != "/tokens/zone" || r.body != `{"validFor":"30d","zone":"zone-1"}` || r.header.Get("Authorization") != "Bearer admin" {
			t.Errorf("request: %+v", r)
		}
	})
	t.Run("generate refused", func(t *testing.T) {
		_, url := serve(t, answer{status: 400, body: `{"title":"Invalid request","details":"zone: bad","causes":[{"field":"zone","message":"bad"}]}`})
		c, _ := client.New(url, "admin", client.WithRetry(fast))
		var ve *api.ValidationError
		if _, err := c.GenerateZoneToken(ctx, "Bad", ""); !errors.As(err, &ve) || ve.Errors[0].Field != "zone" {
			t.Errorf("GenerateZoneToken: %v", err)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		s, url := serve(t, answer{status: 200, body: `{"revoked":"t1","zone":"zone-1"}`})
		c, _ := client.New(url, "admin", client.WithRetry(fast))
		out, err := c.RevokeZoneToken(ctx, client.ZoneTokenRevocation{Token: "abc.def.ghi", Reason: "leaked"})
		if err != nil || out.ID != "t1" || out.Zone != "zone-1" {
			t.Fatalf("RevokeZoneToken: %+v %v", out, err)
		}
		r := s.request(0)
		if r.method != "POST" || r.path != "/tokens/zone/revoke" || r.body != `{"token":"abc.def.ghi","reason":"leaked"}` {
			t.Errorf("request: %+v", r)
		}
		for _, bad := range []client.ZoneTokenRevocation{{}, {Token: "x", ID: "y"}} {
			if _, err := c.RevokeZoneToken(ctx, bad); err == nil || !strings.Contains(err.Error(), "exactly one") {
				t.Errorf("RevokeZoneToken(%+v): %v", bad, err)
			}
		}
		if s.count() != 1 {
			t.Errorf("%d requests, want 1", s.count())
		}
	})
}
