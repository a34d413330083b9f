// Package store is the global control plane's replicated store: a Raft log
// (hashicorp/raft, raft-boltdb as log and stable store, file snapshots) whose
// FSM applies commands through one explicit table (commands.go) to an
// in-memory indexed State (state.go).
//
// Data flow: the HTTP API (api/rest) calls Node.Put / Delete; the node
// proposes a command to Raft; once committed, every global node's FSM applies
// it at the same index, which becomes the resource's revision. Readers (the
// API, later the sync server streaming changes to zones) read State directly,
// or ask ChangesSince(R) and Watch for what changed.
package store
