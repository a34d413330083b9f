// Package rest serves Meshfed's HTTP API (Kuma-compatible paths, port 5681)
// over a role's store. Both roles use it: global over its Raft store, zone
// over its replica. It maps api errors to HTTP statuses in one place
// (errors.go) and knows nothing of Raft or sync.
//
// Data flow: meshctl / HTTP client → Handler → api codec + Prepare → Store.
package rest

import (
	"context"

	"github.com/meshfed/meshfed/api"
)

// ReadOptions tunes a read.
type ReadOptions struct {
	// Consistent asks for a linearizable read (the store confirms it is
	// current, e.g. Raft leadership, before answering).
	Consistent bool
}

// WriteOptions tunes a write.
type WriteOptions struct {
	// ExpectRevision, when non-zero, makes the write fail with
	// *api.ConflictError unless the stored resource is at that revision.
	ExpectRevision uint64
}

// Store is what the handlers need from a role's store. Resources passed to
// Put have been through api.Prepare (defaults applied, valid); the store adds
// cross-resource checks (the mesh exists, a Mesh with Dataplanes cannot be
// deleted), sets creation and modification times and the revision, and
// returns the stored resource. Returned resources must not be modified.
//
// Errors: api.ErrNotFound, *api.ConflictError, *api.ValidationError (for
// cross-resource checks), *api.ReadOnlyError, *api.UnavailableError; anything
// else is a 500.
type Store interface {
	Get(ctx context.Context, key api.Key, opts ReadOptions) (*api.Resource, error)
	// List returns every resource of the type (in the mesh, when mesh is not
	// empty), sorted by mesh then name.
	List(ctx context.Context, typ, mesh string, opts ReadOptions) ([]*api.Resource, error)
	Put(ctx context.Context, r *api.Resource, opts WriteOptions) (stored *api.Resource, created bool, err error)
	Delete(ctx context.Context, key api.Key, opts WriteOptions) error
}
