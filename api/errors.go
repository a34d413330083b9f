package api

import (
	"errors"
	"fmt"
	"time"
)

// The errors below are the states callers branch on. Stores return them
// (wrapped or as values); the HTTP API maps them to statuses in one place
// (api/rest) and the Go client maps statuses back to them.

// ErrNotFound: the resource (or its mesh) does not exist.
var ErrNotFound = errors.New("not found")

// ConflictError: the write cannot be applied to the current state: a stale
// expected revision, a Mesh that still has Dataplanes, a create-only write of
// an existing resource. HTTP 409.
type ConflictError struct {
	Reason string
}

func (e *ConflictError) Error() string { return "conflict: " + e.Reason }

// ReadOnlyError: the type is owned by the other role and cannot be written
// here (a zone-owned type on global, a global-owned type on a zone). HTTP 405.
type ReadOnlyError struct {
	Type  string
	Owner Role
	// System: the control plane maintains the type itself (insights).
	System bool
}

func (e *ReadOnlyError) Error() string {
	if e.System {
		return fmt.Sprintf("%s is maintained by the control plane and cannot be written", e.Type)
	}
	return fmt.Sprintf("%s is read-only here: it is owned by the %s control plane, write it there", e.Type, e.Owner)
}

// UnavailableError: the store cannot answer right now (no Raft leader, an
// election in progress, shutting down). HTTP 503 with Retry-After.
type UnavailableError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string { return "unavailable: " + e.Reason }

// IsNotFound reports whether err is or wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
