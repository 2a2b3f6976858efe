package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/store"
)

// testPolicy is the example, on mcpURL.
const testPolicy = `
resources:
  - url: https://mcp.example.com/mcp
    allow: [group:eng, user:bob, user:apikey:ci]
    scopes: {admin: [mcp]}
    rules:
      - {method: tools/call, name: "deploy_*", scope: admin}
      - {method: tools/call, name: "shell", allow: [group:ops]}
      - {method: "resources/read", name: "secret://*", allow: []}
`

func compilePolicy(t testing.TB, text string, rules ...ScopeRule) *policy.Policy {
	t.Helper()
	f, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(f, resource.MustParseAll(mcpURL, otherURL), rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// policyEnv is a checker with testPolicy and users: alice (eng), bob (no
// group), carol (sales), dan (eng, ops).
type policyEnv struct {
	db     store.Store
	c      *Checker
	holder *policy.Holder
	reg    *prometheus.Registry
}

func newPolicyEnv(t testing.TB) *policyEnv {
	t.Helper()
	db := openSQLite(t)
	ctx := context.Background()
	now := time.Now()
	if _, err := db.SetUserGroups(ctx, testUser, []string{"eng"}, now, nil); err != nil {
		t.Fatal(err)
	}
	for name, groups := range map[string][]string{"bob": nil, "carol": {"sales"}, "dan": {"eng", "ops"}} {
		if err := db.CreateUser(ctx, store.User{Username: name, PasswordHash: "x", Groups: groups, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	e := &policyEnv{db: db, holder: policy.NewHolder(compilePolicy(t, testPolicy)), reg: prometheus.NewRegistry()}
	e.c = startChecker(t, Config{Store: db, Policy: e.holder, Metrics: e.reg})
	return e
}

func mcpRequest(tok, method, name string) Request {
	r := bearer(tok)
	if method != "" {
		r.Headers["mcp-method"] = method
	}
	if name != "" {
		r.Headers["mcp-name"] = name
	}
	return r
}

type policyCase struct {
	name, user, scope, method, mname string
	wantStatus                       int
	wantReason                       Reason
	wantScope                        string // in WWW-Authenticate, for 403 insufficient_scope
}

var policyCases = []policyCase{
	{"allowed tool", "alice", "mcp", "tools/call", "echo", 200, ReasonToken, ""},
	{"allowed without headers", "alice", "mcp", "", "", 200, ReasonToken, ""},
	{"listing needs no name", "bob", "mcp", "tools/list", "", 200, ReasonToken, ""},
	{"step-up tool without admin", "alice", "mcp", "tools/call", "deploy_prod", 403, ReasonInsufficientScope, "admin"},
	{"step-up tool with admin", "alice", "mcp admin", "tools/call", "deploy_prod", 200, ReasonToken, ""},
	{"forbidden tool", "alice", "mcp admin", "tools/call", "shell", 403, ReasonRuleDenied, ""},
	{"tool of one group", "dan", "mcp", "tools/call", "shell", 200, ReasonToken, ""},
	{"secret resource", "dan", "mcp admin", "resources/read", "secret://db", 403, ReasonRuleDenied, ""},
	{"other resource", "dan", "mcp", "resources/read", "file:///x", 200, ReasonToken, ""},
	{"user not on the list", "carol", "mcp", "tools/call", "echo", 403, ReasonUserNotAllowed, ""},
	{"user not on the list, no headers", "carol", "mcp", "", "", 403, ReasonUserNotAllowed, ""},
	{"named user", "bob", "mcp", "tools/call", "echo", 200, ReasonToken, ""},
	{"tools/call without Mcp-Name", "bob", "mcp", "tools/call", "", 400, ReasonMissingHeader, ""},
	{"resources/read without Mcp-Name", "bob", "mcp", "resources/read", "", 400, ReasonMissingHeader, ""},
	{"deleted user", "ghost", "mcp", "tools/call", "echo", 403, ReasonUserNotAllowed, ""},
}

// TestPolicyChecks: the access policy through Check, for every case.
func TestPolicyChecks(t *testing.T) {
	e := newPolicyEnv(t)
	for _, tt := range policyCases {
		t.Run(tt.name, func(t *testing.T) {
			tok := mint(t, e.db, mintOpts{user: tt.user, scope: tt.scope})
			d, err := e.c.Check(context.Background(), mcpRequest(tok, tt.method, tt.mname))
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != tt.wantStatus || d.Reason != tt.wantReason {
				t.Fatalf("got %d %v, want %d %v (%s)", d.Status, d.Reason, tt.wantStatus, tt.wantReason, d.Body)
			}
			if tt.wantScope != "" {
				want := `Bearer error="insufficient_scope", scope="` + tt.wantScope + `", resource_metadata=`
				if got := headerValue(d.Headers, "WWW-Authenticate"); !strings.HasPrefix(got, want) {
					t.Errorf("WWW-Authenticate = %q, want prefix %q", got, want)
				}
			}
			if tt.wantReason == ReasonMissingHeader && !strings.Contains(d.Body, "Mcp-Name header is required") {
				t.Errorf("body %s does not name the missing header", d.Body)
			}
		})
	}
	if got := testutil.ToFloat64(e.c.policyCounters.vec.WithLabelValues(mcpURL, "rules[1]", "rule_denied")); got != 1 {
		t.Errorf("policy decisions {rules[1], rule_denied} = %v, want 1", got)
	}
}

// TestExplainAgreesWithCheck: policy.Decide on the inputs explain builds
// (the user's stored groups, the token's scopes, method and name) answers
// what the check answered, for every case.
func TestExplainAgreesWithCheck(t *testing.T) {
	e := newPolicyEnv(t)
	ctx := context.Background()
	results := map[Reason]policy.Result{
		ReasonToken: policy.Allow, ReasonInsufficientScope: policy.InsufficientScope, ReasonRuleDenied: policy.DenyRule,
		ReasonUserNotAllowed: policy.DenyUser, ReasonMissingHeader: policy.MissingHeader,
	}
	for _, tt := range policyCases {
		for _, post := range []bool{true, false} {
			tok := mint(t, e.db, mintOpts{user: tt.user, scope: tt.scope})
			r := mcpRequest(tok, tt.method, tt.mname)
			if !post {
				r.Method = "GET"
			}
			d, err := e.c.Check(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			var groups []string
			if u, err := e.db.GetUser(ctx, tt.user); err == nil {
				groups = u.Groups
			}
			// The same Input `passgate policy explain` builds.
			ex := e.holder.Load().Decide(policy.ExplainInput(resource.MustParseAll(mcpURL)[0], tt.user, groups,
				strings.Fields(tt.scope), tt.method, tt.mname, post))
			if results[d.Reason] != ex.Result {
				t.Errorf("%s (post %v): check says %v, explain says %v (%s)", tt.name, post, d.Reason, ex.Result, ex.Rule)
			}
		}
	}
}

// TestGroupChangeReachesCachedTokens: set-groups reaches a cached token
// within a second, through the store's invalidations (both ways).
func TestGroupChangeReachesCachedTokens(t *testing.T) {
	e := newPolicyEnv(t)
	ctx := context.Background()
	tok := mint(t, e.db, mintOpts{user: "dan"})
	req := mcpRequest(tok, "tools/call", "shell")
	for range 3 {
		if d, _ := e.c.Check(ctx, req); !d.Allow {
			t.Fatalf("dan refused before the change: %+v", d)
		}
	}
	change := func(groups []string, wantAllow bool) {
		t.Helper()
		if _, err := e.db.SetUserGroups(ctx, "dan", groups, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			d, err := e.c.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow == wantAllow {
				t.Logf("groups %v took effect after %v", groups, time.Since(start))
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("groups %v: still %v after 1s", groups, d.Reason)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	change([]string{"eng"}, false)
	change([]string{"eng", "ops"}, true)
}

// TestPolicyHeadersThroughHTTP: nginx's family passes the client's
// Mcp-Method and Mcp-Name; a repeated one is refused.
func TestPolicyHeadersThroughHTTP(t *testing.T) {
	e := newPolicyEnv(t)
	h := e.c.HTTPHandler(http.NotFoundHandler())
	tok := mint(t, e.db, mintOpts{user: "alice"})
	do := func(hdr map[string][]string) *httptest.ResponseRecorder {
		r := nginxReq(tok)
		for k, v := range hdr {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	tests := []struct {
		name string
		hdr  map[string][]string
		want int
	}{
		{"allowed tool", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}, 200},
		{"forbidden tool", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"shell"}}, 403},
		{"step-up tool", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"deploy_x"}}, 403},
		{"no name", map[string][]string{"Mcp-Method": {"tools/call"}}, 400},
		{"repeated name", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo", "shell"}}, 400},
		{"repeated method", map[string][]string{"Mcp-Method": {"tools/list", "tools/call"}, "Mcp-Name": {"shell"}}, 400},
		{"base64-wrapped forbidden name", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?c2hlbGw=?="}}, 403},
		{"base64-wrapped allowed name", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?ZWNobw==?="}}, 200},
		{"broken base64 wrapper", map[string][]string{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?!!!?="}}, 400},
		{"no headers (a 2025-11-25 client)", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := do(tt.hdr); w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
}

func envoyBodyReq(tok, method, name, body string) *authv3.CheckRequest {
	req := envoyReq(tok)
	h := req.GetAttributes().GetRequest().GetHttp()
	if method != "" {
		h.Headers["mcp-method"] = method
	}
	if name != "" {
		h.Headers["mcp-name"] = name
	}
	h.Body = body
	return req
}

func rpc(method, key, name string) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": map[string]any{key: name}})
	return string(b)
}

// TestEnvoyBodyVerification: with with_request_body the gRPC check reads
// the JSON-RPC method and name and refuses a header that disagrees.
func TestEnvoyBodyVerification(t *testing.T) {
	e := newPolicyEnv(t)
	client := dialGRPC(t, NewGRPCServer(e.c, nil))
	tok := mint(t, e.db, mintOpts{user: "alice"})
	tests := []struct {
		name, method, mname, body string
		want                      int32 // HTTP status; 200 allowed
		reason                    Reason
	}{
		{"allowed tool, body only", "", "", rpc("tools/call", "name", "echo"), 200, ReasonToken},
		{"forbidden tool, body only (a 2025-11-25 client)", "", "", rpc("tools/call", "name", "shell"), 403, ReasonRuleDenied},
		{"step-up tool, body only", "", "", rpc("tools/call", "name", "deploy_prod"), 403, ReasonInsufficientScope},
		{"secret resource, body only", "", "", rpc("resources/read", "uri", "secret://db"), 403, ReasonRuleDenied},
		{"headers agree", "tools/call", "echo", rpc("tools/call", "name", "echo"), 200, ReasonToken},
		{"name header disagrees", "tools/call", "echo", rpc("tools/call", "name", "shell"), 400, ReasonHeaderMismatch},
		{"method header disagrees", "tools/list", "", rpc("tools/call", "name", "shell"), 400, ReasonHeaderMismatch},
		{"name header on a method without one", "tools/list", "shell", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 400, ReasonHeaderMismatch},
		{"case-variant key", "", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","METHOD":"tools/list","params":{"name":"shell"}}`, 403, ReasonRuleDenied},
		{"repeated method key", "", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"shell"}}`, 400, ReasonUnreadableBody},
		{"repeated name key", "", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"shell"}}`, 400, ReasonUnreadableBody},
		{"batch", "", "", "[" + rpc("tools/call", "name", "shell") + "]", 400, ReasonUnreadableBody},
		{"truncated", "", "", rpc("tools/call", "name", "shell")[:30], 400, ReasonUnreadableBody},
		{"trailing data", "", "", rpc("tools/call", "name", "echo") + rpc("tools/call", "name", "shell"), 400, ReasonUnreadableBody},
		{"a response has no method", "", "", `{"jsonrpc":"2.0","id":1,"result":{}}`, 200, ReasonToken},
		{"a response with a method header", "tools/call", "shell", `{"jsonrpc":"2.0","id":1,"result":{}}`, 400, ReasonHeaderMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, resp := checkStatus(t, client, envoyBodyReq(tok, tt.method, tt.mname, tt.body)); got != tt.want {
				t.Fatalf("status %d, want %d (%v)", got, tt.want, resp)
			}
			d, _ := e.c.Check(context.Background(), envoyRequest(envoyBodyReq(tok, tt.method, tt.mname, tt.body)))
			if d.Reason != tt.reason {
				t.Errorf("reason %v, want %v", d.Reason, tt.reason)
			}
		})
	}
	// raw_body (pack_as_bytes) is read too.
	req := envoyBodyReq(tok, "", "", "")
	req.GetAttributes().GetRequest().GetHttp().RawBody = []byte(rpc("tools/call", "name", "shell"))
	if resp, _ := client.Check(context.Background(), req); resp.GetDeniedResponse() == nil {
		t.Errorf("a forbidden tool in raw_body was allowed")
	}
}

// TestPolicyReloadUnderLoad: replacing the policy while checks run never
// refuses a request both policies allow, and the new rule takes effect.
func TestPolicyReloadUnderLoad(t *testing.T) {
	e := newPolicyEnv(t)
	ctx := context.Background()
	tok := mint(t, e.db, mintOpts{user: "alice"})
	allowed := mcpRequest(tok, "tools/call", "echo")
	stricter := compilePolicy(t, testPolicy+`      - {method: tools/call, name: "echo2", allow: []}`+"\n")
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.c.Check(ctx, allowed)
				total.Add(1)
				if err != nil || !d.Allow {
					failed.Add(1)
				}
			}
		}()
	}
	old := e.holder.Load()
	for i := range 200 {
		if i%2 == 0 {
			e.holder.Store(stricter)
		} else {
			e.holder.Store(old)
		}
		time.Sleep(time.Millisecond)
	}
	e.holder.Store(stricter)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || total.Load() == 0 {
		t.Fatalf("%d of %d allowed requests failed during reloads", failed.Load(), total.Load())
	}
	if d, _ := e.c.Check(ctx, mcpRequest(tok, "tools/call", "echo2")); d.Allow {
		t.Errorf("the reloaded rule did not take effect")
	}
	t.Logf("%d checks during 200 reloads, none failed", total.Load())
}

// TestPolicyDenialLog: a denial is logged at debug level with its reason
// and rule, and never with the token.
func TestPolicyDenialLog(t *testing.T) {
	e := newPolicyEnv(t)
	var buf proc.Buffer
	c := startChecker(t, Config{Store: e.db, Policy: e.holder, Logger: newWriterLogger(&buf)})
	tok := mint(t, e.db, mintOpts{user: "alice"})
	if d, _ := c.Check(context.Background(), mcpRequest(tok, "tools/call", "shell")); d.Allow {
		t.Fatal("allowed")
	}
	out := buf.String()
	for _, want := range []string{"access policy denied a request", "rule=rules[1]", "result=rule_denied", "mcp_name=shell"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, tok) || strings.Contains(out, tok[len(tok)-20:]) {
		t.Errorf("log holds the token")
	}
}

// fiftyRules is a policy with 50 rules on mcpURL, the last one matching
// the benchmark's request.
func fiftyRules() string {
	var b strings.Builder
	b.WriteString("resources:\n  - url: " + mcpURL + "\n    allow: [group:ops, group:eng, user:bob]\n    scopes: {admin: [mcp]}\n    rules:\n")
	for i := range 49 {
		fmt.Fprintf(&b, "      - {method: tools/call, name: \"tool_%d_*\", allow: [group:ops]}\n", i)
	}
	b.WriteString("      - {method: tools/call, name: \"echo\", scope: mcp}\n")
	return b.String()
}

// BenchmarkCheckPolicy is BenchmarkCheck's cache hit with a 50-rule
// policy whose last rule decides, against the same hit without a policy.
func BenchmarkCheckPolicy(b *testing.B) {
	db := openSQLite(b)
	if _, err := db.SetUserGroups(context.Background(), testUser, []string{"eng"}, time.Now(), nil); err != nil {
		b.Fatal(err)
	}
	holder := policy.NewHolder(compilePolicy(b, fiftyRules()))
	c := startChecker(b, Config{Store: db, Logger: discard(), Policy: holder})
	plain := startChecker(b, Config{Store: db, Logger: discard()})
	tok := mint(b, db, mintOpts{})
	ctx := context.Background()
	r := mcpRequest(tok, "tools/call", "echo")
	for _, tc := range []struct {
		name string
		c    *Checker
	}{{"hit/no_policy", plain}, {"hit/50_rules", c}} {
		if d, _ := tc.c.Check(ctx, r); !d.Allow {
			b.Fatalf("%s: denied %v", tc.name, d.Reason)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, _ := tc.c.Check(ctx, r); !d.Allow {
					b.Fatal("denied")
				}
			}
		})
	}
	b.Run("grpc/50_rules_body", func(b *testing.B) {
		pg := grpcServer{c: c}
		req := envoyBodyReq(tok, "tools/call", "echo", rpc("tools/call", "name", "echo"))
		b.ReportAllocs()
		for b.Loop() {
			if resp, _ := pg.Check(ctx, req); resp.GetOkResponse() == nil {
				b.Fatal("denied")
			}
		}
	})
}

func newWriterLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestRequireMCPHeaders: with require_mcp_headers, through a header-only
// check a POST needs Mcp-Method, on protocol 2026-07-28 or later (whose
// servers compare headers with bodies); a body read by the check is
// enough by itself.
func TestRequireMCPHeaders(t *testing.T) {
	e := newPolicyEnv(t)
	e.holder.Store(compilePolicy(t, strings.Replace(testPolicy, "    scopes: {admin: [mcp]}\n", "    scopes: {admin: [mcp]}\n    require_mcp_headers: true\n", 1)))
	tok := mint(t, e.db, mintOpts{user: "alice"})
	ctx := context.Background()
	tests := []struct {
		name, method, mname, version, body string
		want                               int
		wantBody                           string
	}{
		{"no headers", "", "", "", "", 400, "Mcp-Method header is required"},
		{"old protocol", "tools/call", "echo", "2025-11-25", "", 400, "MCP-Protocol-Version header must be 2026-07-28"},
		{"current protocol", "tools/call", "echo", "2026-07-28", "", 200, ""},
		{"body only", "", "", "", rpc("tools/call", "name", "echo"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mcpRequest(tok, tt.method, tt.mname)
			if tt.version != "" {
				r.Headers["mcp-protocol-version"] = tt.version
			}
			r.Body = tt.body
			d, err := e.c.Check(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != tt.want || !strings.Contains(d.Body, tt.wantBody) {
				t.Errorf("got %d %s, want %d %q", d.Status, d.Body, tt.want, tt.wantBody)
			}
		})
	}
	// A GET (the SSE stream) carries no JSON-RPC request.
	r := bearer(tok)
	r.Method = "GET"
	if d, _ := e.c.Check(ctx, r); !d.Allow {
		t.Errorf("GET refused: %s", d.Body)
	}
}
