// Package oauth holds the protocol pieces of passgate's authorization server
// that have no HTTP routing or storage in them, each the one home of its
// rule: OAuth error codes and values and the one writer that sends them as
// JSON, PKCE S256 verification, redirect URI validation and matching
// (exact, with the RFC 8252 loopback port exception), issuer validation,
// and scope tokens and parsing. It imports only the standard library and
// internal/resource (for what a loopback host is), so oauthweb, extauthz
// and the CLI can all use it.
package oauth

import (
	"encoding/json"
	"net/http"
)

// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009,
// RFC 7591 §3.2.2 and RFC 8707: the strings of the "error" member, not Go
// errors. An Error carries one in its Code.
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeInvalidScope            = "invalid_scope"
	CodeAccessDenied            = "access_denied"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeInvalidTarget           = "invalid_target"
	CodeInvalidToken            = "invalid_token"
	CodeInsufficientScope       = "insufficient_scope"
	CodeUnsupportedTokenType    = "unsupported_token_type"
	CodeInvalidRedirectURI      = "invalid_redirect_uri"
	CodeInvalidClientMetadata   = "invalid_client_metadata"
)

// Error is an OAuth protocol error as the client sees it. Status is the
// HTTP status used when it is written as JSON (400 when zero). Description
// is shown to the client, so it must never contain a secret or an internal
// error; those go to the log separately.
type Error struct {
	Code        string
	Description string
	Status      int
	// WWWAuthenticate, when set, is sent as the WWW-Authenticate header
	// (RFC 6749 §5.2 requires one on a 401 after HTTP Basic).
	WWWAuthenticate string
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// NewError returns an Error with a 400 status.
func NewError(code, description string) *Error {
	return &Error{Code: code, Description: description, Status: http.StatusBadRequest}
}

// Unavailable is the error for a store outage: 503 temporarily_unavailable.
func Unavailable() *Error {
	return &Error{Code: CodeTemporarilyUnavailable, Description: "the service is temporarily unavailable, try again later", Status: http.StatusServiceUnavailable}
}

// ServerError is the error for a bug or corrupted state: 500 server_error.
func ServerError() *Error {
	return &Error{Code: CodeServerError, Description: "internal error", Status: http.StatusInternalServerError}
}

// WriteError writes e as the JSON body of RFC 6749 §5.2 with the no-store
// headers. It is the only way passgate sends an OAuth error as JSON.
func WriteError(w http.ResponseWriter, e *Error) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	if e.WWWAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", e.WWWAuthenticate)
	}
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description}
	WriteJSON(w, status, body)
}

// WriteJSON writes v as JSON with status and the headers every OAuth
// response carries: Cache-Control: no-store and Pragma: no-cache
// (RFC 6749 §5.1).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
