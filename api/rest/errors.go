package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/meshfed/meshfed/api"
)

// This file is the one place where errors become HTTP statuses.
//
//	*api.ValidationError  400  every cause listed, with its field path
//	unauthorized          401  WWW-Authenticate: Bearer
//	api.ErrNotFound       404  (also unknown paths and resource types)
//	*api.ReadOnlyError    405  Allow: GET, HEAD; "owner" in the body
//	wrong method          405  Allow: the path's methods (from ServeMux)
//	*api.ConflictError    409
//	*http.MaxBytesError   413
//	*api.UnavailableError 503  Retry-After: whole seconds, at least 1
//	anything else         500  generic message; the error is logged

// ErrorBody is the JSON body of every error response, in Kuma's shape.
type ErrorBody struct {
	// Title is a short summary ("Invalid resource", "Not found").
	Title string `json:"title"`
	// Details is the full message.
	Details string `json:"details"`
	// Causes lists every field problem of a 400.
	Causes []api.FieldError `json:"causes,omitempty"`
	// Owner is set on 405 read-only answers: the role that owns the type
	// (a Meshfed extension).
	Owner api.Role `json:"owner,omitempty"`
}

// httpError is an error the handlers produce themselves with a fixed status.
type httpError struct {
	status  int
	title   string
	details string
	header  http.Header
}

func (e *httpError) Error() string { return e.details }

func notFoundf(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, title: "Not found", details: fmt.Sprintf(format, args...)}
}

// errUnauthorized answers 401; invalid tells a wrong token from a missing one.
func errUnauthorized(invalid bool) error {
	h := http.Header{}
	details := "this endpoint requires an \"Authorization: Bearer TOKEN\" header"
	challenge := `Bearer realm="meshfed"`
	if invalid {
		details = "the bearer token is not valid"
		challenge += `, error="invalid_token"`
	}
	h.Set("WWW-Authenticate", challenge)
	return &httpError{status: http.StatusUnauthorized, title: "Unauthorized", details: details, header: h}
}

// badParam is a 400 naming one request parameter (query or header).
func badParam(field, format string, args ...any) error {
	return &api.ValidationError{Errors: []api.FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// errorResponse maps err to its status, body and extra headers.
func errorResponse(err error) (int, ErrorBody, http.Header) {
	var (
		he  *httpError
		ve  *api.ValidationError
		ce  *api.ConflictError
		roe *api.ReadOnlyError
		ue  *api.UnavailableError
		mbe *http.MaxBytesError
	)
	h := http.Header{}
	switch {
	case errors.As(err, &he):
		for k, v := range he.header {
			h[k] = v
		}
		return he.status, ErrorBody{Title: he.title, Details: he.details}, h
	case errors.As(err, &ve):
		causes := ve.Errors
		if causes == nil {
			causes = []api.FieldError{}
		}
		return http.StatusBadRequest, ErrorBody{Title: "Invalid request", Details: ve.Error(), Causes: causes}, h
	case errors.Is(err, api.ErrNotFound):
		return http.StatusNotFound, ErrorBody{Title: "Not found", Details: err.Error()}, h
	case errors.As(err, &roe):
		h.Set("Allow", "GET, HEAD")
		return http.StatusMethodNotAllowed, ErrorBody{Title: "Read-only", Details: roe.Error(), Owner: roe.Owner}, h
	case errors.As(err, &ce):
		return http.StatusConflict, ErrorBody{Title: "Conflict", Details: ce.Reason}, h
	case errors.As(err, &mbe):
		// Close the connection rather than drain the rest of the body.
		h.Set("Connection", "close")
		return http.StatusRequestEntityTooLarge, ErrorBody{
			Title:   "Request body too large",
			Details: fmt.Sprintf("the request body exceeds the limit of %d bytes", mbe.Limit),
		}, h
	case errors.As(err, &ue):
		secs := int64(math.Ceil(ue.RetryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		details := ue.Reason
		if details == "" {
			details = "the control plane cannot answer right now; retry later"
		}
		return http.StatusServiceUnavailable, ErrorBody{Title: "Unavailable", Details: details}, h
	default:
		return http.StatusInternalServerError, ErrorBody{
			Title:   "Internal server error",
			Details: "the control plane failed to handle the request; its log has the cause",
		}, h
	}
}

// WriteError answers err with its status and an ErrorBody (see the table at
// the top of this file). 500s are logged to log, which may be nil. Handlers
// added next to this package's (e.g. a role's extra endpoints) use it to
// answer errors in the same shape.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body, h := errorResponse(err)
	if status == http.StatusInternalServerError && log != nil {
		log.ErrorContext(r.Context(), "API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeErrorBody(w, status, body, h)
}

func writeErrorBody(w http.ResponseWriter, status int, body ErrorBody, h http.Header) {
	for k, v := range h {
		w.Header()[k] = v
	}
	data, _ := json.Marshal(body) // strings and field errors always encode
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
