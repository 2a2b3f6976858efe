package resource

import (
	"errors"
	"fmt"
	"strings"
)

// ErrAmbiguousPath is wrapped by CanonicalPath's errors: the request target
// is not an origin-form path, or proxies and upstreams disagree on what it
// means.
var ErrAmbiguousPath = errors.New("ambiguous request path")

// CanonicalPath returns the path a request target routes to, computed the
// way proxies (nginx, Envoy with normalize_path, Caddy, Traefik) and Go,
// Node or Python upstreams route it: the query is dropped, percent-encoding
// is decoded, dot segments are resolved and repeated slashes merged. The
// result is escaped in one form: unreserved characters, sub-delims other
// than ";", ":" and "@" appear as themselves, every other byte as %XX with
// uppercase hex; it keeps a trailing slash. It is what resources and scope
// rules are matched on, so "/mcp/%61dmin" and "/mcp/x/../admin" are both
// "/mcp/admin".
//
// A target whose meaning differs between proxies or upstreams is refused
// rather than guessed (the error wraps ErrAmbiguousPath): one that is not
// origin-form ("/…"); an encoded "/" or "\" (%2F, %5C: nginx decodes them
// and routes on the result, most upstreams split segments first); "\"
// (a separator on Windows and to some upstreams); a control character or
// %00; an invalid escape; a double encoding ("%252e", "%252f": an upstream
// that decodes twice sees "." or "/"); ";" or %3B (path parameters: Tomcat
// and Jetty serve "/mcp;x/admin" as "/mcp/admin"); "#"; and a ".." above the
// root (nginx refuses it, others drop it). A control character in the
// query is refused too: no proxy sends one.
func CanonicalPath(target string) (string, error) {
	p := target
	if i := strings.IndexByte(p, '?'); i >= 0 {
		for j := i + 1; j < len(p); j++ {
			if p[j] < 0x20 || p[j] == 0x7f {
				return "", fmt.Errorf("%w: control character", ErrAmbiguousPath)
			}
		}
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		return "", fmt.Errorf("%w: not an origin-form path", ErrAmbiguousPath)
	}
	if isCanonical(p) {
		return p, nil
	}
	// Cloned so the caller's string does not escape to the heap on every
	// call (strings.Split keeps its argument): the check's Request stays on
	// the stack.
	segs := strings.Split(strings.Clone(p[1:]), "/")
	out := make([]string, 0, len(segs))
	for i, raw := range segs {
		last := i == len(segs)-1
		seg, err := decodeSegment(raw)
		if err != nil {
			return "", err
		}
		switch seg {
		case "", ".":
			// "//" merges; "/./" is nothing. At the end both leave the
			// trailing slash nginx and path.Join-style routers keep.
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) == 0 {
				return "", fmt.Errorf("%w: \"..\" above the root", ErrAmbiguousPath)
			}
			out = out[:len(out)-1]
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, escapeSegment(seg))
		}
	}
	return "/" + strings.Join(out, "/"), nil
}

// isCanonical reports whether p (origin-form, no query) is its own
// canonical form, so the common case costs a scan and no allocation.
func isCanonical(p string) bool {
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !literal(p[i]) {
				return false
			}
			continue
		}
		switch p[segStart:i] {
		case "":
			if i < len(p) { // "//"; a trailing slash is canonical
				return false
			}
		case ".", "..":
			return false
		}
		segStart = i + 1
	}
	return true
}

// decodeSegment percent-decodes one segment and refuses what proxies and
// upstreams read differently.
func decodeSegment(s string) (string, error) {
	var b []byte // nil until the first escape
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", fmt.Errorf("%w: invalid percent-encoding", ErrAmbiguousPath)
			}
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			if c == '/' || c == '\\' {
				return "", fmt.Errorf("%w: encoded path separator", ErrAmbiguousPath)
			}
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			i += 2
		}
		if err := checkByte(c); err != nil {
			return "", err
		}
		if b != nil {
			b = append(b, c)
		}
	}
	if b == nil {
		return s, nil
	}
	// A decoded "%" followed by two hex digits is a second layer of
	// encoding: an upstream that decodes again sees another path.
	for i, c := range b {
		if c == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			return "", fmt.Errorf("%w: double percent-encoding", ErrAmbiguousPath)
		}
	}
	return string(b), nil
}

// checkByte refuses a (decoded) path byte whose meaning differs between
// proxies and upstreams.
func checkByte(c byte) error {
	switch {
	case c < 0x20 || c == 0x7f:
		return fmt.Errorf("%w: control character", ErrAmbiguousPath)
	case c == '\\':
		return fmt.Errorf("%w: backslash", ErrAmbiguousPath)
	case c == ';':
		return fmt.Errorf("%w: path parameter", ErrAmbiguousPath)
	case c == '#':
		return fmt.Errorf("%w: fragment", ErrAmbiguousPath)
	}
	return nil
}

// literal reports whether c appears as itself in a canonical path segment:
// RFC 3986 pchar without pct-encoded and without ";".
func literal(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,=:@", c) >= 0
}

func escapeSegment(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !literal(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if literal(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
