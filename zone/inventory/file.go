package inventory

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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
//	  "format"           decimal text, "1"
//	  "zone"             the zone the inventory belongs to
//	  "sequence"         the last sequence number taken, 8 bytes big-endian
//	  "acked"            the highest report sequence global acknowledged, 8 bytes
//	  "reported_cluster" the global cluster the zone last reported to
//	  "reported_zone_created" the creation time of this zone's Zone there
//	bucket "resources"
//	  type NUL mesh NUL name → syncpb.Resource (revision = its sequence,
//	                            body = Kuma JSON with times and labels)
//	bucket "reports"
//	  sequence, 8 bytes big-endian → syncpb.Report, until global acknowledges it
//	bucket "rejections"
//	  type NUL mesh NUL name → Rejection in JSON
//	bucket "versions" (added without a format change: Open creates it in a
//	                    file that lacks it, and a resource without a version
//	                    gets one from its modification time)
//	  type NUL mesh NUL name → version in JSON: the stamp and sequence of the
//	                            key's last change, kept after a deletion as
//	                            its tombstone (see PruneTombstones)
//
// Names never contain NUL (RFC 1123 subdomains), so keys are unambiguous, and
// big-endian sequences iterate in order.
const formatVersion = 1

var (
	bucketMeta       = []byte("meta")
	bucketResources  = []byte("resources")
	bucketReports    = []byte("reports")
	bucketRejections = []byte("rejections")
	bucketVersions   = []byte("versions")

	keyFormat          = []byte("format")
	keyZone            = []byte("zone")
	keySequence        = []byte("sequence")
	keyAcked           = []byte("acked")
	keyReportedCluster = []byte("reported_cluster")
	// keyReportedZoneCreated: the creation time of this zone's Zone on global.
	keyReportedZoneCreated = []byte("reported_zone_created")
)

func storageKey(k api.Key) []byte {
	b := make([]byte, 0, len(k.Type)+len(k.Mesh)+len(k.Name)+2)
	b = append(b, k.Type...)
	b = append(b, 0)
	b = append(b, k.Mesh...)
	b = append(b, 0)
	return append(b, k.Name...)
}

func encodeUint(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func decodeUint(v []byte, what string) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s record is %d bytes, want 8", ErrCorrupt, what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// load reads the file into memory, initializing an empty file. It reports
// whether the file was created.
func (inv *Inventory) load() (created bool, err error) {
	// bbolt trusts its pages: a damaged file can make it panic.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading it failed: %v", ErrCorrupt, p)
		}
	}()
	var empty bool
	err = inv.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			var names []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, strconv.Quote(string(name)))
				return nil
			})
			if len(names) > 0 {
				return fmt.Errorf("%w: it holds buckets %v and no inventory metadata", ErrNotInventory, names)
			}
			empty = true
			return nil
		}
		if err := checkFormat(meta.Get(keyFormat)); err != nil {
			return err
		}
		if z := string(meta.Get(keyZone)); z != inv.zone {
			return fmt.Errorf("%w: it was written for zone %q, this is zone %q", ErrWrongZone, z, inv.zone)
		}
		var err error
		if inv.seq, err = decodeUint(meta.Get(keySequence), "sequence"); err != nil {
			return err
		}
		if inv.acked, err = decodeUint(meta.Get(keyAcked), "acked"); err != nil {
			return err
		}
		inv.reportedTo = Target{ClusterID: string(meta.Get(keyReportedCluster)), ZoneCreated: string(meta.Get(keyReportedZoneCreated))}
		for _, name := range [][]byte{bucketResources, bucketReports, bucketRejections} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: the %s bucket is missing", ErrCorrupt, name)
			}
		}
		if err := tx.Bucket(bucketResources).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return fmt.Errorf("%w: resource %q: %w", ErrCorrupt, bytes.ReplaceAll(k, []byte{0}, []byte{'/'}), err)
			}
			inv.index.Put(r)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketReports).ForEach(func(k, v []byte) error {
			seq, err := decodeUint(k, "report key")
			if err != nil {
				return err
			}
			var rep syncpb.Report
			if err := proto.Unmarshal(v, &rep); err != nil || rep.GetSequence() != seq {
				return fmt.Errorf("%w: report %d does not decode or is stored under another sequence", ErrCorrupt, seq)
			}
			inv.addPending(&rep)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRejections).ForEach(func(k, v []byte) error {
			var rej Rejection
			if err := json.Unmarshal(v, &rej); err != nil {
				return fmt.Errorf("%w: rejection %q: %w", ErrCorrupt, bytes.ReplaceAll(k, []byte{0}, []byte{'/'}), err)
			}
			inv.rejections[api.Key{Type: rej.Type, Mesh: rej.Mesh, Name: rej.Name}] = rej
			return nil
		}); err != nil {
			return err
		}
		return inv.loadVersions(tx.Bucket(bucketVersions))
	})
	if err != nil {
		return false, err
	}
	if !empty {
		return false, inv.db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketVersions)
			return err
		})
	}
	err = inv.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketResources, bucketReports, bucketRejections, bucketVersions} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for k, v := range map[string][]byte{
			string(keyFormat):              []byte(strconv.Itoa(formatVersion)),
			string(keyZone):                []byte(inv.zone),
			string(keySequence):            encodeUint(0),
			string(keyAcked):               encodeUint(0),
			string(keyReportedCluster):     {},
			string(keyReportedZoneCreated): {},
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
		return fmt.Errorf("%w: no format version recorded", ErrNotInventory)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return fmt.Errorf("%w: format version %q is not a number", ErrCorrupt, v)
	}
	if n != formatVersion {
		return fmt.Errorf("%w: the file has format version %d, this meshd reads version %d", ErrUnsupportedFormat, n, formatVersion)
	}
	return nil
}

// encodeRecord is the stored form of a resource.
func encodeRecord(r *api.Resource) (*syncpb.Resource, []byte, error) {
	wire, err := batch.Encode(r)
	if err != nil {
		return nil, nil, err
	}
	b, err := proto.Marshal(wire)
	if err != nil {
		return nil, nil, err
	}
	return wire, b, nil
}

// decodeRecord turns a stored record back into a resource, checking that it
// is stored under its own key. It is not validated again: a resource that a
// newer meshd would refuse is still the zone's, and global judges it.
func decodeRecord(k, v []byte) (*api.Resource, error) {
	var wire syncpb.Resource
	if err := proto.Unmarshal(v, &wire); err != nil {
		return nil, err
	}
	key := api.Key{Type: wire.GetType(), Mesh: wire.GetMesh(), Name: wire.GetName()}
	if !bytes.Equal(k, storageKey(key)) {
		return nil, fmt.Errorf("stored under the wrong key (record is %s)", key)
	}
	return batch.Decode(&wire)
}
