package lull

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to exactly one HTTP status in the API's error writer.
const (
	EINVALID      = "invalid_request"     // bad input: 400
	EUNAUTHORIZED = "invalid_api_key"     // missing or unknown API key: 401
	ENOTFOUND     = "not_found"           // missing or another tenant's object: 404
	ECONFLICT     = "conflict"            // state does not allow the operation: 409
	ETOOLARGE     = "request_too_large"   // body over the limit: 413
	EUNSUPPORTED  = "unsupported_media"   // wrong content type: 415
	EUNAVAILABLE  = "service_unavailable" // dependency down, retry later: 503
	EINTERNAL     = "internal"            // bug or unexpected failure: 500
)

// Error is a domain error: a code from the list above, a message safe to show
// to clients, and optionally the offending parameter and a wrapped cause that
// is logged but never shown.
type Error struct {
	Code    string
	Message string
	Param   string
	Err     error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ParamError returns an EINVALID error about one request parameter.
func ParamError(param, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Param: param, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the message of its
// *Error, or a generic text for internal errors.
func ErrorMessage(err error) string {
	if e, ok := errors.AsType[*Error](err); ok && e.Code != EINTERNAL {
		return e.Message
	}
	return "The server had an error while processing your request."
}

// IsNotFound reports whether err has code ENOTFOUND.
func IsNotFound(err error) bool { return ErrorCode(err) == ENOTFOUND }

// IsConflict reports whether err has code ECONFLICT.
func IsConflict(err error) bool { return ErrorCode(err) == ECONFLICT }
