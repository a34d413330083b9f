package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// entry is one resource's name and content hash. Entries are remembered by
// the resource's pointer while a live typeSet holds the resource (refs).
type entry struct {
	res     types.Resource
	name    string
	version string // hex of 8 bytes of the digest: the per-resource version
	a, b    uint64 // 16 more bytes of the digest: summed into the type version
	refs    int
}

// hashResource computes an entry: sha256 over the name and the
// deterministic encoding.
func hashResource(typeURL string, r types.Resource) (*entry, error) {
	if r == nil {
		return nil, fmt.Errorf("%s: nil resource", typeURL)
	}
	if got := string(r.ProtoReflect().Descriptor().FullName()); got != strings.TrimPrefix(typeURL, resource.APITypePrefix) {
		return nil, fmt.Errorf("%s: resource of type %s", typeURL, got)
	}
	name := cache.GetResourceName(r)
	if name == "" {
		return nil, fmt.Errorf("%s: resource without a name", typeURL)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
	}
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(b)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return &entry{
		res:     r,
		name:    name,
		version: hex.EncodeToString(sum[:8]),
		a:       binary.BigEndian.Uint64(sum[8:16]),
		b:       binary.BigEndian.Uint64(sum[16:24]),
	}, nil
}

// typeVersion is the version of a set of entries: a hash of their count and
// of the sums of their digests, so it needs no sorting and no allocation.
// Equal sets of (name, content) give equal versions whatever their order.
func typeVersion(typeURL string, entries []*entry) string {
	var a, b uint64
	for _, e := range entries {
		a += e.a
		b += e.b
	}
	var buf [24]byte
	binary.BigEndian.PutUint64(buf[0:8], uint64(len(entries)))
	binary.BigEndian.PutUint64(buf[8:16], a)
	binary.BigEndian.PutUint64(buf[16:24], b)
	h := sha256.New()
	h.Write([]byte(typeURL))
	h.Write(buf[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return hex.EncodeToString(sum[:8])
}

// typeKey identifies a shared typeSet.
type typeKey struct {
	typeURL string
	version string
}

// typeSet is one type's resources, shared by every node that receives
// exactly these resources (refs counts the nodes). It is read-only once
// built: go-control-plane reads its maps without locks. Only the map the
// state-of-the-world path reads (withTTL) is built up front; the by-name
// and version maps, which delta streams and config dumps read, are built on
// first use: most proxies' own sets are never asked for them, and 10,000
// proxies hold tens of thousands of sets.
type typeSet struct {
	key     typeKey
	refs    int
	entries []*entry
	withTTL map[string]types.ResourceWithTTL

	lazy      sync.Once
	resources map[string]types.Resource
	versions  map[string]string
}

// newTypeSet builds a set; duplicate names are an error.
func newTypeSet(key typeKey, entries []*entry) (*typeSet, error) {
	ts := &typeSet{
		key:     key,
		entries: entries,
		withTTL: make(map[string]types.ResourceWithTTL, len(entries)),
	}
	for _, e := range entries {
		if _, dup := ts.withTTL[e.name]; dup {
			return nil, fmt.Errorf("%s: two resources named %q", key.typeURL, e.name)
		}
		ts.withTTL[e.name] = types.ResourceWithTTL{Resource: e.res}
	}
	return ts, nil
}

// maps returns the by-name resources and versions, built once.
func (ts *typeSet) maps() (map[string]types.Resource, map[string]string) {
	ts.lazy.Do(func() {
		ts.resources = make(map[string]types.Resource, len(ts.entries))
		ts.versions = make(map[string]string, len(ts.entries))
		for _, e := range ts.entries {
			ts.resources[e.name] = e.res
			ts.versions[e.name] = e.version
		}
	})
	return ts.resources, ts.versions
}

// snapshot is one node's resources: a cache.ResourceSnapshot whose version
// map is computed up front (ConstructVersionMap is free).
type snapshot struct {
	sets [types.UnknownType]*typeSet
}

var _ cache.ResourceSnapshot = (*snapshot)(nil)

func (s *snapshot) set(typeURL string) *typeSet {
	rt := cache.GetResponseType(typeURL)
	if rt == types.UnknownType {
		return nil
	}
	return s.sets[rt]
}

// GetVersion returns the type's version; "" for a type this server does not
// serve, whose watches then wait forever.
func (s *snapshot) GetVersion(typeURL string) string {
	if ts := s.set(typeURL); ts != nil {
		return ts.key.version
	}
	return ""
}

func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if ts := s.set(typeURL); ts != nil {
		return ts.withTTL
	}
	return nil
}

func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	if ts := s.set(typeURL); ts != nil {
		res, _ := ts.maps()
		return res
	}
	return nil
}

func (s *snapshot) ConstructVersionMap() error { return nil }

func (s *snapshot) GetVersionMap(typeURL string) map[string]string {
	if ts := s.set(typeURL); ts != nil {
		_, versions := ts.maps()
		return versions
	}
	return nil
}

// typeURLs are the types a snapshot holds, by cache response type.
var typeURLs = func() (urls [types.UnknownType]string) {
	for rt := range types.UnknownType {
		u, err := cache.GetResponseTypeURL(rt)
		if err != nil {
			panic(err)
		}
		urls[rt] = u
	}
	return urls
}()
