package client

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/meshfed/meshfed/api"
)

// UnauthorizedError is a 401: the token is missing or not valid.
type UnauthorizedError struct {
	// Message is the server's explanation.
	Message string
}

func (e *UnauthorizedError) Error() string { return "unauthorized: " + e.Message }

// StatusError is an error status the client has no typed error for (413,
// 500, a 405 that is not a read-only type, ...).
type StatusError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Title and Details are the server's error body (Details falls back to
	// the raw body text when the body is not the API's JSON shape).
	Title   string
	Details string
	// Method and Path say which request failed.
	Method string
	Path   string
}

func (e *StatusError) Error() string {
	msg := e.Details
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), msg)
}

// notFoundError is a 404 with the server's message; it wraps
// api.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return api.ErrNotFound }

// errorBody is the API's error shape (rest.ErrorBody).
type errorBody struct {
	Title   string           `json:"title"`
	Details string           `json:"details"`
	Causes  []api.FieldError `json:"causes"`
	Owner   api.Role         `json:"owner"`
}

const maxErrorText = 4 << 10

// statusError maps a non-2xx response to the api package's errors.
func statusError(req request, resp *http.Response, data []byte) error {
	var b errorBody
	if err := json.Unmarshal(data, &b); err != nil || (b.Title == "" && b.Details == "") {
		text := strings.TrimSpace(string(data))
		if len(text) > maxErrorText {
			text = text[:maxErrorText] + "..."
		}
		b = errorBody{Details: text}
	}
	msg := b.Details
	if msg == "" {
		msg = b.Title
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		causes := b.Causes
		if len(causes) == 0 {
			causes = []api.FieldError{{Message: msg}}
		}
		return &api.ValidationError{Errors: causes}
	case http.StatusUnauthorized:
		return &UnauthorizedError{Message: msg}
	case http.StatusNotFound:
		if msg == "" {
			msg = "not found"
		}
		return &notFoundError{msg: msg}
	case http.StatusMethodNotAllowed:
		if b.Owner != "" {
			return &api.ReadOnlyError{Type: req.typ, Owner: b.Owner}
		}
	case http.StatusConflict:
		return &api.ConflictError{Reason: msg}
	case http.StatusServiceUnavailable:
		return &api.UnavailableError{Reason: msg, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	}
	return &StatusError{
		StatusCode: resp.StatusCode,
		Title:      b.Title,
		Details:    msg,
		Method:     req.method,
		Path:       resp.Request.URL.Path,
	}
}
