package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// e2ePolicy is the access policy of the end-to-end tests: the resource is
// for group eng; countdown needs the admin scope (step-up); echo is for
// group ops only.
func e2ePolicy(t *testing.T, resource string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	text := fmt.Sprintf(`resources:
  - url: %s
    allow: [group:eng]
    scopes: {admin: [mcp]}
    scope_descriptions: {admin: "Run the countdown tool"}
    rules:
      - {method: tools/call, name: countdown, scope: admin}
      - {method: tools/call, name: echo, allow: [group:ops]}
`, resource)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// policyClient connects the official MCP Go SDK client (protocol
// 2026-07-28: it sends Mcp-Method and Mcp-Name) as user through nginx,
// counting the authorizations the user is asked for.
func policyClient(t *testing.T, st *passgateStack, user, pass string) (*mcp.ClientSession, *atomic.Int32, error) {
	t.Helper()
	hc := &http.Client{Transport: st.ngx.Transport, Timeout: 10 * time.Second}
	b := e2etest.NewBrowser()
	b.HTTP.Transport = st.ngx.Transport
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	conn, err := e2etest.MCPAuth{
		HTTPClient: hc, Browser: b, Username: user, Password: pass, ClientName: "policy e2e " + user, Scope: "mcp",
	}.Connect(ctx, t, st.resource, nil)
	if err != nil {
		return nil, nil, err
	}
	return conn.ClientSession, conn.Authorizations, nil
}

// TestPolicyThroughNginx: through real nginx (deploy/nginx.conf), the real
// binary with a policy file and the example MCP server, the official Go
// SDK client calls an allowed tool; a tool that needs step-up makes it
// re-authorize with the wider scope and then succeeds; a forbidden tool is
// refused; and a user not on the server's list never gets a token.
func TestPolicyThroughNginx(t *testing.T) {
	mcpAddr, calls := startStatelessMCPServer(t)
	st := startPassgateStackWith(t, "sqlite", mcpAddr, func(resource string) []string {
		return []string{"--scopes", "mcp,admin", "--base-scopes", "mcp", "--policy", e2ePolicy(t, resource)}
	})
	st.cli(t, "", "user", "set-groups", "alice", "eng")
	st.cli(t, "correct horse battery\n", "user", "add", "carol", "--password-stdin")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	session, fetches, err := policyClient(t, st, "alice", "correct horse battery")
	if err != nil {
		t.Fatalf("alice connects: %v", err)
	}
	whoami := func() string {
		t.Helper()
		who, _ := e2etest.CallWhoami(ctx, t, session)
		return who.Scope
	}
	if scope := whoami(); scope != "mcp" {
		t.Errorf("first token scope %q, want the base scope mcp", scope)
	}

	// Step-up: 403 insufficient_scope scope="admin"; the SDK asks the user
	// again for mcp admin through the registration it has, then succeeds.
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": 1, "interval_ms": 1}})
	if err != nil || res.IsError {
		t.Fatalf("step-up tool countdown: %v %+v", err, res)
	}
	if n := calls["countdown"].Load(); n != 1 {
		t.Errorf("the MCP server ran countdown %d times, want 1 (after the step-up)", n)
	}
	if got := fetches.Load(); got != 2 {
		t.Errorf("authorizations = %d, want 2 (the first and the step-up)", got)
	}
	if scope := whoami(); scope != "admin mcp" {
		t.Errorf("stepped-up token scope %q, want admin mcp", scope)
	}

	// Forbidden: 403 from the check, no re-authorization, and the MCP
	// server never runs the tool. (The Go SDK closes its session on such
	// a 403, so this comes last.)
	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
	if err == nil && !res.IsError {
		t.Errorf("forbidden tool echo succeeded: %+v", res)
	} else {
		t.Logf("forbidden tool refused: %v", err)
	}
	if n := calls["echo"].Load(); n != 0 {
		t.Errorf("the MCP server ran the forbidden tool %d times", n)
	}

	// Not on the list: the authorization page refuses, no token.
	if _, _, err := policyClient(t, st, "carol", "correct horse battery"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("carol connected (or failed otherwise): %v", err)
	}
	if out := st.cli(t, "", "audit", "--event", "access_denied"); !strings.Contains(out, "carol") {
		t.Errorf("no access_denied audit row for carol:\n%s", out)
	}
}

// startStatelessMCPServer serves a stateless MCP server (official Go SDK,
// protocol 2026-07-28, which rejects Mcp-Method and Mcp-Name headers that
// disagree with the body) with the tools whoami, echo and countdown, and
// counts each tool's runs.
func startStatelessMCPServer(t *testing.T) (string, map[string]*atomic.Int32) {
	t.Helper()
	calls := map[string]*atomic.Int32{"whoami": {}, "echo": {}, "countdown": {}}
	server := mcp.NewServer(&mcp.Implementation{Name: "stateless", Version: "1.0.0"}, nil)
	type scopeOut struct {
		Scope string `json:"scope"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "whoami"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, scopeOut, error) {
		calls["whoami"].Add(1)
		var scope string
		if req.Extra != nil {
			scope = req.Extra.Header.Get("X-Passgate-Scope")
		}
		return nil, scopeOut{Scope: scope}, nil
	})
	for _, name := range []string{"echo", "countdown"} {
		mcp.AddTool(server, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, map[string]any) (*mcp.CallToolResult, scopeOut, error) {
			calls[name].Add(1)
			return nil, scopeOut{}, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{Stateless: true})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), calls
}

// envoyCheck is a CheckRequest as Envoy sends it for a POST to resource
// with with_request_body on (body "" when off).
func envoyCheck(resource, tok, method, name, body string) *authv3.CheckRequest {
	u, _ := url.Parse(resource)
	headers := map[string]string{":authority": u.Host, ":path": u.Path, ":method": "POST", ":scheme": u.Scheme,
		"content-type": "application/json", "authorization": "Bearer " + tok}
	if method != "" {
		headers["mcp-method"] = method
	}
	if name != "" {
		headers["mcp-name"] = name
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: u.Host, Path: u.Path, Scheme: u.Scheme, Protocol: "HTTP/1.1",
			Headers: headers, Body: body},
	}}}
}

func toolCall(name string) string {
	return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
}

// TestPolicyThroughGRPC: the real binary's gRPC check, asked as Envoy asks
// with with_request_body, judges tools from the JSON-RPC body (clients on
// protocol 2025-11-25 send no Mcp-Name) and refuses a header that
// disagrees with the body; a policy reload under concurrent load fails no
// allowed request.
func TestPolicyThroughGRPC(t *testing.T) {
	resource := "http://" + e2etest.FreeAddr(t) + "/mcp"
	policyPath := e2ePolicy(t, resource)
	srv := e2etest.Start(t, e2etest.Options{Resource: resource, Env: []string{"PASSGATE_RESOURCES=" + resource},
		Args: []string{"--scopes", "mcp,admin", "--base-scopes", "mcp", "--policy", policyPath}})
	for _, u := range [][]string{{"alice", "eng"}, {"dan", "eng,ops"}, {"carol", ""}} {
		srv.CLI(t, "an-acceptable-passphrase\n", "user", "add", u[0], "--groups", u[1], "--password-stdin")
	}
	st := e2etest.OpenStore(t, srv.Opts.DatabaseURL, srv.Opts.DataDir)
	alice := mintAccessTokenFor(t, st, "alice", resource, "mcp")
	aliceAdmin := mintAccessTokenFor(t, st, "alice", resource, "admin mcp")
	dan := mintAccessTokenFor(t, st, "dan", resource, "mcp")
	carol := mintAccessTokenFor(t, st, "carol", resource, "mcp")
	authz := authv3.NewAuthorizationClient(srv.GRPCConn())
	ctx := t.Context()

	tests := []struct {
		name, tok, method, mname, body string
		want                           int32 // 200: allowed
		wantWWW                        string
	}{
		{"allowed tool", alice, "", "", toolCall("whoami"), 200, ""},
		{"allowed tool, headers agree", alice, "tools/call", "whoami", toolCall("whoami"), 200, ""},
		{"step-up tool", alice, "", "", toolCall("countdown"), 403, `error="insufficient_scope", scope="admin"`},
		{"step-up tool with admin", aliceAdmin, "", "", toolCall("countdown"), 200, ""},
		{"forbidden tool, body only", alice, "", "", toolCall("echo"), 403, ""},
		{"forbidden tool for the group that may", dan, "", "", toolCall("echo"), 200, ""},
		{"user not on the list", carol, "", "", toolCall("whoami"), 403, ""},
		{"name header disagrees with the body", alice, "tools/call", "whoami", toolCall("echo"), 400, ""},
		{"method header disagrees with the body", alice, "tools/list", "", toolCall("echo"), 400, ""},
		{"header only, no body (with_request_body off)", alice, "tools/call", "echo", "", 403, ""},
		{"batch hides the method", alice, "", "", "[" + toolCall("echo") + "]", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := authz.Check(ctx, envoyCheck(resource, tt.tok, tt.method, tt.mname, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			got := int32(200)
			if d := resp.GetDeniedResponse(); d != nil {
				got = int32(d.GetStatus().GetCode())
				if tt.wantWWW != "" && !hasHeader(d.GetHeaders(), "www-authenticate", tt.wantWWW) {
					t.Errorf("WWW-Authenticate %v lacks %q", d.GetHeaders(), tt.wantWWW)
				}
			}
			if got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}

	// The 401 challenge names the base scope only (step-up brings the rest).
	noToken := envoyCheck(resource, "x", "", "", toolCall("whoami"))
	delete(noToken.GetAttributes().GetRequest().GetHttp().GetHeaders(), "authorization")
	if resp, err := authz.Check(ctx, noToken); err != nil || !hasHeader(resp.GetDeniedResponse().GetHeaders(), "www-authenticate", `scope="mcp"`) {
		t.Errorf("401 challenge %v (%v) does not name the base scope mcp alone", resp.GetDeniedResponse().GetHeaders(), err)
	}

	// Reload under load: four clients call the allowed tool while the file
	// is rewritten (a new rule each time) and SIGHUP is sent.
	var total, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := authz.Check(ctx, envoyCheck(resource, alice, "tools/call", "whoami", toolCall("whoami")))
				total.Add(1)
				if err != nil || resp.GetOkResponse() == nil {
					failed.Add(1)
				}
			}
		}()
	}
	base, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		text := string(base) + fmt.Sprintf("      - {method: tools/call, name: other_%d, allow: []}\n", i)
		if err := os.WriteFile(policyPath+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(policyPath+".tmp", policyPath); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := srv.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(700 * time.Millisecond)
	}
	close(stop)
	for range 4 {
		<-done
	}
	t.Logf("%d checks during 5 policy rewrites, %d failed", total.Load(), failed.Load())
	if failed.Load() != 0 || total.Load() == 0 {
		t.Errorf("%d of %d allowed requests failed during reloads", failed.Load(), total.Load())
	}
	// The last file is in force (within the poll interval).
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := authz.Check(ctx, envoyCheck(resource, dan, "", "", toolCall("other_4")))
		if err == nil && resp.GetDeniedResponse() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the last reloaded rule is not in force after 3s")
		}
	}
	metrics, err := srv.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each SIGHUP reloads at once; a rewrite the poll had not seen yet
	// may be taken with the next one, so 3 to 5 reloads.
	m := regexp.MustCompile(`passgate_policy_reloads_total\{result="ok"\} (\d+)`).FindStringSubmatch(metrics)
	if m == nil || m[1] < "3" || m[1] > "5" || len(m[1]) != 1 {
		t.Errorf("reloads: %v; want 3 to 5:\n%s", m, grepLines(metrics, "passgate_policy"))
	}
	if !strings.Contains(metrics, `passgate_policy_decisions_total{resource="`+resource+`",result="rule_denied",rule="rules[1]"}`) {
		t.Errorf("no decision metric for the forbidden tool:\n%s", grepLines(metrics, "passgate_policy_decisions"))
	}
	srv.AssertNoSecrets(t, alice, aliceAdmin, dan, carol)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStepUpWithTypeScriptClient: through nginx, the newest official
// TypeScript client (@modelcontextprotocol/client 2.4.0,
// interop/ts-sdk/stepup-client-v2.mjs) negotiates 2025-11-25 and sends no
// Mcp-Method or Mcp-Name, so a per-tool rule cannot see its calls (as the
// README says): the tool runs with the base scope. This pins that
// limitation; TestStepUpWithTypeScriptClientThroughGRPC shows step-up
// with the same client where the check reads the body.
func TestStepUpWithTypeScriptClient(t *testing.T) {
	node, dir := tsSDK(t, "@modelcontextprotocol/client")
	mcpAddr, calls := startStatelessMCPServer(t)
	st := startPassgateStackWith(t, "sqlite", mcpAddr, func(resource string) []string {
		return []string{"--scopes", "mcp,admin", "--base-scopes", "mcp", "--policy", e2ePolicy(t, resource)}
	})
	st.cli(t, "", "user", "set-groups", "alice", "eng")
	// nginx serves TLS with a throwaway certificate; node trusts it through
	// NODE_EXTRA_CA_CERTS.
	res := runTSStepUp(t, node, dir, []string{"NODE_EXTRA_CA_CERTS=" + st.ngx.Vars["NGINX_TLS_CERT"]}, st.resource, "countdown")
	if len(res.AuthorizeScopes) != 1 || res.ScopeAfter != "mcp" || calls["countdown"].Load() != 1 {
		t.Errorf("through nginx the client stepped up (%q, scope %q): does it send Mcp-Name now? Update the README's \"Where per-tool rules hold\"", res.AuthorizeScopes, res.ScopeAfter)
	}
}

// envoyStandin stands in for Envoy, which these machines cannot install,
// with deploy/envoy.yaml's ext_authz plus with_request_body
// (max_request_bytes 65536, allow_partial_message false): /mcp asks the real
// binary's gRPC check with the request's method, host, path, headers and
// body, answers a denial as the check says, or forwards the request with
// the check's header changes to the MCP server; everything else goes to
// passgate's HTTP listener unchecked. It serves plain HTTP on addr.
func envoyStandin(t *testing.T, addr string, authz authv3.AuthorizationClient, passgateAddr, mcpAddr string) {
	t.Helper()
	toPassgate := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: passgateAddr})
	toMCP := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: mcpAddr})
	toMCP.FlushInterval = -1
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/mcp" && !strings.HasPrefix(r.URL.Path, "/mcp/") {
			toPassgate.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 65537))
		if err != nil || len(body) > 65536 {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		headers := map[string]string{":authority": r.Host, ":path": r.URL.RequestURI(), ":method": r.Method, ":scheme": "http"}
		for k, v := range r.Header {
			headers[strings.ToLower(k)] = strings.Join(v, ",")
		}
		resp, err := authz.Check(r.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: r.Method, Host: r.Host, Path: r.URL.RequestURI(), Scheme: "http",
				Protocol: "HTTP/1.1", Headers: headers, Body: string(body)},
		}}})
		if err != nil { // failure_mode_allow: false
			http.Error(w, "ext_authz error", http.StatusForbidden)
			return
		}
		if d := resp.GetDeniedResponse(); d != nil {
			for _, hv := range d.GetHeaders() {
				w.Header().Set(hv.GetHeader().GetKey(), hv.GetHeader().GetValue())
			}
			w.WriteHeader(int(d.GetStatus().GetCode()))
			io.WriteString(w, d.GetBody())
			return
		}
		ok := resp.GetOkResponse()
		for _, name := range ok.GetHeadersToRemove() {
			r.Header.Del(name)
		}
		for _, hv := range ok.GetHeaders() {
			r.Header.Set(hv.GetHeader().GetKey(), hv.GetHeader().GetValue())
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		toMCP.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestStepUpWithTypeScriptClientThroughGRPC: the TypeScript client 2.4.0
// negotiates protocol 2025-11-25 and sends no Mcp-Name, so through nginx a
// per-tool rule never sees its tools; through Envoy with the body, the
// real gRPC check reads the tool from the JSON-RPC body, answers 403
// insufficient_scope naming admin, the client re-authorizes for mcp admin
// through the registration it has, and the call succeeds.
func TestStepUpWithTypeScriptClientThroughGRPC(t *testing.T) {
	node, dir := tsSDK(t, "@modelcontextprotocol/client")
	mcpAddr, calls := startStatelessMCPServer(t)
	front := e2etest.FreeAddr(t)
	resource := "http://" + front + "/mcp"
	srv := e2etest.Start(t, e2etest.Options{Resource: resource, Env: []string{"PASSGATE_RESOURCES=" + resource},
		Args: []string{"--issuer", "http://" + front, "--scopes", "mcp,admin", "--base-scopes", "mcp", "--policy", e2ePolicy(t, resource)}})
	srv.CLI(t, "correct horse battery\n", "user", "add", "alice", "--groups", "eng", "--password-stdin")
	envoyStandin(t, front, authv3.NewAuthorizationClient(srv.GRPCConn()), srv.Opts.HTTPAddr, mcpAddr)

	res := runTSStepUp(t, node, dir, nil, resource, "countdown")
	if len(res.AuthorizeScopes) != 2 || res.AuthorizeScopes[0] != "mcp" || !strings.Contains(res.AuthorizeScopes[1], "admin") || !strings.Contains(res.AuthorizeScopes[1], "mcp") {
		t.Errorf("authorization requests asked for %q; want mcp, then the union mcp admin", res.AuthorizeScopes)
	}
	if res.ScopeBefore != "mcp" || res.ScopeAfter != "admin mcp" {
		t.Errorf("scopes before and after step-up: %q, %q; want mcp, admin mcp", res.ScopeBefore, res.ScopeAfter)
	}
	if len(res.Consents) != 2 || !slices.Contains(res.Consents[1], "admin") {
		t.Errorf("consent pages showed %q; want a second one naming admin", res.Consents)
	}
	if n := calls["countdown"].Load(); n != 1 {
		t.Errorf("the MCP server ran countdown %d times, want 1 (after the step-up)", n)
	}
}

type tsStepUpResult struct {
	OK                      bool
	Error                   string
	AuthorizeScopes         []string
	Consents                [][]string
	ScopeBefore, ScopeAfter string
}

// runTSStepUp runs stepup-client-v2.mjs as alice against resource.
func runTSStepUp(t *testing.T, node, dir string, env []string, resource, tool string) tsStepUpResult {
	t.Helper()
	out, err := runNode(t, node, dir, env, filepath.Join(dir, "stepup-client-v2.mjs"), resource, "alice", "correct horse battery", tool)
	t.Logf("client output:\n%s", out)
	var res tsStepUpResult
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil || err != nil || !res.OK {
		t.Fatalf("the TypeScript client failed: %v %v %s", err, jerr, res.Error)
	}
	return res
}

// TestREADMEEnvoyBodySnippet: the with_request_body line the README tells
// Envoy users to add, inserted into deploy/envoy.yaml's ext_authz filter,
// is a valid configuration that buffers whole bodies up to the limit.
func TestREADMEEnvoyBodySnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("`(with_request_body: \\{[^`]*\\})`").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no with_request_body snippet")
	}
	y, err := os.ReadFile(envoyPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(y), "\n")
	var out []string
	inserted := false
	for _, l := range lines {
		out = append(out, l)
		if strings.TrimSpace(l) == "failure_mode_allow: false" {
			indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
			out = append(out, indent+string(m[1]))
			inserted = true
		}
	}
	if !inserted {
		t.Fatal("envoy.yaml has no failure_mode_allow line to add the snippet after")
	}
	b, reg, err := decodeEnvoy(t, []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("envoy.yaml with the README's snippet: %v", err)
	}
	if err := validateDeep(b, reg); err != nil {
		t.Fatalf("envoy.yaml with the README's snippet: %v", err)
	}
	for _, h := range envoyHCMs(t, b) {
		for _, f := range h.GetHttpFilters() {
			if f.GetName() != "envoy.filters.http.ext_authz" {
				continue
			}
			body := unpack(t, f.GetTypedConfig(), &extauthzv3.ExtAuthz{}).GetWithRequestBody()
			if body.GetMaxRequestBytes() != 65536 || body.GetAllowPartialMessage() {
				t.Errorf("with_request_body = %v; want 64 KiB, whole bodies only (a partial one would hide the method)", body)
			}
		}
	}
}
