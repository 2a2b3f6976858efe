package deploy

// The hostile corpus: requests an attacker would send, through each real
// proxy in front of the real passgate binary, and one invariant checked on
// every request that reached the MCP server. See corpusWorld.check.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// The names of the two resource hosts; a corpus world adds the port of the
// proxy in front (corpusWorld.hostA, hostB).
const (
	nameA = "127.0.0.1"
	nameB = "localhost"
)

// corpusRules is --require-scopes: a path prefix and the scopes it needs.
var corpusRules = map[string][]string{"/mcp/admin": {"admin"}}

// corpusForged are the identity values clients send; none may reach an
// upstream.
var corpusForged = map[string]string{
	"X-Passgate-User":      "mallory",
	"X-Passgate-Client-Id": "forged-client",
	"X-Passgate-Scope":     "mcp admin",
}

// corpusToken is an access token passgate issued in the corpus world.
type corpusToken struct {
	Secret, Resource, Scope string
}

// corpusWorld is passgate with two resources on each of two hosts, the
// scope rules corpusRules, one user and one client, and a token per
// resource and scope.
type corpusWorld struct {
	srv *e2etest.Server
	// hostA and hostB are the resource hosts, nameA and nameB with the
	// port of the proxy in front.
	hostA, hostB string
	user         string
	clientID     string
	tokens       map[string]corpusToken // by name: "A/mcp", "A/mcp+admin", ...
}

// resources are the protected resources: /mcp and /other on each host.
func (w *corpusWorld) resources() []string {
	return []string{
		"http://" + w.hostA + "/mcp", "http://" + w.hostA + "/other",
		"http://" + w.hostB + "/mcp", "http://" + w.hostB + "/other",
	}
}

// startCorpusWorld starts passgate on passAddr for resources on
// nameA:port and nameB:port, and mints the tokens.
func startCorpusWorld(t *testing.T, passAddr, port string) *corpusWorld {
	t.Helper()
	var rules []string
	for p, s := range corpusRules {
		rules = append(rules, p+"="+strings.Join(s, " "))
	}
	w := &corpusWorld{hostA: net.JoinHostPort(nameA, port), hostB: net.JoinHostPort(nameB, port), user: "alice", tokens: map[string]corpusToken{}}
	srv := e2etest.Start(t, e2etest.Options{
		HTTPAddr: passAddr,
		Resource: w.resources()[0],
		Args: []string{
			"--resource", strings.Join(w.resources(), ","),
			"--scopes", "mcp,admin",
			"--require-scopes", strings.Join(rules, ";"),
		},
	})
	w.srv = srv
	e2etest.AddUser(t, srv.OpenStore(t), w.user, "correct horse")
	cl := srv.RegisterClient(t)
	w.clientID = cl.ClientID
	b := e2etest.NewBrowser()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, spec := range []struct{ name, resource, scope string }{
		{"A/mcp", "http://" + w.hostA + "/mcp", "mcp"},
		{"A/mcp+admin", "http://" + w.hostA + "/mcp", "mcp admin"},
		{"A/other", "http://" + w.hostA + "/other", "mcp"},
		{"B/mcp", "http://" + w.hostB + "/mcp", "mcp"},
		{"B/mcp+admin", "http://" + w.hostB + "/mcp", "mcp admin"},
		{"B/other", "http://" + w.hostB + "/other", "mcp"},
	} {
		c := *cl
		c.Resource, c.Scope = spec.resource, spec.scope
		tok, err := c.Login(ctx, b, w.user, "correct horse")
		if err != nil {
			t.Fatalf("token %s: %v", spec.name, err)
		}
		w.tokens[spec.name] = corpusToken{Secret: tok.AccessToken, Resource: spec.resource, Scope: tok.Scope}
	}
	// Well-formed but unknown.
	w.tokens["unknown"] = corpusToken{Secret: "pga_" + strings.Repeat("x", 43)}
	return w
}

// corpusReq is one hostile request, written by hand on the wire.
type corpusReq struct {
	Name   string
	Method string
	// Target is the request target as sent: origin form, absolute form or
	// anything else.
	Target string
	// Hosts are the Host header lines (none, one, or duplicates).
	Hosts []string
	// Header lines after Host, in order. A value may name tokens as
	// {token:NAME}.
	Header [][2]string
}

// tokens returns the names of the tokens the request carries.
func (r corpusReq) tokens() []string {
	var names []string
	for _, h := range r.Header {
		v := h[1]
		for {
			i := strings.Index(v, "{token:")
			if i < 0 {
				break
			}
			j := strings.Index(v[i:], "}")
			names = append(names, v[i+len("{token:"):i+j])
			v = v[i+j:]
		}
	}
	return names
}

// wire is the request as bytes, with the corpus ID header the upstream
// uses to tell requests apart.
func (r corpusReq) wire(w *corpusWorld, id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.Method, r.Target)
	for _, h := range r.Hosts {
		fmt.Fprintf(&b, "Host: %s\r\n", h)
	}
	for _, h := range r.Header {
		v := h[1]
		for name, tok := range w.tokens {
			v = strings.ReplaceAll(v, "{token:"+name+"}", tok.Secret)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], v)
	}
	fmt.Fprintf(&b, "X-Corpus-Id: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", id)
	return b.String()
}

// sendRaw writes req to addr on a new connection and returns the status
// (0 if the proxy closed the connection without an answer).
func sendRaw(addr, req string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// corpusOutcome is one request's fate.
type corpusOutcome struct {
	Req    corpusReq
	Status int
	Saw    []upstreamSaw
}

// runCorpus sends every request to addr (four at a time) and returns the
// outcomes in order.
func (w *corpusWorld) runCorpus(t *testing.T, addr string, rec *recorder, reqs []corpusReq) []corpusOutcome {
	t.Helper()
	out := make([]corpusOutcome, len(reqs))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("c%d", i)
			status, err := sendRaw(addr, r.wire(w, id))
			if err != nil {
				t.Errorf("%s: %v", r.Name, err)
			}
			out[i] = corpusOutcome{Req: r, Status: status}
		}()
	}
	wg.Wait()
	for i := range out {
		out[i].Saw = rec.saw(fmt.Sprintf("c%d", i))
	}
	for _, s := range rec.orphans() {
		t.Errorf("the upstream got a request it cannot attribute: %s %s Host %s", s.Method, s.RequestURI, s.Host)
	}
	return out
}

// corpusProxy says how a proxy's upstream reports what it served.
type corpusProxy struct {
	// FixedHost is the host whose requests the upstream serves (its proxy
	// routes only that host to it), or "" when the upstream serves several
	// and tells them by the Host it receives.
	FixedHost string
	// StripsAuthorization: the proxy removes the client's Authorization
	// before the upstream.
	StripsAuthorization bool
}

// checkInvariant returns what is wrong with the upstream having received
// s for request r: nothing when the token covers everything the upstream
// may have served.
//
// The invariant: if the upstream received a request, the token's audience
// is the resource the upstream served, its scopes satisfy the rules for the
// path the upstream served, and every identity header the upstream saw came
// from passgate. "Served" is computed from what the upstream saw, under
// every reading an upstream might apply (decoded once; dots and slashes
// decoded twice; encoded slashes kept inside their segment; ";" parameters
// stripped; "\" as "/"), and
// for every host it may have served (its routed host, its Host and
// X-Forwarded-Host). A CORS preflight the upstream sees as one, with no
// token, is the only request that may pass without a token, and it carries
// no client-chosen identity.
func (w *corpusWorld) checkInvariant(p corpusProxy, r corpusReq, s upstreamSaw) []string {
	var bad []string
	for _, name := range identityHeaderNames {
		vals := identityValues(s.Header, name)
		if len(vals) > 1 {
			bad = append(bad, fmt.Sprintf("upstream got %d %s headers %q", len(vals), name, vals))
		}
		for _, v := range vals {
			for _, h := range r.Header {
				if identityName(h[0]) == name && v == h[1] && v != "" {
					bad = append(bad, fmt.Sprintf("upstream got the client's %s %q", name, v))
				}
			}
		}
	}
	if p.StripsAuthorization && len(s.Header.Values("Authorization")) > 0 {
		bad = append(bad, "upstream got the client's Authorization")
	}

	names := r.tokens()
	preflight := s.Method == http.MethodOptions && s.Header.Get("Origin") != "" && s.Header.Get("Access-Control-Request-Method") != ""
	if len(names) == 0 {
		if !preflight {
			bad = append(bad, fmt.Sprintf("upstream got %s %s without a token", s.Method, s.RequestURI))
		}
		return bad
	}

	hosts := w.servedHosts(p, s)
	if len(hosts) == 0 {
		bad = append(bad, fmt.Sprintf("upstream served no known host (Host %q, X-Forwarded-Host %q)", s.Host, s.Header.Values("X-Forwarded-Host")))
	}
	paths := servedPaths(s.RequestURI)
	for _, name := range names {
		tok, ok := w.tokens[name]
		if !ok || tok.Resource == "" {
			bad = append(bad, fmt.Sprintf("upstream got a request carrying the invalid token %s", name))
			continue
		}
		for _, h := range hosts {
			for _, pth := range paths {
				res := w.resourceFor(h, pth)
				if res != tok.Resource {
					bad = append(bad, fmt.Sprintf("token %s (audience %s) reached %s%s, resource %q", name, tok.Resource, h, pth, res))
				}
				for _, need := range requiredScopes(pth) {
					if !slices.Contains(strings.Fields(tok.Scope), need) {
						bad = append(bad, fmt.Sprintf("token %s (scope %q) reached %s, which needs %q", name, tok.Scope, pth, need))
					}
				}
			}
		}
		if !preflight {
			want := map[string]string{"X-Passgate-User": w.user, "X-Passgate-Client-Id": w.clientID, "X-Passgate-Scope": tok.Scope}
			for _, h := range identityHeaderNames {
				if got := identityValues(s.Header, h); len(got) != 1 || got[0] != want[h] {
					bad = append(bad, fmt.Sprintf("upstream got %s %q, want %q from token %s", h, got, want[h], name))
				}
			}
		}
	}
	return bad
}

// identityName maps a header name to the identity header an upstream may
// read it as: CGI-style servers fold "_" into "-" and ignore case.
func identityName(h string) string {
	return http.CanonicalHeaderKey(strings.ReplaceAll(h, "_", "-"))
}

// identityValues returns every value of identity header name in h, under
// any spelling an upstream may read as it.
func identityValues(h http.Header, name string) []string {
	var vals []string
	for k, v := range h {
		if identityName(k) == name {
			vals = append(vals, v...)
		}
	}
	return vals
}

// servedHosts returns the resource hosts the upstream may have served s
// for.
func (w *corpusWorld) servedHosts(p corpusProxy, s upstreamSaw) []string {
	var hosts []string
	add := func(h string) {
		h = strings.TrimSuffix(strings.TrimSpace(strings.ToLower(h)), ":80")
		if (h == w.hostA || h == w.hostB) && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if p.FixedHost != "" {
		add(p.FixedHost)
	} else {
		add(s.Host)
	}
	for _, v := range s.Header.Values("X-Forwarded-Host") {
		for _, h := range strings.Split(v, ",") {
			add(h)
		}
	}
	return hosts
}

// servedPaths returns the canonical paths an upstream may read from the
// request target it received.
func servedPaths(target string) []string {
	p := target
	if u, err := url.Parse(target); err == nil && u.IsAbs() {
		p = u.EscapedPath()
	}
	p, _, _ = strings.Cut(p, "?")
	var out []string
	add := func(s string) {
		s = canonicalPath(s)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	once := unescapeOr(p, p)
	add(once)
	// Decoded twice where that makes a dot or a separator: %252e, %252f.
	add(strings.NewReplacer("%2e", ".", "%2E", ".", "%2f", "/", "%2F", "/", "%5c", "/", "%5C", "/").Replace(once))
	add(strings.ReplaceAll(once, `\`, "/"))
	// Encoded slashes kept inside their segment.
	keep := strings.NewReplacer("%2f", "%252f", "%2F", "%252F", "%5c", "%255c", "%5C", "%255C").Replace(p)
	add(unescapeOr(keep, keep))
	// ";" parameters stripped from every segment.
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		segs[i], _, _ = strings.Cut(seg, ";")
	}
	stripped := strings.Join(segs, "/")
	add(unescapeOr(stripped, stripped))
	return out
}

func unescapeOr(s, fallback string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return fallback
	}
	return u
}

// canonicalPath resolves dot segments and merges slashes.
func canonicalPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// resourceFor returns the corpus resource for host and canonical path:
// the longest resource path that is a segment prefix of p, or "".
func (w *corpusWorld) resourceFor(host, p string) string {
	best, bestLen := "", -1
	for _, r := range w.resources() {
		u, _ := url.Parse(r)
		if u.Host != host || !segmentPrefix(p, u.Path) {
			continue
		}
		if len(u.Path) > bestLen {
			best, bestLen = r, len(u.Path)
		}
	}
	return best
}

func requiredScopes(p string) []string {
	var need []string
	for prefix, scopes := range corpusRules {
		if segmentPrefix(p, prefix) {
			need = append(need, scopes...)
		}
	}
	return need
}

func segmentPrefix(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// corpusPaths are the request targets of the path part of the corpus.
var corpusPaths = []string{
	"/mcp", "/mcp/", "/mcp/admin", "/mcp/admin/x", "/mcp/adminx", "/other", "/other/x", "/", "/mcpx", "/unknown",
	// Percent-encoding (attack 2) and double encoding.
	"/mcp/%61dmin", "/mcp/%61%64%6d%69%6e", "/mcp/%2561dmin", "/%6dcp/admin", "/mcp%2Fadmin", "/mcp%2fadmin",
	// Dot segments, raw and encoded, and crossing resources (attack 3).
	"/mcp/./admin", "/mcp/x/../admin", "/mcp/x/%2e%2e/admin", "/mcp/x/%2E%2E/admin", "/mcp/x/%252e%252e/admin",
	"/other/../mcp/admin", "/other/..%2Fmcp", "/other/..%2fmcp/admin", "/other/%2e%2e/mcp/admin",
	"/other/%2e%2e%2fmcp/admin", "/mcp/..%2F..%2Fother", "/mcp/../other", "/mcp/%2e%2e/other",
	// Merged slashes and backslashes.
	"//mcp/admin", "/mcp//admin", "/mcp/%2F/admin", "/mcp\\admin", "/mcp/%5cadmin", "/other\\..\\mcp\\admin",
	// ";" parameters.
	"/mcp;x=1/admin", "/mcp/admin;x=1", "/mcp/..;/other", "/other/..;/mcp/admin", "/other;/../mcp/admin",
	// NUL, invalid escapes, a query that looks like a path.
	"/mcp/admin%00", "/mcp/%00/../admin", "/mcp/%zz", "/mcp/%", "/mcp?/admin", "/mcp/admin#x",
	// Case.
	"/MCP/admin", "/mcp/ADMIN",
}

// corpusTokenHeaders are the Authorization variants crossed with every
// path: none, each token, an unknown one.
var corpusTokenNames = []string{"", "A/mcp", "A/mcp+admin", "A/other", "B/mcp", "B/mcp+admin", "B/other", "unknown"}

// buildCorpus returns the corpus for a proxy serving hosts (of hostA and
// hostB).
func (w *corpusWorld) buildCorpus(hosts []string) []corpusReq {
	hostA, hostB := w.hostA, w.hostB
	_, port, _ := net.SplitHostPort(hostA)
	var reqs []corpusReq
	bearer := func(name string) [][2]string {
		if name == "" {
			return nil
		}
		return [][2]string{{"Authorization", "Bearer {token:" + name + "}"}}
	}
	for _, host := range []string{hostA, hostB} {
		for _, p := range corpusPaths {
			for _, tok := range corpusTokenNames {
				reqs = append(reqs, corpusReq{
					Name:   fmt.Sprintf("POST %s host %s token %q", p, host, tok),
					Method: "POST", Target: p, Hosts: []string{host}, Header: bearer(tok),
				})
			}
		}
	}
	other := map[string]string{hostA: hostB, hostB: hostA}
	for _, host := range hosts {
		oh := other[host]
		for _, tok := range []string{"", "A/mcp", "B/mcp", "A/other", "B/other"} {
			for _, p := range []string{"/mcp/admin", "/other", "/mcp"} {
				add := func(name string, h ...[2]string) {
					reqs = append(reqs, corpusReq{
						Name:   fmt.Sprintf("%s: POST %s host %s token %q", name, p, host, tok),
						Method: "POST", Target: p, Hosts: []string{host}, Header: append(bearer(tok), h...),
					})
				}
				preflight := [][2]string{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}
				add("nginx family injected (attack 1)", append([][2]string{{"X-Original-URI", "/mcp"}, {"X-Original-Method", "OPTIONS"}}, preflight...)...)
				add("nginx family injected, other host", [2]string{"X-Original-URI", "/mcp"}, [2]string{"X-Forwarded-Host", oh})
				add("forward-auth family injected", append([][2]string{{"X-Forwarded-Uri", "/mcp"}, {"X-Forwarded-Method", "OPTIONS"}, {"X-Forwarded-Host", oh}, {"X-Forwarded-Proto", "https"}}, preflight...)...)
				add("ingress-nginx family injected", append([][2]string{{"X-Original-URL", "http://" + oh + "/mcp"}, {"X-Original-Method", "OPTIONS"}}, preflight...)...)
				add("rewrite headers injected", [2]string{"X-Forwarded-Prefix", "/mcp"}, [2]string{"X-Rewrite-URL", "/mcp"}, [2]string{"X-Envoy-Original-Path", "/mcp"}, [2]string{"X-Forwarded-Path", "/mcp"})
				add("duplicated forwarded headers", [2]string{"X-Forwarded-Host", host}, [2]string{"X-Forwarded-Host", oh}, [2]string{"X-Forwarded-Uri", "/mcp"}, [2]string{"X-Forwarded-Uri", "/other"})
				add("Forwarded header", [2]string{"Forwarded", "host=" + oh + ";proto=https"})
				add("method override to OPTIONS", append([][2]string{{"X-HTTP-Method-Override", "OPTIONS"}, {"X-Method-Override", "OPTIONS"}}, preflight...)...)
				add("preflight headers on POST", preflight...)
				add("client identity headers", [2]string{"X-Passgate-User", corpusForged["X-Passgate-User"]}, [2]string{"X-Passgate-Client-Id", corpusForged["X-Passgate-Client-Id"]}, [2]string{"X-Passgate-Scope", corpusForged["X-Passgate-Scope"]})
				add("client identity headers, underscores", [2]string{"X_Passgate_User", "mallory"}, [2]string{"x-passgate-scope", "admin"})
				add("client identity headers, duplicated", [2]string{"X-Passgate-User", "mallory"}, [2]string{"X-Passgate-User", "root"}, [2]string{"X-Passgate-Client-Id", "forged-client"}, [2]string{"X-Passgate-Client-Id", "other-client"})
			}
		}
		// Preflights and look-alikes, with forged identities.
		forged := [][2]string{{"X-Passgate-User", "mallory"}, {"X-Passgate-Scope", "admin"}}
		for _, p := range []string{"/mcp", "/mcp/admin", "/other"} {
			reqs = append(reqs,
				corpusReq{Name: "preflight " + p + " host " + host, Method: "OPTIONS", Target: p, Hosts: []string{host},
					Header: append([][2]string{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}, forged...)},
				corpusReq{Name: "OPTIONS without Origin " + p + " host " + host, Method: "OPTIONS", Target: p, Hosts: []string{host},
					Header: append([][2]string{{"Access-Control-Request-Method", "POST"}}, forged...)},
				corpusReq{Name: "OPTIONS without ACRM " + p + " host " + host, Method: "OPTIONS", Target: p, Hosts: []string{host},
					Header: [][2]string{{"Origin", "https://evil.example"}}},
				corpusReq{Name: "GET with preflight headers " + p + " host " + host, Method: "GET", Target: p, Hosts: []string{host},
					Header: [][2]string{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}},
				corpusReq{Name: "lowercase options " + p + " host " + host, Method: "options", Target: p, Hosts: []string{host},
					Header: [][2]string{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}},
			)
		}
		// Authorization variants.
		for _, v := range []string{
			"bearer {token:A/mcp+admin}", "BEARER {token:B/mcp+admin}", "Bearer  {token:A/mcp+admin}", "Bearer {token:A/mcp} ",
			"Bearer {token:A/mcp+admin}, Bearer {token:B/mcp+admin}", "Bearer {token:A/mcp+admin} {token:B/mcp+admin}",
			"Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==", "Bearer", "Bearer ", "{token:A/mcp+admin}", "Token {token:A/mcp+admin}",
			"Bearer\t{token:A/mcp+admin}",
		} {
			for _, p := range []string{"/mcp", "/mcp/admin"} {
				reqs = append(reqs, corpusReq{Name: fmt.Sprintf("Authorization %q %s host %s", v, p, host), Method: "POST", Target: p,
					Hosts: []string{host}, Header: [][2]string{{"Authorization", v}}})
			}
		}
		for _, pair := range [][2]string{{"A/mcp", "B/mcp+admin"}, {"B/mcp", "A/mcp+admin"}, {"A/other", "A/mcp+admin"}} {
			for _, p := range []string{"/mcp", "/mcp/admin", "/other"} {
				reqs = append(reqs, corpusReq{Name: fmt.Sprintf("two Authorization %v %s host %s", pair, p, host), Method: "POST", Target: p,
					Hosts: []string{host}, Header: [][2]string{{"Authorization", "Bearer {token:" + pair[0] + "}"}, {"Authorization", "Bearer {token:" + pair[1] + "}"}}})
			}
		}
	}
	// Host forgery and absolute-form targets (attack 4).
	for _, tok := range []string{"A/mcp", "A/mcp+admin", "B/mcp", "B/mcp+admin", "A/other", "B/other"} {
		for _, p := range []string{"/mcp", "/mcp/admin", "/other"} {
			h := [][2]string{{"Authorization", "Bearer {token:" + tok + "}"}}
			for _, pair := range [][2]string{{hostA, hostB}, {hostB, hostA}, {nameA, hostB}, {nameB, hostA}} {
				target, host := pair[0], pair[1]
				reqs = append(reqs,
					corpusReq{Name: fmt.Sprintf("absolute-form http://%s%s Host %s token %s", target, p, host, tok), Method: "POST",
						Target: "http://" + target + p, Hosts: []string{host}, Header: h},
					corpusReq{Name: fmt.Sprintf("absolute-form with port http://%s:1%s Host %s token %s", target, p, host, tok), Method: "POST",
						Target: "http://" + strings.Split(target, ":")[0] + ":1" + p, Hosts: []string{host}, Header: h},
					corpusReq{Name: fmt.Sprintf("absolute-form userinfo http://%s@%s%s token %s", host, target, p, tok), Method: "POST",
						Target: "http://" + host + "@" + target + p, Hosts: []string{host}, Header: h},
					corpusReq{Name: fmt.Sprintf("two Host headers %s %s %s token %s", target, host, p, tok), Method: "POST",
						Target: p, Hosts: []string{target, host}, Header: h},
					corpusReq{Name: fmt.Sprintf("X-Forwarded-Host %s on Host %s %s token %s", host, target, p, tok), Method: "POST",
						Target: p, Hosts: []string{target}, Header: append([][2]string{{"X-Forwarded-Host", host}, {"X-Original-URL", "http://" + host + p}}, h...)},
				)
			}
			for _, host := range []string{nameA, nameB, nameA + ":1", strings.ToUpper(hostB), nameB + ".:" + port, hostA + "," + hostB, nameB + "@" + hostA, hostA + " ", ""} {
				reqs = append(reqs, corpusReq{Name: fmt.Sprintf("Host %q %s token %s", host, p, tok), Method: "POST",
					Target: p, Hosts: []string{host}, Header: h})
			}
			reqs = append(reqs, corpusReq{Name: fmt.Sprintf("no Host %s token %s", p, tok), Method: "POST", Target: p, Header: h})
		}
	}
	return reqs
}

// assertCorpus checks the invariant on every outcome, that each request in
// mustReach reached the upstream once, and that no request in
// mustNotReach did.
func (w *corpusWorld) assertCorpus(t *testing.T, p corpusProxy, outs []corpusOutcome, mustReach, mustNotReach []string) {
	t.Helper()
	reached := 0
	for _, o := range outs {
		if len(o.Saw) > 1 {
			t.Errorf("%s: upstream got it %d times", o.Req.Name, len(o.Saw))
		}
		for _, s := range o.Saw {
			for _, v := range w.checkInvariant(p, o.Req, s) {
				t.Errorf("%s (status %d, upstream saw %s %s Host %s): %s", o.Req.Name, o.Status, s.Method, s.RequestURI, s.Host, v)
			}
		}
		if len(o.Saw) > 0 {
			reached++
		}
	}
	byName := map[string]corpusOutcome{}
	for _, o := range outs {
		byName[o.Req.Name] = o
	}
	for _, name := range mustReach {
		o, ok := byName[name]
		if !ok {
			t.Errorf("no corpus request %q", name)
			continue
		}
		if len(o.Saw) != 1 || o.Status != http.StatusOK {
			t.Errorf("%s: status %d, reached the upstream %d times; want 200, once", name, o.Status, len(o.Saw))
		}
	}
	for _, name := range mustNotReach {
		o, ok := byName[name]
		if !ok {
			t.Errorf("no corpus request %q", name)
			continue
		}
		if len(o.Saw) != 0 {
			t.Errorf("%s: status %d, reached the upstream", name, o.Status)
		}
	}
	t.Logf("%d requests, %d reached the upstream", len(outs), reached)
}

// mustReach names the requests a proxy serving host (w.hostA or w.hostB)
// must let through to /mcp: one with the host's token for it, and one to
// the scope rule's /mcp/admin with the admin scope.
func (w *corpusWorld) mustReach(host string) []string {
	self := w.hostLetter(host)
	return []string{
		fmt.Sprintf(`POST /mcp host %s token "%s/mcp"`, host, self),
		fmt.Sprintf(`POST /mcp/admin host %s token "%s/mcp+admin"`, host, self),
	}
}

// mustNotReach names the attacks a proxy serving host (w.hostA or w.hostB)
// must keep from the upstream: the attack 1, a token-less POST
// /mcp/admin dressed as a preflight of /mcp with headers of the nginx
// family; the scope rule's segment percent-encoded (attack 2); a dot
// segment encoded out of /other into /mcp (attack 3); and an absolute-form
// target naming host with the other host in Host and a token for it
// (attack 4).
func (w *corpusWorld) mustNotReach(host string) []string {
	otherHost := w.hostB
	if host == w.hostB {
		otherHost = w.hostA
	}
	self, other := w.hostLetter(host), w.hostLetter(otherHost)
	return []string{
		fmt.Sprintf("nginx family injected (attack 1): POST /mcp/admin host %s token %q", host, ""),
		fmt.Sprintf("nginx family injected (attack 1): POST /mcp/admin host %s token %q", host, "A/mcp"),
		fmt.Sprintf("nginx family injected (attack 1): POST /mcp/admin host %s token %q", host, "B/mcp"),
		fmt.Sprintf(`POST /mcp/%%61dmin host %s token "%s/mcp"`, host, self),
		fmt.Sprintf(`POST /other/..%%2Fmcp host %s token "%s/other"`, host, self),
		fmt.Sprintf(`absolute-form http://%s/mcp Host %s token %s/mcp`, host, otherHost, other),
	}
}

// hostLetter returns "A" for w.hostA and "B" for w.hostB, as the corpus's
// token names spell them.
func (w *corpusWorld) hostLetter(host string) string {
	if host == w.hostB {
		return "B"
	}
	return "A"
}

// port returns the port of a host:port.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostileCorpusNginx runs the corpus through real nginx with the shipped
// deploy/nginx.conf, which serves host A and routes only /mcp to the
// upstream.
func TestHostileCorpusNginx(t *testing.T) {
	rec := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	ngx := startNginx(t, nginxOptions{PassgateAddr: passAddr, MCPAddr: rec.addr(), PlainHTTP: true, ServerName: nameA})
	w := startCorpusWorld(t, passAddr, port(t, ngx.Addr))
	outs := w.runCorpus(t, ngx.Addr, rec, w.buildCorpus([]string{w.hostA}))
	w.assertCorpus(t, corpusProxy{FixedHost: w.hostA, StripsAuthorization: true}, outs, w.mustReach(w.hostA), w.mustNotReach(w.hostA))
}

// TestHostileCorpusCaddy runs the corpus through real Caddy with the shipped
// deploy/caddy/Caddyfile, serving both hosts with one upstream.
func TestHostileCorpusCaddy(t *testing.T) {
	rec := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	addr := startCaddy(t, caddyOptions{Hosts: []string{nameA, nameB}, PassgateAddr: passAddr, UpstreamAddr: rec.addr()})
	w := startCorpusWorld(t, passAddr, port(t, addr))
	outs := w.runCorpus(t, addr, rec, w.buildCorpus([]string{w.hostA, w.hostB}))
	a, b := w.hostA, w.hostB
	w.assertCorpus(t, corpusProxy{StripsAuthorization: true}, outs,
		append(append(w.mustReach(a), w.mustReach(b)...),
			fmt.Sprintf(`POST /other host %s token "A/other"`, a),
			fmt.Sprintf(`POST /other/x host %s token "B/other"`, b),
		),
		append(w.mustNotReach(a), w.mustNotReach(b)...))
}

// TestCaddyForwardAuthIgnoresInjectedOriginalHeaders is the attack
// 1 through real Caddy with the shipped Caddyfile: forward_auth passes every
// client header to the check, so a check that read X-Original-Uri and
// X-Original-Method there would take a token-less POST /mcp/admin for a
// preflight of /mcp and let it through.
func TestCaddyForwardAuthIgnoresInjectedOriginalHeaders(t *testing.T) {
	rec := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	addr := startCaddy(t, caddyOptions{Hosts: []string{nameA}, PassgateAddr: passAddr, UpstreamAddr: rec.addr()})
	w := startCorpusWorld(t, passAddr, port(t, addr))
	attack := [][2]string{
		{"X-Original-Uri", "/mcp"}, {"X-Original-Method", "OPTIONS"},
		{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"},
	}
	tests := []struct {
		name   string
		header [][2]string
	}{
		{"no token", attack},
		{"token without the admin scope", append([][2]string{{"Authorization", "Bearer {token:A/mcp}"}}, attack...)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := corpusReq{Name: tt.name, Method: "POST", Target: "/mcp/admin", Hosts: []string{w.hostA}, Header: tt.header}
			id := fmt.Sprintf("attack1-%d", i)
			status, err := sendRaw(addr, r.wire(w, id))
			if err != nil {
				t.Fatal(err)
			}
			if saw := rec.saw(id); len(saw) != 0 || status == http.StatusOK {
				t.Errorf("POST /mcp/admin dressed as a preflight of /mcp: status %d, reached the upstream %d times; want refused", status, len(saw))
			}
		})
	}
}

// TestHostileCorpusIngressNginx runs the corpus through real nginx running
// what the ingress-nginx controller renders for the shipped Ingress (host
// B, /mcp), with the auth-url pinning host B.
func TestHostileCorpusIngressNginx(t *testing.T) {
	rec := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	ing := readIngressManifests(t)
	var authURL string
	addr := startNginxTemplate(t, ingressNginxFixture, func(listen string) map[string]string {
		authURL = ing.authURL(t, passAddr, net.JoinHostPort(nameB, port(t, listen)))
		u, err := url.Parse(authURL)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{
			"NGINX_SERVER_NAME": nameB,
			"NGINX_LISTEN":      listen,
			"NGINX_AUTH_URL":    authURL,
			"NGINX_AUTH_HOST":   u.Hostname(),
			"NGINX_MCP_ADDR":    rec.addr(),
		}
	})
	w := startCorpusWorld(t, passAddr, port(t, addr))
	outs := w.runCorpus(t, addr, rec, w.buildCorpus([]string{w.hostB}))
	w.assertCorpus(t, corpusProxy{FixedHost: w.hostB, StripsAuthorization: true}, outs, w.mustReach(w.hostB), w.mustNotReach(w.hostB))
}

// envoyEdge is what the shipped deploy/envoy.yaml does to a request around
// the ext_authz check, as far as the corpus needs it.
type envoyEdge struct {
	// Underscores is the HTTP connection manager's
	// headers_with_underscores_action.
	Underscores corev3.HttpProtocolOptions_HeadersWithUnderscoresAction
	// BeforeCheck are the headers the header_mutation filter removes
	// before ext_authz.
	BeforeCheck []string
	// BeforeUpstream are the headers the /mcp route removes.
	BeforeUpstream []string
}

func loadEnvoyEdge(t *testing.T) envoyEdge {
	t.Helper()
	b := loadEnvoy(t)
	var e envoyEdge
	for _, hcm := range envoyHCMs(t, b) {
		e.Underscores = hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction()
		for _, f := range hcm.GetHttpFilters() {
			if f.GetName() != "envoy.filters.http.header_mutation" {
				continue
			}
			hm := unpack(t, f.GetTypedConfig(), &headermutationv3.HeaderMutation{})
			for _, m := range hm.GetMutations().GetRequestMutations() {
				if r := m.GetRemove(); r != "" {
					e.BeforeCheck = append(e.BeforeCheck, r)
				}
			}
		}
	}
	if r := envoyRouteFor(t, b, "/mcp"); r != nil {
		e.BeforeUpstream = r.GetRequestHeadersToRemove()
	}
	return e
}

// envoyCheckRequest turns a corpus request into the CheckRequest Envoy's
// ext_authz filter would send for it with the shipped envoy.yaml: the
// :authority from an absolute-form target or the Host header, the path
// (not normalized: passgate must not rely on Envoy for that), lowercased
// headers with duplicates joined by ",", minus what envoy.yaml drops before
// the check. ok is false for requests Envoy refuses before the filter.
func (e envoyEdge) checkRequest(w *corpusWorld, r corpusReq) (req *authv3.CheckRequest, ok bool) {
	host, p := "", r.Target
	if u, err := url.Parse(r.Target); err == nil && u.IsAbs() {
		host, p = u.Host, u.RequestURI()
	} else if len(r.Hosts) == 1 {
		host = r.Hosts[0]
	}
	if host == "" || len(r.Hosts) != 1 {
		return nil, false
	}
	headers := map[string]string{}
	for _, h := range r.Header {
		k := strings.ToLower(h[0])
		if strings.Contains(k, "_") {
			switch e.Underscores {
			case corev3.HttpProtocolOptions_REJECT_REQUEST:
				return nil, false
			case corev3.HttpProtocolOptions_DROP_HEADER:
				continue
			}
		}
		if slices.Contains(e.BeforeCheck, k) {
			continue
		}
		v := h[1]
		for name, tok := range w.tokens {
			v = strings.ReplaceAll(v, "{token:"+name+"}", tok.Secret)
		}
		if prev, ok := headers[k]; ok {
			v = prev + "," + v
		}
		headers[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Scheme: "http", Host: host, Path: p, Headers: headers, Protocol: "HTTP/1.1",
		}},
	}}, true
}

// upstreamSaw is what the upstream receives after Envoy applied an
// allowing answer to the request: the checked headers, overwritten or
// added to by the answer's headers, minus the ones the answer and the
// route remove.
func (e envoyEdge) upstreamSaw(req *authv3.CheckRequest, ok *authv3.OkHttpResponse) upstreamSaw {
	h := req.GetAttributes().GetRequest().GetHttp()
	hdr := http.Header{}
	for k, v := range h.GetHeaders() {
		hdr.Add(k, v)
	}
	for _, o := range ok.GetHeaders() {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			hdr.Add(k, v)
		} else {
			hdr.Set(k, v)
		}
	}
	for _, k := range append(ok.GetHeadersToRemove(), e.BeforeUpstream...) {
		hdr.Del(k)
	}
	return upstreamSaw{Method: h.GetMethod(), RequestURI: h.GetPath(), Host: h.GetHost(), Header: hdr}
}

// TestHostileCorpusEnvoyGRPC asks passgate's real gRPC server the corpus as
// Envoy with the shipped envoy.yaml would, but without Envoy's own path
// normalization (passgate canonicalizes defensively), and checks the
// invariant on every request it allows, as the upstream would see it.
func TestHostileCorpusEnvoyGRPC(t *testing.T) {
	// No proxy listens: the hosts get a port nobody uses.
	w := startCorpusWorld(t, e2etest.FreeAddr(t), port(t, e2etest.FreeAddr(t)))
	edge := loadEnvoyEdge(t)
	client := authv3.NewAuthorizationClient(w.srv.GRPCConn())
	reqs := w.buildCorpus([]string{w.hostA, w.hostB})
	allowed := 0
	for _, r := range reqs {
		req, ok := edge.checkRequest(w, r)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		resp, err := client.Check(ctx, req)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", r.Name, err)
			continue
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			continue
		}
		allowed++
		s := edge.upstreamSaw(req, resp.GetOkResponse())
		for _, v := range w.checkInvariant(corpusProxy{StripsAuthorization: true}, r, s) {
			t.Errorf("%s (allowed, upstream would see %s %s Host %s): %s", r.Name, s.Method, s.RequestURI, s.Host, v)
		}
	}
	if allowed == 0 {
		t.Error("nothing was allowed; the corpus proves nothing")
	}
	t.Logf("%d requests, %d allowed", len(reqs), allowed)
}

// TestCaddyRoutesPassgate: through the shipped Caddyfile, passgate's own
// paths reach passgate without a token (no check in the way) and never the
// MCP server.
func TestCaddyRoutesPassgate(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Resource: "http://" + nameA + "/mcp"})
	rec := startRecorder(t)
	addr := startCaddy(t, caddyOptions{Hosts: []string{nameA}, PassgateAddr: srv.Opts.HTTPAddr, UpstreamAddr: rec.addr()})
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/.well-known/oauth-authorization-server", http.StatusOK},
		{"GET", "/.well-known/oauth-protected-resource/mcp", http.StatusOK},
		{"GET", "/login", http.StatusOK},
		{"GET", "/healthz", http.StatusOK},
		{"GET", "/readyz", http.StatusOK},
		{"POST", "/oauth/token", http.StatusUnsupportedMediaType},
		{"POST", "/token", http.StatusUnsupportedMediaType},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := corpusReq{Method: tt.method, Target: tt.path, Hosts: []string{nameA}}
			id := "route " + tt.path
			status, err := sendRaw(addr, r.wire(&corpusWorld{}, id))
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Errorf("%s %s through Caddy = %d, want passgate's %d", tt.method, tt.path, status, tt.want)
			}
			if n := len(rec.saw(id)); n != 0 {
				t.Errorf("%s %s reached the MCP server", tt.method, tt.path)
			}
		})
	}
}

// TestCaddyClientCannotChooseThePort: Caddy picks a site by host name and
// listener, ignores the port in Host, and reports the client's Host (port
// included) as X-Forwarded-Host. With two resources on one host name and
// different ports, a token for the other port used to open this one: the
// client named that port in Host. The shipped Caddyfile pins the port its
// site listens on in the check URL.
func TestCaddyClientCannotChooseThePort(t *testing.T) {
	rec := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	addr := startCaddy(t, caddyOptions{Hosts: []string{nameA}, PassgateAddr: passAddr, UpstreamAddr: rec.addr()})
	here := net.JoinHostPort(nameA, port(t, addr))
	elsewhere := net.JoinHostPort(nameA, port(t, e2etest.FreeAddr(t))) // a resource served by another proxy
	srv := e2etest.Start(t, e2etest.Options{
		HTTPAddr: passAddr,
		Resource: "http://" + here + "/mcp",
		Args:     []string{"--resource", "http://" + here + "/mcp,http://" + elsewhere + "/mcp"},
	})
	e2etest.AddUser(t, srv.OpenStore(t), "alice", "correct horse")
	cl := srv.RegisterClient(t)
	b := e2etest.NewBrowser()
	token := func(host string) string {
		c := *cl
		c.Resource = "http://" + host + "/mcp"
		tok, err := c.Login(t.Context(), b, "alice", "correct horse")
		if err != nil {
			t.Fatalf("token for %s: %v", host, err)
		}
		return tok.AccessToken
	}
	tokHere, tokElsewhere := token(here), token(elsewhere)
	tests := []struct {
		name, host, token string
		reach             bool
	}{
		{"this site's token", here, tokHere, true},
		{"the other port's token, Host naming the other port", elsewhere, tokElsewhere, false},
		{"the other port's token, Host without a port", nameA, tokElsewhere, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("port-%d", i)
			req := fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nX-Corpus-Id: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", tt.host, tt.token, id)
			status, err := sendRaw(addr, req)
			if err != nil {
				t.Fatal(err)
			}
			if reached := len(rec.saw(id)) > 0; reached != tt.reach {
				t.Errorf("Host %s: status %d, reached the upstream: %v; want %v", tt.host, status, reached, tt.reach)
			}
		})
	}
}
