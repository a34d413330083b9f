// Package global is the global control plane role (`meshd global`): one node
// of the Raft-replicated cluster that owns Meshes, policies, gateways and CA
// roots. It wires the replicated store (global/store) to the HTTP API
// (api/rest), Prometheus metrics and the admin token.
//
// Data flow: HTTP API → store.Node (Raft) → FSM State on every node; later the
// sync server streams State changes to zones.
package global
