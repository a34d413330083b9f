package rest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshfed/meshfed/api"
)

// List paging limits.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// target is what a resource URL names: a type, the mesh (mesh-scoped types
// under /meshes/{mesh}/), and the name (empty for lists).
type target struct {
	d    *api.Descriptor
	mesh string
	name string
}

func (t target) key() api.Key { return api.Key{Type: t.d.Name, Mesh: t.mesh, Name: t.name} }

// describe names the target for messages: `Mesh "default"`,
// `Dataplane "web-1" in mesh "default"`.
func (t target) describe() string {
	s := fmt.Sprintf("%s %q", t.d.Name, t.name)
	if t.mesh != "" {
		s += fmt.Sprintf(" in mesh %q", t.mesh)
	}
	return s
}

// resolve reads the target from the matched route's path values.
func resolve(r *http.Request) (target, error) {
	plural, mesh, name := r.PathValue("plural"), r.PathValue("mesh"), r.PathValue("name")
	if plural == "" { // /meshes and /meshes/{name}
		d, err := api.Lookup(api.TypeMesh)
		if err != nil {
			return target{}, err
		}
		return target{d: d, name: name}, nil
	}
	d, ok := api.LookupPlural(plural)
	if !ok {
		return target{}, notFoundf("unknown resource type %q in the path (GET /_resources lists the types)", plural)
	}
	if mesh != "" { // /meshes/{mesh}/{plural}...
		if d.Scope != api.ScopeMesh {
			return target{}, notFoundf("%s (%s) are not mesh-scoped: use /%s", plural, d.Name, plural)
		}
		return target{d: d, mesh: mesh, name: name}, nil
	}
	if d.Scope == api.ScopeMesh && name != "" {
		return target{}, notFoundf("%s (%s) are mesh-scoped: use /meshes/{mesh}/%s/%s", plural, d.Name, plural, name)
	}
	return target{d: d, name: name}, nil
}

// notFound gives a bare api.ErrNotFound from the store a message naming
// what was not found; other errors pass through.
func (t target) notFound(err error) error {
	if err == api.ErrNotFound {
		return fmt.Errorf("%s: %w", t.describe(), err)
	}
	return err
}

// checkWritable refuses writes of a type the other role owns.
func (s *server) checkWritable(t target) error {
	if t.d.System {
		return &api.ReadOnlyError{Type: t.d.Name, Owner: t.d.Owner, System: true}
	}
	if t.d.Owner != s.cfg.Role {
		return &api.ReadOnlyError{Type: t.d.Name, Owner: t.d.Owner}
	}
	return nil
}

func (s *server) get(w http.ResponseWriter, r *http.Request) error {
	t, err := resolve(r)
	if err != nil {
		return err
	}
	opts, err := readOptions(r)
	if err != nil {
		return err
	}
	res, err := s.cfg.Store.Get(r.Context(), t.key(), opts)
	if err != nil {
		return t.notFound(err)
	}
	w.Header().Set("ETag", etag(res.Revision))
	return writeValue(w, r, http.StatusOK, api.Redact(res))
}

func (s *server) delete(w http.ResponseWriter, r *http.Request) error {
	t, err := resolve(r)
	if err != nil {
		return err
	}
	if err := s.checkWritable(t); err != nil {
		return err
	}
	opts, err := writeOptions(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.Delete(r.Context(), t.key(), opts); err != nil {
		return t.notFound(err)
	}
	return writeValue(w, r, http.StatusOK, struct{}{})
}

func (s *server) put(w http.ResponseWriter, r *http.Request) error {
	t, err := resolve(r)
	if err != nil {
		return err
	}
	if err := s.checkWritable(t); err != nil {
		return err
	}
	opts, err := writeOptions(r)
	if err != nil {
		return err
	}
	dryRun, err := parseBoolParam(r, "dryRun")
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	res, err := api.Decode(body)
	if err != nil {
		return err
	}
	if err := matchURL(res, t); err != nil {
		return err
	}
	if dryRun {
		return s.dryRunPut(w, r, t, res, opts)
	}
	stored, created, err := s.cfg.Store.Put(r.Context(), res, opts)
	if err == api.ErrNotFound && t.mesh != "" { // a bare not-found on a write: the mesh
		return fmt.Errorf("writing %s: mesh %q: %w", t.describe(), t.mesh, err)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", r.URL.EscapedPath())
	}
	w.Header().Set("ETag", etag(stored.Revision))
	return writeValue(w, r, status, api.Redact(stored))
}

// readBody reads the request body up to the configured limit. A body
// announced larger than the limit is refused without reading it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	// The innermost writer, so that hitting the limit also tells the server
	// to close the connection instead of draining the rest of the body.
	body, err := io.ReadAll(http.MaxBytesReader(innermost(w), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, &httpError{status: http.StatusBadRequest, title: "Invalid request",
			details: "reading the request body: " + err.Error()}
	}
	return body, nil
}

// innermost unwraps w through its Unwrap methods (the recorder, and any
// middleware that supports http.ResponseController).
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// matchURL checks that the body names the resource the URL names (filling
// in an absent name and mesh from the URL), then applies defaults and
// validates it. Every problem is reported at once.
func matchURL(res *api.Resource, t target) error {
	v := &api.Validator{}
	if res.Type != t.d.Name {
		v.Add("type", "must be %s to match the URL, not %s", t.d.Name, res.Type)
	}
	switch {
	case res.Name == "":
		res.Name = t.name
	case res.Name != t.name:
		v.Add("name", "must be %q to match the URL, not %q", t.name, res.Name)
	}
	if t.d.Scope == api.ScopeMesh {
		switch {
		case res.Mesh == "":
			res.Mesh = t.mesh
		case res.Mesh != t.mesh:
			v.Add("mesh", "must be %q to match the URL, not %q", t.mesh, res.Mesh)
		}
	}
	if res.Type != t.d.Name {
		return v.Err() // the body is another type: its own checks would mislead
	}
	err := api.Prepare(res)
	var ve *api.ValidationError
	switch {
	case err == nil:
		return v.Err()
	case errors.As(err, &ve):
		mismatch, _ := v.Err().(*api.ValidationError)
		if mismatch == nil {
			return err
		}
		return &api.ValidationError{Errors: append(mismatch.Errors, ve.Errors...)}
	default:
		return err
	}
}

// dryRunPut answers what a PUT would do without writing: 201 or 200 and the
// resource with its defaults. It checks what it can without the store's
// write path: validity, the mesh's existence and the expected revision.
func (s *server) dryRunPut(w http.ResponseWriter, r *http.Request, t target, res *api.Resource, opts WriteOptions) error {
	ctx := r.Context()
	existing, err := s.cfg.Store.Get(ctx, res.Key(), ReadOptions{})
	created := false
	switch {
	case err == nil:
		if opts.ExpectRevision != 0 && existing.Revision != opts.ExpectRevision {
			return &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, not %d", t.describe(), existing.Revision, opts.ExpectRevision)}
		}
		res.CreationTime = existing.CreationTime
	case errors.Is(err, api.ErrNotFound):
		created = true
		if opts.ExpectRevision != 0 {
			return &api.ConflictError{Reason: fmt.Sprintf("%s does not exist (expected revision %d)", t.describe(), opts.ExpectRevision)}
		}
		if err := s.checkMesh(r, res.Mesh, ReadOptions{}); errors.Is(err, api.ErrNotFound) {
			// As a real write answers: the body's mesh field is wrong.
			return &api.ValidationError{Errors: []api.FieldError{{Field: "mesh", Message: fmt.Sprintf("mesh %q does not exist", res.Mesh)}}}
		} else if err != nil {
			return err
		}
		res.CreationTime = time.Time{}
	default:
		return err
	}
	res.ModificationTime = time.Time{}
	res.Revision = 0
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("X-Meshfed-Dry-Run", "true")
	return writeValue(w, r, status, api.Redact(res))
}

// checkMesh returns a not-found error when mesh is set and does not exist.
func (s *server) checkMesh(r *http.Request, mesh string, opts ReadOptions) error {
	if mesh == "" {
		return nil
	}
	_, err := s.cfg.Store.Get(r.Context(), api.Key{Type: api.TypeMesh, Name: mesh}, opts)
	if err == api.ErrNotFound {
		return fmt.Errorf("mesh %q: %w", mesh, err)
	}
	return err
}

// listBody is the Kuma list shape, plus revisions (see the route table).
type listBody struct {
	Total     int             `json:"total"`
	Items     []*api.Resource `json:"items"`
	Next      *string         `json:"next"`
	Revisions []uint64        `json:"revisions"`
}

// listParams are a list request's query parameters.
type listParams struct {
	size, offset int
	labels       [][2]string // key, value; all must match
	nameContains []string    // all must match
}

func parseListParams(r *http.Request) (listParams, error) {
	q := r.URL.Query()
	p := listParams{size: DefaultPageSize}
	v := &api.Validator{}
	if s := q.Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			v.Add("size", "must be an integer between 1 and %d, not %q", MaxPageSize, s)
		}
		p.size = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			v.Add("offset", "must be a non-negative integer (the index of the first item), not %q", s)
		}
		p.offset = n
	}
	for _, param := range []string{"nameContains", "name"} {
		for _, s := range q[param] {
			if s != "" {
				p.nameContains = append(p.nameContains, s)
			}
		}
	}
	for param, values := range q {
		if !strings.HasPrefix(param, "filter[") {
			continue
		}
		inner, ok := strings.CutSuffix(strings.TrimPrefix(param, "filter["), "]")
		key, isLabel := strings.CutPrefix(inner, "labels.")
		if !ok || !isLabel || key == "" {
			v.Add(api.Path(param), "only label filters are supported: filter[labels.KEY]=VALUE")
			continue
		}
		for _, val := range values {
			p.labels = append(p.labels, [2]string{key, val})
		}
	}
	if err := v.Err(); err != nil {
		return listParams{}, err
	}
	return p, nil
}

func (p listParams) match(name string, labels map[string]string) bool {
	for _, s := range p.nameContains {
		if !strings.Contains(name, s) {
			return false
		}
	}
	for _, kv := range p.labels {
		if val, ok := labels[kv[0]]; !ok || val != kv[1] {
			return false
		}
	}
	return true
}

func (s *server) list(w http.ResponseWriter, r *http.Request) error {
	t, err := resolve(r)
	if err != nil {
		return err
	}
	opts, err := readOptions(r)
	if err != nil {
		return err
	}
	p, err := parseListParams(r)
	if err != nil {
		return err
	}
	all, err := s.cfg.Store.List(r.Context(), t.d.Name, t.mesh, opts)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		// An empty list of a mesh that does not exist is a 404, not an
		// empty page: the mesh name is probably mistyped.
		if err := s.checkMesh(r, t.mesh, opts); err != nil {
			return err
		}
	}
	matched := make([]*api.Resource, 0, len(all))
	for _, res := range all {
		if p.match(res.Name, res.Labels) {
			matched = append(matched, res)
		}
	}
	body := listBody{Total: len(matched), Items: []*api.Resource{}, Revisions: []uint64{}}
	start, end, next := p.page(r, len(matched))
	for _, res := range matched[start:end] {
		body.Items = append(body.Items, api.Redact(res))
		body.Revisions = append(body.Revisions, res.Revision)
	}
	body.Next = next
	return writeValue(w, r, http.StatusOK, body)
}

// page returns the bounds of the requested page among n matched items and
// the link to the next page (nil on the last one).
func (p listParams) page(r *http.Request, n int) (start, end int, next *string) {
	if p.offset >= n {
		return n, n, nil
	}
	start, end = p.offset, min(p.offset+p.size, n)
	if end < n {
		q := r.URL.Query()
		q.Set("offset", strconv.Itoa(end))
		q.Set("size", strconv.Itoa(p.size))
		link := r.URL.EscapedPath() + "?" + q.Encode()
		next = &link
	}
	return start, end, next
}

// ListItem is one item of a list an extra route answers with WriteList.
type ListItem struct {
	// Name and Labels are what nameContains and filter[labels.KEY] match.
	Name   string
	Labels map[string]string
	// Revision goes into the answer's revisions.
	Revision uint64
	// Value is the item's JSON document.
	Value any
}

// WriteList answers items (already sorted) in the API's list shape, with
// the same parameters as a resource list: size, offset, nameContains (or
// name) and filter[labels.KEY]=VALUE. Extra routes (Config.Routes) use it.
func WriteList(w http.ResponseWriter, r *http.Request, items []ListItem) error {
	p, err := parseListParams(r)
	if err != nil {
		return err
	}
	matched := make([]ListItem, 0, len(items))
	for _, it := range items {
		if p.match(it.Name, it.Labels) {
			matched = append(matched, it)
		}
	}
	body := struct {
		Total     int      `json:"total"`
		Items     []any    `json:"items"`
		Next      *string  `json:"next"`
		Revisions []uint64 `json:"revisions"`
	}{Total: len(matched), Items: []any{}, Revisions: []uint64{}}
	start, end, next := p.page(r, len(matched))
	for _, it := range matched[start:end] {
		body.Items = append(body.Items, it.Value)
		body.Revisions = append(body.Revisions, it.Revision)
	}
	body.Next = next
	return writeValue(w, r, http.StatusOK, body)
}

// WriteValue answers v (any JSON value) with status, as JSON or, when the
// Accept header prefers it, YAML with the same key order. Extra routes
// (Config.Routes) use it.
func WriteValue(w http.ResponseWriter, r *http.Request, status int, v any) error {
	return writeValue(w, r, status, v)
}

// resourceType is one entry of GET /_resources.
type resourceType struct {
	Name   string    `json:"name"`
	Path   string    `json:"path"`
	Scope  api.Scope `json:"scope"`
	Owner  api.Role  `json:"owner"`
	FanOut bool      `json:"fanOut"`
	Inline bool      `json:"inline"`
}

func (s *server) resourceTypes(w http.ResponseWriter, r *http.Request) error {
	var out struct {
		Resources []resourceType `json:"resources"`
	}
	for _, d := range api.Types() {
		out.Resources = append(out.Resources, resourceType{
			Name: d.Name, Path: d.Plural, Scope: d.Scope, Owner: d.Owner, FanOut: d.FanOut, Inline: d.Inline,
		})
	}
	return writeValue(w, r, http.StatusOK, out)
}
