// Package resource describes the protected MCP resources passgate guards:
// their canonical URLs (RFC 8707 audiences), where their RFC 9728 protected
// resource metadata lives, and which one a proxied request is for.
package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Resource is one protected resource, e.g. https://mcp.example.com/mcp.
type Resource struct {
	// URL is the resource identifier in its canonical form (see
	// Canonical): what new tokens carry as their audience and what the
	// metadata reports. Identifiers are compared in this form everywhere.
	URL string
	// Configured is the URL exactly as configured. Tokens, consents and
	// API keys stored before identifiers were canonicalized carry it.
	Configured string
	// Scheme, Host (lowercase, with port only if not the default) and Path
	// (never empty, no trailing slash; "/" for the origin) are parsed from
	// URL for matching.
	Scheme string
	Host   string
	Path   string
}

// ErrInvalidIndicator is wrapped by Canonical's errors: the string is not
// a resource identifier passgate accepts (RFC 8707 §2: an absolute URI
// without a fragment).
var ErrInvalidIndicator = errors.New("invalid resource identifier")

// Canonical returns the canonical form of the resource identifier raw
// (a configured resource or a client's RFC 8707 resource indicator), so
// that identifiers naming the same resource compare equal: the scheme and
// host are lowercased, the scheme's default port, an empty port and
// leading zeros of a port are dropped, the path is CanonicalPath's form
// (percent-encoding of unreserved characters decoded) and a trailing
// slash is dropped, the origin itself being "https://host" with no path.
// So "HTTPS://MCP.example.com:443/mcp/" is "https://mcp.example.com/mcp".
//
// What could change which server or path is meant stays strict, and the
// error wraps ErrInvalidIndicator: a scheme other than https (http only
// for a loopback host), a relative or opaque URI, userinfo, a query (RFC
// 8707 §2: SHOULD NOT; a query would be a second namespace of
// identifiers), a fragment (MUST NOT), a host with characters outside
// letters, digits, ".", "-" and "_" (or an IPv6 literal without a zone),
// a port out of range, and a path CanonicalPath refuses (encoded "/" or
// "\", ";", control characters, double encoding) or that has a dot
// segment or an empty segment ("/a/../mcp", "/a//mcp"): the path of an
// identifier is compared, never resolved.
func Canonical(raw string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrInvalidIndicator, why)
	}
	if raw == "" {
		return bad("empty")
	}
	if strings.ContainsAny(raw, "#") {
		return bad("fragment")
	}
	if strings.ContainsAny(raw, "?") {
		return bad("query")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL")
	}
	scheme := u.Scheme // lowercased by url.Parse
	if scheme != "https" && scheme != "http" {
		return bad("scheme must be https")
	}
	if u.Opaque != "" || u.Host == "" || !strings.HasPrefix(raw[len(scheme)+1:], "//") {
		return bad("not an absolute URL")
	}
	if u.User != nil {
		return bad("userinfo")
	}
	host, ok := canonicalHostPort(scheme, u.Host)
	if !ok {
		return bad("invalid host or port")
	}
	if scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return bad("http is allowed only for loopback hosts")
	}
	// The path exactly as written: url.Parse re-encodes u.Path.
	rest := raw[len(scheme)+3:]
	p := "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		p = rest[i:]
	}
	cp, err := CanonicalPath(p)
	if err != nil {
		return bad(err.Error())
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return bad("invalid percent-encoding")
		}
		if (dec == "" && i < len(segs)-1) || dec == "." || dec == ".." {
			return bad("dot or empty path segment")
		}
	}
	return scheme + "://" + host + strings.TrimSuffix(cp, "/"), nil
}

// canonicalHostPort lowercases hostport, checks its characters and port,
// and drops a default, empty or zero-padded port.
func canonicalHostPort(scheme, hostport string) (string, bool) {
	hostport = strings.ToLower(hostport)
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", false
		}
		host, port = hostport[:end+1], hostport[end+1:]
		ip := net.ParseIP(host[1 : len(host)-1])
		if ip == nil || ip.To4() != nil || strings.ContainsAny(host, "%") {
			return "", false
		}
	} else {
		if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i:]
		}
		if host == "" {
			return "", false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	switch {
	case port == "" || port == ":":
		return host, true
	case port[0] != ':' || len(port) > 7:
		return "", false
	}
	n, err := strconv.Atoi(port[1:])
	if err != nil || n <= 0 || n > 65535 || port[1] == '+' || port[1] == '-' {
		return "", false
	}
	if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
		return host, true
	}
	return host + ":" + strconv.Itoa(n), true
}

// Audience is the canonical form of a stored audience (a token's or API
// key's resource), so credentials issued before identifiers were
// canonicalized, when they carried the URL exactly as configured, still
// match their resource. A string Canonical refuses is returned unchanged:
// it matches no configured resource.
func Audience(stored string) string {
	if c, err := Canonical(stored); err == nil {
		return c
	}
	return stored
}

// Parse validates one configured resource URL: Canonical must accept it,
// and its path must already be canonical (CanonicalPath), so the operator
// writes the path requests are matched on. Letter case of the scheme and
// host, a default port and a trailing slash are tolerated.
func Parse(raw string) (Resource, error) {
	c, err := Canonical(raw)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	p := pathOf(u)
	// Requests are matched on their canonical path, so the resource's path
	// must be canonical too.
	if cp, _ := CanonicalPath(p); cp != p {
		return Resource{}, fmt.Errorf("resource %q: path is not canonical; write %q", raw, cp)
	}
	cu, err := url.Parse(c)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	return Resource{URL: c, Configured: raw, Scheme: cu.Scheme, Host: cu.Host, Path: pathOf(cu)}, nil
}

// pathOf is u's escaped path, "/" for an empty one (https://host and
// https://host/ are one identifier).
func pathOf(u *url.URL) string {
	if p := u.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

// ParseAll parses every URL and reports all problems at once, plus
// duplicates (two spellings of one canonical identifier included).
func ParseAll(raws []string) ([]Resource, error) {
	var (
		out  []Resource
		errs []error
		seen = map[string]bool{}
	)
	for _, raw := range raws {
		r, err := Parse(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[r.URL] {
			errs = append(errs, fmt.Errorf("resource %q: listed twice", raw))
			continue
		}
		seen[r.URL] = true
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// MustParseAll is ParseAll for URLs known to be valid (literals in tests
// and examples); it panics on an error.
func MustParseAll(raws ...string) []Resource {
	rs, err := ParseAll(raws)
	if err != nil {
		panic(err)
	}
	return rs
}

// ErrUnknownResource is wrapped by Lookup's error for an identifier that
// is valid but names no configured resource, or an origin several
// configured resources share.
var ErrUnknownResource = errors.New("not a configured resource")

// Lookup returns the configured resource (one of rs) the resource
// indicator raw names, comparing canonical forms (Canonical): the one
// whose URL is Canonical(raw), or, when raw is an origin
// ("https://mcp.example.com") that is not itself configured, the only
// configured resource on that origin. The origin is what the root
// metadata document describes (RFC 9728 §3.3), so a client that read
// only that document still names the resource; with several resources on
// the origin it is refused, as the client must choose. The error wraps
// ErrInvalidIndicator or ErrUnknownResource and names the configured
// resources. Credentials are only ever bound to a configured resource.
func Lookup(rs []Resource, raw string) (Resource, error) {
	c, err := Canonical(raw)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	var (
		onOrigin []Resource
		urls     = make([]string, 0, len(rs))
	)
	for _, r := range rs {
		if r.URL == c {
			return r, nil
		}
		if r.Origin() == c {
			onOrigin = append(onOrigin, r)
		}
		urls = append(urls, r.URL)
	}
	if len(onOrigin) == 1 {
		return onOrigin[0], nil
	}
	return Resource{}, fmt.Errorf("resource %q: %w (configured: %s)", raw, ErrUnknownResource, strings.Join(urls, ", "))
}

// Origin is r's origin in canonical form, e.g. "https://mcp.example.com":
// the resource identifier of the root metadata document.
func (r Resource) Origin() string {
	return r.Scheme + "://" + r.Host
}

// CanonicalHost lowercases host and drops the scheme's default port, so
// hosts compare as origins do.
func CanonicalHost(scheme, host string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else if scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	}
	return host
}

// MetadataPath is the path of r's RFC 9728 metadata on r's origin:
// /.well-known/oauth-protected-resource followed by r's path (nothing for
// the origin itself).
func (r Resource) MetadataPath() string {
	const wk = "/.well-known/oauth-protected-resource"
	if r.Path == "/" {
		return wk
	}
	return wk + strings.TrimSuffix(r.Path, "/")
}

// MetadataURL is the absolute URL of r's protected resource metadata, the
// value of resource_metadata in WWW-Authenticate.
func (r Resource) MetadataURL() string {
	return r.Scheme + "://" + r.Host + r.MetadataPath()
}

// Matches reports whether a request to host and path (as the proxy routed
// them; path canonical, see CanonicalPath) is for r: same host
// (case-insensitive, default port ignored) and r's path is a prefix of path
// on a segment boundary ("/mcp" matches "/mcp", "/mcp/" and "/mcp/x", not
// "/mcpx").
//
// The request's scheme only decides which port is the default; it is not
// compared with r's. An identifier's scheme does not name another server
// (http resources exist only on loopback, and one host:port serves one
// scheme), and the scheme a check sees is whatever the nearest proxy says
// (nginx's $scheme, X-Forwarded-Proto): behind a TLS-terminating load
// balancer it is "http" for https traffic, and comparing it would deny
// every request. Where the scheme names the identifier, at
// /oauth/authorize and /oauth/token, it is compared (Lookup).
func (r Resource) Matches(scheme, host, path string) bool {
	return r.matches(scheme, host, path, false)
}

// MatchesFold is Matches with r's path compared without regard to letter
// case, the way Express or ASP.NET Core route by default.
func (r Resource) MatchesFold(scheme, host, path string) bool {
	return r.matches(scheme, host, path, true)
}

func (r Resource) matches(scheme, host, path string, fold bool) bool {
	if scheme == "" {
		scheme = r.Scheme
	}
	if CanonicalHost(scheme, host) != r.Host {
		return false
	}
	return HasPathPrefix(path, r.Path, fold)
}

// HasPathPrefix reports whether prefix is a prefix of the canonical path p
// on a segment boundary, "/" matching everything; fold ignores letter case.
func HasPathPrefix(p, prefix string, fold bool) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if len(p) < len(prefix) {
		return false
	}
	if head := p[:len(prefix)]; head != prefix && !(fold && strings.EqualFold(head, prefix)) {
		return false
	}
	rest := p[len(prefix):]
	return rest == "" || rest[0] == '/'
}

// Find returns the resource a request is for: the matching resource with the
// longest path, or false.
func Find(rs []Resource, scheme, host, path string) (Resource, bool) {
	r, found, _ := FindUnambiguous(rs, scheme, host, path)
	return r, found
}

// FindUnambiguous is Find, and also reports whether the answer would
// differ if paths were compared without regard to letter case, the way
// Express or ASP.NET Core route by default: such a request's resource
// depends on the upstream, and the check refuses it. One pass computes
// both answers.
func FindUnambiguous(rs []Resource, scheme, host, path string) (best Resource, found, ambiguous bool) {
	var (
		fold      Resource
		foldFound bool
	)
	for _, r := range rs {
		sch := scheme
		if sch == "" {
			sch = r.Scheme
		}
		if CanonicalHost(sch, host) != r.Host {
			continue
		}
		exact := HasPathPrefix(path, r.Path, false)
		if exact && (!found || len(r.Path) > len(best.Path)) {
			best, found = r, true
		}
		if (exact || HasPathPrefix(path, r.Path, true)) && (!foldFound || len(r.Path) > len(fold.Path)) {
			fold, foldFound = r, true
		}
	}
	return best, found, found != foldFound || best.URL != fold.URL
}

// IsLoopbackHost reports whether host (no port) is localhost or a loopback
// IP literal.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
