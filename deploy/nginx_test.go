package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

// The stand-in's answers. Passgate's real check is tested in extauthz; here
// only nginx's handling of the answers is under test.
const (
	standinUser     = "alice@example.com"
	standinClientID = "https://client.example/cimd.json"
	standinScope    = "mcp"
	// standin401 is the challenge for a request without a valid token.
	standin401 = `Bearer resource_metadata="https://localhost/.well-known/oauth-protected-resource/mcp"`
	// standin403 is the challenge for a token without the needed scope.
	standin403 = `Bearer error="insufficient_scope", scope="mcp admin", resource_metadata="https://localhost/.well-known/oauth-protected-resource/mcp"`
)

// Bearer tokens the stand-in knows.
const (
	tokenGood     = "pga_good"     // 200 with all identity headers
	tokenNoClient = "pga_noclient" // 200 with X-Passgate-User only
	tokenLowScope = "pga_lowscope" // 403
	tokenBroken   = "pga_broken"   // 500, as when the store is down
	tokenNoHost   = "pga_nohost"   // 403 access_denied without a challenge, as for a host no resource matches
)

// The stand-in's denial bodies, sent in the body and, as passgate does on
// the nginx check path, in extauthz.ErrorBodyHeader.
const (
	standinBody401    = `{"error":"invalid_token","error_description":"stand-in 401"}`
	standinBody403    = `{"error":"insufficient_scope","error_description":"stand-in 403"}`
	standinBodyNoHost = `{"error":"access_denied","error_description":"stand-in unknown host"}`
)

// checkSeen is what the stand-in's check endpoint received.
type checkSeen struct {
	Method, Path  string
	Header        http.Header
	ContentLength int64
	BodyLen       int
}

// standin is a real HTTP server on loopback playing passgate's HTTP
// listener: the nginx check answers by Bearer token, and every other path
// answers 200 "passgate" with the request echoed as JSON.
type standin struct {
	Addr string

	mu     sync.Mutex
	checks []checkSeen
	pages  []checkSeen
}

func startStandin(t *testing.T) *standin {
	t.Helper()
	s := &standin{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *standin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	seen := checkSeen{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), ContentLength: r.ContentLength, BodyLen: len(body)}
	seen.Header.Set("Host", r.Host)
	s.mu.Lock()
	if r.URL.Path == extauthz.CheckPathNginx {
		s.checks = append(s.checks, seen)
	} else {
		s.pages = append(s.pages, seen)
	}
	s.mu.Unlock()

	if r.URL.Path != extauthz.CheckPathNginx {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"passgate": true, "path": seen.Path, "method": r.Method, "body_len": len(body)})
		return
	}
	switch r.Header.Get("Authorization") {
	case "Bearer " + tokenGood:
		w.Header().Set("X-Passgate-User", standinUser)
		w.Header().Set("X-Passgate-Client-Id", standinClientID)
		w.Header().Set("X-Passgate-Scope", standinScope)
		w.WriteHeader(http.StatusOK)
	case "Bearer " + tokenNoClient:
		w.Header().Set("X-Passgate-User", standinUser)
		w.WriteHeader(http.StatusOK)
	case "Bearer " + tokenLowScope:
		w.Header().Set("WWW-Authenticate", standin403)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(extauthz.ErrorBodyHeader, standinBody403)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, standinBody403)
	case "Bearer " + tokenNoHost:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(extauthz.ErrorBodyHeader, standinBodyNoHost)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, standinBodyNoHost)
	case "Bearer " + tokenBroken:
		w.WriteHeader(http.StatusInternalServerError)
	default:
		w.Header().Set("WWW-Authenticate", standin401)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(extauthz.ErrorBodyHeader, standinBody401)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, standinBody401)
	}
}

func (s *standin) Checks() []checkSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]checkSeen(nil), s.checks...)
}

func (s *standin) Pages() []checkSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]checkSeen(nil), s.pages...)
}

// stack is nginx with the stand-in and the real example MCP server behind it.
type stack struct {
	nginx   *nginx
	standin *standin
	mcpAddr string
}

func startStack(t *testing.T, plain bool) *stack {
	t.Helper()
	st := &stack{standin: startStandin(t), mcpAddr: startExampleMCPServer(t)}
	st.nginx = startNginx(t, nginxOptions{PassgateAddr: st.standin.Addr, MCPAddr: st.mcpAddr, PlainHTTP: plain})
	return st
}

// do sends a request through nginx and returns the response with its body
// read.
func (st *stack) do(t *testing.T, method, path, token string, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, st.nginx.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := st.nginx.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// mcpInitialize is a valid first MCP request.
const mcpInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`

var mcpHeader = http.Header{
	"Content-Type": {"application/json"},
	"Accept":       {"application/json, text/event-stream"},
}

// TestNginxDenials: the check's 401 and 403 reach the client with passgate's
// WWW-Authenticate exactly once (none when passgate sent none) and
// passgate's own JSON body, and the MCP server is not reached; an error
// from the check fails closed with a JSON 500.
func TestNginxDenials(t *testing.T) {
	st := startStack(t, false)
	tests := []struct {
		name       string
		token      string
		header     http.Header
		wantStatus int
		wantWWW    []string
		wantBody   string
	}{
		{name: "no token", wantStatus: 401, wantWWW: []string{standin401}, wantBody: standinBody401},
		{name: "unknown token", token: "pga_unknown", wantStatus: 401, wantWWW: []string{standin401}, wantBody: standinBody401},
		{
			name:       "basic auth is no bearer",
			header:     http.Header{"Authorization": {"Basic YTpi"}},
			wantStatus: 401, wantWWW: []string{standin401}, wantBody: standinBody401,
		},
		{name: "insufficient scope", token: tokenLowScope, wantStatus: 403, wantWWW: []string{standin403}, wantBody: standinBody403},
		{name: "unknown host is no insufficient scope", token: tokenNoHost, wantStatus: 403, wantBody: standinBodyNoHost},
		{name: "check fails", token: tokenBroken, wantStatus: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mcpHeader.Clone()
			for k, v := range tt.header {
				h[k] = v
			}
			resp, body := st.do(t, "POST", "/mcp", tt.token, mcpInitialize, h)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if diff := cmp.Diff(resp.Header.Values("WWW-Authenticate"), tt.wantWWW); diff != "" {
				t.Errorf("WWW-Authenticate (-got +want):\n%s", diff)
			}
			if strings.Contains(body, "jsonrpc") || strings.Contains(body, "protocolVersion") {
				t.Errorf("the MCP server answered a denied request: %q", body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.wantBody == "" {
				return
			}
			if body != tt.wantBody {
				t.Errorf("body %q, want passgate's %q", body, tt.wantBody)
			}
			if got := resp.Header.Get("Access-Control-Expose-Headers"); got != "WWW-Authenticate" {
				t.Errorf("Access-Control-Expose-Headers = %q", got)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if resp.Header.Get(extauthz.ErrorBodyHeader) != "" {
				t.Errorf("nginx passed %s on to the client", extauthz.ErrorBodyHeader)
			}
		})
	}
}

// TestNginxCheckRequest: the subrequest carries what passgate's check needs
// and not the body.
func TestNginxCheckRequest(t *testing.T) {
	st := startStack(t, false)
	// A client must not choose what passgate believes about the request.
	h := mcpHeader.Clone()
	for k, v := range map[string]string{
		"X-Forwarded-Host":   "other.example",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Uri":    "/elsewhere",
		"X-Forwarded-Method": "GET",
		"X-Forwarded-For":    "6.6.6.6",
		"X-Original-URI":     "/elsewhere",
		"X-Original-Method":  "GET",
	} {
		h.Set(k, v)
	}
	st.do(t, "POST", "/mcp?x=1&y=%2F", tokenGood, mcpInitialize, h)
	checks := st.standin.Checks()
	if len(checks) != 1 {
		t.Fatalf("got %d checks, want 1: %+v", len(checks), checks)
	}
	c := checks[0]
	got := map[string]string{
		"method":             c.Method,
		"path":               c.Path,
		"Authorization":      c.Header.Get("Authorization"),
		"X-Original-URI":     c.Header.Get("X-Original-URI"),
		"X-Original-Method":  c.Header.Get("X-Original-Method"),
		"Host":               c.Header.Get("Host"),
		"X-Forwarded-Proto":  c.Header.Get("X-Forwarded-Proto"),
		"X-Forwarded-Host":   c.Header.Get("X-Forwarded-Host"),
		"X-Forwarded-Uri":    c.Header.Get("X-Forwarded-Uri"),
		"X-Forwarded-Method": c.Header.Get("X-Forwarded-Method"),
		"X-Forwarded-For":    c.Header.Get("X-Forwarded-For"),
		"Content-Length hdr": c.Header.Get("Content-Length"),
	}
	want := map[string]string{
		// nginx subrequests are GETs whatever the client sent; the
		// method is in X-Original-Method.
		"method":             "GET",
		"path":               extauthz.CheckPathNginx,
		"Authorization":      "Bearer " + tokenGood,
		"X-Original-URI":     "/mcp?x=1&y=%2F",
		"X-Original-Method":  "POST",
		"Host":               st.nginx.Addr,
		"X-Forwarded-Proto":  "https",
		"X-Forwarded-Host":   st.nginx.Addr,
		"X-Forwarded-Uri":    "",
		"X-Forwarded-Method": "",
		"X-Forwarded-For":    "127.0.0.1",
		"Content-Length hdr": "",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("check request (-got +want):\n%s", diff)
	}
	if c.BodyLen != 0 {
		t.Errorf("the check got a %d-byte body", c.BodyLen)
	}
}

// mcpClient connects to the MCP server through nginx, sending header (and
// the token) on every request.
func (st *stack) mcpClient(t *testing.T, token string, header http.Header, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "deploy-test", Version: "v0"}, opts)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   st.nginx.URL + "/mcp",
		HTTPClient: &http.Client{Transport: e2etest.HeaderTransport{Base: st.nginx.Transport, Header: h}},
		MaxRetries: -1,
		// The standalone GET stream is tested by TestNginxStandaloneStream,
		// with a deadline: the SDK waits for it without one.
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		t.Fatalf("connect through nginx: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// callWhoami calls the example server's whoami tool, bounded by 15s.
func callWhoami(t *testing.T, cs *mcp.ClientSession) e2etest.Whoami {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	w, _ := e2etest.CallWhoami(ctx, t, cs)
	return w
}

// TestNginxForwardsIdentity: an allowed MCP session works end to end through
// nginx; the MCP server sees passgate's identity headers, never a
// client-forged one, never the Authorization header or cookies.
func TestNginxForwardsIdentity(t *testing.T) {
	st := startStack(t, false)
	forged := http.Header{
		"X-Passgate-User":      {"mallory"},
		"X-Passgate-Client-Id": {"forged-client"},
		"X-Passgate-Scope":     {"admin"},
		"Cookie":               {"passgate_session=pgs_secret"},
	}
	tests := []struct {
		name   string
		token  string
		header http.Header
		want   e2etest.Whoami
	}{
		{
			name:  "identity",
			token: tokenGood,
			want:  e2etest.Whoami{User: standinUser, ClientID: standinClientID, Scope: standinScope},
		},
		{
			name:   "forged headers replaced",
			token:  tokenGood,
			header: forged,
			want:   e2etest.Whoami{User: standinUser, ClientID: standinClientID, Scope: standinScope},
		},
		{
			// The check allowed but named no client: the forged value must
			// not survive.
			name:   "forged headers dropped",
			token:  tokenNoClient,
			header: forged,
			want:   e2etest.Whoami{User: standinUser},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := st.mcpClient(t, tt.token, tt.header, nil)
			if diff := cmp.Diff(callWhoami(t, cs), tt.want); diff != "" {
				t.Errorf("whoami through nginx (-got +want):\n%s", diff)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "through nginx"}})
			if err != nil || res.IsError {
				t.Fatalf("echo: %v %+v", err, res)
			}
		})
	}
}

// TestNginxStreamsEvents: server-sent events reach the client as the MCP
// server sends them, not when the response ends. The countdown tool sends a
// progress notification every interval; with buffering they would all
// arrive together with the result.
func TestNginxStreamsEvents(t *testing.T) {
	st := startStack(t, false)
	const (
		steps    = 3
		interval = time.Second
	)
	var (
		mu      sync.Mutex
		arrived []time.Time
	)
	cs := st.mcpClient(t, tokenGood, nil, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			arrived = append(arrived, time.Now())
		},
	})
	params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": steps, "interval_ms": interval.Milliseconds()}}
	params.SetProgressToken("p1")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, params)
	done := time.Now()
	if err != nil || res.IsError {
		t.Fatalf("countdown: %v %+v", err, res)
	}
	// The client handles notifications concurrently with the result: the
	// last ones may be handled just after CallTool returned.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(arrived)
		mu.Unlock()
		if n == steps || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrived) != steps {
		t.Fatalf("got %d progress notifications, want %d", len(arrived), steps)
	}
	// The first event was sent (steps-1)*interval before the result;
	// allow for a slow machine.
	if early := done.Sub(arrived[0]); early < interval/2 {
		t.Errorf("first progress event arrived only %v before the result; events are buffered", early)
	}
}

// TestNginxStandaloneStream: the long-lived GET event stream of an MCP
// session opens through nginx (its headers are not held back waiting for
// events).
func TestNginxStandaloneStream(t *testing.T) {
	st := startStack(t, false)
	h := mcpHeader.Clone()
	resp, body := st.do(t, "POST", "/mcp", tokenGood, mcpInitialize, h)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize = %d, session %q, body %q", resp.StatusCode, sid, body)
	}
	h.Set("Mcp-Session-Id", sid)
	h.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, body = st.do(t, "POST", "/mcp", tokenGood, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized = %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", st.nginx.URL+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tokenGood)
	resp, err = st.nginx.Client.Do(req)
	if err != nil {
		t.Fatalf("GET /mcp event stream: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Errorf("GET /mcp = %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	}
	if n := len(st.standin.Checks()); n != 3 {
		t.Errorf("%d checks for 3 requests", n)
	}
}

// TestNginxRoutesPassgate: passgate's pages and endpoints reach passgate
// without a check, path and query intact; the check endpoint is internal;
// nothing else is routed.
func TestNginxRoutesPassgate(t *testing.T) {
	st := startStack(t, false)
	toPassgate := []struct{ method, path, body string }{
		{"GET", "/.well-known/oauth-protected-resource", ""},
		{"GET", "/.well-known/oauth-protected-resource/mcp", ""},
		{"GET", "/.well-known/oauth-authorization-server", ""},
		{"GET", "/.well-known/oauth-authorization-server/oauth", ""},
		{"GET", "/oauth/authorize?client_id=c&state=%2F", ""},
		{"POST", "/oauth/token", "grant_type=authorization_code&code=pgc_x"},
		{"GET", "/authorize?response_type=code", ""},
		{"POST", "/token", "grant_type=refresh_token"},
		{"POST", "/register", `{"redirect_uris":["https://c.example/cb"]}`},
		{"GET", "/login?next=%2Fauthorize", ""},
		{"POST", "/login", "username=u&password=p"},
		{"GET", "/consent", ""},
		{"POST", "/logout", ""},
		{"GET", "/apps", ""},
		{"POST", "/apps/revoke", "client_id=c"},
		{"GET", "/static/passgate.css", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
	}
	// And every other page and endpoint passgate serves (the second
	// factor, the account page, passkey ceremonies, its script).
	for _, p := range publicRequestPaths() {
		if !slices.ContainsFunc(toPassgate, func(r struct{ method, path, body string }) bool { return r.path == p }) {
			toPassgate = append(toPassgate, struct{ method, path, body string }{"POST", p, "x=1"})
		}
	}
	for _, tt := range toPassgate {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before := len(st.standin.Checks())
			resp, body := st.do(t, tt.method, tt.path, "", tt.body, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Forwarded-For": {"6.6.6.6"}})
			if resp.StatusCode != 200 || !strings.Contains(body, `"passgate":true`) {
				t.Fatalf("%s %s = %d %q, want passgate's 200", tt.method, tt.path, resp.StatusCode, body)
			}
			if n := len(st.standin.Checks()); n != before {
				t.Errorf("passgate's own route went through the check")
			}
			pages := st.standin.Pages()
			got := pages[len(pages)-1]
			if got.Path != tt.path || got.Method != tt.method || got.BodyLen != len(tt.body) {
				t.Errorf("passgate got %s %s with %d bytes, want %s %s with %d", got.Method, got.Path, got.BodyLen, tt.method, tt.path, len(tt.body))
			}
			for k, want := range map[string]string{
				"Host":              st.nginx.Addr,
				"X-Forwarded-Proto": "https",
				"X-Forwarded-Host":  st.nginx.Addr,
				"X-Forwarded-For":   "127.0.0.1",
			} {
				if v := got.Header.Get(k); v != want {
					t.Errorf("passgate got %s %q, want %q", k, v, want)
				}
			}
		})
	}

	for _, path := range []string{"/_passgate/check", "/_passgate/check/mcp", extauthz.CheckPathNginx, extauthz.CheckPathForwardAuth,
		extauthz.CheckPathIngressNginx, extauthz.CheckPathEnvoy + "/mcp", "/", "/admin", "/metrics", "/.well-known/other",
		"/loginfoo", "/accountfoo", "/appsfoo", "/webauthnfoo"} {
		t.Run("not routed "+path, func(t *testing.T) {
			pagesBefore, checksBefore := len(st.standin.Pages()), len(st.standin.Checks())
			resp, _ := st.do(t, "GET", path, tokenGood, "", nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
			}
			if len(st.standin.Pages()) != pagesBefore || len(st.standin.Checks()) != checksBefore {
				t.Errorf("GET %s reached passgate", path)
			}
		})
	}
}

// TestNginxRejectsOtherHosts: only requests for NGINX_SERVER_NAME reach
// passgate or the MCP server.
func TestNginxRejectsOtherHosts(t *testing.T) {
	st := startStack(t, false)
	for _, path := range []string{"/mcp", "/.well-known/oauth-protected-resource/mcp", "/token"} {
		req, err := http.NewRequestWithContext(t.Context(), "POST", st.nginx.URL+path, strings.NewReader(mcpInitialize))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "other.example"
		req.Header = mcpHeader.Clone()
		req.Header.Set("Authorization", "Bearer "+tokenGood)
		resp, err := st.nginx.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("POST %s for other.example = %d, want 421", path, resp.StatusCode)
		}
	}
	if n, m := len(st.standin.Checks()), len(st.standin.Pages()); n+m != 0 {
		t.Errorf("passgate got %d checks and %d page requests for another host", n, m)
	}
}

// TestNginxPlainHTTP: the same template serves plain HTTP for local tests.
func TestNginxPlainHTTP(t *testing.T) {
	st := startStack(t, true)
	if !strings.HasPrefix(st.nginx.URL, "http://") {
		t.Fatalf("URL = %s", st.nginx.URL)
	}
	resp, _ := st.do(t, "POST", "/mcp", "", mcpInitialize, mcpHeader)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != standin401 {
		t.Errorf("POST /mcp = %d %q, want 401 with the challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if c := st.standin.Checks(); len(c) != 1 || c[0].Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("checks = %+v, want one with X-Forwarded-Proto http", c)
	}
	cs := st.mcpClient(t, tokenGood, nil, nil)
	if got := callWhoami(t, cs); got.User != standinUser || got.AuthorizationReceived {
		t.Errorf("whoami = %+v", got)
	}
}

func TestRenderTemplate(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		vars    map[string]string
		want    string
		wantErr string
	}{
		{
			name: "substitutes only given variables",
			tmpl: "listen ${NGINX_LISTEN};\nproxy_set_header Host $host; # $NGINX_LISTEN ${HOME} $NGINX_LISTENX $NGINX_LISTENX\n",
			vars: map[string]string{"NGINX_LISTEN": "443 ssl", "NGINX_LISTENX": "x"},
			want: "listen 443 ssl;\nproxy_set_header Host $host; # 443 ssl ${HOME} x x\n",
		},
		{name: "missing", tmpl: "listen ${NGINX_LISTEN};", vars: map[string]string{}, wantErr: "NGINX_LISTEN is used but not given"},
		{name: "extra", tmpl: "listen ${NGINX_LISTEN};", vars: map[string]string{"NGINX_LISTEN": "1", "NGINX_TYPO": "x"}, wantErr: "NGINX_TYPO is given but not used"},
		{name: "not a variable", tmpl: "return 200 '$5 ${1X}';", vars: map[string]string{}, want: "return 200 '$5 ${1X}';"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderTemplate(tt.tmpl, tt.vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("render (-got +want):\n%s", diff)
			}
		})
	}
}

// TestRenderMatchesEnvsubst: the renderer agrees with GNU envsubst, which
// the official nginx image runs, on the shipped template.
func TestRenderMatchesEnvsubst(t *testing.T) {
	bin := e2etest.NeedTool(t, "envsubst")
	tmpl, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	var list []string
	for _, name := range templateVars(string(tmpl)) {
		vars[name] = "value-of-" + strings.ToLower(name)
		list = append(list, "${"+name+"}")
	}
	cmd := exec.Command(bin, strings.Join(list, " "))
	cmd.Stdin = strings.NewReader(string(tmpl))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "host=WRONG", "scheme=WRONG"}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	want, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := renderTemplate(string(tmpl), vars)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("render vs envsubst (-got +want):\n%s", diff)
	}
	if strings.Contains(got, "WRONG") || !strings.Contains(got, "$host") {
		t.Error("nginx's own variables were substituted")
	}
}

// TestNginxTemplateVariablesDocumented: every variable the template uses is
// described in its header comment.
func TestNginxTemplateVariablesDocumented(t *testing.T) {
	tmpl, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	vars := templateVars(string(tmpl))
	if len(vars) == 0 {
		t.Fatal("no variables found")
	}
	for _, name := range vars {
		if !strings.Contains(string(tmpl), "#   "+name+" ") {
			t.Errorf("variable %s is not documented in the header", name)
		}
	}
}
