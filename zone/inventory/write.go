package inventory

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/sync/syncpb"
)

// Put stores r, which must have been through api.Prepare, and appends the
// report that carries it to global, in one transaction. It returns the
// stored resource (with its labels pinned, its times and its revision: the
// new sequence number) and whether it was created.
//
// It refuses, without writing anything: a type zones do not own
// (*api.ReadOnlyError); a ZoneIngress of another zone, or kuma.io/zone or
// kuma.io/origin labels that say another zone or origin
// (*api.ValidationError); a stale ExpectRevision (*api.ConflictError).
// A write that changes neither labels nor spec returns the stored resource
// unchanged and reports nothing.
func (inv *Inventory) Put(r *api.Resource, opts PutOptions) (*api.Resource, bool, error) {
	labels, err := inv.checkPut(r, false)
	if err != nil {
		return nil, false, err
	}
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return nil, false, ErrClosed
	}
	old, _ := inv.Get(r.Key())
	if err := checkExpected(r.Key(), old, opts.ExpectRevision); err != nil {
		return nil, false, err
	}
	stored, c, err := inv.prepareUpsert(r, labels, old, inv.seq+1, opts.Now)
	if err != nil || c == nil {
		return stored, false, err
	}
	if err := inv.commit(*c); err != nil {
		return nil, false, err
	}
	inv.logger.Debug("stored zone resource", "type", r.Type, "mesh", r.Mesh, "name", r.Name, "revision", stored.Revision)
	return stored, old == nil, nil
}

// PutBatch stores several resources, each as Put would (without
// ExpectRevision), in one transaction: one disk sync for all of them. It
// returns one error per resource (nil: stored or unchanged); err is set,
// and nothing is stored, when the transaction fails.
func (inv *Inventory) PutBatch(rs []*api.Resource, now time.Time) (errs []error, err error) {
	return inv.putBatch(rs, now, false)
}

// PutSystem is PutBatch for the zone-owned system types the zone itself
// maintains (DataplaneInsight), which Put and PutBatch refuse.
func (inv *Inventory) PutSystem(rs []*api.Resource, now time.Time) (errs []error, err error) {
	return inv.putBatch(rs, now, true)
}

func (inv *Inventory) putBatch(rs []*api.Resource, now time.Time, system bool) (errs []error, err error) {
	errs = make([]error, len(rs))
	labels := make([]map[string]string, len(rs))
	for i, r := range rs {
		labels[i], errs[i] = inv.checkPut(r, system)
	}
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return nil, ErrClosed
	}
	var changes []change
	inBatch := map[api.Key]*api.Resource{}
	seq := inv.seq
	for i, r := range rs {
		if errs[i] != nil {
			continue
		}
		old, seen := inBatch[r.Key()]
		if !seen {
			old, _ = inv.Get(r.Key())
		}
		stored, c, err := inv.prepareUpsert(r, labels[i], old, seq+1, now)
		if err != nil {
			errs[i] = err
			continue
		}
		if c == nil {
			continue
		}
		seq++
		inBatch[r.Key()] = stored
		changes = append(changes, *c)
	}
	if err := inv.commit(changes...); err != nil {
		return nil, err
	}
	if len(changes) > 0 {
		inv.logger.Debug("stored zone resources", "count", len(changes), "revision", seq)
	}
	return errs, nil
}

// checkPut refuses what Put never stores: a type zones do not own
// (*api.ReadOnlyError), another zone's resource (*api.ValidationError). It
// returns r's labels with the zone's pinned.
func (inv *Inventory) checkPut(r *api.Resource, system bool) (map[string]string, error) {
	d, err := api.Lookup(r.Type)
	if err != nil {
		return nil, err
	}
	if d.Owner != api.RoleZone || d.System != system {
		return nil, &api.ReadOnlyError{Type: d.Name, Owner: d.Owner, System: d.System}
	}
	return inv.pinLabels(r)
}

// prepareUpsert builds the change that stores r (with labels) over old as
// sequence seq, at now (zero: the current time). It returns old and a nil
// change when labels and spec are unchanged. Callers hold wmu.
func (inv *Inventory) prepareUpsert(r *api.Resource, labels map[string]string, old *api.Resource, seq uint64, now time.Time) (*api.Resource, *change, error) {
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	key := r.Key()
	next := &api.Resource{Meta: api.Meta{Type: r.Type, Mesh: r.Mesh, Name: r.Name, Labels: labels}, Spec: r.Spec}
	if old != nil && sameContent(old, next) {
		return old, nil, nil
	}
	// Only writers (serialized by wmu) change seq and pendingByKey.
	next.CreationTime, next.ModificationTime, next.Revision = now, now, seq
	if old != nil {
		next.CreationTime = old.CreationTime
	}
	wire, record, err := encodeRecord(next)
	if err != nil {
		return nil, nil, err
	}
	rep := &syncpb.Report{Sequence: seq, Upserts: []*syncpb.Resource{wire}}
	ver := version{Stamp: inv.nextStamp(now), Seq: seq}
	return next, &change{key: key, record: record, resource: next, report: rep, ver: ver, index: func() { inv.index.Put(next) }}, nil
}

// Delete removes the resource under key and appends the report of its
// deletion, in one transaction, and returns what was deleted. Errors:
// *api.ReadOnlyError for a type zones do not own, api.ErrNotFound,
// *api.ConflictError for a stale expectRevision (non-zero).
func (inv *Inventory) Delete(key api.Key, expectRevision uint64) (*api.Resource, error) {
	return inv.delete(key, expectRevision, false)
}

// DeleteSystem is Delete for the zone-owned system types (DataplaneInsight).
func (inv *Inventory) DeleteSystem(key api.Key) (*api.Resource, error) {
	return inv.delete(key, 0, true)
}

func (inv *Inventory) delete(key api.Key, expectRevision uint64, system bool) (*api.Resource, error) {
	d, err := api.Lookup(key.Type)
	if err != nil {
		return nil, err
	}
	if d.Owner != api.RoleZone || d.System != system {
		return nil, &api.ReadOnlyError{Type: d.Name, Owner: d.Owner, System: d.System}
	}
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return nil, ErrClosed
	}
	old, ok := inv.Get(key)
	if !ok {
		return nil, api.ErrNotFound
	}
	if err := checkExpected(key, old, expectRevision); err != nil {
		return nil, err
	}
	seq := inv.seq + 1
	rep := &syncpb.Report{Sequence: seq, Deletes: []*syncpb.Deletion{{Type: key.Type, Mesh: key.Mesh, Name: key.Name, Revision: seq}}}
	ver := version{Stamp: inv.nextStamp(time.Now()), Seq: seq, Deleted: true}
	if err := inv.commit(change{key: key, report: rep, ver: ver, index: func() { inv.index.Delete(key) }}); err != nil {
		return nil, err
	}
	inv.logger.Debug("deleted zone resource", "type", key.Type, "mesh", key.Mesh, "name", key.Name, "revision", seq)
	return old, nil
}

// change is one write of one resource: its stored record (nil: its
// deletion), the report that carries it to global, its version (stamp and
// sequence) and the update of the in-memory index.
type change struct {
	key api.Key
	// record is the stored resource; nil deletes it, unless stampOnly.
	record []byte
	// stampOnly records ver alone: the resource (or its absence) stays.
	stampOnly bool
	// resource is what record holds (Merge reads it back within a batch).
	resource *api.Resource
	// report carries the change to global; nil with stampOnly.
	report *syncpb.Report
	ver    version
	index  func()
}

// commit writes changes in one transaction, each replacing its key's
// pending report, then publishes them to memory and wakes the watchers.
// The sequences of their reports must follow inv.seq in order. Callers hold
// wmu.
func (inv *Inventory) commit(changes ...change) error {
	if len(changes) == 0 {
		return nil
	}
	reps := make([][]byte, len(changes))
	vers := make([][]byte, len(changes))
	superseded := make([]uint64, len(changes)) // 0: none
	pendingByKey := map[api.Key]uint64{}
	last := inv.seq
	for i, c := range changes {
		var err error
		if vers[i], err = json.Marshal(c.ver); err != nil {
			return err
		}
		if c.report == nil {
			continue
		}
		if reps[i], err = proto.Marshal(c.report); err != nil {
			return err
		}
		if s, ok := pendingByKey[c.key]; ok {
			superseded[i] = s
		} else if s, ok := inv.pendingByKey[c.key]; ok {
			superseded[i] = s
		}
		pendingByKey[c.key] = c.report.GetSequence()
		last = c.report.GetSequence()
	}
	err := inv.db.Update(func(tx *bolt.Tx) error {
		resources, reports, versions := tx.Bucket(bucketResources), tx.Bucket(bucketReports), tx.Bucket(bucketVersions)
		for i, c := range changes {
			k := storageKey(c.key)
			switch {
			case c.stampOnly:
			case c.record != nil:
				if err := resources.Put(k, c.record); err != nil {
					return err
				}
			default:
				if err := resources.Delete(k); err != nil {
					return err
				}
			}
			if err := versions.Put(k, vers[i]); err != nil {
				return err
			}
			if c.report == nil {
				continue
			}
			if superseded[i] != 0 {
				if err := reports.Delete(encodeUint(superseded[i])); err != nil {
					return err
				}
			}
			if err := reports.Put(encodeUint(c.report.GetSequence()), reps[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySequence, encodeUint(last))
	})
	if err != nil {
		if len(changes) == 1 {
			return fmt.Errorf("write %s to %s: %w", changes[0].key, inv.path, err)
		}
		return fmt.Errorf("write %d changes to %s: %w", len(changes), inv.path, err)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	changed, specChanged := false, false
	for i, c := range changes {
		inv.versions[c.key] = c.ver
		if c.report == nil {
			continue
		}
		changed = true
		if d, err := api.Lookup(c.key.Type); err == nil && !d.System {
			specChanged = true
		}
		c.index()
		if superseded[i] != 0 {
			inv.removePending(superseded[i])
		}
		inv.addPending(c.report)
	}
	inv.seq = last
	if changed {
		inv.notifyReports()
		inv.notifyChange(specChanged)
	}
	return nil
}

func checkExpected(key api.Key, old *api.Resource, expect uint64) error {
	switch {
	case expect == 0:
		return nil
	case old == nil:
		return &api.ConflictError{Reason: fmt.Sprintf("%s does not exist, expected revision %d", key, expect)}
	case old.Revision != expect:
		return &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, expected %d", key, old.Revision, expect)}
	}
	return nil
}

// pinLabels checks that r belongs to this zone and returns its labels with
// kuma.io/zone and kuma.io/origin set.
func (inv *Inventory) pinLabels(r *api.Resource) (map[string]string, error) {
	v := &api.Validator{}
	if zi, ok := r.SpecIfZoneIngress(); ok && zi.Zone != inv.zone {
		v.Add("zone", "must be %q: a zone control plane registers only its own ZoneIngress, not zone %q's", inv.zone, zi.Zone)
	}
	if z, ok := r.Labels[api.LabelZone]; ok && z != inv.zone {
		v.Add(api.Path("labels").Key(api.LabelZone), "must be %q (this zone) or left out: the zone sets it, not %q", inv.zone, z)
	}
	if o, ok := r.Labels[api.LabelOrigin]; ok && o != string(api.RoleZone) {
		v.Add(api.Path("labels").Key(api.LabelOrigin), "must be %q or left out: the zone sets it, not %q", api.RoleZone, o)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	labels := make(map[string]string, len(r.Labels)+2)
	for k, val := range r.Labels {
		labels[k] = val
	}
	labels[api.LabelZone], labels[api.LabelOrigin] = inv.zone, string(api.RoleZone)
	return labels, nil
}

// sameContent reports whether two versions of a resource have the same
// labels and spec (times and revision aside).
func sameContent(a, b *api.Resource) bool {
	ma := api.Meta{Type: a.Type, Mesh: a.Mesh, Name: a.Name, Labels: a.Labels}
	mb := api.Meta{Type: b.Type, Mesh: b.Mesh, Name: b.Name, Labels: b.Labels}
	ja, errA := json.Marshal(a.WithMeta(ma))
	jb, errB := json.Marshal(b.WithMeta(mb))
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Acked implements syncclient.Reports: global has committed report seq,
// refusing the rejected resources. The report leaves the outbox; each
// refusal is recorded (Status), and an earlier refusal of a resource the
// report carried without one is cleared. An acknowledgement of a report
// that is no longer pending (replaced by a newer change of its resource) is
// ignored. A failure to write is logged: the report stays pending and is
// sent again on the next connection.
func (inv *Inventory) Acked(seq uint64, rejected []*syncpb.Rejection) {
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return
	}
	inv.mu.RLock()
	var rep *syncpb.Report
	if i := inv.pendingIndex(seq); i >= 0 {
		rep = inv.pending[i]
	}
	inv.mu.RUnlock()
	if rep == nil {
		inv.logger.Debug("acknowledgement of a report no longer pending", "sequence", seq)
		return
	}
	now := time.Now().UTC()
	refused := map[api.Key]Rejection{}
	for _, r := range rejected {
		k := api.Key{Type: r.GetType(), Mesh: r.GetMesh(), Name: r.GetName()}
		refused[k] = Rejection{Type: k.Type, Mesh: k.Mesh, Name: k.Name, Sequence: seq, Reason: r.GetReason(), Time: now}
	}
	var cleared []api.Key
	inv.mu.RLock()
	for _, k := range reportKeys(rep) {
		if _, bad := refused[k]; !bad {
			if _, had := inv.rejections[k]; had {
				cleared = append(cleared, k)
			}
		}
	}
	acked := max(inv.acked, seq)
	inv.mu.RUnlock()

	err := inv.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketReports).Delete(encodeUint(seq)); err != nil {
			return err
		}
		b := tx.Bucket(bucketRejections)
		for k, rej := range refused {
			v, err := json.Marshal(rej)
			if err != nil {
				return err
			}
			if err := b.Put(storageKey(k), v); err != nil {
				return err
			}
		}
		for _, k := range cleared {
			if err := b.Delete(storageKey(k)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyAcked, encodeUint(acked))
	})
	if err != nil {
		inv.logger.Error("recording a report's acknowledgement failed; it will be sent again", "sequence", seq, "err", err)
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.removePending(seq)
	for k, rej := range refused {
		inv.rejections[k] = rej
	}
	for _, k := range cleared {
		delete(inv.rejections, k)
	}
	inv.acked = acked
}

// ReportTo records where the zone reports to (t), and reports every
// resource again, in reports of bounded size, when global has lost them: it
// returns how many. Global has lost them when the zone follows another
// global cluster than before (global's data was replaced), or when this
// zone's Zone resource on global was created anew (global deleted the zone,
// offline, with everything it had reported). The first target a zone sees
// is only recorded: every change since the inventory was created is still
// pending or was acknowledged by it; so is the first Zone creation time seen
// in a cluster. A target without a cluster id, or without a Zone creation
// time in the same cluster (the Zone is being created again), changes
// nothing.
func (inv *Inventory) ReportTo(t Target) (int, error) {
	if t.ClusterID == "" {
		return 0, nil
	}
	inv.wmu.Lock()
	defer inv.wmu.Unlock()
	if inv.closed {
		return 0, ErrClosed
	}
	prev := inv.ReportedTo()
	var why string
	switch {
	case prev == t:
		return 0, nil
	case prev.ClusterID == "":
	case prev.ClusterID != t.ClusterID:
		why = "following another global cluster"
	case t.ZoneCreated == "":
		return 0, nil
	case prev.ZoneCreated == "":
	default:
		why = "this zone was deleted on global and registered again"
	}
	var all []*api.Resource
	if why != "" {
		inv.mu.RLock()
		all = inv.index.All()
		inv.mu.RUnlock()
		sort.Slice(all, func(i, j int) bool { return all[i].Key().String() < all[j].Key().String() })
	}
	seq := inv.seq
	var reports []*syncpb.Report
	var cur *syncpb.Report
	size := 0
	for _, r := range all {
		wire, _, err := encodeRecord(r)
		if err != nil {
			return 0, err
		}
		n := proto.Size(wire)
		if cur == nil || (size > 0 && size+n > inv.maxReportBytes) {
			seq++
			cur = &syncpb.Report{Sequence: seq}
			reports = append(reports, cur)
			size = 0
		}
		cur.Upserts = append(cur.Upserts, wire)
		size += n
	}
	err := inv.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReports)
		for _, rep := range reports {
			v, err := proto.Marshal(rep)
			if err != nil {
				return err
			}
			if err := b.Put(encodeUint(rep.GetSequence()), v); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySequence, encodeUint(seq)); err != nil {
			return err
		}
		if err := meta.Put(keyReportedCluster, []byte(t.ClusterID)); err != nil {
			return err
		}
		return meta.Put(keyReportedZoneCreated, []byte(t.ZoneCreated))
	})
	if err != nil {
		return 0, fmt.Errorf("record the global cluster in %s: %w", inv.path, err)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.seq, inv.reportedTo = seq, t
	for _, rep := range reports {
		inv.addPending(rep)
	}
	if len(reports) > 0 {
		inv.notifyReports()
	}
	if why != "" {
		inv.logger.Info(why+": reporting every zone resource again", "cluster_id", t.ClusterID,
			"previous_cluster_id", prev.ClusterID, "zone_created", t.ZoneCreated, "resources", len(all), "reports", len(reports))
	}
	return len(all), nil
}
