// Package sync is the global⇄zone protocol (DESIGN.md §6): the protobuf
// messages of one bidirectional gRPC stream per zone replica (syncpb,
// generated from proto/ by `make proto`), and the pieces both ends share.
//
// Data flow: global's sync server reads its Raft state's change feed and
// streams Changes (or a chunked Reset) to each zone; the zone applies them to
// its replica and Acks the revision, and Reports its own inventory upward.
//
// The package is imported as meshsync (its name would shadow the standard
// library's sync).
package sync
