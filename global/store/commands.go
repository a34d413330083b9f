package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshfed/meshfed/api"
	"github.com/meshfed/meshfed/ca"
)

// CommandType names a Raft command. The FSM dispatches on it through
// commandTable; a type it does not know is answered with an error and changes
// nothing, identically on every replica.
type CommandType string

const (
	CmdBootstrap   CommandType = "bootstrap"
	CmdPut         CommandType = "put"
	CmdDelete      CommandType = "delete"
	CmdInitSecrets CommandType = "init-secrets"
	CmdBatch       CommandType = "batch"
)

// InitSecretsCommand stores the cluster's zone-token signing key and sync CA
// where they are missing (a cluster bootstrapped before they existed gets
// them from its next leader); present ones are never replaced.
type InitSecretsCommand struct {
	ZoneTokenKey []byte     `json:"zoneTokenKey"`
	SyncCA       ca.KeyPair `json:"syncCA"`
}

// BatchCommand applies several puts and deletes in one log entry, in order.
// Each has its own result: one that fails does not stop the others (zone
// reports use it).
type BatchCommand struct {
	Ops []BatchOp `json:"ops"`
}

// BatchOp is one operation of a batch: exactly one of Put and Delete.
type BatchOp struct {
	Put    *PutCommand    `json:"put,omitempty"`
	Delete *DeleteCommand `json:"delete,omitempty"`
}

// Command is the Raft log entry: a type and its body.
type Command struct {
	Type CommandType     `json:"type"`
	Body json.RawMessage `json:"body"`
}

// BootstrapCommand initialises a new cluster's replicated identity, once: a
// second one (a new leader that raced the first) is a no-op.
type BootstrapCommand struct {
	ClusterID         string    `json:"clusterId"`
	AdminToken        string    `json:"adminToken"`
	CreateDefaultMesh bool      `json:"createDefaultMesh"`
	Now               time.Time `json:"now"`
}

// PutCommand creates or updates one resource.
type PutCommand struct {
	// Resource is the Kuma JSON body; the FSM decodes and validates it again
	// so that nothing invalid enters the state whatever the proposer sent.
	Resource json.RawMessage `json:"resource"`
	// ExpectRevision, when non-zero, fails the write with a conflict unless
	// the stored resource is at that revision.
	ExpectRevision uint64 `json:"expectRevision,omitempty"`
	// Now is the proposer's clock, used for creation and modification times
	// so that every replica stores the same ones.
	Now time.Time `json:"now"`
	// MustCreate fails the write with a conflict when the resource exists
	// (create-only, as for a generated root CA).
	MustCreate bool `json:"mustCreate,omitempty"`
}

// DeleteCommand deletes one resource (a Mesh with everything it owns).
type DeleteCommand struct {
	Type           string `json:"type"`
	Mesh           string `json:"mesh,omitempty"`
	Name           string `json:"name"`
	ExpectRevision uint64 `json:"expectRevision,omitempty"`
}

// ApplyResult is what the FSM returns for one command (the Raft future's
// Response on the node that proposed it).
type ApplyResult struct {
	Resource *api.Resource
	Created  bool
	Err      error
	// Batch holds one result per operation of a batch command.
	Batch []ApplyResult
}

// EncodeCommand builds a log entry.
func EncodeCommand(t CommandType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return json.Marshal(Command{Type: t, Body: b})
}

// commandHandler applies one decoded command at a Raft index. It runs under
// the state's write lock and must be deterministic: same state, same entry,
// same result on every replica (no clocks, no randomness, no map order).
type commandHandler func(s *State, index uint64, body json.RawMessage) ApplyResult

// commandTable is the one place a command type meets its handler.
var commandTable = map[CommandType]commandHandler{
	CmdBootstrap:   applyBootstrap,
	CmdPut:         applyPut,
	CmdDelete:      applyDelete,
	CmdInitSecrets: applyInitSecrets,
	CmdBatch:       applyBatch,
}

func applyInitSecrets(s *State, index uint64, body json.RawMessage) ApplyResult {
	var c InitSecretsCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed init-secrets command: %w", err)}
	}
	if !s.bootstrapped {
		return ApplyResult{Err: fmt.Errorf("init-secrets before bootstrap")}
	}
	if len(s.meta.ZoneTokenKey) == 0 && len(c.ZoneTokenKey) > 0 {
		s.meta.ZoneTokenKey = c.ZoneTokenKey
	}
	if len(s.meta.SyncCA.CertPEM) == 0 && len(c.SyncCA.CertPEM) > 0 {
		s.meta.SyncCA = c.SyncCA
	}
	return ApplyResult{}
}

func applyBatch(s *State, index uint64, body json.RawMessage) ApplyResult {
	var c BatchCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed batch command: %w", err)}
	}
	res := ApplyResult{Batch: make([]ApplyResult, len(c.Ops))}
	for i, op := range c.Ops {
		var b []byte
		var err error
		switch {
		case op.Put != nil && op.Delete == nil:
			if b, err = json.Marshal(op.Put); err == nil {
				res.Batch[i] = applyPut(s, index, b)
			}
		case op.Delete != nil && op.Put == nil:
			if b, err = json.Marshal(op.Delete); err == nil {
				res.Batch[i] = applyDelete(s, index, b)
			}
		default:
			err = fmt.Errorf("batch operation %d must be exactly one of put and delete", i)
		}
		if err != nil {
			res.Batch[i] = ApplyResult{Err: err}
		}
	}
	return res
}

func applyBootstrap(s *State, index uint64, body json.RawMessage) ApplyResult {
	var c BootstrapCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed bootstrap command: %w", err)}
	}
	if s.bootstrapped {
		return ApplyResult{}
	}
	if c.ClusterID == "" || c.AdminToken == "" {
		return ApplyResult{Err: fmt.Errorf("bootstrap command needs a cluster id and an admin token")}
	}
	s.bootstrapped = true
	s.meta = ClusterMeta{ClusterID: c.ClusterID, AdminToken: c.AdminToken}
	if !c.CreateDefaultMesh {
		return ApplyResult{}
	}
	mesh, err := api.New(api.TypeMesh, "", "default")
	if err == nil {
		err = api.Prepare(mesh)
	}
	if err != nil {
		return ApplyResult{Err: fmt.Errorf("default mesh: %w", err)}
	}
	mesh.CreationTime, mesh.ModificationTime, mesh.Revision = c.Now, c.Now, index
	s.put(mesh)
	return ApplyResult{Resource: mesh, Created: true}
}

func applyPut(s *State, index uint64, body json.RawMessage) ApplyResult {
	var c PutCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed put command: %w", err)}
	}
	r, err := api.DecodeJSON(c.Resource)
	if err != nil {
		return ApplyResult{Err: err}
	}
	if err := api.Prepare(r); err != nil {
		return ApplyResult{Err: err}
	}
	d, _ := api.Lookup(r.Type) // Prepare checked the type
	if d.Scope == api.ScopeMesh {
		if _, ok := s.index.Get(api.Key{Type: api.TypeMesh, Name: r.Mesh}); !ok {
			v := &api.Validator{}
			v.Add("mesh", "mesh %q does not exist", r.Mesh)
			return ApplyResult{Err: v.Err()}
		}
	}
	old := s.resource(r.Key())
	if c.MustCreate && old != nil {
		return ApplyResult{Err: &api.ConflictError{Reason: fmt.Sprintf("%s exists already", r.Key())}}
	}
	if c.ExpectRevision != 0 {
		switch {
		case old == nil:
			return ApplyResult{Err: &api.ConflictError{Reason: fmt.Sprintf("%s does not exist, expected revision %d", r.Key(), c.ExpectRevision)}}
		case old.Revision != c.ExpectRevision:
			return ApplyResult{Err: &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, expected %d", r.Key(), old.Revision, c.ExpectRevision)}}
		}
	}
	if old != nil && sameContent(old, r) {
		return ApplyResult{Resource: old} // nothing changed: no new revision, nothing to sync
	}
	r.CreationTime, r.ModificationTime, r.Revision = c.Now, c.Now, index
	if old != nil {
		r.CreationTime = old.CreationTime
	}
	s.put(r)
	return ApplyResult{Resource: r, Created: old == nil}
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

func applyDelete(s *State, index uint64, body json.RawMessage) ApplyResult {
	var c DeleteCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return ApplyResult{Err: fmt.Errorf("malformed delete command: %w", err)}
	}
	key := api.Key{Type: c.Type, Mesh: c.Mesh, Name: c.Name}
	old, ok := s.index.Get(key)
	if !ok {
		return ApplyResult{Err: fmt.Errorf("%s: %w", key, api.ErrNotFound)}
	}
	if c.ExpectRevision != 0 && old.Revision != c.ExpectRevision {
		return ApplyResult{Err: &api.ConflictError{Reason: fmt.Sprintf("%s is at revision %d, expected %d", key, old.Revision, c.ExpectRevision)}}
	}
	if key.Type == api.TypeMesh {
		if n := s.index.Count(api.TypeDataplane, key.Name); n > 0 {
			return ApplyResult{Err: &api.ConflictError{Reason: fmt.Sprintf("mesh %q has %d dataplane(s) attached; remove them before deleting the mesh", key.Name, n)}}
		}
		// Delete what the mesh owns, in a fixed order (registry, then name).
		for _, d := range api.Types() {
			if d.Scope != api.ScopeMesh {
				continue
			}
			for _, name := range s.index.Names(d.Name, key.Name) {
				s.remove(api.Key{Type: d.Name, Mesh: key.Name, Name: name}, index)
			}
		}
	}
	s.remove(key, index)
	return ApplyResult{Resource: old}
}
