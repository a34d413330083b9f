package replica

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// The file's layout (format version 1):
//
//	bucket "meta"
//	  "format"     decimal text, "1"
//	  "zone"       the zone the replica belongs to
//	  "cluster_id" global's cluster id ("" until the first Reset)
//	  "revision"   global revision last fully applied, 8 bytes big-endian
//	bucket "resources"
//	  type NUL mesh NUL name → syncpb.Resource (type, mesh, name, revision,
//	                            body) in protobuf, as global sent it
//
// Names never contain NUL (they are RFC 1123 subdomains, checked before a
// resource is stored), so the key is unambiguous.
const formatVersion = 1

var (
	bucketMeta      = []byte("meta")
	bucketResources = []byte("resources")

	keyFormat    = []byte("format")
	keyZone      = []byte("zone")
	keyClusterID = []byte("cluster_id")
	keyRevision  = []byte("revision")
)

func storageKey(typ, mesh, name string) []byte {
	b := make([]byte, 0, len(typ)+len(mesh)+len(name)+2)
	b = append(b, typ...)
	b = append(b, 0)
	b = append(b, mesh...)
	b = append(b, 0)
	return append(b, name...)
}

func encodeRevision(rev uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, rev)
}

// encodeRecord is the stored form of a resource: only the fields the replica
// knows, so that unknown protobuf fields of a newer global are not kept.
func encodeRecord(res *syncpb.Resource) ([]byte, error) {
	return proto.Marshal(&syncpb.Resource{
		Type:     res.GetType(),
		Mesh:     res.GetMesh(),
		Name:     res.GetName(),
		Revision: res.GetRevision(),
		Body:     res.GetBody(),
	})
}

// load reads the file into memory, initializing an empty file. It reports
// whether the file was created.
func (r *Replica) load() (created bool, err error) {
	// bbolt trusts its pages: a damaged file can make it panic instead of
	// returning an error. Turn that into ErrCorrupt rather than crashing.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading it failed: %v", ErrCorrupt, p)
		}
	}()
	var empty bool
	err = r.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			var names []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, strconv.Quote(string(name)))
				return nil
			})
			if len(names) > 0 {
				return fmt.Errorf("%w: it holds buckets %v and no replica metadata", ErrNotReplica, names)
			}
			empty = true
			return nil
		}
		if err := checkFormat(meta.Get(keyFormat)); err != nil {
			return err
		}
		if z := string(meta.Get(keyZone)); z != r.zone {
			return fmt.Errorf("%w: it was written for zone %q, this is zone %q", ErrWrongZone, z, r.zone)
		}
		r.clusterID = string(meta.Get(keyClusterID))
		if v := meta.Get(keyRevision); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: revision record is %d bytes, want 8", ErrCorrupt, len(v))
			}
			r.revision = binary.BigEndian.Uint64(v)
		}
		b := tx.Bucket(bucketResources)
		if b == nil {
			return fmt.Errorf("%w: the resources bucket is missing", ErrCorrupt)
		}
		return b.ForEach(func(k, v []byte) error {
			res, err := decodeRecord(k, v)
			if err != nil {
				return fmt.Errorf("%w: record %q: %w", ErrCorrupt, bytes.ReplaceAll(k, []byte{0}, []byte{'/'}), err)
			}
			r.index.Put(res)
			return nil
		})
	})
	if err != nil || !empty {
		return false, err
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketResources); err != nil {
			return err
		}
		for k, v := range map[string][]byte{
			string(keyFormat):    []byte(strconv.Itoa(formatVersion)),
			string(keyZone):      []byte(r.zone),
			string(keyClusterID): {},
			string(keyRevision):  encodeRevision(0),
		} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("initialize: %w", err)
	}
	return true, nil
}

func checkFormat(v []byte) error {
	if v == nil {
		return fmt.Errorf("%w: no format version recorded", ErrNotReplica)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return fmt.Errorf("%w: format version %q is not a number", ErrCorrupt, v)
	}
	if n != formatVersion {
		return fmt.Errorf("%w: the file has format version %d, this meshd reads version %d (was it written by a newer meshd? move it away to start from an empty replica)", ErrUnsupportedFormat, n, formatVersion)
	}
	return nil
}

// decodeRecord turns a stored record back into a resource, checking that it
// is stored under its own key.
func decodeRecord(k, v []byte) (*api.Resource, error) {
	var wire syncpb.Resource
	if err := proto.Unmarshal(v, &wire); err != nil {
		return nil, err
	}
	if !bytes.Equal(k, storageKey(wire.Type, wire.Mesh, wire.Name)) {
		return nil, fmt.Errorf("stored under the wrong key (record is %s/%s/%s)", wire.Type, wire.Mesh, wire.Name)
	}
	return batch.Decode(&wire)
}
