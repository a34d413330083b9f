package replica

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/batch"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// accepted is an upsert that passed the checks, with its stored form.
type accepted struct {
	res    *api.Resource
	record []byte
}

// ApplyChanges applies one Changes message (or the concatenation of its
// parts) in one transaction and moves the replica to revision.
//
// Each upsert is decoded and validated on its own; one that fails (malformed,
// unknown type, body not matching its key, invalid, or a zone-owned resource
// of this zone) is returned as a Rejection with the reason, is not written,
// and leaves the previous version of its key in place. It never blocks the
// others. Upserts are applied in order, then deletes; deleting a key the
// replica does not hold is a no-op.
//
// revision must not be lower than Revision() (*RevisionError, nothing
// written); equal is allowed. A caller that applies the parts of a chunked
// Changes (more = true) one at a time passes Revision() for every part but
// the last, so that the replica claims the new revision only once it holds
// all of it.
//
// The error is for the write as a whole (the file could not be written, a
// revision going backwards, the replica closed): nothing was applied.
func (r *Replica) ApplyChanges(upserts []*syncpb.Resource, deletes []*syncpb.Deletion, revision uint64) ([]*syncpb.Rejection, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	current := r.Revision()
	if revision < current {
		return nil, &RevisionError{Current: current, Got: revision}
	}
	good, rejections := r.checkAll(upserts)

	// Skip the transaction (and its fsync) when nothing would change.
	if len(good) == 0 && revision == current && !r.holdsAny(deletes) {
		return rejections, nil
	}

	var deleted []api.Key
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResources)
		for _, a := range good {
			if err := b.Put(storageKey(a.res.Type, a.res.Mesh, a.res.Name), a.record); err != nil {
				return fmt.Errorf("write %s: %w", a.res.Key(), err)
			}
		}
		for _, d := range deletes {
			if d == nil {
				continue
			}
			k := storageKey(d.GetType(), d.GetMesh(), d.GetName())
			if b.Get(k) == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete %s/%s/%s: %w", d.GetType(), d.GetMesh(), d.GetName(), err)
			}
			deleted = append(deleted, api.Key{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName()})
		}
		return tx.Bucket(bucketMeta).Put(keyRevision, encodeRevision(revision))
	})
	if err != nil {
		return nil, fmt.Errorf("apply changes at revision %d to %s: %w", revision, r.path, err)
	}

	// Committed: publish to readers, in the order the transaction applied.
	r.publish(func() {
		for _, a := range good {
			r.index.Put(a.res)
		}
		for _, k := range deleted {
			r.index.Delete(k)
		}
		r.revision = revision
	})
	r.logger.Debug("applied changes", "revision", revision, "upserts", len(good),
		"deletes", len(deleted), "rejected", len(rejections))
	return rejections, nil
}

// Reset replaces the whole replica in one transaction with resources (the
// concatenated chunks of a Reset), at revision, from the global cluster
// clusterID.
//
// Resources are checked as in ApplyChanges; rejected ones are returned and not
// written. When the Reset comes from the cluster the replica already follows,
// a rejected resource keeps its previous version (as in ApplyChanges: a
// policy this zone cannot read yet is not dropped); from another cluster,
// nothing of the old state survives.
//
// From the same cluster, revision must not be lower than Revision()
// (*RevisionError, nothing written).
func (r *Replica) Reset(resources []*syncpb.Resource, revision uint64, clusterID string) ([]*syncpb.Rejection, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.mu.RLock()
	current, currentCluster := r.revision, r.clusterID
	r.mu.RUnlock()
	sameCluster := clusterID == currentCluster
	if sameCluster && revision < current {
		return nil, &RevisionError{Current: current, Got: revision}
	}
	good, rejections := r.checkAll(resources)

	index := api.NewIndex()
	for _, a := range good {
		index.Put(a.res)
	}
	// Previous versions of rejected keys kept (same cluster only).
	var kept []api.Key
	if sameCluster {
		for _, rej := range rejections {
			k := api.Key{Type: rej.GetType(), Mesh: rej.GetMesh(), Name: rej.GetName()}
			if _, ok := index.Get(k); ok {
				continue
			}
			if old, ok := r.Get(k); ok {
				index.Put(old)
				kept = append(kept, k)
			}
		}
	}

	err := r.db.Update(func(tx *bolt.Tx) error {
		old := tx.Bucket(bucketResources)
		keptRecords := make([][]byte, len(kept))
		for i, k := range kept {
			// Copy: the old bucket's memory is released with it.
			keptRecords[i] = append([]byte(nil), old.Get(storageKey(k.Type, k.Mesh, k.Name))...)
		}
		if err := tx.DeleteBucket(bucketResources); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketResources)
		if err != nil {
			return err
		}
		for _, a := range good {
			if err := b.Put(storageKey(a.res.Type, a.res.Mesh, a.res.Name), a.record); err != nil {
				return fmt.Errorf("write %s: %w", a.res.Key(), err)
			}
		}
		for i, k := range kept {
			if len(keptRecords[i]) == 0 {
				return fmt.Errorf("previous version of %s is missing from the file", k)
			}
			if err := b.Put(storageKey(k.Type, k.Mesh, k.Name), keptRecords[i]); err != nil {
				return fmt.Errorf("write %s: %w", k, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyClusterID, []byte(clusterID)); err != nil {
			return err
		}
		return meta.Put(keyRevision, encodeRevision(revision))
	})
	if err != nil {
		return nil, fmt.Errorf("reset at revision %d to %s: %w", revision, r.path, err)
	}

	r.publish(func() {
		r.index = index
		r.revision, r.clusterID = revision, clusterID
	})
	r.logger.Info("replica reset", "revision", revision, "cluster_id", clusterID,
		"resources", index.Len(), "rejected", len(rejections), "kept_previous", len(kept))
	return rejections, nil
}

// holdsAny reports whether the replica holds any of the keys to delete.
func (r *Replica) holdsAny(deletes []*syncpb.Deletion) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, d := range deletes {
		if d == nil {
			continue
		}
		if _, ok := r.index.Get(api.Key{Type: d.GetType(), Mesh: d.GetMesh(), Name: d.GetName()}); ok {
			return true
		}
	}
	return false
}

// checkAll checks every upsert, returning the accepted ones in order and a
// rejection for each of the others.
func (r *Replica) checkAll(in []*syncpb.Resource) ([]accepted, []*syncpb.Rejection) {
	good := make([]accepted, 0, len(in))
	var rejections []*syncpb.Rejection
	for _, wire := range in {
		res, reason := r.check(wire)
		if reason == "" {
			rec, err := encodeRecord(wire)
			if err == nil {
				good = append(good, accepted{res: res, record: rec})
				continue
			}
			reason = "cannot store: " + err.Error()
		}
		rej := &syncpb.Rejection{
			Type:     wire.GetType(),
			Mesh:     wire.GetMesh(),
			Name:     wire.GetName(),
			Revision: wire.GetRevision(),
			Reason:   reason,
		}
		rejections = append(rejections, rej)
		r.logger.Warn("rejected resource from global", "type", rej.Type, "mesh", rej.Mesh,
			"name", rej.Name, "revision", rej.Revision, "reason", reason)
	}
	return good, rejections
}

// check decodes and validates one resource from global. It returns the
// resource as global sent it (no defaults applied by this zone), or the
// reason it is rejected.
func (r *Replica) check(wire *syncpb.Resource) (*api.Resource, string) {
	if wire == nil {
		return nil, "empty resource"
	}
	res, err := batch.Decode(wire)
	if err != nil {
		return nil, "cannot decode: " + err.Error()
	}
	d, err := api.Lookup(res.Type)
	if err != nil { // DecodeJSON has looked it up already
		return nil, err.Error()
	}
	if reason := r.checkOwner(d, res); reason != "" {
		return nil, reason
	}
	// Validate a copy: Prepare fills defaults in place, and the replica
	// keeps global's version as it is.
	cp, err := api.DecodeJSON(wire.GetBody())
	if err != nil {
		return nil, "cannot decode: " + err.Error()
	}
	if err := api.Prepare(cp); err != nil {
		return nil, "invalid: " + err.Error()
	}
	return res, ""
}

// checkOwner refuses zone-owned resources global must not send this zone:
// its own (labeled with this zone's name) and those whose zone is unknown.
// Other zones' ZoneIngress (and Dataplanes, for cross-zone endpoints) are
// fine.
func (r *Replica) checkOwner(d *api.Descriptor, res *api.Resource) string {
	if d.Owner != api.RoleZone {
		return ""
	}
	switch z := res.Labels[api.TagZone]; z {
	case "":
		return fmt.Sprintf("%s is owned by zones and has no %s label: cannot tell which zone it belongs to", d.Name, api.TagZone)
	case r.zone:
		return fmt.Sprintf("%s is owned by this zone (%s: %s): the zone is the source of its own %s resources, global must not send them back", d.Name, api.TagZone, z, d.Name)
	}
	return ""
}
