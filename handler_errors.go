package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The Handler's errors, in Pipeliner's error JSON. Pipeliner publishes the
// shape and ERROR_ENTITY_VALIDATION (40000) with ERROR_FIELD_VALIDATION
// (40002), and ERROR_PARAMETER_INVALID (117) as the example of its Error
// schema; the other names and codes are this package's, in the same style,
// and README.md lists them all.

// errorKind is an error's status, code and name.
type errorKind struct {
	status int
	code   int
	name   string
}

var (
	errBadParameter = errorKind{http.StatusBadRequest, 117, "ERROR_PARAMETER_INVALID"}
	errBadJSON      = errorKind{http.StatusBadRequest, 118, "ERROR_INVALID_JSON"}
	errUnauthorized = errorKind{http.StatusUnauthorized, 101, "ERROR_UNAUTHORIZED"}
	errNoSpace      = errorKind{http.StatusNotFound, 102, "ERROR_SPACE_NOT_FOUND"}
	errNoEndpoint   = errorKind{http.StatusNotFound, 104, "ERROR_ENDPOINT_NOT_FOUND"}
	errNotFound     = errorKind{http.StatusNotFound, 40001, "ERROR_ENTITY_NOT_FOUND"}
	errMethod       = errorKind{http.StatusMethodNotAllowed, 105, "ERROR_METHOD_NOT_ALLOWED"}
	errConflict     = errorKind{http.StatusConflict, 109, "ERROR_CONFLICT"}
	errTooLarge     = errorKind{http.StatusRequestEntityTooLarge, 113, "ERROR_REQUEST_TOO_LARGE"}
	errMediaType    = errorKind{http.StatusUnsupportedMediaType, 115, "ERROR_UNSUPPORTED_MEDIA_TYPE"}
	errValidation   = errorKind{http.StatusUnprocessableEntity, 40000, "ERROR_ENTITY_VALIDATION"}
	errInternal     = errorKind{http.StatusInternalServerError, 100, "ERROR_INTERNAL"}
	errUnavailable  = errorKind{http.StatusServiceUnavailable, 103, "ERROR_SERVICE_UNAVAILABLE"}
)

// The field_errors entries: every entry is an ERROR_FIELD_VALIDATION, and
// each of its reasons says what kind of problem it is.
const (
	fieldErrorName = "ERROR_FIELD_VALIDATION"
	fieldErrorCode = 40002
	reasonType     = "ERROR_INVALID_TYPE"       // the JSON value has the wrong type
	reasonValue    = "ERROR_INVALID_VALUE"      // the value breaks a rule
	reasonAddress  = "ERROR_REFUSED_ADDRESS"    // the url's host is refused (AddressPolicy)
	entityName     = "Webhook"                  // entity_name of a validation error
	signatureField = "signature"                // whose reasons are never repeated
	signatureText  = "must be a UUID, a string" // the reason shown for it
)

// apiError is an error answer, or an item of a batch answer.
type apiError struct {
	Success     bool             `json:"success"`
	HTTPStatus  int              `json:"http_status"`
	Code        int              `json:"code"`
	Name        string           `json:"name"`
	Message     string           `json:"message"`
	EntityID    json.RawMessage  `json:"entity_id,omitempty"` // null on create
	EntityName  string           `json:"entity_name,omitempty"`
	FieldErrors []fieldErrorJSON `json:"field_errors,omitempty"`

	allow string // the Allow header of a 405
	cause error  // the detail of a 500, logged
}

type fieldErrorJSON struct {
	FieldName string       `json:"field_name"`
	Name      string       `json:"name"`
	Code      int          `json:"code"`
	Errors    []reasonJSON `json:"errors"`
}

type reasonJSON struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	FieldName string `json:"field_name"`
}

var internalErrorJSON = []byte(`{"success":false,"http_status":500,"code":100,"name":"ERROR_INTERNAL","message":"internal error"}`)

func newError(k errorKind, format string, args ...any) *apiError {
	return &apiError{HTTPStatus: k.status, Code: k.code, Name: k.name, Message: fmt.Sprintf(format, args...)}
}

// entityNotFound is the answer for an id that names no registration of the
// request's space. It is built from the id alone: an id of another space
// answers exactly like one that exists nowhere.
func entityNotFound(id string) *apiError {
	if id == "" {
		return newError(errNotFound, "Webhook not found")
	}
	return newError(errNotFound, "Webhook %s not found", shortText(id))
}

// fail answers with e.
func (c *restCall) fail(e *apiError) {
	if e.allow != "" {
		c.w.Header().Set("Allow", e.allow)
	}
	c.answer(e.HTTPStatus, c.report(e))
}

// report readies e to be sent, alone or as an item of a batch: it logs
// the detail of an internal error and removes the request's secrets from
// e's messages.
func (c *restCall) report(e *apiError) *apiError {
	if e.cause != nil {
		c.h.log.ErrorContext(c.r.Context(), "webhook: REST request failed", "method", c.r.Method,
			"path", c.r.URL.Path, "space", c.space, "error", c.redactLog(e.cause.Error()))
		e.cause = nil // logged once
	}
	e.Message = c.redact(e.Message)
	for i := range e.FieldErrors {
		for j := range e.FieldErrors[i].Errors {
			r := &e.FieldErrors[i].Errors[j]
			r.Message = c.redact(r.Message)
		}
	}
	return e
}

func (c *restCall) internal(err error) *apiError {
	e := newError(errInternal, "internal error")
	e.cause = err
	return e
}

// registryError is the answer for an error of a Registry call about the
// registration id ("" for a new one).
func (c *restCall) registryError(err error, id string) *apiError {
	switch {
	case errors.Is(err, ErrInvalid):
		return c.invalid(id, nil, err)
	case errors.Is(err, ErrNotFound):
		return entityNotFound(id)
	case errors.Is(err, ErrConflict):
		return newError(errConflict, "Webhook %s was changed at the same time; try again", shortText(id))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return newError(errUnavailable, "the request was cancelled or timed out")
	}
	return c.internal(err)
}

// invalid is the 422 for the registration id ("" for a new one): typeErrs
// are the body's fields of the wrong type, checkErr what validation found
// in the registration the other fields make. A problem validation finds
// in a field of the wrong type (url is empty because it was a number) is
// left out: the type error says it. A checkErr that is not a validation
// error is an internal error.
func (c *restCall) invalid(id string, typeErrs FieldErrors, checkErr error) *apiError {
	var checked FieldErrors
	if checkErr != nil {
		if !errors.Is(checkErr, ErrInvalid) {
			return c.registryError(checkErr, id)
		}
		checked = fieldErrorsOf(checkErr)
	}
	type problem struct {
		*FieldError
		reason string
	}
	var all []problem
	for _, fe := range typeErrs {
		all = append(all, problem{fe, reasonType})
	}
	for _, fe := range checked {
		if !slices.ContainsFunc(typeErrs, func(te *FieldError) bool { return within(fe.Field, te.Field) }) {
			all = append(all, problem{fe, reasonOf(fe)})
		}
	}
	slices.SortStableFunc(all, func(a, b problem) int { return compareFields(a.Field, b.Field) })

	e := newError(errValidation, "Webhook is invalid; see field_errors")
	e.EntityID, e.EntityName = json.RawMessage("null"), entityName
	if id != "" {
		e.EntityID, _ = json.Marshal(id)
	}
	for _, p := range all {
		msg := p.Reason
		if within(p.Field, signatureField) {
			msg = signatureText
		}
		r := reasonJSON{Name: p.reason, Message: msg, FieldName: p.Field}
		if n := len(e.FieldErrors); n > 0 && e.FieldErrors[n-1].FieldName == p.Field {
			e.FieldErrors[n-1].Errors = append(e.FieldErrors[n-1].Errors, r)
			continue
		}
		e.FieldErrors = append(e.FieldErrors, fieldErrorJSON{FieldName: p.Field, Name: fieldErrorName,
			Code: fieldErrorCode, Errors: []reasonJSON{r}})
	}
	return e
}

// fieldErrorsOf returns the field errors err carries: all of them when it
// is a FieldErrors, else the one *FieldError it wraps, if any.
func fieldErrorsOf(err error) FieldErrors {
	var all FieldErrors
	if errors.As(err, &all) {
		return all
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return FieldErrors{fe}
	}
	return nil
}

// within reports whether field is the field named parent or inside it
// ("options.chunk_size" and "events[1]" are within "options" and "events").
func within(field, parent string) bool {
	rest, ok := strings.CutPrefix(field, parent)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

func reasonOf(fe *FieldError) string {
	if errors.Is(fe, ErrRefusedAddress) {
		return reasonAddress
	}
	return reasonValue
}
