package oauthweb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/cimd"
	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/store"
)

// TestSecretClientsUseEitherMethod: a client with a secret may present it
// with client_secret_basic or client_secret_post whichever it registered
// (RFC 6749 §2.3.1 requires Basic for every such client; claude.ai posts
// the secret of a custom connector's pre-registered client whatever the
// metadata says), at the token, revocation and introspection endpoints.
// Before, a client registered with one method got invalid_client for the
// other.
func TestSecretClientsUseEitherMethod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.browser()
	e.login(b)
	for _, tt := range []struct{ registered, sends string }{
		{"client_secret_basic", "client_secret_post"},
		{"client_secret_post", "client_secret_basic"},
		{"client_secret_basic", "client_secret_basic"},
		{"client_secret_post", "client_secret_post"},
	} {
		t.Run(tt.registered+" sends "+tt.sends, func(t *testing.T) {
			reg := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": tt.registered, "client_name": "Conf"})
			id, secret := reg["client_id"].(string), reg["client_secret"].(string)
			e.secret(secret)
			conf := e.oauth2Config(id, secret)
			conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
			if tt.sends == "client_secret_basic" {
				conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
			}
			tok := e.codeFlow(b, conf, oauth2.SetAuthURLParam("resource", testResource))
			// Refresh, then introspect and revoke, with the same method.
			tok.Expiry = time.Now().Add(-time.Hour)
			fresh, err := conf.TokenSource(ctx, tok).Token()
			if err != nil || fresh.AccessToken == tok.AccessToken {
				t.Fatalf("refresh: %v", err)
			}
			e.secret(fresh.AccessToken, fresh.RefreshToken)
			for _, ep := range []string{"/oauth/introspect", "/oauth/revoke"} {
				r := hreq{path: ep, ctype: formCT, body: form("token", fresh.AccessToken)}
				if tt.sends == "client_secret_post" {
					r.body = form("token", fresh.AccessToken, "client_id", id, "client_secret", secret)
				} else {
					r.basic = [2]string{url.QueryEscape(id), url.QueryEscape(secret)}
				}
				resp, body := e.send(t, r, nil)
				if resp.StatusCode != http.StatusOK || (ep == "/oauth/introspect" && !strings.Contains(body, `"active":true`)) {
					t.Errorf("%s: %d %s", ep, resp.StatusCode, body)
				}
			}
		})
	}
}

// TestClaudeStaticConnectorTokenRequest replays claude.ai's token request
// for a custom connector with a client ID and secret (the seed's
// OAUTH_CLIENT_ID/OAUTH_CLIENT_SECRET, a static client registered with
// client_secret_basic): client_id and client_secret in the form
// (client_secret_post), the authorization code, PKCE's code_verifier, its
// callback as redirect_uri and the MCP URL as resource. It used to get
// invalid_client. Then the refresh claude.ai makes the same way.
func TestClaudeStaticConnectorTokenRequest(t *testing.T) {
	e := newEnv(t)
	const id, secret, callback = "claude-connector", "0123456789abcdef0123456789abcdef", "https://claude.ai/api/mcp/auth_callback"
	e.staticClient(id, id, secret, callback, "https://claude.com/api/mcp/auth_callback")
	b := e.browser()
	e.login(b)
	v := oauth2.GenerateVerifier()
	cb := e.authorize(b, e.url("/oauth/authorize?"+url.Values{
		"response_type": {"code"}, "client_id": {id}, "redirect_uri": {callback}, "state": {"claude-state"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"},
		"resource": {testResource}, "scope": {"mcp"},
	}.Encode()))
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != callback {
		t.Fatalf("redirected to %q, want claude.ai's callback", got)
	}
	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(e.url("/oauth/token"), form)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.Unmarshal([]byte(readBody(t, resp)), &out)
		return resp.StatusCode, out
	}
	status, tok := post(url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {callback},
		"code_verifier": {v}, "client_id": {id}, "client_secret": {secret}, "resource": {testResource},
	})
	if status != http.StatusOK || tok["access_token"] == nil {
		t.Fatalf("claude.ai's code exchange: %d %v", status, tok)
	}
	e.secret(tok["access_token"].(string), tok["refresh_token"].(string))
	status, ref := post(url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)},
		"client_id": {id}, "client_secret": {secret}, "resource": {testResource},
	})
	if status != http.StatusOK || ref["access_token"] == nil {
		t.Fatalf("claude.ai's refresh: %d %v", status, ref)
	}
	e.secret(ref["access_token"].(string), ref["refresh_token"].(string))
}

// TestRegistrationLimitCountsFailures: hosted clients register one client
// per user from a few shared addresses, so successful registrations do
// not spend the (low) failure limit; they have their own, higher one.
// Failures are limited per IP; a refused request stores nothing.
func TestRegistrationLimitCountsFailures(t *testing.T) {
	bothStores(t, func(t *testing.T, st store.Store) {
		limits := ratelimit.Set{
			LimitRegister:        ratelimit.New(ratelimit.Limit{Events: 2, Per: time.Hour}, nil, 0),
			LimitRegisterSuccess: ratelimit.New(ratelimit.Limit{Events: 5, Per: time.Hour}, nil, 0),
		}
		var ip string
		s, _ := bareServer(t, st, func(c *Config) {
			c.RateLimit = limits.Reserve
			c.ClientIP = func(*http.Request) string { return ip }
		})
		register := func(body string) int {
			r := httptest.NewRequest(http.MethodPost, "/oauth/register", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return s.do(r).Code
		}
		good := `{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"client_secret_post"}`
		bad := `{"client_name":"Claude","redirect_uris":["http://evil.example/cb"]}`
		// Each step, in order, posts body from ip the given number of
		// times, wanting status every time, then counts the stored clients.
		for _, step := range []struct {
			name, ip, body string
			times, status  int
			stored         int
		}{
			{"five successes: more than the failure limit of two", "192.0.2.1", good, 5, http.StatusCreated, 5},
			{"the sixth success is over the success limit; nothing stored", "192.0.2.1", good, 1, http.StatusTooManyRequests, 5},
			{"another address: two failures", "192.0.2.2", bad, 2, http.StatusBadRequest, 5},
			{"then even a good request is refused until the hour passes", "192.0.2.2", good, 1, http.StatusTooManyRequests, 5},
		} {
			ip = step.ip
			for i := range step.times {
				if code := register(step.body); code != step.status {
					t.Fatalf("%s: request %d: %d, want %d", step.name, i+1, code, step.status)
				}
			}
			if cs, err := st.ListClients(t.Context()); err != nil || len(cs) != step.stored {
				t.Errorf("%s: %d clients stored (%v), want %d", step.name, len(cs), err, step.stored)
			}
		}
	})
}

// documentEnv serves Client ID Metadata Documents with handler on a
// loopback server and returns an env that resolves them with the real
// fetcher, a browser signed in to it, and the documents' base URL.
func documentEnv(t *testing.T, handler http.HandlerFunc) (e *env, b *http.Client, docs string) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	fetcher := cimd.New(cimd.Config{AllowLoopbackHTTP: true})
	e = newEnv(t, func(c *Config) { c.ResolveClient = fetcher.ResolveClient })
	b = e.browser()
	e.login(b)
	return e, b, srv.URL
}

// TestMetadataDocumentErrorPageNamesTheRule: a Client ID Metadata
// Document served as text/plain, or without client_name, is refused; the
// authorization endpoint shows passgate's error page naming what was wrong
// (never a redirect to the unverified redirect URI), the token endpoint
// answers invalid_client, and nothing is stored.
func TestMetadataDocumentErrorPageNamesTheRule(t *testing.T) {
	var ctype, doc string
	e, b, docs := documentEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		fmt.Fprint(w, doc)
	})
	clientID := docs + "/client.json"
	valid := fmt.Sprintf(`{"client_id":%q,"client_name":"Doc App","redirect_uris":[%q]}`, clientID, testRedirect)
	noName := fmt.Sprintf(`{"client_id":%q,"redirect_uris":[%q]}`, clientID, testRedirect)
	for _, tt := range []struct {
		name, ctype, doc, want string
	}{
		{"text/plain", "text/plain; charset=utf-8", valid, "Content-Type must be application/json"},
		{"text/html", "text/html", valid, "Content-Type must be application/json"},
		{"no client_name", "application/json", noName, "client_name is missing"},
		{"blank client_name", "application/json", strings.Replace(valid, `"Doc App"`, `" "`, 1), "client_name is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctype, doc = tt.ctype, tt.doc
			before := e.snapshot()
			v := oauth2.GenerateVerifier()
			resp, err := noFollow(b).Get(e.url("/oauth/authorize?" + url.Values{
				"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {testRedirect}, "state": {"s"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"},
			}.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("authorize: %d Location %q, want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(body, "client metadata document cannot be used") || !strings.Contains(body, tt.want) {
				t.Errorf("error page does not say %q:\n%s", tt.want, body)
			}
			tokResp, err := http.PostForm(e.url("/oauth/token"), url.Values{
				"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {"pgc_x"}, "code_verifier": {v}, "redirect_uri": {testRedirect},
			})
			if err != nil {
				t.Fatal(err)
			}
			if tb := readBody(t, tokResp); tokResp.StatusCode != http.StatusUnauthorized || !strings.Contains(tb, `"error":"invalid_client"`) {
				t.Errorf("token: %d %s, want 401 invalid_client", tokResp.StatusCode, tb)
			}
			diff(t, "store after a refused metadata document", e.snapshot(), before)
		})
	}
	// The same document, served right, works.
	ctype, doc = "application/json", valid
	resp, err := noFollow(b).Get(e.url("/oauth/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {testRedirect}, "state": {"s"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
	}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Doc App") {
		t.Errorf("valid document: %d, want the consent page naming Doc App", resp.StatusCode)
	}
}

// TestClaudeCodeMetadataDocument replays Claude Code identifying itself
// with its Client ID Metadata Document instead of registering: the
// document lists loopback redirect URIs without a port, and Claude Code
// listens on whatever port is free, so the authorization request's
// http://localhost:PORT/callback must match (RFC 8252 §7.3). A public
// client: PKCE, no secret, the resource.
func TestClaudeCodeMetadataDocument(t *testing.T) {
	e, b, docs := documentEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"client_id":%q,"client_name":"Claude Code","client_uri":"https://claude.com/product/claude-code",
			"redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],
			"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`,
			"http://"+r.Host+r.URL.Path)
	})
	clientID := docs + "/oauth/claude-code-client-metadata"
	conf := e.oauth2Config(clientID, "")
	conf.RedirectURL = "http://localhost:54321/callback"
	v := oauth2.GenerateVerifier()
	cb := e.authorize(b, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("resource", testResource)))
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != conf.RedirectURL {
		t.Fatalf("redirected to %q, want %q", got, conf.RedirectURL)
	}
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(v), oauth2.SetAuthURLParam("resource", testResource))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	tok.Expiry = time.Now().Add(-time.Hour)
	fresh, err := conf.TokenSource(context.Background(), tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	e.secret(fresh.AccessToken, fresh.RefreshToken)
}
