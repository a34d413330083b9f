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
	return listAll[api.ZoneOverview](ctx, c, []string{"zones+insights"}, api.TypeZone)
}

// DataplaneOverviews returns every Dataplane of mesh with its insight (GET
// /meshes/{mesh}/dataplanes+insights): online or not, its xDS streams and
// certificate. Global and zones.
func (c *Client) DataplaneOverviews(ctx context.Context, mesh string) ([]api.DataplaneOverview, error) {
	return listAll[api.DataplaneOverview](ctx, c, []string{"meshes", mesh, "dataplanes+insights"}, api.TypeDataplane)
}

// MeshInsights returns every Mesh's counts (GET /mesh-insights): dataplanes
// online and total, policies by type, its CA. Global and zones.
func (c *Client) MeshInsights(ctx context.Context) ([]api.MeshInsight, error) {
	return listAll[api.MeshInsight](ctx, c, []string{"mesh-insights"}, api.TypeMesh)
}

// listAll GETs a list route and follows its pages.
func listAll[T any](ctx context.Context, c *Client, segs []string, typ string) ([]T, error) {
	path := "/" + strings.Join(segs, "/")
	q := url.Values{}
	var out []T
	for n := 0; ; n++ {
		if n >= maxPages {
			return nil, fmt.Errorf("GET %s: more than %d pages", path, maxPages)
		}
		resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, query: q, typ: typ})
		if err != nil {
			return nil, err
		}
		var body struct {
			Items []T     `json:"items"`
			Next  *string `json:"next"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			return nil, fmt.Errorf("GET %s: decoding the answer: %w", path, err)
		}
		out = append(out, body.Items...)
		if body.Next == nil || *body.Next == "" {
			return out, nil
		}
		if len(body.Items) == 0 {
			return nil, fmt.Errorf("GET %s: the server sent an empty page with a next link", path)
		}
		next, err := url.Parse(*body.Next)
		if err != nil {
			return nil, fmt.Errorf("GET %s: bad next link %q: %w", path, *body.Next, err)
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
