package oauthweb

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// fixture is a server with clients, a logged-in browser, an unused code
// and a live refresh token, all made before the hostile requests.
type fixture struct {
	*env
	publicID             string
	basicID, basicSecret string
	postID, postSecret   string
	browser              *http.Client
	sessionCSRF          string
	code, verifier       string
	refresh              string
	basicAccess          string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e := newEnv(t)
	f := &fixture{env: e, publicID: e.publicClient()}
	reg := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "client_secret_basic"})
	f.basicID, f.basicSecret = reg["client_id"].(string), reg["client_secret"].(string)
	reg = e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "client_secret_post"})
	f.postID, f.postSecret = reg["client_id"].(string), reg["client_secret"].(string)

	f.browser = e.browser()
	e.login(f.browser)
	// A code and a refresh token for the public client.
	conf := e.oauth2Config(f.publicID, "")
	f.refresh = e.codeFlow(f.browser, conf).RefreshToken
	f.verifier = oauth2.GenerateVerifier()
	f.code = e.authorize(f.browser, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(f.verifier))).Query().Get("code")
	// An access token of the basic client.
	f.basicAccess = e.codeFlow(f.browser, e.oauth2Config(f.basicID, f.basicSecret)).AccessToken
	// The session's CSRF token, from the logout page.
	resp, err := f.browser.Get(e.url("/logout"))
	if err != nil {
		t.Fatal(err)
	}
	f.sessionCSRF = formFields(readBody(t, resp)).Get("csrf")
	if f.sessionCSRF == "" {
		t.Fatal("no session CSRF token on the logout page")
	}
	e.secret(f.sessionCSRF)
	return f
}

// do sends r as send does, with the logged-in browser's cookies if
// r.browser.
func (f *fixture) do(t *testing.T, r hreq) (*http.Response, string) {
	t.Helper()
	var jar http.CookieJar
	if r.browser {
		jar = f.browser.Jar
	}
	return f.send(t, r, jar)
}

const formCT = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// TestHostileInputs sends tampered requests to every endpoint and checks
// the status, the OAuth error, and that the store did not change (the
// audit log aside).
func TestHostileInputs(t *testing.T) {
	f := newFixture(t)
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	authz := func(kv ...string) string {
		base := []string{"response_type", "code", "client_id", f.publicID, "redirect_uri", testRedirect, "state", "xyz", "code_challenge", ch, "code_challenge_method", "S256"}
		v := url.Values{}
		for i := 0; i+1 < len(base); i += 2 {
			v.Set(base[i], base[i+1])
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "<del>" {
				v.Del(kv[i])
			} else if strings.HasPrefix(kv[i], "+") {
				v.Add(kv[i][1:], kv[i+1])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return "/oauth/authorize?" + v.Encode()
	}
	big := strings.Repeat("a", 70<<10)
	crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}}
	evilOrigin := http.Header{"Origin": {"https://evil.example"}}
	tok := func(kv ...string) string {
		return form(append([]string{"grant_type", "authorization_code", "client_id", f.publicID, "code", f.code, "code_verifier", f.verifier, "redirect_uri", testRedirect}, kv...)...)
	}
	tokWithout := func(drop string) string {
		v, _ := url.ParseQuery(tok())
		v.Del(drop)
		return v.Encode()
	}
	tokSet := func(k, val string) string {
		v, _ := url.ParseQuery(tok())
		v.Set(k, val)
		return v.Encode()
	}
	refresh := func(kv ...string) string {
		return form(append([]string{"grant_type", "refresh_token", "client_id", f.publicID, "refresh_token", f.refresh}, kv...)...)
	}

	tests := []struct {
		name   string
		req    hreq
		status int
		err    string // OAuth error in JSON body or in the redirect
	}{
		// Authorization endpoint: no redirect for an untrusted client or URI.
		{"authorize unknown client", hreq{method: "GET", path: authz("client_id", "nope"), browser: true}, 400, ""},
		{"authorize missing client", hreq{method: "GET", path: authz("client_id", "<del>"), browser: true}, 400, ""},
		{"authorize redirect mismatch", hreq{method: "GET", path: authz("redirect_uri", "https://evil.example/cb"), browser: true}, 400, ""},
		{"authorize redirect userinfo trick", hreq{method: "GET", path: authz("redirect_uri", "http://127.0.0.1:80@evil.example/callback"), browser: true}, 400, ""},
		{"authorize redirect repeated", hreq{method: "GET", path: authz("+redirect_uri", "https://evil.example/cb"), browser: true}, 400, ""},
		{"authorize query too long", hreq{method: "GET", path: authz("state", strings.Repeat("s", 9000)), browser: true}, 414, ""},
		{"authorize response_type token", hreq{method: "GET", path: authz("response_type", "token"), browser: true}, 302, "unsupported_response_type"},
		{"authorize no PKCE", hreq{method: "GET", path: authz("code_challenge", "<del>"), browser: true}, 302, "invalid_request"},
		{"authorize plain PKCE", hreq{method: "GET", path: authz("code_challenge_method", "plain"), browser: true}, 302, "invalid_request"},
		{"authorize missing PKCE method", hreq{method: "GET", path: authz("code_challenge_method", "<del>"), browser: true}, 302, "invalid_request"},
		{"authorize malformed challenge", hreq{method: "GET", path: authz("code_challenge", "short"), browser: true}, 302, "invalid_request"},
		{"authorize unknown scope", hreq{method: "GET", path: authz("scope", "mcp admin"), browser: true}, 302, "invalid_scope"},
		{"authorize foreign resource", hreq{method: "GET", path: authz("resource", "https://evil.example/mcp"), browser: true}, 302, "invalid_target"},
		{"authorize two resources", hreq{method: "GET", path: authz("resource", testResource, "+resource", testResource), browser: true}, 302, "invalid_target"},
		// Resource indicators are compared in canonical form, but nothing
		// that could name another server or path is canonicalized away.
		{"authorize resource fragment", hreq{method: "GET", path: authz("resource", testResource+"#x"), browser: true}, 302, "invalid_target"},
		{"authorize resource userinfo", hreq{method: "GET", path: authz("resource", "http://evil.example@127.0.0.1:9/mcp"), browser: true}, 302, "invalid_target"},
		{"authorize resource query", hreq{method: "GET", path: authz("resource", testResource+"?tenant=2"), browser: true}, 302, "invalid_target"},
		{"authorize resource other scheme", hreq{method: "GET", path: authz("resource", "https://127.0.0.1:9/mcp"), browser: true}, 302, "invalid_target"},
		{"authorize resource other port", hreq{method: "GET", path: authz("resource", "http://127.0.0.1/mcp"), browser: true}, 302, "invalid_target"},
		{"authorize resource encoded slash", hreq{method: "GET", path: authz("resource", "http://127.0.0.1:9/x%2F..%2Fmcp"), browser: true}, 302, "invalid_target"},
		{"authorize resource dot dot", hreq{method: "GET", path: authz("resource", "http://127.0.0.1:9/x/../mcp"), browser: true}, 302, "invalid_target"},
		{"authorize resource path case", hreq{method: "GET", path: authz("resource", "http://127.0.0.1:9/MCP"), browser: true}, 302, "invalid_target"},
		{"authorize resource sub-path", hreq{method: "GET", path: authz("resource", testResource+"/admin"), browser: true}, 302, "invalid_target"},
		{"authorize resource and empty", hreq{method: "GET", path: authz("resource", "", "+resource", "https://evil.example/mcp"), browser: true}, 302, "invalid_target"},
		{"authorize repeated state", hreq{method: "GET", path: authz("+state", "other"), browser: true}, 302, "invalid_request"},
		{"authorize POST", hreq{path: "/oauth/authorize", ctype: formCT, body: "x=1", browser: true}, 405, ""},

		// Token endpoint.
		{"token json body", hreq{path: "/oauth/token", ctype: "application/json", body: `{"grant_type":"authorization_code"}`}, 415, "invalid_request"},
		{"token no content type", hreq{path: "/oauth/token", body: tok()}, 415, "invalid_request"},
		{"token oversize", hreq{path: "/oauth/token", ctype: formCT, body: "grant_type=authorization_code&x=" + big}, 413, "invalid_request"},
		{"token GET", hreq{method: "GET", path: "/oauth/token"}, 405, "invalid_request"},
		{"token no grant", hreq{path: "/oauth/token", ctype: formCT, body: tokWithout("grant_type")}, 400, "invalid_request"},
		{"token password grant", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("grant_type", "password")}, 400, "unsupported_grant_type"},
		{"token client_credentials", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("grant_type", "client_credentials")}, 400, "unsupported_grant_type"},
		{"token unknown client", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("client_id", "nope")}, 401, "invalid_client"},
		{"token no client", hreq{path: "/oauth/token", ctype: formCT, body: tokWithout("client_id")}, 401, "invalid_client"},
		{"token public client sends secret", hreq{path: "/oauth/token", ctype: formCT, body: tok("client_secret", "x")}, 401, "invalid_client"},
		{"token confidential client sends no secret", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "client_id", f.postID, "code", f.code, "code_verifier", f.verifier)}, 401, "invalid_client"},
		{"token basic client posts a wrong secret", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "client_id", f.basicID, "client_secret", "pgcs_wrong", "code", f.code, "code_verifier", f.verifier)}, 401, "invalid_client"},
		{"token post client wrong secret in basic", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "code", f.code, "code_verifier", f.verifier), basic: [2]string{f.postID, "pgcs_wrong"}}, 401, "invalid_client"},
		{"token basic with empty secret", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "code", f.code, "code_verifier", f.verifier), basic: [2]string{f.postID, ""}}, 401, "invalid_client"},
		{"token public client sends basic", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "code", f.code, "code_verifier", f.verifier), basic: [2]string{f.publicID, "x"}}, 401, "invalid_client"},
		{"token basic and post of another client", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "client_id", f.postID, "client_secret", f.postSecret, "code", f.code), basic: [2]string{f.basicID, f.basicSecret}}, 401, "invalid_client"},
		{"token basic wrong secret", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "code", f.code, "code_verifier", f.verifier), basic: [2]string{f.basicID, "pgcs_wrong"}}, 401, "invalid_client"},
		{"token basic and post", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "client_secret", f.basicSecret, "code", f.code), basic: [2]string{f.basicID, f.basicSecret}}, 401, "invalid_client"},
		{"token code of another client", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "code", f.code, "code_verifier", f.verifier, "redirect_uri", testRedirect), basic: [2]string{f.basicID, f.basicSecret}}, 400, "invalid_grant"},
		{"token unknown code", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("code", "pgc_"+strings.Repeat("A", 43))}, 400, "invalid_grant"},
		{"token garbage code", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("code", "'; DROP TABLE tokens;--")}, 400, "invalid_grant"},
		{"token missing code", hreq{path: "/oauth/token", ctype: formCT, body: tokWithout("code")}, 400, "invalid_request"},
		{"token wrong verifier", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("code_verifier", oauth2.GenerateVerifier())}, 400, "invalid_grant"},
		{"token missing verifier", hreq{path: "/oauth/token", ctype: formCT, body: tokWithout("code_verifier")}, 400, "invalid_request"},
		{"token redirect mismatch", hreq{path: "/oauth/token", ctype: formCT, body: tokSet("redirect_uri", "http://127.0.0.1:1/callback")}, 400, "invalid_grant"},
		{"token missing redirect", hreq{path: "/oauth/token", ctype: formCT, body: tokWithout("redirect_uri")}, 400, "invalid_grant"},
		{"token resource mismatch", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", "https://evil.example/mcp")}, 400, "invalid_target"},
		{"token resource fragment", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", testResource+"#")}, 400, "invalid_target"},
		{"token resource userinfo", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", "http://u@127.0.0.1:9/mcp")}, 400, "invalid_target"},
		{"token resource other scheme", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", "https://127.0.0.1:9/mcp")}, 400, "invalid_target"},
		{"token resource encoded slash", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", "http://127.0.0.1:9/mcp%2F")}, 400, "invalid_target"},
		{"token resource and empty", hreq{path: "/oauth/token", ctype: formCT, body: tok("resource", "", "resource", testResource+"/x")}, 400, "invalid_target"},
		{"refresh resource fragment", hreq{path: "/oauth/token", ctype: formCT, body: refresh("resource", testResource+"#x")}, 400, "invalid_target"},
		{"refresh resource other scheme", hreq{path: "/oauth/token", ctype: formCT, body: refresh("resource", "HTTPS://127.0.0.1:9/mcp")}, 400, "invalid_target"},
		{"token repeated code", hreq{path: "/oauth/token", ctype: formCT, body: tok("code", f.code)}, 400, "invalid_request"},
		{"refresh unknown", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "refresh_token", "client_id", f.publicID, "refresh_token", "pgr_"+strings.Repeat("B", 43))}, 400, "invalid_grant"},
		{"refresh missing", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "refresh_token", "client_id", f.publicID)}, 400, "invalid_request"},
		{"refresh wider scope", hreq{path: "/oauth/token", ctype: formCT, body: refresh("scope", "mcp admin")}, 400, "invalid_scope"},
		{"refresh other resource", hreq{path: "/oauth/token", ctype: formCT, body: refresh("resource", "https://evil.example/mcp")}, 400, "invalid_target"},
		{"refresh by another client", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "refresh_token", "refresh_token", f.refresh), basic: [2]string{f.basicID, f.basicSecret}}, 400, "invalid_grant"},
		{"refresh with access token", hreq{path: "/oauth/token", ctype: formCT, body: form("grant_type", "refresh_token", "refresh_token", f.basicAccess), basic: [2]string{f.basicID, f.basicSecret}}, 400, "invalid_grant"},

		// Registration.
		{"register text/plain", hreq{path: "/oauth/register", ctype: "text/plain", body: `{"redirect_uris":["https://a.example/cb"]}`}, 400, "invalid_client_metadata"},
		{"register form", hreq{path: "/oauth/register", ctype: formCT, body: "redirect_uris=https://a.example/cb"}, 400, "invalid_client_metadata"},
		{"register not json", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":`}, 400, "invalid_client_metadata"},
		{"register array", hreq{path: "/oauth/register", ctype: "application/json", body: `["https://a.example/cb"]`}, 400, "invalid_client_metadata"},
		{"register null", hreq{path: "/oauth/register", ctype: "application/json", body: `null`}, 400, "invalid_client_metadata"},
		{"register no redirect", hreq{path: "/oauth/register", ctype: "application/json", body: `{"client_name":"x"}`}, 400, "invalid_redirect_uri"},
		{"register redirect wrong type", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":"https://a.example/cb"}`}, 400, "invalid_client_metadata"},
		{"register http redirect", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["http://a.example/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register fragment", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb#x"]}`}, 400, "invalid_redirect_uri"},
		{"register wildcard", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://*.example/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register javascript", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["javascript:alert(1)"]}`}, 400, "invalid_redirect_uri"},
		{"register unknown private scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["myapp://oauth/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register data scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["data://text/html,x"]}`}, 400, "invalid_redirect_uri"},
		{"register file scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["file:///etc/passwd"]}`}, 400, "invalid_redirect_uri"},
		{"register vbscript scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["vbscript://x/y"]}`}, 400, "invalid_redirect_uri"},
		{"register blob scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["blob://x/y"]}`}, 400, "invalid_redirect_uri"},
		{"register ftp scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["ftp://a.example/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register ws scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["ws://127.0.0.1/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register uppercase private scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["Cursor://anysphere.cursor-mcp/oauth/callback"]}`}, 400, "invalid_redirect_uri"},
		{"register opaque private scheme", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["com.example.app:cb"]}`}, 400, "invalid_redirect_uri"},
		{"register private scheme with fragment", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["cursor://anysphere.cursor-mcp/cb#x"]}`}, 400, "invalid_redirect_uri"},
		{"register userinfo", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["http://localhost:80@evil.example/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register one bad of two", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb","http://evil.example/cb"]}`}, 400, "invalid_redirect_uri"},
		{"register jwt auth", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`}, 400, "invalid_client_metadata"},
		{"register client_credentials only", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb"],"grant_types":["client_credentials"]}`}, 400, "invalid_client_metadata"},
		{"register implicit only", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}`}, 400, "invalid_client_metadata"},
		{"register name wrong type", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb"],"client_name":{"a":1}}`}, 400, "invalid_client_metadata"},
		{"register too many redirects", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/1"` + strings.Repeat(`,"https://a.example/x"`, 20) + `]}`}, 400, "invalid_redirect_uri"},
		{"register oversize", hreq{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["https://a.example/cb"],"x":"` + big + `"}`}, 413, "invalid_client_metadata"},
		{"register GET", hreq{method: "GET", path: "/oauth/register"}, 405, "invalid_request"},

		// Revocation: errors for bad requests, 200 and no change otherwise.
		{"revoke no token", hreq{path: "/oauth/revoke", ctype: formCT, body: form("client_id", f.publicID)}, 400, "invalid_request"},
		{"revoke no client", hreq{path: "/oauth/revoke", ctype: formCT, body: form("token", f.refresh)}, 401, "invalid_client"},
		{"revoke wrong secret", hreq{path: "/oauth/revoke", ctype: formCT, body: form("token", f.basicAccess), basic: [2]string{f.basicID, "pgcs_wrong"}}, 401, "invalid_client"},
		{"revoke json", hreq{path: "/oauth/revoke", ctype: "application/json", body: `{"token":"x"}`}, 415, "invalid_request"},
		{"revoke unknown token", hreq{path: "/oauth/revoke", ctype: formCT, body: form("client_id", f.publicID, "token", "pga_nope")}, 200, ""},
		{"revoke another client's token", hreq{path: "/oauth/revoke", ctype: formCT, body: form("client_id", f.publicID, "token", f.basicAccess)}, 200, ""},

		// Introspection.
		{"introspect no auth", hreq{path: "/oauth/introspect", ctype: formCT, body: form("token", f.basicAccess)}, 401, "invalid_client"},
		{"introspect public client", hreq{path: "/oauth/introspect", ctype: formCT, body: form("client_id", f.publicID, "token", f.refresh)}, 401, "invalid_client"},
		{"introspect wrong rs secret", hreq{path: "/oauth/introspect", ctype: formCT, body: form("token", f.basicAccess), basic: [2]string{rsID, "wrong-secret-0123456789"}}, 401, "invalid_client"},
		{"introspect no token", hreq{path: "/oauth/introspect", ctype: formCT, body: "", basic: [2]string{rsID, rsSecret}}, 400, "invalid_request"},

		// Browser forms.
		{"login without csrf", hreq{path: "/login", ctype: formCT, body: form("username", testUser, "password", testPassword)}, 403, ""},
		{"login cross-site", hreq{path: "/login", ctype: formCT, body: form("username", testUser, "password", testPassword), header: crossSite}, 403, ""},
		{"login oversize", hreq{path: "/login", ctype: formCT, body: form("username", testUser, "password", big)}, 413, ""},
		{"consent wrong csrf", hreq{path: "/consent", ctype: formCT, body: form("csrf", "forged", "decision", "approve", "response_type", "code", "client_id", f.basicID, "redirect_uri", testRedirect, "code_challenge", ch, "code_challenge_method", "S256"), browser: true}, 403, ""},
		{"consent cross-origin", hreq{path: "/consent", ctype: formCT, body: form("csrf", f.sessionCSRF, "decision", "approve", "response_type", "code", "client_id", f.basicID, "redirect_uri", testRedirect, "code_challenge", ch, "code_challenge_method", "S256"), browser: true, header: evilOrigin}, 403, ""},
		{"consent tampered redirect", hreq{path: "/consent", ctype: formCT, body: form("csrf", f.sessionCSRF, "decision", "approve", "response_type", "code", "client_id", f.basicID, "redirect_uri", "https://evil.example/cb", "code_challenge", ch, "code_challenge_method", "S256"), browser: true}, 400, ""},
		{"consent no decision", hreq{path: "/consent", ctype: formCT, body: form("csrf", f.sessionCSRF, "response_type", "code", "client_id", f.basicID, "redirect_uri", testRedirect, "code_challenge", ch, "code_challenge_method", "S256"), browser: true}, 400, ""},
		{"apps revoke wrong csrf", hreq{path: "/apps/revoke", ctype: formCT, body: form("csrf", "forged", "client_id", f.publicID), browser: true}, 403, ""},
		{"apps revoke cross-site", hreq{path: "/apps/revoke", ctype: formCT, body: form("csrf", f.sessionCSRF, "client_id", f.publicID), browser: true, header: crossSite}, 403, ""},
		{"logout wrong csrf", hreq{path: "/logout", ctype: formCT, body: form("csrf", "forged"), browser: true}, 403, ""},
		{"logout cross-site", hreq{path: "/logout", ctype: formCT, body: form("csrf", f.sessionCSRF), browser: true, header: crossSite}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.snapshot()
			resp, body := f.do(t, tt.req)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d; body: %.300s", resp.StatusCode, tt.status, body)
			}
			switch {
			case tt.status == http.StatusFound:
				loc, err := url.Parse(resp.Header.Get("Location"))
				if err != nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
					t.Fatalf("redirected to %q, want the client's redirect URI", resp.Header.Get("Location"))
				}
				q := loc.Query()
				diff(t, "redirect error", q.Get("error"), tt.err)
				if q.Get("iss") != f.issuer || q.Get("state") != "xyz" || q.Get("code") != "" {
					t.Errorf("error redirect query %v: want iss, state and no code", q)
				}
			case tt.err != "":
				diff(t, "OAuth error", oauthError(t, body), tt.err)
				if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q", cc)
				}
			default:
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("unexpected redirect to %q", loc)
				}
			}
			if tt.status == http.StatusUnauthorized && tt.req.basic[0] != "" && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 after Basic without WWW-Authenticate")
			}
			diff(t, "store", f.snapshot(), before)
		})
	}
}
