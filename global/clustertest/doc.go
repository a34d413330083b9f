// Package clustertest runs in-process global clusters for tests: several
// global.Server nodes in one process, joined by an in-memory network that can cut links
// between them, each with a real HTTP API on 127.0.0.1 and an API client.
//
// Where it sits: it is test support for package global (and for anything
// else that needs a multi-node global cluster in one process); production
// code never imports it. It drives global.Server through its test hooks
// only: Config.RaftTransport (raft.InmemTransport), Config.GossipTransport
// (an in-memory memberlist transport), Config.HTTPClient (a dialer that
// refuses cut links) and Server.SkipLeave (an abrupt kill).
//
// A cut link is cut in both directions and for every protocol at once:
// Raft RPCs fail, gossip packets are dropped and gossip streams refused,
// HTTP dials between the nodes (forwarded writes, read-index, leave, status)
// are refused and open HTTP connections across the cut are closed. A test's
// own API client is never cut from the node it is bound to.
//
// Waits poll (Eventually, WaitLeader, WaitConverged); nothing here uses
// time.Sleep to synchronise.
package clustertest
