// Package resource describes the protected MCP resources passgate guards:
// their canonical URLs (RFC 8707 audiences), where their RFC 9728 protected
// resource metadata lives, and which one a proxied request is for.
package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Resource is one protected resource, e.g. https://mcp.example.com/mcp.
type Resource struct {
	// URL is the resource identifier exactly as configured; tokens carry it
	// as their audience and metadata repeats it byte for byte.
	URL string
	// Scheme, Host (lowercase, with port only if not the default) and Path
	// (never empty; "/" for the origin) are parsed from URL for matching.
	Scheme string
	Host   string
	Path   string
}

// Parse validates one resource URL: absolute, http(s), no fragment, no
// query, no userinfo; http only for loopback hosts.
func Parse(raw string) (Resource, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Resource{}, fmt.Errorf("resource %q: scheme must be https", raw)
	}
	if u.Host == "" || u.Opaque != "" {
		return Resource{}, fmt.Errorf("resource %q: must be an absolute URL", raw)
	}
	if u.User != nil || u.Fragment != "" || u.RawQuery != "" || u.ForceQuery {
		return Resource{}, fmt.Errorf("resource %q: must not have userinfo, query or fragment", raw)
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return Resource{}, fmt.Errorf("resource %q: http is allowed only for loopback hosts; use https", raw)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	// Requests are matched on their canonical path, so the resource's path
	// must be canonical too.
	cp, err := CanonicalPath(p)
	if err != nil {
		return Resource{}, fmt.Errorf("resource %q: %w", raw, err)
	}
	if cp != p {
		return Resource{}, fmt.Errorf("resource %q: path is not canonical; write %q", raw, cp)
	}
	return Resource{URL: raw, Scheme: u.Scheme, Host: CanonicalHost(u.Scheme, u.Host), Path: p}, nil
}

// ParseAll parses every URL and reports all problems at once, plus
// duplicates.
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

// Lookup returns the configured resource (one of rs) whose URL is raw byte
// for byte, as tokens carry it as their audience; otherwise an error that
// names the configured ones. Credentials are only ever bound to a
// configured resource.
func Lookup(rs []Resource, raw string) (Resource, error) {
	urls := make([]string, 0, len(rs))
	for _, r := range rs {
		if r.URL == raw {
			return r, nil
		}
		urls = append(urls, r.URL)
	}
	return Resource{}, fmt.Errorf("resource %q is not a configured resource (configured: %s)", raw, strings.Join(urls, ", "))
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
