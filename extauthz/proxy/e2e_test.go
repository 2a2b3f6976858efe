package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

const (
	user = "alice"
	pass = "correct horse battery"
)

// received is one request as the recording upstream saw it.
type received struct {
	Method, Host, RequestURI string
	Header, Trailer          http.Header
	Body                     string
}

// recorder is an upstream that records every request and answers 200,
// except /rec/sse: an event stream that sends one event, then waits for
// release before the second.
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	release chan struct{}
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{release: make(chan struct{})}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, received{r.Method, r.Host, r.RequestURI, r.Header.Clone(), r.Trailer.Clone(), string(body)})
		rec.mu.Unlock()
		if r.URL.Path == "/rec/long" {
			// An event every 5s for 35s: longer than passgate's 30s write
			// timeout for its own pages.
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 8 {
				if i > 0 {
					select {
					case <-time.After(5 * time.Second):
					case <-r.Context().Done():
						return
					}
				}
				fmt.Fprintf(w, "data: %d\n\n", i)
				http.NewResponseController(w).Flush()
			}
			return
		}
		if r.URL.Path == "/rec/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			select {
			case <-rec.release:
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Second):
			}
			io.WriteString(w, "data: second\n\n")
			return
		}
		io.WriteString(w, "upstream ok\n")
	}))
	t.Cleanup(rec.Close)
	return rec
}

// take returns and forgets what the upstream received so far.
func (r *recorder) take() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// stack is passgate with the built-in proxy in front of two upstreams:
// the example MCP server at /mcp and the recorder at /rec.
type stack struct {
	srv      *e2etest.Server
	rec      *recorder
	mcp, rcv string // resource URLs
	down     string // a resource whose upstream is not listening
}

func startStack(t *testing.T) *stack {
	t.Helper()
	mcpAddr := e2etest.FreeAddr(t)
	e2etest.StartProcess(t, mcpAddr, e2etest.BuildPackage(t, "./examples/mcp-server"), []string{"--listen", mcpAddr}, nil)
	rec := newRecorder(t)
	httpAddr := e2etest.FreeAddr(t)
	st := &stack{rec: rec, mcp: "http://" + httpAddr + "/mcp", rcv: "http://" + httpAddr + "/rec", down: "http://" + httpAddr + "/down"}
	// A port that was free a moment ago: nothing listens there.
	downAddr := e2etest.FreeAddr(t)
	st.srv = e2etest.Start(t, e2etest.Options{
		HTTPAddr: httpAddr,
		Resource: st.mcp,
		Args: []string{
			"--resource", st.mcp + "," + st.rcv + "," + st.down,
			"--upstream", st.mcp + "=http://" + mcpAddr + "," + st.rcv + "=" + rec.URL + "," + st.down + "=http://" + downAddr,
			"--shutdown-delay", "0s",
			// The test's clients are no proxies: their X-Forwarded-For is
			// not believed.
			"--trusted-proxies", "192.0.2.1/32",
			"--scopes", "mcp,admin",
			"--require-scopes", "/rec/admin=admin",
		},
	})
	e2etest.AddUser(t, st.srv.OpenStore(t), user, pass)
	return st
}

// token runs the OAuth flow (e2etest's browser) for resource.
func (st *stack) token(t *testing.T, resource string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := st.srv.RegisterClient(t)
	cl.Resource = resource
	tok, err := cl.Login(ctx, e2etest.NewBrowser(), user, pass)
	if err != nil {
		t.Fatalf("login for %s: %v", resource, err)
	}
	return tok.AccessToken
}

// TestProxyMCPGoSDK connects the official MCP Go SDK client, knowing only
// the MCP URL, through the built-in proxy to the example MCP server: the
// OAuth flow from the first 401, a tool call whose upstream saw passgate's
// identity and no token, and a streamed answer whose events arrive as they
// are sent.
func TestProxyMCPGoSDK(t *testing.T) {
	st := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	var (
		mu            sync.Mutex
		progressTimes []time.Time
	)
	session, err := e2etest.MCPAuth{
		HTTPClient: hc, Browser: e2etest.NewBrowser(), Username: user, Password: pass, ClientName: "proxy e2e",
	}.Connect(ctx, t, st.mcp, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progressTimes = append(progressTimes, time.Now())
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("MCP initialize through the built-in proxy: %v", err)
	}
	if n := session.Authorizations.Load(); n != 1 {
		t.Errorf("the user was asked to authorize %d times, want 1", n)
	}

	who, raw := e2etest.CallWhoami(ctx, t, session.ClientSession)
	// The SDK asks for every scope the metadata lists (mcp and admin here).
	if who.User != user || who.ClientID == "" || !slices.Contains(strings.Fields(who.Scope), "mcp") || who.AuthorizationReceived {
		t.Errorf("the MCP server saw %s; want user %s, a client id, scope mcp and no Authorization", raw, user)
	}

	// countdown sends a progress event every 400ms and its result after
	// the last: unbuffered, the first event arrives long before the result.
	const steps, interval = 4, 400 * time.Millisecond
	res, err := session.CallTool(ctx, &mcp.CallToolParams{
		Name: "countdown", Arguments: map[string]any{"steps": steps, "interval_ms": interval.Milliseconds()},
		Meta: mcp.Meta{"progressToken": "proxy-e2e"},
	})
	done := time.Now()
	if err != nil || res.IsError {
		t.Fatalf("tools/call countdown: %v %+v", err, res)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(progressTimes)
		mu.Unlock()
		if n >= steps {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progressTimes) != steps {
		t.Fatalf("received %d progress notifications, want %d", len(progressTimes), steps)
	}
	if lead := done.Sub(progressTimes[0]); lead < (steps-2)*interval {
		t.Errorf("the first progress event arrived %v before the result, want at least %v: the stream was buffered", lead, (steps-2)*interval)
	}
}

// TestProxyStreamsUnbuffered reads the first event of an upstream event
// stream while the upstream still holds the response open: a buffering
// proxy would block here until the upstream finished.
func TestProxyStreamsUnbuffered(t *testing.T) {
	st := startStack(t)
	tok := st.token(t, st.rcv)
	req, _ := http.NewRequest(http.MethodGet, st.rcv+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /rec/sse: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- strings.TrimSpace(l)
		}
	}()
	select {
	case l := <-lines:
		if l != "data: first" {
			t.Fatalf("first line %q, want the first event", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the upstream held the stream open: the proxy buffers")
	}
	close(st.rec.release)
	var rest []string
	for l := range lines {
		if l != "" {
			rest = append(rest, l)
		}
	}
	if len(rest) != 1 || rest[0] != "data: second" {
		t.Errorf("after release: %q, want the second event", rest)
	}
}

// rawRequest sends req verbatim on a new connection to addr and returns the
// response, with its body read.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestProxyHostile sends hostile requests through the built-in proxy and
// asserts both passgate's answer and exactly what the upstream received.
func TestProxyHostile(t *testing.T) {
	st := startStack(t)
	addr := st.srv.Opts.HTTPAddr
	recTok := st.token(t, st.rcv)
	mcpTok := st.token(t, st.mcp)
	recHost := strings.TrimPrefix(st.rec.URL, "http://")
	meta := `resource_metadata="http://` + addr + `/.well-known/oauth-protected-resource/rec"`

	// The challenge passgate's HTTP check gives nginx for the same
	// request: the proxy must give the same.
	ctx := context.Background()
	creq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/_passgate/check/nginx", nil)
	if err != nil {
		t.Fatal(err)
	}
	creq.Header.Set("X-Original-URI", "/rec")
	creq.Header.Set("X-Original-Method", "POST")
	creq.Header.Set("X-Forwarded-Host", addr)
	cresp, err := st.srv.HTTPClient.Do(creq)
	if err != nil {
		t.Fatal(err)
	}
	cresp.Body.Close()
	checkChallenge := cresp.Header.Get("WWW-Authenticate")
	if !strings.Contains(checkChallenge, meta) {
		t.Fatalf("the HTTP check's challenge %q lacks %s", checkChallenge, meta)
	}

	req := func(method, target, host string, hdr ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
		for _, h := range hdr {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("Content-Length: 0\r\nConnection: close\r\n\r\n")
		return b.String()
	}
	bearer := "Authorization: Bearer " + recTok
	tests := []struct {
		name   string
		req    string
		status int
		// path is what the upstream must have received (its request
		// target); empty means it must have received nothing.
		path string
		// check inspects the one request the upstream received.
		check func(t *testing.T, got received)
		// resp inspects passgate's answer.
		resp func(t *testing.T, resp *http.Response, body string)
	}{
		{name: "no token", req: req("POST", "/rec", addr), status: 401,
			resp: func(t *testing.T, resp *http.Response, body string) {
				if got := resp.Header.Get("WWW-Authenticate"); got != checkChallenge {
					t.Errorf("WWW-Authenticate %q, want the HTTP check's %q", got, checkChallenge)
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
					t.Errorf("CORS headers %v, want nginx's (allow any origin, expose WWW-Authenticate)", resp.Header)
				}
				if !strings.Contains(body, `"error":"invalid_token"`) {
					t.Errorf("body %q, want the check's JSON error", body)
				}
			}},
		{name: "bad token", req: req("POST", "/rec", addr, "Authorization: Bearer pga_notatokenpassgateeverissuedxxxxxxxxxxxxxx"), status: 401,
			resp: func(t *testing.T, resp *http.Response, _ string) {
				if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, meta) || !strings.Contains(h, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q", h)
				}
			}},
		{name: "insufficient scope", req: req("POST", "/rec/admin", addr, bearer), status: 403,
			resp: func(t *testing.T, resp *http.Response, body string) {
				h := resp.Header.Get("WWW-Authenticate")
				if !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="admin"`) || !strings.Contains(h, meta) {
					t.Errorf("WWW-Authenticate %q, want insufficient_scope for admin with the resource metadata", h)
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
					t.Errorf("CORS headers %v", resp.Header)
				}
				if !strings.Contains(body, `"error":"insufficient_scope"`) {
					t.Errorf("body %q", body)
				}
			}},
		{name: "insufficient scope, percent-encoded", req: req("POST", "/rec/%61dmin", addr, bearer), status: 403},
		{name: "insufficient scope, letter case", req: req("POST", "/rec/ADMIN", addr, bearer), status: 403},
		{name: "malformed Authorization", req: req("POST", "/rec", addr, "Authorization: Bearer a b"), status: 400},
		{name: "token of another resource", req: req("POST", "/rec", addr, "Authorization: Bearer "+mcpTok), status: 401},
		{name: "forged identity and forwarding headers", status: 200, path: "/rec",
			req: req("POST", "/rec", addr, bearer,
				"X-Passgate-User: root", "x-passgate-scope: admin", "X-PASSGATE-CLIENT-ID: forged",
				"X_Passgate_User: root", "X-Passgate_User: root", "Cookie: passgate_session=stolen",
				"X-Forwarded-Host: evil.example", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https",
				"X-Forwarded-Prefix: /admin", "Forwarded: for=203.0.113.7;host=evil.example", "X-Real-IP: 203.0.113.7",
				"X-Original-URL: /admin", "X-Original-URI: /admin"),
			check: func(t *testing.T, got received) {
				h := got.Header
				if h.Get("X-Passgate-User") != user || h.Get("X-Passgate-Scope") != "mcp" || h.Get("X-Passgate-Client-Id") == "" || h.Get("X-Passgate-Client-Id") == "forged" {
					t.Errorf("identity headers %v, want passgate's", h)
				}
				for _, name := range []string{"X-Passgate-User", "X-Passgate-Scope", "X-Passgate-Client-Id", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip"} {
					if len(h[name]) != 1 {
						t.Errorf("%s sent %d times: %q", name, len(h[name]), h[name])
					}
				}
				for name := range h {
					if strings.Contains(name, "_") || name == "Cookie" || name == "Authorization" || name == "Forwarded" ||
						strings.HasPrefix(name, "X-Original") || name == "X-Forwarded-Prefix" {
						t.Errorf("the upstream received %s: %q", name, h[name])
					}
				}
				if h.Get("X-Forwarded-Host") != addr || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Real-Ip") != "127.0.0.1" {
					t.Errorf("forwarding headers %v, want passgate's own", h)
				}
				if got.Host != recHost {
					t.Errorf("Host %q, want the upstream's own %q", got.Host, recHost)
				}
			}},
		{name: "identity headers listed as hop-by-hop", status: 200, path: "/rec",
			req: req("POST", "/rec", addr, bearer, "Connection: X-Passgate-User, X-Passgate-Scope"),
			check: func(t *testing.T, got received) {
				if got.Header.Get("X-Passgate-User") != user || got.Header.Get("X-Passgate-Scope") != "mcp" {
					t.Errorf("identity headers %v, want passgate's", got.Header)
				}
			}},
		{name: "request trailers not forwarded", status: 200, path: "/rec",
			req: "POST /rec HTTP/1.1\r\nHost: " + addr + "\r\n" + bearer + "\r\nTransfer-Encoding: chunked\r\nTrailer: X-Passgate-User\r\nConnection: close\r\n\r\n" +
				"5\r\nhello\r\n0\r\nX-Passgate-User: root\r\n\r\n",
			check: func(t *testing.T, got received) {
				if got.Body != "hello" || len(got.Trailer) != 0 || got.Header.Get("X-Passgate-User") != user {
					t.Errorf("the upstream received body %q, trailer %v, user %q; want the body, no trailer and passgate's user", got.Body, got.Trailer, got.Header.Get("X-Passgate-User"))
				}
			}},
		{name: "a large body streams", status: 200, path: "/rec",
			req: "POST /rec HTTP/1.1\r\nHost: " + addr + "\r\n" + bearer + "\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n" + strings.Repeat("x", 70000),
			check: func(t *testing.T, got received) {
				if len(got.Body) != 70000 {
					t.Errorf("the upstream received %d bytes, want 70000", len(got.Body))
				}
			}},
		{name: "a body over the limit", status: 413,
			req: "POST /rec HTTP/1.1\r\nHost: " + addr + "\r\n" + bearer + "\r\nContent-Length: 4194305\r\nConnection: close\r\n\r\n",
			resp: func(t *testing.T, resp *http.Response, body string) {
				if !strings.Contains(body, `"error":"invalid_request"`) || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("413 answer %v %q, want an uncached OAuth JSON error", resp.Header, body)
				}
			}},
		{name: "upgrade not forwarded", status: 200, path: "/rec",
			req: req("GET", "/rec", addr, bearer, "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"),
			check: func(t *testing.T, got received) {
				if got.Header.Get("Upgrade") != "" {
					t.Errorf("the upstream received Upgrade %q", got.Header.Get("Upgrade"))
				}
			}},
		{name: "query passed as received, path canonical", status: 200, path: "/rec/a%20b?x=%2F&y=1",
			req: req("GET", "/rec/./%61%20b?x=%2F&y=1", addr, bearer)},
		{name: "dot segments resolved before the check", status: 200, path: "/rec/x",
			req: req("GET", "/mcp/../rec/x", addr, bearer)},
		{name: "dot segments into another resource", status: 401, req: req("GET", "/rec/../mcp", addr, bearer)},
		{name: "encoded slash", status: 400, req: req("GET", "/rec%2F..%2Fmcp", addr, bearer)},
		{name: "encoded slash after the resource", status: 400, req: req("GET", "/rec/a%2Fb", addr, bearer)},
		{name: "double encoding", status: 400, req: req("GET", "/rec/%252e%252e/mcp", addr, bearer)},
		{name: "path parameter", status: 400, req: req("GET", "/rec;x=1", addr, bearer)},
		{name: "letter case", status: 400, req: req("GET", "/REC", addr, bearer)},
		{name: "dot segments above the root", status: 400, req: req("GET", "/../rec", addr, bearer)},
		{name: "path outside every resource", status: 404, req: req("GET", "/other", addr, bearer)},
		{name: "prefix but not a segment", status: 404, req: req("GET", "/recx", addr, bearer)},
		{name: "another host", status: 404, req: req("POST", "/rec", "evil.example", bearer)},
		{name: "host with a trailing dot", status: 404, req: req("POST", "/rec", addr+".", bearer)},
		{name: "absolute form naming another host", status: 404,
			req: req("POST", "http://evil.example/rec", addr, bearer)},
		{name: "absolute form naming this host", status: 200, path: "/rec",
			req: req("POST", "http://"+addr+"/rec", "evil.example", bearer),
			check: func(t *testing.T, got received) {
				if got.Header.Get("X-Forwarded-Host") != addr {
					t.Errorf("X-Forwarded-Host %q, want %q", got.Header.Get("X-Forwarded-Host"), addr)
				}
			}},
		{name: "preflight without credentials", status: 200, path: "/rec",
			req: req("OPTIONS", "/rec", addr, "Origin: https://app.example", "Access-Control-Request-Method: POST", "X-Passgate-User: root"),
			check: func(t *testing.T, got received) {
				if got.Method != "OPTIONS" || got.Header.Get("X-Passgate-User") != "" {
					t.Errorf("preflight reached the upstream as %s with identity %q", got.Method, got.Header.Get("X-Passgate-User"))
				}
			}},
		{name: "OPTIONS without Origin is no preflight", status: 401, req: req("OPTIONS", "/rec", addr, "Access-Control-Request-Method: POST")},
		{name: "passgate's own pages stay passgate's", status: 200,
			req: req("GET", "/.well-known/oauth-protected-resource/rec", addr, bearer)},
	}
	st.rec.take()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, addr, tt.req)
			got := st.rec.take()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if tt.resp != nil {
				tt.resp(t, resp, body)
			}
			if tt.path == "" {
				if len(got) != 0 {
					t.Fatalf("the upstream received %d requests, want none: %+v", len(got), got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("the upstream received %d requests, want 1", len(got))
			}
			if got[0].RequestURI != tt.path {
				t.Errorf("the upstream received %q, want %q", got[0].RequestURI, tt.path)
			}
			if got[0].Header.Get("Authorization") != "" || got[0].Header.Get("Cookie") != "" {
				t.Errorf("the upstream received Authorization or Cookie: %v", got[0].Header)
			}
			if tt.check != nil {
				tt.check(t, got[0])
			}
		})
	}
	st.srv.AssertNoSecrets(t, recTok, mcpTok, pass)
}

// TestProxyShutdownEndsStreams stops passgate while a client holds an event
// stream open through the proxy: passgate must end the stream and exit
// promptly, not wait for --shutdown-timeout (15s) on it.
func TestProxyShutdownEndsStreams(t *testing.T) {
	st := startStack(t)
	tok := st.token(t, st.rcv)
	req, _ := http.NewRequest(http.MethodGet, st.rcv+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || strings.TrimSpace(l) != "data: first" {
		t.Fatalf("first event: %q %v", l, err)
	}
	start := time.Now()
	if err := st.srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.srv.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("passgate still running %v after SIGTERM with an open event stream", time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v with an open event stream, want it ended at once", took)
	}
	rest, _ := io.ReadAll(br)
	if strings.Contains(string(rest), "second") {
		t.Errorf("the stream went on to its end (%q): it was not cut at shutdown", rest)
	}
}

// TestProxyUpstreamDown asks for a resource whose MCP server is not
// listening: 502 with a JSON body, and a log line that names the upstream
// but carries no token or query.
func TestProxyUpstreamDown(t *testing.T) {
	st := startStack(t)
	tok := st.token(t, st.down)
	req, _ := http.NewRequest(http.MethodPost, st.down+"?secret-query=1", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"error":"temporarily_unavailable"`) {
		t.Errorf("status %d body %q, want 502 with a JSON error", resp.StatusCode, body)
	}
	if !st.srv.WaitLog("upstream unreachable", 5*time.Second) {
		t.Error("no log line for the unreachable upstream")
	}
	if strings.Contains(st.srv.Logs(), "secret-query") {
		t.Error("the log names the request's query")
	}
	st.srv.AssertNoSecrets(t, tok)
}

// TestProxyLongStream holds an event stream open for 35 seconds, past the
// 30s write timeout of passgate's listener: the proxy lifts it for proxied
// requests, so the stream is not cut.
func TestProxyLongStream(t *testing.T) {
	if testing.Short() {
		t.Skip("streams for 35s")
	}
	t.Parallel()
	st := startStack(t)
	tok := st.token(t, st.rcv)
	req, _ := http.NewRequest(http.MethodGet, st.rcv+"/long", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("the stream broke after %d bytes: %v", len(b), err)
	}
	if n := strings.Count(string(b), "data: "); n != 8 {
		t.Errorf("received %d of 8 events: %q", n, b)
	}
}
