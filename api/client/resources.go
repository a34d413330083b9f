package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/meshfed/meshfed/api"
)

// Info is the API's index document (GET /).
type Info struct {
	Product    string `json:"product"`
	Tagline    string `json:"tagline"`
	Version    string `json:"version"`
	Role       string `json:"role"`
	InstanceID string `json:"instanceId"`
	ClusterID  string `json:"clusterId"`
}

// ResourceType is one entry of the server's type registry (GET
// /_resources), in the server's order.
type ResourceType struct {
	// Name is the type ("Mesh"); Path its REST plural ("meshes").
	Name string `json:"name"`
	Path string `json:"path"`
	// Scope is global or mesh; Owner the role that accepts writes.
	Scope api.Scope `json:"scope"`
	Owner api.Role  `json:"owner"`
	// FanOut: the type is sent across zones. Inline: its fields sit at the
	// top level of the body rather than under "spec".
	FanOut bool `json:"fanOut"`
	Inline bool `json:"inline"`
}

// GetOptions tunes Get.
type GetOptions struct {
	// Consistent asks for a linearizable read.
	Consistent bool
}

// ListOptions tunes List and ListAll.
type ListOptions struct {
	// Size is the page size (server default 100, at most 1000); 0 leaves
	// it to the server.
	Size int
	// Offset is the index of the first item.
	Offset int
	// Labels keeps only resources with every one of these labels.
	Labels map[string]string
	// NameContains keeps only resources whose name contains it.
	NameContains string
	// Consistent asks for a linearizable read.
	Consistent bool
}

// Page is one page of a list.
type Page struct {
	// Total counts every resource that matched the filters, on all pages.
	Total int
	// Items are this page's resources (redacted by the server), each with
	// its Meta.Revision set.
	Items []*api.Resource
	// Next is the server's link to the next page, empty on the last one.
	Next string
}

// PutOptions tunes Put.
type PutOptions struct {
	// ExpectRevision, when non-zero, makes the write fail with
	// *api.ConflictError unless the stored resource is at that revision.
	ExpectRevision uint64
	// DryRun validates and reports what would happen without writing: the
	// returned resource has its defaults applied and revision 0.
	DryRun bool
}

// DeleteOptions tunes Delete.
type DeleteOptions struct {
	// ExpectRevision, when non-zero, makes the delete fail with
	// *api.ConflictError unless the stored resource is at that revision.
	ExpectRevision uint64
}

// Info returns the server's index document.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet})
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(resp.body, &info); err != nil {
		return nil, fmt.Errorf("GET /: decoding the answer: %w", err)
	}
	return &info, nil
}

// Types returns the server's type registry.
func (c *Client) Types(ctx context.Context) ([]ResourceType, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: []string{"_resources"}})
	if err != nil {
		return nil, err
	}
	var out struct {
		Resources []ResourceType `json:"resources"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("GET /_resources: decoding the answer: %w", err)
	}
	return out.Resources, nil
}

// Get returns one resource, with Meta.Revision set from its ETag. Secret
// data comes back redacted.
func (c *Client) Get(ctx context.Context, key api.Key, opts ...GetOptions) (*api.Resource, error) {
	segs, err := resourcePath(key)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, o := range opts {
		if o.Consistent {
			q.Set("consistent", "true")
		}
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, query: q, typ: key.Type})
	if err != nil {
		return nil, err
	}
	return decodeResource(resp)
}

// List returns one page of the type's resources in mesh, or across every
// mesh when mesh is empty (mesh-scoped types), or of a global-scoped type
// (mesh must then be empty).
func (c *Client) List(ctx context.Context, typ, mesh string, opts ListOptions) (Page, error) {
	segs, err := listPath(typ, mesh)
	if err != nil {
		return Page{}, err
	}
	q := url.Values{}
	if opts.Size != 0 {
		q.Set("size", strconv.Itoa(opts.Size))
	}
	if opts.Offset != 0 {
		q.Set("offset", strconv.Itoa(opts.Offset))
	}
	for k, v := range opts.Labels {
		q.Set("filter[labels."+k+"]", v)
	}
	if opts.NameContains != "" {
		q.Set("nameContains", opts.NameContains)
	}
	if opts.Consistent {
		q.Set("consistent", "true")
	}
	return c.listPage(ctx, segs, q, typ)
}

func (c *Client) listPage(ctx context.Context, segs []string, q url.Values, typ string) (Page, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, segments: segs, query: q, typ: typ})
	if err != nil {
		return Page{}, err
	}
	var body struct {
		Total     int               `json:"total"`
		Items     []json.RawMessage `json:"items"`
		Next      *string           `json:"next"`
		Revisions []uint64          `json:"revisions"`
	}
	where := "GET /" + strings.Join(segs, "/")
	if err := json.Unmarshal(resp.body, &body); err != nil {
		return Page{}, fmt.Errorf("%s: decoding the answer: %w", where, err)
	}
	page := Page{Total: body.Total, Items: make([]*api.Resource, 0, len(body.Items))}
	if body.Next != nil {
		page.Next = *body.Next
	}
	for i, raw := range body.Items {
		res, err := api.DecodeJSON(raw)
		if err != nil {
			return Page{}, fmt.Errorf("%s: item %d: %w", where, i, err)
		}
		if i < len(body.Revisions) {
			res.Revision = body.Revisions[i]
		}
		page.Items = append(page.Items, res)
	}
	return page, nil
}

// maxPages bounds ListAll against a server whose next links never end.
const maxPages = 100000

// ListAll returns every resource of a list, following the server's next
// links from opts.Offset to the last page. Each link's query is sent to the
// same path as the first request, so a base URL with a path prefix keeps
// working.
func (c *Client) ListAll(ctx context.Context, typ, mesh string, opts ListOptions) ([]*api.Resource, error) {
	page, err := c.List(ctx, typ, mesh, opts)
	if err != nil {
		return nil, err
	}
	segs, _ := listPath(typ, mesh) // List has checked them
	out := page.Items
	for n := 0; page.Next != ""; n++ {
		if n >= maxPages {
			return nil, fmt.Errorf("list %s: more than %d pages", typ, maxPages)
		}
		next, err := url.Parse(page.Next)
		if err != nil {
			return nil, fmt.Errorf("list %s: bad next link %q: %w", typ, page.Next, err)
		}
		if page, err = c.listPage(ctx, segs, next.Query(), typ); err != nil {
			return nil, err
		}
		if len(page.Items) == 0 && page.Next != "" {
			return nil, fmt.Errorf("list %s: the server sent an empty page with a next link", typ)
		}
		out = append(out, page.Items...)
	}
	return out, nil
}

// Put creates or replaces r (its Meta.Revision and times are ignored). It
// returns the stored resource (redacted, with Meta.Revision set) and
// whether it was created.
func (c *Client) Put(ctx context.Context, r *api.Resource, opts PutOptions) (*api.Resource, bool, error) {
	segs, err := resourcePath(r.Key())
	if err != nil {
		return nil, false, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, false, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	q := url.Values{}
	if opts.DryRun {
		q.Set("dryRun", "true")
	}
	resp, err := c.do(ctx, request{method: http.MethodPut, segments: segs, query: q,
		header: ifMatch(opts.ExpectRevision), body: body, typ: r.Type})
	if err != nil {
		return nil, false, err
	}
	stored, err := decodeResource(resp)
	if err != nil {
		return nil, false, err
	}
	return stored, resp.status == http.StatusCreated, nil
}

// Delete deletes one resource.
func (c *Client) Delete(ctx context.Context, key api.Key, opts DeleteOptions) error {
	segs, err := resourcePath(key)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, request{method: http.MethodDelete, segments: segs,
		header: ifMatch(opts.ExpectRevision), typ: key.Type})
	return err
}

func ifMatch(rev uint64) http.Header {
	if rev == 0 {
		return nil
	}
	return http.Header{"If-Match": {`"` + strconv.FormatUint(rev, 10) + `"`}}
}

// decodeResource decodes a single-resource answer and sets its revision
// from the ETag.
func decodeResource(resp *response) (*api.Resource, error) {
	res, err := api.DecodeJSON(resp.body)
	if err != nil {
		return nil, fmt.Errorf("decoding the answer: %w", err)
	}
	if tag := strings.Trim(strings.TrimPrefix(resp.header.Get("ETag"), "W/"), `"`); tag != "" {
		if rev, err := strconv.ParseUint(tag, 10, 64); err == nil {
			res.Revision = rev
		}
	}
	return res, nil
}

// resourcePath is the URL path of one resource.
func resourcePath(key api.Key) ([]string, error) {
	d, err := api.Lookup(key.Type)
	if err != nil {
		return nil, err
	}
	v := &api.Validator{}
	if key.Name == "" || key.Name == "." || key.Name == ".." {
		v.Add("name", "must be a resource name, not %q", key.Name)
	}
	switch {
	case d.Scope == api.ScopeMesh && key.Mesh == "":
		v.Add("mesh", "must not be empty: %s is mesh-scoped", d.Name)
	case d.Scope == api.ScopeMesh && (key.Mesh == "." || key.Mesh == ".."):
		v.Add("mesh", "must be a mesh name, not %q", key.Mesh)
	case d.Scope == api.ScopeGlobal && key.Mesh != "":
		v.Add("mesh", "must be empty: %s is not mesh-scoped", d.Name)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	switch {
	case d.Name == api.TypeMesh:
		return []string{"meshes", key.Name}, nil
	case d.Scope == api.ScopeMesh:
		return []string{"meshes", key.Mesh, d.Plural, key.Name}, nil
	default:
		return []string{d.Plural, key.Name}, nil
	}
}

// listPath is the URL path of a list.
func listPath(typ, mesh string) ([]string, error) {
	d, err := api.Lookup(typ)
	if err != nil {
		return nil, err
	}
	switch {
	case d.Scope == api.ScopeGlobal && mesh != "":
		return nil, &api.ValidationError{Errors: []api.FieldError{{Field: "mesh", Message: fmt.Sprintf("must be empty: %s is not mesh-scoped", d.Name)}}}
	case d.Scope == api.ScopeMesh && (mesh == "." || mesh == ".."):
		return nil, &api.ValidationError{Errors: []api.FieldError{{Field: "mesh", Message: fmt.Sprintf("must be a mesh name, not %q", mesh)}}}
	case d.Scope == api.ScopeMesh && mesh != "":
		return []string{"meshes", mesh, d.Plural}, nil
	default:
		return []string{d.Plural}, nil
	}
}
