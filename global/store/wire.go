package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshfed/meshfed/api"
)

// Forwarded results travel between global nodes as JSON. Errors keep their
// kind, so that a write forwarded to the leader fails on the follower exactly
// as it would have on the leader (400 with every field, 409, 404, 503...).

// WireResult is the JSON form of an ApplyResult (or of a read index).
type WireResult struct {
	Resource json.RawMessage `json:"resource,omitempty"`
	Revision uint64          `json:"revision,omitempty"`
	Created  bool            `json:"created,omitempty"`
	Error    *WireError      `json:"error,omitempty"`
	Batch    []WireResult    `json:"batch,omitempty"`
}

// WireError is the JSON form of an api error.
type WireError struct {
	Kind       string           `json:"kind"` // validation, conflict, notfound, readonly, unavailable, internal
	Message    string           `json:"message"`
	Fields     []api.FieldError `json:"fields,omitempty"`
	RetryAfter time.Duration    `json:"retryAfter,omitempty"`
	Type       string           `json:"type,omitempty"`
	Owner      api.Role         `json:"owner,omitempty"`
}

// EncodeResult builds the wire form of a result and its error.
func EncodeResult(res ApplyResult, err error) WireResult {
	var w WireResult
	if err == nil {
		err = res.Err
	}
	if err != nil {
		w.Error = EncodeError(err)
		return w
	}
	if res.Resource != nil {
		w.Resource, _ = json.Marshal(res.Resource)
		w.Revision = res.Resource.Revision
	}
	w.Created = res.Created
	for _, b := range res.Batch {
		w.Batch = append(w.Batch, EncodeResult(b, nil))
	}
	return w
}

// Decode turns the wire form back into a result (the error in res.Err).
func (w WireResult) Decode() (ApplyResult, error) {
	if w.Error != nil {
		err := w.Error.Err()
		return ApplyResult{Err: err}, nil
	}
	res := ApplyResult{Created: w.Created}
	if len(w.Resource) > 0 {
		r, err := api.DecodeJSON(w.Resource)
		if err != nil {
			return ApplyResult{}, fmt.Errorf("forwarded result: %w", err)
		}
		r.Revision = w.Revision
		res.Resource = r
	}
	for _, wb := range w.Batch {
		b, err := wb.Decode()
		if err != nil {
			return ApplyResult{}, err
		}
		res.Batch = append(res.Batch, b)
	}
	return res, nil
}

// EncodeError keeps an error's kind for the wire.
func EncodeError(err error) *WireError {
	var (
		ve *api.ValidationError
		ce *api.ConflictError
		ro *api.ReadOnlyError
		ue *api.UnavailableError
	)
	switch {
	case errors.As(err, &ve):
		return &WireError{Kind: "validation", Message: err.Error(), Fields: ve.Errors}
	case errors.As(err, &ce):
		return &WireError{Kind: "conflict", Message: ce.Reason}
	case errors.Is(err, api.ErrNotFound):
		return &WireError{Kind: "notfound", Message: err.Error()}
	case errors.As(err, &ro):
		return &WireError{Kind: "readonly", Message: err.Error(), Type: ro.Type, Owner: ro.Owner}
	case errors.As(err, &ue):
		return &WireError{Kind: "unavailable", Message: ue.Reason, RetryAfter: ue.RetryAfter}
	}
	return &WireError{Kind: "internal", Message: err.Error()}
}

// Err rebuilds the api error.
func (e *WireError) Err() error {
	switch e.Kind {
	case "validation":
		return &api.ValidationError{Errors: e.Fields}
	case "conflict":
		return &api.ConflictError{Reason: e.Message}
	case "notfound":
		return &notFoundError{msg: e.Message}
	case "readonly":
		return &api.ReadOnlyError{Type: e.Type, Owner: e.Owner}
	case "unavailable":
		return &api.UnavailableError{Reason: e.Message, RetryAfter: e.RetryAfter}
	}
	return fmt.Errorf("leader: %s", e.Message)
}

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return api.ErrNotFound }
