package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// The replicas of one zone (DESIGN.md §7) each keep an inventory and share
// it (zone/peers): every change of a key carries a Stamp, and a replica
// takes a peer's version of a key only when its stamp is newer than its
// own (last writer wins). A deletion leaves a tombstone with its stamp, so
// that an older version arriving late does not bring the resource back.
// Every replica reports its own view to global; since they all converge on
// the same newest version of each key, and each replica reports every
// version it takes, the last report global applies for a key carries the
// converged version whatever order the replicas' reports arrive in.

// DefaultMaxClockSkew bounds how far in the future a peer's stamp may lie.
const DefaultMaxClockSkew = 5 * time.Minute

// Stamp orders the versions of one key across a zone's replicas: by Time
// (Unix nanoseconds of a hybrid clock: never behind the newest stamp the
// replica has seen, so a change made after seeing another wins over it),
// then by Replica.
type Stamp struct {
	Time    int64  `json:"time"`
	Replica string `json:"replica"`
}

// After reports whether s is newer than o.
func (s Stamp) After(o Stamp) bool {
	if s.Time != o.Time {
		return s.Time > o.Time
	}
	return s.Replica > o.Replica
}

// version is what the inventory records of a key's last change: its stamp,
// the local sequence that carried it, and whether it was a deletion (a
// tombstone).
type version struct {
	Stamp   Stamp  `json:"stamp"`
	Seq     uint64 `json:"seq"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Record is one key's newest version as a replica knows it: what the
// replicas of a zone exchange.
type Record struct {
	Type    string `json:"type"`
	Mesh    string `json:"mesh,omitempty"`
	Name    string `json:"name"`
	Stamp   Stamp  `json:"stamp"`
	Deleted bool   `json:"deleted,omitempty"`
	// Resource is the resource in Kuma JSON (with its labels and times);
	// absent when Deleted.
	Resource json.RawMessage `json:"resource,omitempty"`
}

// Key returns the record's key.
func (r Record) Key() api.Key { return api.Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name} }

// MergeResult says what Merge did with a batch of records.
type MergeResult struct {
	// Applied counts the records that changed this inventory.
	Applied int
	// Stale counts the records no newer than what the inventory holds.
	Stale int
	// Refused holds one error per invalid record, naming it and the
	// problem; the other records of the batch are merged all the same.
	Refused []error
}

// nextStamp returns the stamp of a local change made at now. Callers hold
// wmu.
func (inv *Inventory) nextStamp(now time.Time) Stamp {
	t := now.UnixNano()
	if t <= inv.clock {
		t = inv.clock + 1
	}
	inv.clock = t
	return Stamp{Time: t, Replica: inv.replica}
}

// loadVersions reads the versions bucket (nil in a file written before it
// existed) and gives every resource without a version one from its
// modification time. Called by load, before anything else runs.
func (inv *Inventory) loadVersions(b *bolt.Bucket) error {
	if b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			key, ok := parseStorageKey(k)
			var ver version
			if err := json.Unmarshal(v, &ver); !ok || err != nil {
				return fmt.Errorf("%w: version of %q does not decode", ErrCorrupt, bytes.ReplaceAll(k, []byte{0}, []byte{'/'}))
			}
			inv.versions[key] = ver
			return nil
		}); err != nil {
			return err
		}
	}
	for _, r := range inv.index.All() {
		if _, ok := inv.versions[r.Key()]; !ok {
			inv.versions[r.Key()] = version{Stamp: Stamp{Time: r.ModificationTime.UnixNano(), Replica: inv.replica}, Seq: r.Revision}
		}
	}
	for _, v := range inv.versions {
		inv.clock = max(inv.clock, v.Stamp.Time)
	}
	return nil
}

// parseStorageKey is the inverse of storageKey.
func parseStorageKey(k []byte) (api.Key, bool) {
	parts := bytes.Split(k, []byte{0})
	if len(parts) != 3 {
		return api.Key{}, false
	}
	return api.Key{Type: string(parts[0]), Mesh: string(parts[1]), Name: string(parts[2])}, true
}

// Records returns the newest version of every key changed after local
// sequence since (0: every key, tombstones included), in sequence order, and the
// sequence they reach. With origin set, only the versions stamped by that
// replica (changes made here, when origin is this replica) are returned.
func (inv *Inventory) Records(since uint64, origin string) ([]Record, uint64, error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	type seqRecord struct {
		seq uint64
		rec Record
	}
	var out []seqRecord
	for key, ver := range inv.versions {
		if (since > 0 && ver.Seq <= since) || (origin != "" && ver.Stamp.Replica != origin) {
			continue
		}
		rec := Record{Type: key.Type, Mesh: key.Mesh, Name: key.Name, Stamp: ver.Stamp, Deleted: ver.Deleted}
		if !ver.Deleted {
			r, ok := inv.index.Get(key)
			if !ok {
				return nil, 0, fmt.Errorf("inventory: %s has a version but no resource", key)
			}
			body, err := r.MarshalJSON()
			if err != nil {
				return nil, 0, fmt.Errorf("inventory: encode %s: %w", key, err)
			}
			rec.Resource = body
		}
		out = append(out, seqRecord{ver.Seq, rec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	recs := make([]Record, len(out))
	for i := range out {
		recs[i] = out[i].rec
	}
	return recs, inv.seq, nil
}

// Merge takes the records another replica of this zone sent: each one whose
// stamp is newer than this inventory's version of its key replaces it, and
// is reported to global like a local change. Invalid records (another
// zone's, a type zones do not own, a resource that does not validate, a
// stamp too far in the future) are refused one by one, each with its
// reason; the valid ones are written in one transaction.
func (inv *Inventory) Merge(recs []Record) (MergeResult, error) {
	var res MergeResult
	now := time.Now()
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return res, ErrClosed
	}
	seq, clock := inv.seq, inv.clock
	type state struct {
		ver   version
		known bool
		res   *api.Resource // nil: absent
	}
	inBatch := map[api.Key]state{}
	current := func(k api.Key) state {
		if st, ok := inBatch[k]; ok {
			return st
		}
		inv.mu.RLock()
		defer inv.mu.RUnlock()
		v, known := inv.versions[k]
		r, _ := inv.index.Get(k)
		return state{ver: v, known: known, res: r}
	}
	var changes []change
	for _, rec := range recs {
		key := rec.Key()
		next, err := inv.checkRecord(rec, now)
		if err != nil {
			res.Refused = append(res.Refused, fmt.Errorf("%s: %w", key, err))
			continue
		}
		cur := current(key)
		if cur.known && !rec.Stamp.After(cur.ver.Stamp) {
			res.Stale++
			continue
		}
		c := change{key: key, ver: version{Stamp: rec.Stamp, Seq: cur.ver.Seq, Deleted: rec.Deleted}, resource: cur.res}
		switch {
		case rec.Deleted && cur.res == nil, !rec.Deleted && cur.res != nil && sameContent(cur.res, next):
			// Nothing changes but the stamp.
			c.stampOnly = true
		case rec.Deleted:
			seq++
			c.ver.Seq, c.resource = seq, nil
			c.report = &syncpb.Report{Sequence: seq, Deletes: []*syncpb.Deletion{{Type: key.Type, Mesh: key.Mesh, Name: key.Name, Revision: seq}}}
			c.index = func() { inv.index.Delete(key) }
		default:
			next.Revision = seq + 1
			wire, record, err := encodeRecord(next)
			if err != nil {
				res.Refused = append(res.Refused, fmt.Errorf("%s: %w", key, err))
				continue
			}
			seq++
			c.ver.Seq, c.record, c.resource = seq, record, next
			c.report = &syncpb.Report{Sequence: seq, Upserts: []*syncpb.Resource{wire}}
			c.index = func() { inv.index.Put(next) }
		}
		clock = max(clock, rec.Stamp.Time)
		inBatch[key] = state{ver: c.ver, known: true, res: c.resource}
		changes = append(changes, c)
		res.Applied++
	}
	if err := inv.commit(changes...); err != nil {
		return MergeResult{Refused: res.Refused}, err
	}
	inv.clock = clock
	return res, nil
}

// checkRecord validates a peer's record and returns its resource (nil for
// a deletion), as Put would store it.
func (inv *Inventory) checkRecord(rec Record, now time.Time) (*api.Resource, error) {
	d, err := api.Lookup(rec.Type)
	if err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	if d.Owner != api.RoleZone {
		// Zone-owned system types (DataplaneInsight) are shared too.
		return nil, fmt.Errorf("type: %s is not a type zones own", rec.Type)
	}
	switch {
	case rec.Stamp.Replica == "" || rec.Stamp.Time <= 0:
		return nil, fmt.Errorf("stamp: must name a replica and a positive time")
	case rec.Stamp.Time > now.Add(DefaultMaxClockSkew).UnixNano():
		return nil, fmt.Errorf("stamp: %s is more than %s ahead of this replica's clock (check the clocks of replica %q)",
			time.Unix(0, rec.Stamp.Time).UTC().Format(time.RFC3339), DefaultMaxClockSkew, rec.Stamp.Replica)
	}
	if rec.Deleted {
		if len(rec.Resource) > 0 {
			return nil, fmt.Errorf("resource: must be empty in a deletion")
		}
		v := &api.Validator{}
		api.ValidateName(v, "name", rec.Name, 253)
		if d.Scope == api.ScopeMesh {
			api.ValidateName(v, "mesh", rec.Mesh, 63)
		}
		return nil, v.Err()
	}
	r, err := batch.Decode(&syncpb.Resource{Type: rec.Type, Mesh: rec.Mesh, Name: rec.Name, Body: rec.Resource})
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	created, modified := r.CreationTime, r.ModificationTime
	if err := api.Prepare(r); err != nil {
		return nil, err
	}
	v := &api.Validator{}
	if r.Labels[api.LabelZone] != inv.zone {
		v.Add(api.Path("labels").Key(api.LabelZone), "must be %q: a replica of this zone shares only this zone's resources, not %q", inv.zone, r.Labels[api.LabelZone])
	}
	if r.Labels[api.LabelOrigin] != string(api.RoleZone) {
		v.Add(api.Path("labels").Key(api.LabelOrigin), "must be %q, not %q", api.RoleZone, r.Labels[api.LabelOrigin])
	}
	if zi, ok := r.SpecIfZoneIngress(); ok && zi.Zone != inv.zone {
		v.Add("zone", "must be %q, not %q", inv.zone, zi.Zone)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	r.CreationTime, r.ModificationTime = created.UTC(), modified.UTC()
	return r, nil
}

// PruneTombstones forgets the deletions stamped before before and returns
// how many. A replica that comes back after being away longer than that
// may bring back a resource deleted meanwhile (see zone/peers).
func (inv *Inventory) PruneTombstones(before time.Time) (int, error) {
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return 0, ErrClosed
	}
	var old []api.Key
	inv.mu.RLock()
	for k, v := range inv.versions {
		if v.Deleted && v.Stamp.Time < before.UnixNano() {
			old = append(old, k)
		}
	}
	inv.mu.RUnlock()
	if len(old) == 0 {
		return 0, nil
	}
	err := inv.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		for _, k := range old {
			if err := b.Delete(storageKey(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune tombstones in %s: %w", inv.path, err)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, k := range old {
		delete(inv.versions, k)
	}
	return len(old), nil
}
