package oauthweb

import "net/http"

// PublicPaths returns the path of every page and endpoint Handler serves
// to clients and browsers, for an issuer without a path and with every
// optional feature on (passkeys included): the paths a reverse proxy in
// front of passgate must send to its HTTP listener without an
// authorization check. The two discovery documents are also served under
// path-suffixed forms (RFC 8414 §3.1, RFC 9728 §3.1), e.g.
// /.well-known/oauth-protected-resource/mcp; PublicPaths lists their base
// paths only. The check endpoints (/_passgate/check/...) are not in it:
// they are for the proxy, never for clients.
//
// It is the one list the shipped proxy configurations in deploy/ are
// tested against; a test of this package holds it equal to Handler's
// routes, so a new page cannot be left out of them. The returned slice is
// the caller's.
func PublicPaths() []string {
	return []string{
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-protected-resource",
		"/oauth/authorize",
		"/oauth/token",
		"/oauth/register",
		"/oauth/revoke",
		"/oauth/introspect",
		// The 2025-03-26 default endpoints, for clients that skip discovery.
		"/authorize",
		"/token",
		"/register",
		"/login",
		"/login/second-factor",
		"/consent",
		"/logout",
		"/apps",
		"/apps/revoke",
		"/account",
		"/account/password",
		"/account/totp",
		"/account/totp/remove",
		"/account/recovery-codes",
		"/account/passkeys/rename",
		"/account/passkeys/remove",
		"/webauthn/login/options",
		"/webauthn/login",
		"/webauthn/second-factor/options",
		"/webauthn/second-factor",
		"/webauthn/register/options",
		"/webauthn/register",
		"/static/passgate.css",
		"/static/passgate.js",
	}
}

// routeMux is an http.ServeMux that remembers its patterns.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}
