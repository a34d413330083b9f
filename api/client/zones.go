package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/meshfed/meshfed/api"
)

// ZoneOverview returns one zone as global sees it (GET
// /zones/{name}/_overview): the Zone, its insight, online or offline, the
// global node serving it, its applied revision, lag and rejections. Global
// only; it needs the admin token.
func (c *Client) ZoneOverview(ctx context.Context, name string) (*api.ZoneOverview, error) {
	if name == "" || name == "." || name == ".." {
		return nil, &api.ValidationError{Errors: []api.FieldError{{Field: "name", Message: fmt.Sprintf("must be a zone name, not %q", name)}}}
	}
	segs := []string{"zones", name, "_overview"}
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, typ: api.TypeZone})
	if err != nil {
		return nil, err
	}
	var ov api.ZoneOverview
	if err := json.Unmarshal(resp.body, &ov); err != nil {
		return nil, fmt.Errorf("GET /%s: decoding the answer: %w", strings.Join(segs, "/"), err)
	}
	return &ov, nil
}

// ZoneOverviews returns every zone's overview (GET /zones+insights),
// following the server's pages. Global only; it needs the admin token.
func (c *Client) ZoneOverviews(ctx context.Context) ([]api.ZoneOverview, error) {
	segs := []string{"zones+insights"}
	q := url.Values{}
	var out []api.ZoneOverview
	for n := 0; ; n++ {
		if n >= maxPages {
			return nil, fmt.Errorf("GET /zones+insights: more than %d pages", maxPages)
		}
		resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, query: q, typ: api.TypeZone})
		if err != nil {
			return nil, err
		}
		var body struct {
			Items []api.ZoneOverview `json:"items"`
			Next  *string            `json:"next"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			return nil, fmt.Errorf("GET /zones+insights: decoding the answer: %w", err)
		}
		out = append(out, body.Items...)
		if body.Next == nil || *body.Next == "" {
			return out, nil
		}
		if len(body.Items) == 0 {
			return nil, fmt.Errorf("GET /zones+insights: the server sent an empty page with a next link")
		}
		next, err := url.Parse(*body.Next)
		if err != nil {
			return nil, fmt.Errorf("GET /zones+insights: bad next link %q: %w", *body.Next, err)
		}
		q = next.Query()
	}
}

// ResourceStatus returns one resource's state in every zone (GET
// .../{name}/_status): applied, pending, rejected (with the reason) or not
// sent. Global only; it needs the admin token.
func (c *Client) ResourceStatus(ctx context.Context, key api.Key) (*api.ResourceStatus, error) {
	segs, err := resourcePath(key)
	if err != nil {
		return nil, err
	}
	segs = append(segs, "_status")
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, typ: key.Type})
	if err != nil {
		return nil, err
	}
	var st api.ResourceStatus
	if err := json.Unmarshal(resp.body, &st); err != nil {
		return nil, fmt.Errorf("GET /%s: decoding the answer: %w", strings.Join(segs, "/"), err)
	}
	return &st, nil
}
