// Package zone is the zone control plane (`meshd zone`, DESIGN.md §7): one
// replica of the control plane of one zone (datacenter, cluster).
//
// Where it sits in the data flow (DESIGN.md §3): the zone dials global's sync
// port (zone/syncclient) and keeps everything global sends it in its replica
// file (zone/replica); it registers the zone's own resources — Dataplanes and
// ZoneIngress, the types zones own — in its inventory file (zone/inventory),
// which reports every change up to global. Its HTTP API (api/rest, the same
// paths as global's) serves both: global-owned types from the replica,
// read-only; zone-owned types from the inventory, writable. xDS generation
// reads the same two stores.
//
// Decisions:
//
//   - Two files in DataDir: replica.db holds global's state exactly as
//     global sent it; inventory.db holds the zone's own resources and the
//     outbox of reports, each change written with its report in one bbolt
//     transaction, so that a crash loses neither.
//   - Writes of a global-owned type are refused by api/rest (405, owner
//     "global", "write it there"). A zone-owned resource must belong to a
//     Mesh the zone holds (400 at field mesh otherwise), and a ZoneIngress
//     must name this zone. The zone never changes another zone's resources
//     that global fanned out to it (409).
//   - Revisions on the zone API: global-owned resources carry global's
//     revision; zone-owned ones the inventory's own sequence (each resource's
//     ETag is compared only with itself, so the two spaces never meet).
//     `consistent` reads are answered from the local state: the zone's own
//     resources are authoritative here, and global's are as current as the
//     replica, whatever is asked.
//   - Readiness (GET /readyz): ready once the replica holds any state from
//     global, whether it arrived now or was loaded from the file. A zone
//     restarted while global is unreachable is therefore ready at once and
//     serves its last known state; a zone that never reached global answers
//     503 with the reason (for example a refused token).
//   - The zone API needs no token: it listens on loopback by default
//     (127.0.0.1:5681), where only local users and processes reach it. Bind
//     it elsewhere only on a trusted network; authentication of the zone API
//     comes with the dataplane-token work.
//   - The zone's own status (sync connection, replica revision, report
//     outbox and the resources global refused) is served at
//     GET /zone/status.
//   - The zone reports all its resources again when its replica shows that
//     global has lost them: another global cluster id, or a new creation
//     time of the zone's own Zone resource (deleted on global while the zone
//     was offline). Otherwise a reconnection sends only pending reports.
//   - Replicas (HA): with GossipAddr set, the zone's replicas form a gossip
//     pool (zone/peers) and share their inventories, last writer wins by
//     stamp; every replica reports its own inventory to global on its own
//     stream. Global's state reaches each replica on that stream too, so
//     only the zone's own resources need sharing.
//   - xDS: the zone serves its proxies on XDSAddr (xds/server); zone/proxies
//     registers them, removes the Dataplanes they registered themselves
//     after DataplaneGracePeriod, and generates their resources from the
//     zone's view (replica and inventory together, view.go).
package zone
