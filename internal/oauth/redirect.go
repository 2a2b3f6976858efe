package oauth

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/passgate/passgate/internal/resource"
)

// maxRedirectURILen bounds a redirect URI; browsers cope with ~2 KB URLs
// and nothing legitimate needs more.
const maxRedirectURILen = 2000

// deniedSchemes can never be redirect targets, even when private-use
// schemes are allowed: they run code or read local data in the browser.
var deniedSchemes = map[string]bool{
	"javascript": true, "data": true, "file": true, "vbscript": true,
	"about": true, "blob": true, "filesystem": true, "view-source": true,
	"ftp": true, "ws": true, "wss": true, "mailto": true, "tel": true,
	"sms": true, "intent": true, "chrome": true, "jar": true,
}

// sane rejects what no redirect URI may contain whatever its scheme:
// control characters, spaces and backslashes (browsers read "\" as "/",
// which makes parsers disagree about the host), fragments and wildcards.
func sane(raw string) error {
	if raw == "" {
		return errors.New("empty redirect URI")
	}
	if len(raw) > maxRedirectURILen {
		return errors.New("redirect URI too long")
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= 0x20 || c == 0x7f || c == '\\' {
			return errors.New("redirect URI contains a forbidden character")
		}
	}
	if strings.Contains(raw, "#") {
		return errors.New("redirect URI must not have a fragment")
	}
	if strings.Contains(raw, "*") {
		return errors.New("redirect URI must not contain wildcards")
	}
	return nil
}

// parse parses raw strictly: the scheme must already be lowercase so that
// exact string comparison and parsed comparison agree, and there must be no
// userinfo ("http://localhost:80@evil.example/cb" has evil.example as its
// host).
func parse(raw string) (*url.URL, error) {
	if err := sane(raw); err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("redirect URI does not parse")
	}
	if u.Scheme == "" || !strings.HasPrefix(raw, u.Scheme+":") {
		return nil, errors.New("redirect URI must be absolute with a lowercase scheme")
	}
	if u.User != nil {
		return nil, errors.New("redirect URI must not have userinfo")
	}
	if u.Opaque != "" {
		return nil, errors.New("redirect URI must be hierarchical")
	}
	if strings.Contains(u.Host, "%") {
		return nil, errors.New("redirect URI host must not be percent-encoded")
	}
	return u, nil
}

// PrivateSchemes is the policy for private-use URI scheme redirect URIs
// (RFC 8252 §7.1), which native apps such as Cursor and VS Code use to
// receive the code. Its zero value is PrivateSchemesDefault.
type PrivateSchemes string

const (
	// PrivateSchemesDefault accepts a private-use scheme that RFC 8252
	// §7.1 describes (one with a '.' in it, a reverse domain name such as
	// com.example.app) or one of KnownAppSchemes. PKCE, which passgate
	// requires of every client, is what protects a code sent to a scheme
	// another app on the device could also claim.
	PrivateSchemesDefault PrivateSchemes = "default"
	// PrivateSchemesOff accepts only https and loopback http.
	PrivateSchemesOff PrivateSchemes = "off"
	// PrivateSchemesAny accepts any scheme but the denied ones.
	PrivateSchemesAny PrivateSchemes = "any"
)

// KnownAppSchemes are the private-use schemes without a '.' that
// PrivateSchemesDefault accepts: those of MCP clients that register one
// (the Claude desktop app, Cursor, VS Code and its Insiders build,
// Windsurf). It is a short list on purpose; an operator who needs another
// sets PrivateSchemesAny.
var KnownAppSchemes = []string{"claude", "cursor", "vscode", "vscode-insiders", "windsurf"}

// ParsePrivateSchemes parses the --allow-private-schemes setting: off,
// default or any; "" is default. For compatibility with the boolean it
// replaced, true means any and false means off.
func ParsePrivateSchemes(s string) (PrivateSchemes, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return PrivateSchemesDefault, nil
	case "off", "false", "0", "no":
		return PrivateSchemesOff, nil
	case "any", "true", "1", "yes":
		return PrivateSchemesAny, nil
	}
	return "", errors.New("must be off, default or any")
}

// allows reports whether p accepts the private-use scheme (already lowercase,
// not http or https, not denied).
func (p PrivateSchemes) allows(scheme string) bool {
	switch p {
	case PrivateSchemesAny:
		return true
	case PrivateSchemesOff:
		return false
	}
	return strings.Contains(scheme, ".") || slices.Contains(KnownAppSchemes, scheme)
}

// ValidateRedirectURI checks a redirect URI offered at registration (and by
// an operator for a static client): https with a host; http only on a
// loopback host (RFC 8252 §7.3); another scheme only when policy accepts
// it (RFC 8252 §7.1, e.g. cursor:// or com.example.app:/cb) and never one
// that runs code or reads local data in the browser. No fragment,
// userinfo or wildcard in any case.
func ValidateRedirectURI(raw string, policy PrivateSchemes) error {
	u, err := parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "https":
		if u.Hostname() == "" {
			return errors.New("redirect URI must have a host")
		}
	case "http":
		if u.Hostname() == "" || !resource.IsLoopbackHost(u.Hostname()) {
			return errors.New("http redirect URIs are allowed only for loopback hosts; use https")
		}
	default:
		if deniedSchemes[u.Scheme] {
			return errors.New("redirect URI scheme " + u.Scheme + " is not allowed")
		}
		if !policy.allows(u.Scheme) {
			if policy == PrivateSchemesOff {
				return errors.New("redirect URI must be https or loopback http (private-use schemes are off)")
			}
			return errors.New("redirect URI scheme " + u.Scheme + " is not a private-use scheme passgate accepts: use a reverse domain name such as com.example.app (RFC 8252 section 7.1)")
		}
	}
	return nil
}

// MatchRedirectURI reports whether requested is one of registered: equal
// byte for byte, or, when the registered URI is http on a loopback host,
// equal in everything but the port (RFC 8252 §7.3: native apps listen on
// an ephemeral port). Anything that parses ambiguously never matches.
func MatchRedirectURI(registered []string, requested string) bool {
	if _, err := parse(requested); err != nil {
		return false
	}
	for _, reg := range registered {
		if reg == requested {
			return true
		}
	}
	for _, reg := range registered {
		if loopbackMatch(reg, requested) {
			return true
		}
	}
	return false
}

func loopbackMatch(reg, requested string) bool {
	r, err := parse(reg)
	if err != nil || r.Scheme != "http" || !resource.IsLoopbackHost(r.Hostname()) {
		return false
	}
	q, err := url.Parse(requested)
	if err != nil || q.Scheme != "http" || q.User != nil || q.Hostname() != r.Hostname() {
		return false
	}
	if p := q.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return false
		}
	}
	if q.EscapedPath() != r.EscapedPath() || q.RawQuery != r.RawQuery || q.ForceQuery != r.ForceQuery {
		return false
	}
	// Rebuild the URI from its parts and require it to be the input, so
	// that what we compared is exactly what the browser will be sent to.
	rebuilt := "http://" + q.Host + q.EscapedPath()
	if q.ForceQuery || q.RawQuery != "" {
		rebuilt += "?" + q.RawQuery
	}
	return rebuilt == requested
}

// LoopbackRedirect reports whether raw is an http or https redirect URI on
// a loopback host: the code goes to whatever program listens on that port
// of the user's own computer (RFC 8252 §7.3), so it does not identify the
// client. https does not change that: any local program can serve it with
// a certificate of its own.
func LoopbackRedirect(raw string) bool {
	u, err := parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && resource.IsLoopbackHost(u.Hostname())
}

// PrivateScheme returns the scheme of a private-use redirect URI (RFC 8252
// §7.1, e.g. "cursor"), which any app on the device may claim, or "" for
// http and https URIs and for anything that does not parse.
func PrivateScheme(raw string) string {
	u, err := parse(raw)
	if err != nil || u.Scheme == "http" || u.Scheme == "https" {
		return ""
	}
	return u.Scheme
}
