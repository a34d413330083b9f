package global

import (
	"errors"
	"sort"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/global/store"
	"github.com/meshfed/meshfed/sync/batch"
)

// stateFeed adapts the FSM state to syncserver.Feed, as zones are to see it:
// what a disabled zone reported (its ZoneIngress) is hidden, so that it is
// not fanned out to the other zones.
//
// A filter alone would not do: the other zones already hold what the zone
// reported before it was disabled, and a filter only stops future changes.
// So the feed presents a zone-reported resource of a disabled zone as
// deleted, and a change of a Zone re-presents, at that change's revision,
// everything the zone reported that fans out: deletions while it is
// disabled, the resources again once it is enabled. A Zone change that did
// not flip enabled re-sends a few unchanged resources, which is harmless
// (upserts are idempotent) and rare.
type stateFeed struct{ st *store.State }

// feedChange is a change as zones see it, with when it happened (zero when
// unknown: deletions carry no time).
type feedChange struct {
	batch.Change
	at time.Time
}

// ChangesSince implements batch.Feed.
func (f stateFeed) ChangesSince(rev uint64) ([]batch.Change, uint64, error) {
	cs, cur, err := f.changesSince(rev)
	if err != nil {
		return nil, cur, err
	}
	out := make([]batch.Change, len(cs))
	for i, c := range cs {
		out[i] = c.Change
	}
	return out, cur, nil
}

func (f stateFeed) changesSince(rev uint64) ([]feedChange, uint64, error) {
	cs, cur, err := f.st.ChangesSince(rev)
	if errors.Is(err, store.ErrTooOld) {
		return nil, cur, batch.ErrTooOld
	}
	if err != nil {
		return nil, cur, err
	}
	var disabled map[string]bool // read once, when first needed
	isDisabled := func(zone string) bool {
		if disabled == nil {
			disabled = disabledZones(f.st)
		}
		return disabled[zone]
	}
	out := make([]feedChange, 0, len(cs))
	var zoneChanges []store.Change
	for _, c := range cs {
		fc := feedChange{Change: batch.Change{Key: c.Key, Revision: c.Revision, Resource: c.Resource}}
		if c.Resource != nil {
			fc.at = c.Resource.ModificationTime
			if origin := reportedBy(c.Resource); origin != "" && isDisabled(origin) {
				fc.Resource = nil
			}
		}
		if c.Key.Type == api.TypeZone {
			zoneChanges = append(zoneChanges, c)
		}
		out = append(out, fc)
	}
	if len(zoneChanges) == 0 {
		return out, cur, nil
	}
	seen := make(map[api.Key]bool, len(out))
	for _, c := range out {
		seen[c.Key] = true
	}
	for _, zc := range zoneChanges {
		for _, r := range reportedFanOut(f.st, zc.Key.Name) {
			if seen[r.Key()] {
				continue // its own change is in the list, presented as it is now
			}
			seen[r.Key()] = true
			fc := feedChange{Change: batch.Change{Key: r.Key(), Revision: zc.Revision, Resource: r}}
			if zc.Resource != nil {
				fc.at = zc.Resource.ModificationTime
			}
			if isDisabled(zc.Key.Name) {
				fc.Resource = nil
			}
			out = append(out, fc)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, cur, nil
}

// All implements batch.Feed: every live resource but those a disabled zone
// reported.
func (f stateFeed) All() ([]*api.Resource, uint64) {
	all, rev := f.st.All()
	var disabled map[string]bool
	out := all[:0]
	for _, r := range all {
		if origin := reportedBy(r); origin != "" {
			if disabled == nil {
				disabled = disabledZones(f.st)
			}
			if disabled[origin] {
				continue
			}
		}
		out = append(out, r)
	}
	return out, rev
}

func (f stateFeed) Watch() <-chan struct{} { return f.st.Watch() }
func (f stateFeed) ClusterID() string {
	m, _ := f.st.Meta()
	return m.ClusterID
}

// reportedBy returns the zone that reported r (a zone-owned type's
// kuma.io/zone label), or "" for global's own resources.
func reportedBy(r *api.Resource) string {
	if r == nil {
		return ""
	}
	d, err := api.Lookup(r.Type)
	if err != nil || d.Owner != api.RoleZone {
		return ""
	}
	return r.Labels[api.LabelZone]
}

// reportedFanOut returns what zone reported that fans out to other zones.
func reportedFanOut(st *store.State, zone string) []*api.Resource {
	var out []*api.Resource
	for _, d := range api.Types() {
		if d.Owner != api.RoleZone || !d.FanOut {
			continue
		}
		for _, r := range st.List(d.Name, "") {
			if r.Labels[api.LabelZone] == zone {
				out = append(out, r)
			}
		}
	}
	return out
}

// disabledZones returns the names of the Zones with enabled: false.
func disabledZones(st *store.State) map[string]bool {
	out := map[string]bool{}
	for _, z := range st.List(api.TypeZone, "") {
		if zs, ok := z.Spec.(*api.ZoneSpec); ok && !zs.IsEnabled() {
			out[z.Name] = true
		}
	}
	return out
}

// zoneEnabled reports whether the named Zone is enabled; a zone without a
// Zone resource (before its first connection) is.
func zoneEnabled(st *store.State, zone string) bool {
	z, ok := st.Get(api.Key{Type: api.TypeZone, Name: zone})
	if !ok {
		return true
	}
	zs, ok := z.Spec.(*api.ZoneSpec)
	return !ok || zs.IsEnabled()
}
