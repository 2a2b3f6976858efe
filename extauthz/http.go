package extauthz

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/resource"
)

// The HTTP check paths, one per proxy family. The path the proxy calls
// declares which headers describe the original request; the headers of
// another family are never read, so a client cannot pick the model by
// adding headers (Traefik and Caddy pass every client header to the
// check).
const (
	// CheckPathNginx is for nginx auth_request (deploy/nginx.conf). It reads
	// X-Original-URI, X-Original-Method, X-Forwarded-Host and
	// X-Forwarded-Proto, which that configuration sets itself.
	CheckPathNginx = "/_passgate/check/nginx"
	// CheckPathForwardAuth is for Traefik ForwardAuth and Caddy
	// forward_auth. It reads X-Forwarded-Method, X-Forwarded-Uri,
	// X-Forwarded-Host and X-Forwarded-Proto, which both proxies set
	// themselves.
	CheckPathForwardAuth = "/_passgate/check/forward-auth"
	// CheckPathIngressNginx is for the Kubernetes ingress-nginx auth-url
	// annotation. It reads X-Original-URL (absolute) and X-Original-Method,
	// and requires the host the Ingress serves pinned in the query:
	// ?host=mcp.example.com or ?resource=<resource URL>.
	CheckPathIngressNginx = "/_passgate/check/ingress-nginx"
	// CheckPathEnvoy is the path_prefix of Envoy's HTTP ext_authz
	// (http_service): Envoy appends the original path and query, and sends
	// the original method and Host.
	CheckPathEnvoy = "/_passgate/check/envoy"

	// CheckPathPrefix holds every check path; HTTPHandler answers
	// everything under it (404 for what is not a check path).
	CheckPathPrefix = "/_passgate/check/"
)

// family is a proxy family: one declared model of the request a proxy
// reports to the HTTP check.
type family uint8

const (
	familyNginx family = iota
	familyForwardAuth
	familyIngressNginx
	familyEnvoy
)

// HTTPHandler returns the HTTP check. It serves exactly the four check
// paths (CheckPathNginx, CheckPathForwardAuth, CheckPathIngressNginx and
// CheckPathEnvoy followed by the original path) and 404 for anything else
// under /_passgate/check/; every other request goes to next (nil: 404).
//
// It routes before any http.ServeMux: a ServeMux answers a path with dot
// segments or "//" with a redirect to its cleaned form, while Envoy's form
// carries the client's path, which the check must judge (and refuse when
// ambiguous), not redirect.
//
// It answers 200 (allowed, every identity header set, empty when there is
// no identity), 400 (invalid_request: an ambiguous path, a malformed
// Authorization header, or a request the proxy reported incompletely), 401
// or 403 (denied, with WWW-Authenticate and a JSON body), or 503 when the
// store cannot be asked about an uncached token.
func (c *Checker) HTTPHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, CheckPathPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		var f family
		switch p := r.URL.EscapedPath(); {
		case p == CheckPathNginx:
			f = familyNginx
		case p == CheckPathForwardAuth:
			f = familyForwardAuth
		case p == CheckPathIngressNginx:
			f = familyIngressNginx
		case strings.HasPrefix(r.RequestURI, CheckPathEnvoy+"/"):
			f = familyEnvoy
		default:
			http.NotFound(w, r)
			return
		}
		c.serveHTTP(w, r, f)
	})
}

func (c *Checker) serveHTTP(w http.ResponseWriter, r *http.Request, f family) {
	start := time.Now()
	var d Decision
	// The map lives on this stack frame (Check does not keep it).
	req, reason := c.httpRequest(r, f, make(map[string]string, 3))
	if reason != ReasonToken {
		d = c.refuse(reason)
	} else {
		d, _ = c.Check(r.Context(), req)
	}
	c.record(r.Context(), frontendHTTP, frontendLogNames[f], req, d, start)
	h := w.Header()
	// One backing array for all values: fewer allocations per check.
	vals := make([]string, len(d.Headers))
	for i, hd := range d.Headers {
		vals[i] = hd.Value
		h[hd.Name] = vals[i : i+1 : i+1]
	}
	if d.Allow {
		if f == familyEnvoy && d.removeJoined != nil {
			// Envoy's HTTP ext_authz removes these from the upstream
			// request. nginx, Traefik and Caddy ignore the header (their
			// own configuration removes Authorization), so they are not
			// sent it: every byte of a check answer is paid twice, by
			// passgate writing it and by the proxy parsing it.
			h["X-Envoy-Auth-Headers-To-Remove"] = d.removeJoined
		}
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		return
	}
	if f == familyNginx && d.Body != "" {
		// nginx's auth_request passes the status (401, 403) but never
		// the body of a denial: deploy/nginx.conf reads it from this
		// header (auth_request_set) and answers with it, so a 403 for an
		// unknown host is not told apart only by its status.
		h[ErrorBodyHeader] = []string{d.Body}
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write([]byte(d.Body))
}

// ErrorBodyHeader carries the JSON body of a denial on the nginx check
// path (CheckPathNginx), for the proxy to answer the client with. The
// bodies are passgate's own constants: ASCII JSON, no line breaks.
const ErrorBodyHeader = "X-Passgate-Error-Body"

// errHeader is a declared header that is missing, empty or repeated.
var errHeader = errors.New("header missing or repeated")

// httpRequest reads the original request the way family f reports it, and
// nothing else: headers of other families are never looked at. Headers go
// into hm. reason is ReasonToken when the report is usable, else the
// refusal (ReasonInvalidRequest, ReasonHostMismatch).
func (c *Checker) httpRequest(r *http.Request, f family, hm map[string]string) (req Request, reason Reason) {
	req = Request{SourceAddress: r.RemoteAddr, Headers: hm}
	var errs [4]error
	switch f {
	case familyNginx:
		// Set by deploy/nginx.conf from $request_uri, $request_method,
		// the server block's own name and port, and $scheme.
		req.Path, errs[0] = one(r, "X-Original-Uri")
		req.Method, errs[1] = one(r, "X-Original-Method")
		req.Host, errs[2] = one(r, "X-Forwarded-Host")
		req.Scheme, errs[3] = optional(r, "X-Forwarded-Proto")
	case familyForwardAuth:
		// Traefik and Caddy set these from the request they route,
		// overwriting the client's copies (Traefik without
		// trustForwardHeader, Caddy for clients outside trusted_proxies).
		req.Path, errs[0] = one(r, "X-Forwarded-Uri")
		req.Method, errs[1] = one(r, "X-Forwarded-Method")
		req.Host, errs[2] = one(r, "X-Forwarded-Host")
		req.Scheme, errs[3] = optional(r, "X-Forwarded-Proto")
		// Caddy and Traefik route on the host name alone but report the
		// client's Host with its port: the check URL pins the port the
		// site listens on (?port=443), so a client cannot name the port
		// of another resource on the same name.
		if ports, ok := r.URL.Query()["port"]; ok && errs[2] == nil {
			if reason := pinnedPort(req, ports); reason != ReasonToken {
				return req, reason
			}
		}
	case familyIngressNginx:
		// The controller's template sets X-Original-URL to
		// $scheme://$http_host$request_uri: the host is the client's Host
		// header, not necessarily the one nginx routed on, so the check
		// URL pins it.
		var u string
		u, errs[0] = one(r, "X-Original-Url")
		req.Method, errs[1] = one(r, "X-Original-Method")
		if errs[0] == nil {
			var ok bool
			if req.Scheme, req.Host, req.Path, ok = splitAbsolute(u); !ok {
				return req, ReasonInvalidRequest
			}
		}
		if anyErr(errs) {
			return req, ReasonInvalidRequest
		}
		if reason := c.pinnedHost(r, req); reason != ReasonToken {
			return req, reason
		}
	case familyEnvoy:
		// Envoy's path_prefix form: the original path and query follow
		// the prefix; method and Host are the original request's.
		req.Path = strings.TrimPrefix(r.RequestURI, CheckPathEnvoy)
		req.Method = r.Method
		req.Host = r.Host
	}
	if anyErr(errs) {
		return req, ReasonInvalidRequest
	}
	readCheckHeaders(r, hm)
	return req, ReasonToken
}

// readCheckHeaders copies into hm the request headers Check reads:
// authorization, origin and access-control-request-method, and the MCP
// Streamable HTTP headers the access policy judges (mcp-method, mcp-name,
// mcp-protocol-version). Every HTTP front end and the built-in proxy read
// them here.
func readCheckHeaders(r *http.Request, hm map[string]string) {
	if v, ok := r.Header["Authorization"]; ok {
		// Repeated headers are joined as a proxy would, which makes them
		// malformed Bearer credentials.
		if len(v) == 1 {
			hm["authorization"] = v[0]
		} else {
			hm["authorization"] = strings.Join(v, ",")
		}
	}
	if v := hdr(r, "Origin"); v != "" {
		hm["origin"] = v
	}
	if v := hdr(r, "Access-Control-Request-Method"); v != "" {
		hm["access-control-request-method"] = v
	}
	// The MCP Streamable HTTP headers the access policy judges (nginx
	// auth_request passes the client's headers; the body never). A
	// repeated one is marked so that mcpCall refuses it.
	for _, k := range [...]struct{ canon, key string }{{"Mcp-Method", "mcp-method"}, {"Mcp-Name", "mcp-name"}, {"Mcp-Protocol-Version", "mcp-protocol-version"}} {
		switch v := r.Header[k.canon]; len(v) {
		case 0:
		case 1:
			hm[k.key] = v[0]
		default:
			hm[k.key] = "\n"
		}
	}
}

// pinnedHost checks the host ingress-nginx reported against the one the
// check URL pins: ?host=H, or ?resource=U for the host of a configured
// resource. Exactly one pin is required: without it a client could choose
// the audience with an absolute-form request target.
func (c *Checker) pinnedHost(r *http.Request, req Request) Reason {
	q := r.URL.Query()
	hosts, resources := q["host"], q["resource"]
	var pin string
	switch {
	case len(hosts) == 1 && len(resources) == 0 && hosts[0] != "":
		pin = resource.CanonicalHost(req.Scheme, hosts[0])
	case len(resources) == 1 && len(hosts) == 0:
		return c.pinnedResource(req, resources[0])
	default:
		return ReasonInvalidRequest
	}
	if resource.CanonicalHost(req.Scheme, req.Host) != pin {
		return ReasonHostMismatch
	}
	return ReasonToken
}

// pinnedResource checks the host (and port) the proxy reported against
// those of u, a configured resource the proxy's own configuration names:
// a request naming another host or port is refused (403), and a pin that
// names no configured resource is a misconfiguration, refused (400).
func (c *Checker) pinnedResource(req Request, u string) Reason {
	res, err := resource.Lookup(c.resources, u)
	if err != nil {
		return ReasonInvalidRequest
	}
	if resource.CanonicalHost(req.Scheme, req.Host) != res.Host {
		return ReasonHostMismatch
	}
	return ReasonToken
}

// pinnedPort checks the port of the host the proxy reported (the client's
// Host, the scheme's default port when it names none) against the one the
// check URL pins (exactly one, 1 to 65535): a request naming another port
// is refused, as ingress-nginx's pinned host is. It runs on every check a
// pinning proxy asks (the shipped Envoy route pins its port), so it
// compares strings in place instead of building two canonical hosts, by
// resource.CanonicalHost's rules: a named port must be the pin as written
// (no leading zeros, not empty), and a host without one has its scheme's
// default (http 80, https 443).
func pinnedPort(req Request, ports []string) Reason {
	if len(ports) != 1 || !validPort(ports[0]) {
		return ReasonInvalidRequest
	}
	name, port, named, ok := splitAuthority(req.Host)
	if !ok || name == "" {
		return ReasonInvalidRequest
	}
	if !named {
		// No port named: the scheme's default.
		switch req.Scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	if port != ports[0] {
		return ReasonHostMismatch
	}
	return ReasonToken
}

// validPort reports whether p is a port number in canonical form: 1 to
// 65535, decimal digits, no sign and no leading zero.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

// splitAuthority splits host[:port] or [v6][:port] without allocating;
// named reports whether a ":" names a port (which may then be empty). ok
// is false for an authority that is neither form (an unbracketed IPv6
// address, text after "]", a port that is not digits).
func splitAuthority(a string) (name, port string, named, ok bool) {
	if strings.HasPrefix(a, "[") {
		i := strings.IndexByte(a, ']')
		if i < 0 {
			return "", "", false, false
		}
		name, rest := a[1:i], a[i+1:]
		switch {
		case rest == "":
			return name, "", false, true
		case rest[0] != ':':
			return "", "", false, false
		}
		port = rest[1:]
	} else {
		i := strings.LastIndexByte(a, ':')
		if i < 0 {
			return a, "", false, true
		}
		if strings.IndexByte(a[:i], ':') >= 0 {
			return "", "", false, false
		}
		name, port = a[:i], a[i+1:]
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", "", false, false
		}
	}
	return name, port, true, true
}

// splitAbsolute splits an absolute http(s) URL into scheme, authority and
// origin-form target, without decoding anything (CanonicalPath does that).
func splitAbsolute(u string) (scheme, host, target string, ok bool) {
	scheme, rest, ok := strings.Cut(u, "://")
	scheme = strings.ToLower(scheme)
	if !ok || scheme != "http" && scheme != "https" {
		return "", "", "", false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", "", "", false
	}
	host, target = rest[:i], rest[i:]
	if strings.ContainsAny(host, "@?#") {
		return "", "", "", false
	}
	return scheme, host, target, true
}

// one reads a declared header that must be present exactly once and not
// empty: a missing one means the proxy is not configured as documented, a
// repeated one that someone besides the proxy set it.
func one(r *http.Request, canonical string) (string, error) {
	v := r.Header[canonical]
	if len(v) != 1 || v[0] == "" {
		return "", errHeader
	}
	return v[0], nil
}

// optional reads a declared header that may be absent but not repeated.
func optional(r *http.Request, canonical string) (string, error) {
	v := r.Header[canonical]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", errHeader
}

func anyErr(errs [4]error) bool {
	for _, err := range errs {
		if err != nil {
			return true
		}
	}
	return false
}

// noStore is shared by every response; net/http never modifies header
// value slices.
var noStore = []string{"no-store"}

// hdr reads a header by canonical key without canonicalising again.
func hdr(r *http.Request, canonical string) string {
	if v := r.Header[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}
