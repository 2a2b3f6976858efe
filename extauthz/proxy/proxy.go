// Package proxy is passgate's built-in reverse proxy: `passgate serve
// --upstream` puts it in front of an MCP server on passgate's own HTTP
// listener, for single-binary setups and first tries, with no nginx or
// Envoy in between.
//
// Every request for a resource that has an upstream is decided in process
// by the same extauthz.Checker the proxies ask (Checker.CheckReceived), on
// the request as passgate received it: the method of its request line, the
// host net/http routes on (the authority of an absolute-form target, else
// Host) and its request target, canonicalized and refused when ambiguous
// exactly as in every other front end. Nothing a client can add
// (X-Forwarded-*, X-Original-*) describes the request.
//
// A denied request gets the check's answer (401 or 403 with its
// WWW-Authenticate challenge, 400 for an ambiguous path or a malformed
// Authorization header, 503 when the store cannot be asked) with the CORS
// headers deploy/nginx.conf adds, so a browser-based MCP client can read
// the challenge. An allowed request goes to the resource's upstream:
//
//   - the path is the canonical path the check judged (so the upstream
//     routes on what was decided), the query as received;
//   - Host is the upstream's own address (the MCP Go SDK refuses a foreign
//     Host on loopback); X-Forwarded-Host and X-Forwarded-Proto are the
//     resource's, X-Forwarded-For and X-Real-IP the client's address (behind
//     trusted proxies, the one they reported);
//   - the identity headers are the decision's, and every client-sent header
//     of the same name, every header whose name holds an underscore (which
//     CGI-style servers read as a hyphen), every X-Forwarded-*,
//     X-Original-*, Forwarded and X-Real-IP header, Cookie (passgate's
//     session lives on the same origin) and, unless --keep-authorization,
//     Authorization are removed;
//   - hop-by-hop headers (and those a client lists in Connection) and
//     request trailers are dropped, and protocol upgrades are not
//     forwarded;
//   - responses stream: every write of an event stream (or of any body of
//     unknown length) is flushed to the client at once, and the listener's
//     write timeout does not cut long event streams.
//
// Requests for anything else (passgate's own pages and endpoints, hosts or
// paths outside every proxied resource) go to the next handler, never to an
// upstream; except that on a proxied resource's host a target the check
// refuses (an ambiguous path: it cannot be placed inside or outside a
// resource) gets the check's 400 wherever it points. An upstream that
// cannot be reached gives 502.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/clientip"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
)

// DefaultMaxBodyBytes bounds a proxied request body: the MCP Go SDK's own
// default limit, and deploy/nginx.conf's client_max_body_size.
const DefaultMaxBodyBytes = 4 << 20

// Upstream is the MCP server behind one resource.
type Upstream struct {
	// Resource is the protected resource whose requests go to URL.
	Resource resource.Resource
	// URL is the upstream's origin: http or https, a host, and no path,
	// query, fragment or userinfo.
	URL *url.URL
}

// ParseUpstreams reads the --upstream values against the configured
// resources: each is "RESOURCE=URL", or a bare URL when exactly one
// resource is configured. Every problem is reported at once.
func ParseUpstreams(resources []resource.Resource, specs []string) ([]Upstream, error) {
	var (
		ups  []Upstream
		errs []error
	)
	seen := map[string]bool{}
	for _, spec := range specs {
		res, raw, named := splitSpec(spec)
		var r resource.Resource
		switch {
		case named:
			var err error
			if r, err = resource.Lookup(resources, res); err != nil {
				errs = append(errs, fmt.Errorf("upstream %q: %w", spec, err))
				continue
			}
		case len(resources) == 1:
			r = resources[0]
		default:
			errs = append(errs, fmt.Errorf("upstream %q: with %d resources, name the one it serves: RESOURCE=URL", spec, len(resources)))
			continue
		}
		u, err := parseUpstreamURL(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %w", spec, err))
			continue
		}
		if r.Path == "/" {
			// passgate's own pages, endpoints and the resource's RFC 9728
			// metadata live on the same listener.
			errs = append(errs, fmt.Errorf("upstream %q: resource %q has no path of its own (such as /mcp); passgate serves its own pages and metadata beside the proxy", spec, r.URL))
			continue
		}
		if seen[r.URL] {
			errs = append(errs, fmt.Errorf("upstream %q: resource %q has two upstreams", spec, r.URL))
			continue
		}
		seen[r.URL] = true
		ups = append(ups, Upstream{Resource: r, URL: u})
	}
	return ups, errors.Join(errs...)
}

// splitSpec splits "RESOURCE=URL" at the "=" that starts the upstream's
// http(s) URL; named is false for a bare URL.
func splitSpec(spec string) (res, raw string, named bool) {
	spec = strings.TrimSpace(spec)
	for _, sep := range []string{"=http://", "=https://"} {
		if i := strings.Index(spec, sep); i > 0 {
			return spec[:i], spec[i+1:], true
		}
	}
	return "", spec, false
}

func parseUpstreamURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("the upstream must be an http:// or https:// URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, errors.New("the upstream must name a host")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, errors.New("the upstream is an origin (scheme, host, port) with no path, query or userinfo: requests keep their own path")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Config configures a Proxy. Checker, Resources and Upstreams are
// required.
type Config struct {
	// Checker decides every proxied request.
	Checker *extauthz.Checker
	// Resources are all the configured resources (the Checker's), so that
	// a request is routed to the resource the check judges it for.
	Resources []resource.Resource
	// Upstreams are the resources to proxy and their MCP servers.
	Upstreams []Upstream
	// ClientIP is the client's address for X-Forwarded-For and X-Real-IP.
	// Optional: default clientip.Peer.
	ClientIP func(*http.Request) string
	// Logger receives upstream errors. Optional: default discards.
	Logger *slog.Logger
	// Transport reaches the upstreams. Optional: default a keep-alive
	// transport that ignores HTTP_PROXY and friends, whose connections
	// Close closes.
	Transport http.RoundTripper
	// MaxBodyBytes bounds a request body. Optional: default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Proxy is the built-in reverse proxy. It is safe for concurrent use.
type Proxy struct {
	checker   *extauthz.Checker
	resources []resource.Resource
	upstreams map[string]*url.URL        // by resource URL
	proxied   []resource.Resource        // the resources with an upstream
	forwarded map[string]forwardedValues // by resource URL
	clientIP  func(*http.Request) string
	logger    *slog.Logger
	maxBody   int64
	rp        *httputil.ReverseProxy
	// pools are the kept connections of the direct path, by resource
	// URL: plain-HTTP upstreams with the default Transport (forward.go).
	pools map[string]*pool

	// conns are the open connections to the upstreams (default
	// Transport only), which Close closes.
	conns *connSet
}

// New validates cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	var errs []error
	if cfg.Checker == nil {
		errs = append(errs, errors.New("no checker"))
	}
	if len(cfg.Upstreams) == 0 {
		errs = append(errs, errors.New("no upstreams"))
	}
	p := &Proxy{
		checker:   cfg.Checker,
		resources: cfg.Resources,
		upstreams: map[string]*url.URL{},
		forwarded: map[string]forwardedValues{},
		clientIP:  cfg.ClientIP,
		logger:    cfg.Logger,
		maxBody:   cfg.MaxBodyBytes,
	}
	for _, u := range cfg.Upstreams {
		if u.URL == nil || u.Resource.Host == "" {
			errs = append(errs, fmt.Errorf("upstream for %q: not built by ParseUpstreams", u.Resource.URL))
			continue
		}
		if _, err := resource.Lookup(cfg.Resources, u.Resource.URL); err != nil {
			errs = append(errs, err)
		}
		p.upstreams[u.Resource.URL] = u.URL
		p.proxied = append(p.proxied, u.Resource)
		p.forwarded[u.Resource.URL] = forwardedValues{host: []string{u.Resource.Host}, proto: []string{u.Resource.Scheme}}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("proxy: %w", errors.Join(errs...))
	}
	if p.clientIP == nil {
		p.clientIP = clientip.Peer
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	tr := cfg.Transport
	if tr == nil {
		p.conns = &connSet{m: map[*trackedConn]struct{}{}}
		tr = newTransport(p.conns)
		p.pools = map[string]*pool{}
		for _, u := range cfg.Upstreams {
			if u.URL.Scheme == "http" {
				p.pools[u.Resource.URL] = newPool(u.URL, p.conns, time.Now)
			}
		}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: tr,
		// Zero, yet nothing streamed waits in a buffer: ReverseProxy
		// flushes every write at once (headers included) for an event
		// stream (Streamable HTTP's answers) and for any body of unknown
		// length. A body of known length is sent as it is copied, in
		// one write with its headers when small; -1 would flush those
		// headers alone first, from a timer goroutine, on every request.
		FlushInterval: 0,
		// ReverseProxy would allocate a 32 KiB copy buffer per request.
		BufferPool: bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt, _ := r.Context().Value(routeKey{}).(*route)
			p.upstreamError(w, r, rt.upstream, err)
		},
		ErrorLog: slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// newTransport is the default Transport: keep-alive connections to the
// upstreams, no environment proxy (HTTP_PROXY must not divert identity
// headers elsewhere), no transparent decompression (bodies pass as they
// are). Its connections are tracked in conns.
func newTransport(conns *connSet) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return conns.add(c), nil
		},
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// Close ends every proxied request still open (long-lived event streams)
// by closing the connections to the upstreams (with the default
// Transport), so that a graceful shutdown does not wait for them; register
// it with http.Server.RegisterOnShutdown. Requests arriving later are
// still served, on new connections.
func (p *Proxy) Close() {
	if p.conns != nil {
		p.conns.closeAll()
	}
}

// connSet tracks open upstream connections. Closing them, rather than
// cancelling each request's context, costs nothing per request: a
// connection serves many.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (s *connSet) add(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	s.m[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	})
	return err
}

// routeKey carries the routing result from ServeHTTP to rewrite.
type routeKey struct{}

type route struct {
	upstream *url.URL
	res      resource.Resource
	path     string // canonical
	decision extauthz.Decision
	body     []byte // the whole body when small; nil: streamed
}

// smallBody is the largest request body read whole before it is sent
// upstream; larger or unsized bodies stream.
const smallBody = 64 << 10

// Handler returns a handler that proxies requests for resources with an
// upstream and passes everything else to next (nil: 404).
func (p *Proxy) Handler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, ok := requestTarget(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		cp, err := resource.CanonicalPath(target)
		var (
			res       resource.Resource
			found     bool
			ambiguous bool
		)
		if err == nil {
			res, found, ambiguous = resource.FindUnambiguous(p.resources, "", r.Host, cp)
		}
		_, proxied := p.upstreams[res.URL]
		switch {
		case found && proxied && !ambiguous:
		case (err != nil || ambiguous) && p.onProxiedHost(r.Host):
			// A path the check refuses (encoded separators, letter-case
			// ambiguity) on a proxied host: let it answer, with its 400.
		default:
			next.ServeHTTP(w, r)
			return
		}
		// The request log names the route as a mux pattern would.
		r.Pattern = "proxy " + res.Path
		if !found {
			r.Pattern = "proxy"
		}
		d, _ := p.checker.CheckReceived(r, target)
		if !d.Allow {
			writeDenial(w, d)
			return
		}
		p.forward(w, r, route{upstream: p.upstreams[res.URL], res: res, path: cp, decision: d})
	})
}

// onProxiedHost reports whether host is the host of a proxied resource.
func (p *Proxy) onProxiedHost(host string) bool {
	for _, r := range p.proxied {
		if resource.CanonicalHost(r.Scheme, host) == r.Host {
			return true
		}
	}
	return false
}

// requestTarget returns r's request target in origin form as received:
// the escaped path and query. An absolute-form target ("GET http://h/p")
// gives its path and query (net/http already routes on its authority); the
// asterisk form and CONNECT's authority form have none.
func requestTarget(r *http.Request) (string, bool) {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI, true
	}
	if r.URL == nil || r.URL.Host == "" || r.Method == http.MethodConnect {
		return "", false
	}
	t := r.URL.EscapedPath()
	if t == "" {
		t = "/"
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		t += "?" + r.URL.RawQuery
	}
	return t, true
}

// writeDenial answers with the check's denial, plus the CORS headers of
// deploy/nginx.conf's denial locations: a browser-based MCP client must be
// able to read the challenge.
func writeDenial(w http.ResponseWriter, d extauthz.Decision) {
	h := w.Header()
	challenge := false
	for _, hd := range d.Headers {
		// Set as the check names them (WWW-Authenticate is not in
		// canonical form), as its HTTP front end does.
		h[hd.Name] = []string{hd.Value}
		challenge = challenge || hd.Name == "WWW-Authenticate"
	}
	h["Access-Control-Allow-Origin"] = []string{"*"}
	if challenge {
		h["Access-Control-Expose-Headers"] = []string{"WWW-Authenticate"}
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write([]byte(d.Body))
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt route) {
	if r.ContentLength > p.maxBody {
		oauth.WriteError(w, errBodyTooLarge)
		return
	}
	if r.ContentLength > 0 && r.ContentLength <= smallBody {
		// A JSON-RPC message: read it whole (it is already here), so that
		// the upstream request writes it from memory instead of copying
		// through ReverseProxy's wrapper with a 32 KiB buffer per request.
		rt.body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, rt.body); err != nil {
			oauth.WriteError(w, errBodyShort)
			return
		}
	} else if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.maxBody)
	}
	// An event stream may stay open far longer than the listener's write
	// timeout, which is meant for passgate's own pages.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if pl := p.pools[rt.res.URL]; pl != nil && (rt.body != nil || r.ContentLength == 0) {
		p.forwardDirect(w, r, &rt, pl)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, &rt)))
}

// rewrite builds the upstream request from the routed one (see the
// package documentation for every header).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey{}).(*route)
	out := pr.Out
	// The canonical path is escaped in one form (resource.CanonicalPath);
	// RawPath sends it as is.
	decoded, err := url.PathUnescape(rt.path)
	if err != nil {
		decoded = rt.path // cannot happen: CanonicalPath escapes validly
	}
	out.URL = &url.URL{
		Scheme:   rt.upstream.Scheme,
		Host:     rt.upstream.Host,
		Path:     decoded,
		RawPath:  rt.path,
		RawQuery: out.URL.RawQuery,
	}
	out.Host = "" // the upstream's own address
	// Request trailers are headers that arrive after the body, past
	// everything below: an upstream that merges them into the headers
	// would read a client's X-Passgate-User. None is forwarded.
	out.Trailer = nil
	if rt.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(rt.body))
		out.ContentLength = int64(len(rt.body))
	}
	h := out.Header
	// ReverseProxy has already removed the hop-by-hop headers, those
	// listed in Connection among them.
	for name := range h {
		if !forwardable(name, nil, &rt.decision) {
			delete(h, name)
		}
	}
	// One backing array for the values set here: fewer allocations per
	// request. net/http never modifies a header's value slice.
	vals := make([]string, len(rt.decision.Headers)+1)
	for i, hd := range rt.decision.Headers {
		if hd.Value != "" {
			vals[i] = hd.Value
			h[hd.Name] = vals[i : i+1 : i+1]
		}
	}
	ip := vals[len(vals)-1 : len(vals) : len(vals)]
	ip[0] = p.clientIP(pr.In)
	h["X-Forwarded-For"] = ip
	h["X-Real-Ip"] = ip
	fw := p.forwarded[rt.res.URL]
	h["X-Forwarded-Host"] = fw.host
	h["X-Forwarded-Proto"] = fw.proto
}

// forwardedValues are a resource's X-Forwarded-Host and -Proto values,
// built once and shared by every request (never modified).
type forwardedValues struct{ host, proto []string }

// forwardable reports whether the client's header name reaches the
// upstream: not hop-by-hop (conn is the request's Connection header, whose
// names are hop-by-hop too), not one dropHeader refuses, not Expect
// (passgate reads the body before it forwards it), and not one the
// decision removes or sets itself. Both paths to the upstream, direct and
// ReverseProxy, filter with it.
func forwardable(name string, conn []string, d *extauthz.Decision) bool {
	switch {
	case hopByHop(name), dropHeader(name):
		return false
	case name == "Content-Length", name == "Host", name == "Expect":
		// The request's framing is written for it (Host is never in
		// the map net/http's server hands over, but one set by a
		// handler in front must not go out twice).
		return false
	}
	for _, hd := range d.Headers {
		if strings.EqualFold(name, hd.Name) {
			return false
		}
	}
	for _, rm := range d.RemoveHeaders {
		if strings.EqualFold(name, rm) {
			return false
		}
	}
	return len(conn) == 0 || !listedIn(conn, name)
}

// hopByHop reports whether a (canonical) header name is hop-by-hop (RFC
// 9110, section 7.6.1, and ReverseProxy's list).
func hopByHop(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listedIn reports whether name is one of the comma-separated names in a
// Connection header's values.
func listedIn(conn []string, name string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), name) {
				return true
			}
		}
	}
	return false
}

// wantsTrailers reports whether the client said it accepts trailers ("TE:
// trailers"), the one hop-by-hop header ReverseProxy passes on.
func wantsTrailers(h http.Header) bool {
	for _, v := range h["Te"] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), "trailers") {
				return true
			}
		}
	}
	return false
}

// removeHopByHop removes a response's hop-by-hop headers, those listed in
// its Connection header included.
func removeHopByHop(h http.Header) {
	conn := h["Connection"]
	for name := range h {
		if hopByHop(name) || (len(conn) > 0 && listedIn(conn, name)) {
			delete(h, name)
		}
	}
}

// dropHeader reports whether a client-sent header never reaches the
// upstream: names with "_", the forwarding headers passgate sets itself or
// no proxy should believe from a client, and passgate's session cookie.
func dropHeader(name string) bool {
	if strings.IndexByte(name, '_') >= 0 {
		return true
	}
	switch name {
	case "Cookie", "Forwarded", "X-Real-Ip":
		return true
	}
	return hasPrefixFold(name, "X-Forwarded-") || hasPrefixFold(name, "X-Original-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// upstreamError answers 502 when the upstream cannot be reached or fails
// mid-request, and logs why without the request's URL (its query is the
// client's).
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, upstream *url.URL, err error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		oauth.WriteError(w, errBodyTooLarge)
		return
	case r.Context().Err() != nil || errors.Is(err, context.Canceled):
		// The client left, or passgate is shutting down.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.logger.WarnContext(r.Context(), "upstream unreachable", "upstream", upstream.String(), "err", err)
	oauth.WriteError(w, errUpstreamDown)
}

// The proxy's own errors (the check's denials are the Checker's), as
// OAuth error JSON.
var (
	errBodyTooLarge = &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "The request body is too large.", Status: http.StatusRequestEntityTooLarge}
	errBodyShort    = &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "The request body ended early.", Status: http.StatusBadRequest}
	errUpstreamDown = &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Description: "The MCP server behind passgate did not answer.", Status: http.StatusBadGateway}
)

// bufferPool recycles ReverseProxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
