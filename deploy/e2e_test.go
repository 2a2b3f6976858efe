package deploy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// passgateStack is the real binary, the example MCP server and real nginx
// rendered from deploy/nginx.conf, wired as the README tells users to.
type passgateStack struct {
	ngx      *nginx
	bin      string
	storeEnv []string // DATABASE_URL or PASSGATE_DATA_DIR, for CLI calls
	resource string

	passAddr, grpcAddr string
	passgate           *proc.Process // the running `passgate serve`
}

// startPassgateStack starts the stack on backend ("sqlite" or "postgres");
// args are extra `passgate serve` flags.
func startPassgateStack(t *testing.T, backend string, args ...string) *passgateStack {
	t.Helper()
	return startPassgateStackWith(t, backend, "", func(string) []string { return args })
}

// startPassgateStackWith is startPassgateStack with another MCP server
// (mcpAddr; "" for the example server) and extra serve flags, which extra
// builds from the resource URL (nil: none).
func startPassgateStackWith(t *testing.T, backend, mcpAddr string, extra func(resource string) []string) *passgateStack {
	t.Helper()
	bin := e2etest.Binary(t)
	passAddr, grpcAddr := e2etest.FreeAddr(t), e2etest.FreeAddr(t)
	if mcpAddr == "" {
		mcpAddr = startExampleMCPServer(t)
	}
	ngx := startNginx(t, nginxOptions{PassgateAddr: passAddr, MCPAddr: mcpAddr})
	var storeEnv []string
	switch backend {
	case "sqlite":
		storeEnv = []string{"PASSGATE_DATA_DIR=" + t.TempDir()}
	case "postgres":
		storeEnv = []string{"DATABASE_URL=" + pgtest.NewDatabase(t)}
	}
	st := &passgateStack{ngx: ngx, bin: bin, storeEnv: storeEnv, resource: ngx.URL + "/mcp", passAddr: passAddr, grpcAddr: grpcAddr}
	// The user exists before passgate starts, so no bootstrap password.
	st.cli(t, "correct horse battery\n", "user", "add", "alice", "--password-stdin")
	var serveArgs []string
	if extra != nil {
		serveArgs = extra(st.resource)
	}
	st.restart(t, nil, serveArgs...)
	return st
}

// restart stops the running passgate, if any, and starts a fresh one on
// the same addresses and store, with env added and args as extra flags:
// in-memory state (rate limits, caches) starts over.
func (st *passgateStack) restart(t *testing.T, env []string, args ...string) {
	t.Helper()
	if st.passgate != nil {
		e2etest.Stop(t, st.passgate)
	}
	st.passgate = e2etest.StartProcess(t, st.passAddr, st.bin, append([]string{
		"serve", "--issuer", st.ngx.URL, "--resource", st.resource,
		"--http-listen", st.passAddr, "--grpc-listen", st.grpcAddr, "--metrics-listen", "",
	}, args...), append(slices.Clip(st.storeEnv), env...))
}

func (st *passgateStack) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(st.bin, args...)
	cmd.Env = append(cmd.Environ(), st.storeEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("passgate %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestEndToEndThroughNginx runs the whole MCP authorization flow through real
// nginx with the shipped deploy/nginx.conf, the real passgate binary and the
// example MCP server, with an MCP client that knows only the MCP URL.
func TestEndToEndThroughNginx(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			// Access tokens live 12s: golang.org/x/oauth2, which the SDK
			// refreshes with, treats a token as expired 10s early, so the
			// SDK refreshes on its own 2s after each exchange (step 8).
			st := startPassgateStack(t, backend, "--access-token-ttl=12s")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			hc := &http.Client{Transport: st.ngx.Transport, Timeout: 10 * time.Second}

			// 1. Without a token: 401 naming the resource metadata.
			resp, err := hc.Post(st.resource, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			wantMeta := st.ngx.URL + "/.well-known/oauth-protected-resource/mcp"
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+wantMeta+`"`) {
				t.Fatalf("unauthenticated /mcp: %d %q, want 401 with resource_metadata=%q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), wantMeta)
			}

			// 2-5. Discovery, registration, login, consent and the code
			// exchange, all through nginx, driven by the official MCP Go SDK.
			b := e2etest.NewBrowser()
			b.HTTP.Transport = st.ngx.Transport
			var progress atomic.Int32
			session, err := e2etest.MCPAuth{
				HTTPClient: hc, Browser: b, Username: "alice", Password: "correct horse battery", ClientName: "e2e MCP client",
				CheckCallback: func(cb *url.URL) error {
					if iss := cb.Query().Get("iss"); iss != st.ngx.URL {
						return fmt.Errorf("callback iss = %q, want %q", iss, st.ngx.URL)
					}
					return nil
				},
			}.Connect(ctx, t, st.resource, &mcp.ClientOptions{
				ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
			})
			if err != nil {
				t.Fatalf("MCP initialize through nginx: %v", err)
			}
			if n := session.Authorizations.Load(); n != 1 {
				t.Errorf("the user was asked to authorize %d times, want 1", n)
			}

			// 6. tools/call: the upstream sees passgate's identity headers
			// and never the client's Authorization header.
			who, raw := e2etest.CallWhoami(ctx, t, session.ClientSession)
			if who.User != "alice" || who.ClientID == "" || who.Scope != "mcp" || who.AuthorizationReceived {
				t.Errorf("upstream saw %s; want user alice, a client id, scope mcp and no Authorization", raw)
			}

			// 7. A streamed answer (progress events over SSE) passes nginx.
			res, err := session.CallTool(ctx, &mcp.CallToolParams{
				Name: "countdown", Arguments: map[string]any{"steps": 3, "interval_ms": 50},
				Meta: mcp.Meta{"progressToken": "e2e"},
			})
			if err != nil || res.IsError {
				t.Fatalf("tools/call countdown: %v %+v", err, res)
			}
			// The SDK hands notifications to the handler asynchronously, so
			// the last one may land just after the result.
			for deadline := time.Now().Add(2 * time.Second); progress.Load() < 3 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := progress.Load(); got != 3 {
				t.Errorf("received %d progress notifications through nginx, want 3", got)
			}

			// 8. Refresh, the SDK's own way: once the access token is due,
			// the next call refreshes it (rotating the refresh token) and
			// goes through with the new one.
			ts, err := session.Handler.TokenSource(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			for before.Valid() {
				time.Sleep(100 * time.Millisecond)
			}
			if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"}); err != nil || res.IsError {
				t.Fatalf("tools/call after the access token became due: %v %+v", err, res)
			}
			after, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if after.AccessToken == before.AccessToken || after.RefreshToken == "" || after.RefreshToken == before.RefreshToken {
				t.Errorf("the SDK did not refresh: access token changed %v, refresh token rotated %v",
					after.AccessToken != before.AccessToken, after.RefreshToken != "" && after.RefreshToken != before.RefreshToken)
			}
			if out := st.cli(t, "", "audit", "--event", "token_refresh", "--json"); !strings.Contains(out, `"success":true`) {
				t.Errorf("passgate recorded no successful token_refresh:\n%s", out)
			}

			// 9. The token is bound to the resource, and once revoked the
			// proxy refuses it.
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			call := func() int {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.resource, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"ping"}`))
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if code := call(); code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Fatalf("a valid token was refused through nginx: %d", code)
			}
			out := st.cli(t, "", "token", "revoke", "--user", "alice")
			if !strings.Contains(out, "revoked") {
				t.Fatalf("token revoke: %s", out)
			}
			deadline := time.Now().Add(2 * time.Second)
			for call() != http.StatusUnauthorized {
				if time.Now().After(deadline) {
					t.Fatal("a revoked token was still accepted through nginx 2s after revocation")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestEnvoyRoutesAgainstPassgate sends passgate's real gRPC server the
// CheckRequests Envoy would send for every route of deploy/envoy.yaml that
// keeps ext_authz on, and checks the answers Envoy would act on.
func TestEnvoyRoutesAgainstPassgate(t *testing.T) {
	const host = "mcp.example.com"
	bootstrap := loadEnvoy(t)
	bin := e2etest.Binary(t)
	dataDir := t.TempDir()
	httpAddr, grpcAddr := e2etest.FreeAddr(t), e2etest.FreeAddr(t)
	resourceURL := "https://" + host + "/mcp"
	e2etest.StartProcess(t, httpAddr, bin, []string{
		"serve", "--data-dir", dataDir, "--issuer", "https://" + host, "--resource", resourceURL,
		"--http-listen", httpAddr, "--grpc-listen", grpcAddr, "--metrics-listen", "",
	}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := e2etest.OpenStore(t, "", dataDir)
	mint := func(resource string) string { return mintAccessToken(t, st, resource, "mcp") }
	good := mint(resourceURL)
	foreign := mint("https://other.example.com/mcp")

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authz := authv3.NewAuthorizationClient(conn)

	checked := 0
	for _, r := range envoyRoutes(t, bootstrap) {
		if extAuthzDisabled(t, r) {
			continue
		}
		path := r.GetMatch().GetPath()
		if path == "" {
			path = r.GetMatch().GetPrefix()
		}
		checked++
		send := func(authz_ string) *authv3.CheckResponse {
			t.Helper()
			headers := map[string]string{":authority": host, ":path": path, ":method": "POST", "content-type": "application/json", "x-passgate-user": "mallory"}
			if authz_ != "" {
				headers["authorization"] = authz_
			}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "POST", Host: host, Path: path, Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
				}},
			}}
			resp, err := authz.Check(ctx, req)
			if err != nil {
				t.Fatalf("Check %s: %v", path, err)
			}
			return resp
		}
		// No token: denied with the challenge MCP clients need.
		deny := send("").GetDeniedResponse()
		if deny.GetStatus().GetCode() != 401 || !hasHeader(deny.GetHeaders(), "www-authenticate", "resource_metadata=\"https://"+host+"/.well-known/oauth-protected-resource/mcp\"") {
			t.Errorf("route %s without token: %v, want 401 with resource_metadata", path, deny)
		}
		// A token for another resource: denied.
		if d := send("Bearer " + foreign).GetDeniedResponse(); d.GetStatus().GetCode() != 401 {
			t.Errorf("route %s with a foreign-audience token: %v, want 401", path, d)
		}
		// The right token: allowed, identity set, Authorization removed.
		ok := send("Bearer " + good).GetOkResponse()
		if ok == nil {
			t.Fatalf("route %s with a valid token was denied", path)
		}
		if !hasHeader(ok.GetHeaders(), "x-passgate-user", "alice") {
			t.Errorf("route %s: identity headers %v lack x-passgate-user alice", path, ok.GetHeaders())
		}
		if !containsFold(ok.GetHeadersToRemove(), "authorization") {
			t.Errorf("route %s: headers_to_remove %v lacks authorization", path, ok.GetHeadersToRemove())
		}
	}
	if checked == 0 {
		t.Fatal("envoy.yaml has no route with ext_authz enabled")
	}
}

// mintAccessToken stores an access token for resource and scope straight
// into st, through the same code redemption the token endpoint uses, and
// returns its secret.
func mintAccessToken(t testing.TB, st store.Store, resource, scope string) string {
	t.Helper()
	return mintAccessTokenFor(t, st, "alice", resource, scope)
}

// mintAccessTokenFor is mintAccessToken for another user.
func mintAccessTokenFor(t testing.TB, st store.Store, user, resource, scope string) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	s := token.New(token.PrefixAccess)
	code := store.AuthCode{
		CodeHash: token.Hash(token.New(token.PrefixCode)), ClientID: "deploy-test", Username: user,
		RedirectURI: "https://app.example/cb", CodeChallenge: "x", CodeChallengeMethod: "S256",
		Scope: scope, Resource: resource, FamilyID: token.New(""), CreatedAt: now, ExpiresAt: now.Add(time.Minute),
	}
	if err := st.CreateAuthCode(ctx, code, nil); err != nil {
		t.Fatal(err)
	}
	g := store.CodeGrant{
		Access:  store.Token{Hash: token.Hash(s), Kind: store.KindAccess, FamilyID: code.FamilyID, ClientID: "deploy-test", Username: user, Scope: scope, Resource: resource, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		Refresh: store.Token{Hash: token.Hash(token.New(token.PrefixRefresh)), Kind: store.KindRefresh, FamilyID: code.FamilyID, ClientID: "deploy-test", Username: user, Scope: scope, Resource: resource, CreatedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)},
		Audit:   store.AuditEvent{Event: store.EventTokenExchange, Success: true, ClientID: "deploy-test", Username: user, CreatedAt: now},
	}
	if err := st.RedeemCode(ctx, code.CodeHash, now, g); err != nil {
		t.Fatal(err)
	}
	return s
}

func hasHeader(hs []*corev3.HeaderValueOption, name, substr string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), name) && strings.Contains(h.GetHeader().GetValue(), substr) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
