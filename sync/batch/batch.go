// Package batch turns global's change feed into the sync protocol's Changes
// and Reset messages for one zone, bounded in size.
//
// Where it sits: global's sync server holds one cursor (a revision) per zone
// stream. When the state changes it asks the feed for everything since the
// cursor, keeps what the zone should receive (Filter), and sends the result as
// one or more Changes messages, each under MaxBytes; if the feed no longer
// reaches back to the cursor, it sends the whole filtered state as a chunked
// Reset instead. The zone's cursor is all a stream keeps: no queue of copies,
// so a slow zone costs memory proportional to nothing but its own cursor.
package batch

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// DefaultMaxBytes bounds one message's resources (gRPC's default receive
// limit is 4 MiB; stay well under it).
const DefaultMaxBytes = 1 << 20

// ErrTooOld: the feed no longer holds the deletions since the cursor.
var ErrTooOld = errors.New("revision too old for the change feed")

// Change is one entry of the feed: the latest version of a resource, or its
// deletion (Resource nil).
type Change struct {
	Key      api.Key
	Revision uint64
	Resource *api.Resource
}

// Feed is what a sender needs from global's state.
type Feed interface {
	// ChangesSince returns the latest change of every key changed after
	// rev, in revision order, and the revision they lead to; ErrTooOld
	// when deletions since rev were forgotten.
	ChangesSince(rev uint64) ([]Change, uint64, error)
	// All returns every resource and the revision of that view.
	All() ([]*api.Resource, uint64)
}

// Filter says whether the zone receives a resource (or its deletion).
type Filter func(key api.Key, r *api.Resource) bool

// Builder builds messages for one zone.
type Builder struct {
	Feed     Feed
	Filter   Filter
	MaxBytes int
}

func (b *Builder) maxBytes() int {
	if b.MaxBytes > 0 {
		return b.MaxBytes
	}
	return DefaultMaxBytes
}

// Since returns the Changes messages that bring a zone from revision cursor to
// the feed's current revision, and that revision. It returns no messages when
// nothing the zone receives changed (the caller may still advance its cursor
// to the returned revision). ErrTooOld means: send Reset instead.
func (b *Builder) Since(cursor uint64) ([]*syncpb.Changes, uint64, error) {
	changes, rev, err := b.Feed.ChangesSince(cursor)
	if err != nil {
		return nil, rev, err
	}
	var out []*syncpb.Changes
	cur := &syncpb.Changes{}
	size := 0
	flush := func() {
		cur.Revision = rev
		cur.More = true
		out = append(out, cur)
		cur = &syncpb.Changes{}
		size = 0
	}
	for _, c := range changes {
		if b.Filter != nil && !b.Filter(c.Key, c.Resource) {
			continue
		}
		if c.Resource == nil {
			d := &syncpb.Deletion{Type: c.Key.Type, Mesh: c.Key.Mesh, Name: c.Key.Name, Revision: c.Revision}
			n := proto.Size(d)
			if size > 0 && size+n > b.maxBytes() {
				flush()
			}
			cur.Deletes = append(cur.Deletes, d)
			size += n
			continue
		}
		res, err := Encode(c.Resource)
		if err != nil {
			return nil, rev, err
		}
		n := proto.Size(res)
		if size > 0 && size+n > b.maxBytes() {
			flush()
		}
		cur.Upserts = append(cur.Upserts, res)
		size += n
	}
	if size > 0 || len(out) > 0 {
		cur.Revision, cur.More = rev, false
		out = append(out, cur)
	}
	return out, rev, nil
}

// Reset returns the chunks of a full Reset of everything the zone receives,
// and its revision. The last chunk has Last set; an empty state is one empty
// chunk with Last set.
func (b *Builder) Reset() ([]*syncpb.Reset, uint64, error) {
	all, rev := b.Feed.All()
	var out []*syncpb.Reset
	cur := &syncpb.Reset{Revision: rev}
	size := 0
	for _, r := range all {
		if b.Filter != nil && !b.Filter(r.Key(), r) {
			continue
		}
		res, err := Encode(r)
		if err != nil {
			return nil, rev, err
		}
		n := proto.Size(res)
		if size > 0 && size+n > b.maxBytes() {
			out = append(out, cur)
			cur = &syncpb.Reset{Revision: rev}
			size = 0
		}
		cur.Resources = append(cur.Resources, res)
		size += n
	}
	cur.Last = true
	return append(out, cur), rev, nil
}

// Encode converts a resource to its wire form (Kuma JSON body).
func Encode(r *api.Resource) (*syncpb.Resource, error) {
	body, err := r.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	return &syncpb.Resource{Type: r.Type, Mesh: r.Mesh, Name: r.Name, Revision: r.Revision, Body: body}, nil
}

// Decode converts a wire resource back, checking that its body agrees with
// its key. The body is decoded but not validated (see api.Prepare).
func Decode(res *syncpb.Resource) (*api.Resource, error) {
	r, err := api.DecodeJSON(res.GetBody())
	if err != nil {
		return nil, err
	}
	if r.Type != res.GetType() || r.Mesh != res.GetMesh() || r.Name != res.GetName() {
		return nil, fmt.Errorf("resource body %s does not match its key %s/%s/%s", r.Key(), res.GetType(), res.GetMesh(), res.GetName())
	}
	r.Revision = res.GetRevision()
	return r, nil
}
