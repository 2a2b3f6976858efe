package oauthweb

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// securityHeaders fails the test unless h carries the page headers issue 8
// requires.
func securityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") ||
		strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src") {
		t.Errorf("%s: CSP %q: want default-src 'none' (no script at all) and frame-ancestors 'none'", what, csp)
	}
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
}

// TestSecurityCrossSiteFormPosts: every browser form endpoint refuses a
// cross-site POST with 403 — by Sec-Fetch-Site, and by an Origin that is
// not the issuer's for browsers that send no Fetch metadata — even when the
// request carries a valid session cookie and the right CSRF token, and
// nothing in the store changes. The same request from the same origin
// works, so the refusal is the cross-origin check.
func TestSecurityCrossSiteFormPosts(t *testing.T) {
	f := newFixture(t)
	e := f.env
	// A consent form for a client not yet approved.
	other := e.publicClient()
	conf := e.oauth2Config(other, "")
	resp, err := f.browser.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	consent := formFields(readBody(t, resp))
	if consent.Get("csrf") == "" {
		t.Fatal("no consent form")
	}
	consent.Set("decision", "approve")
	resp, err = f.browser.Get(e.url("/login"))
	if err != nil {
		t.Fatal(err)
	}
	login := formFields(readBody(t, resp))
	login.Set("username", testUser)
	login.Set("password", testPassword)

	forms := []struct {
		path string
		v    url.Values
	}{
		{"/login", login},
		{"/consent", consent},
		{"/logout", url.Values{"csrf": {f.sessionCSRF}}},
		{"/apps/revoke", url.Values{"csrf": {f.sessionCSRF}, "client_id": {f.publicID}}},
	}
	attacks := []struct {
		name   string
		header http.Header
	}{
		{"sec-fetch-site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"sec-fetch-site same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"origin mismatch", http.Header{"Origin": {"https://evil.example"}}},
		{"origin other port", http.Header{"Origin": {"http://127.0.0.1:1"}}},
	}
	before := e.snapshot()
	for _, fm := range forms {
		for _, a := range attacks {
			t.Run(fm.path+" "+a.name, func(t *testing.T) {
				resp, body := f.do(t, hreq{path: fm.path, ctype: formCT, body: fm.v.Encode(), header: a.header, browser: true})
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("status %d, want 403", resp.StatusCode)
				}
				if resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 {
					t.Errorf("refused post redirected to %q or set cookies %v", resp.Header.Get("Location"), resp.Cookies())
				}
				if !strings.Contains(body, "another site") {
					t.Errorf("the refusal page does not say why")
				}
				securityHeaders(t, fm.path+" refusal", resp.Header)
			})
		}
	}
	diff(t, "store after cross-site posts", e.snapshot(), before)

	// Control: the same logout from our own origin succeeds.
	resp, _ = f.do(t, hreq{path: "/logout", ctype: formCT, body: url.Values{"csrf": {f.sessionCSRF}}.Encode(),
		header: http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {e.issuer}}, browser: true})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("same-origin logout: %d, want 200", resp.StatusCode)
	}
}

// TestSecurityHeadersEveryPage: every HTML response — each page, each
// error page, the refusals (403, 413) and the pages a POST renders — carries the CSP without
// script and with frame-ancestors 'none', nosniff, no-referrer and
// no-store, and has no inline script or style.
func TestSecurityHeadersEveryPage(t *testing.T) {
	f := newFixture(t)
	e := f.env
	big := strings.Repeat("x", maxFormBytes+1)
	tests := []struct {
		name string
		r    hreq
	}{
		{"login page", hreq{method: "GET", path: "/login"}},
		{"login page with return_to", hreq{method: "GET", path: "/login?return_to=%2Foauth%2Fauthorize%3Fclient_id%3Dx"}},
		{"logout page signed in", hreq{method: "GET", path: "/logout", browser: true}},
		{"logout page signed out", hreq{method: "GET", path: "/logout"}},
		{"apps page", hreq{method: "GET", path: "/apps", browser: true}},
		{"authorize consent", hreq{method: "GET", path: "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {e.publicClient()}, "redirect_uri": {testRedirect}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}.Encode(), browser: true}},
		{"authorize unknown client", hreq{method: "GET", path: "/oauth/authorize?client_id=nope&redirect_uri=" + url.QueryEscape(testRedirect)}},
		{"authorize bad redirect", hreq{method: "GET", path: "/oauth/authorize?client_id=" + f.publicID + "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"}},
		{"authorize alias", hreq{method: "GET", path: "/authorize?client_id=nope"}},
		{"login failure", hreq{path: "/login", ctype: formCT, body: form("username", testUser, "password", "wrong", "csrf", "x")}},
		{"login oversize", hreq{path: "/login", ctype: formCT, body: "password=" + big}},
		{"consent without csrf", hreq{path: "/consent", ctype: formCT, body: form("decision", "approve"), browser: true}},
		{"consent oversize", hreq{path: "/consent", ctype: formCT, body: "x=" + big, browser: true}},
		{"logout wrong csrf", hreq{path: "/logout", ctype: formCT, body: form("csrf", "nope"), browser: true}},
		{"apps revoke wrong csrf", hreq{path: "/apps/revoke", ctype: formCT, body: form("csrf", "nope", "client_id", f.publicID), browser: true}},
		{"cross-site", hreq{path: "/login", ctype: formCT, body: form("a", "b"), header: http.Header{"Sec-Fetch-Site": {"cross-site"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.r)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") && resp.StatusCode < 300 {
				t.Errorf("content type %q", ct)
			}
			securityHeaders(t, tt.name, resp.Header)
			if lb := strings.ToLower(body); strings.Contains(lb, "<script") || strings.Contains(lb, "style=") || strings.Contains(lb, "javascript:") {
				t.Errorf("inline script or style in the page")
			}
		})
	}
}

// TestSecurityOversizeBodies: every POST endpoint, on every path it is
// mounted at, answers 413 to a body over its limit, in its own format
// (OAuth JSON for the API, a page for forms), without reading it all and
// without changing the store.
func TestSecurityOversizeBodies(t *testing.T) {
	f := newFixture(t)
	e := f.env
	huge := strings.Repeat("a", 1<<20)
	tests := []struct {
		path, ctype, body string
		browser, json     bool
	}{
		{"/oauth/token", formCT, "grant_type=authorization_code&code=" + huge, false, true},
		{"/token", formCT, "grant_type=authorization_code&code=" + huge, false, true},
		{"/oauth/register", "application/json", `{"redirect_uris":["` + huge + `"]}`, false, true},
		{"/register", "application/json", `{"redirect_uris":["` + huge + `"]}`, false, true},
		{"/oauth/revoke", formCT, "token=" + huge, false, true},
		{"/oauth/introspect", formCT, "token=" + huge, false, true},
		{"/login", formCT, "username=alice&password=" + huge, false, false},
		{"/consent", formCT, "decision=approve&csrf=" + huge, true, false},
		{"/logout", formCT, "csrf=" + huge, true, false},
		{"/apps/revoke", formCT, "client_id=" + huge, true, false},
	}
	before := e.snapshot()
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := hreq{path: tt.path, ctype: tt.ctype, body: tt.body, browser: tt.browser}
			if tt.path == "/oauth/introspect" {
				r.basic = [2]string{"mcp-resource-server", "rs-secret-0123456789abcdef"}
			}
			resp, body := f.do(t, r)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", resp.StatusCode)
			}
			if tt.json && oauthError(t, body) == "" {
				t.Errorf("API endpoint answered without an OAuth error: %.100s", body)
			}
			if !tt.json && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("form endpoint answered %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	diff(t, "store after oversize bodies", e.snapshot(), before)
}

// TestSecurityStrictContentTypes: the token, revocation and introspection
// endpoints take only application/x-www-form-urlencoded and registration
// only application/json; anything else is refused before the body is
// used: 415, and for registration 400 invalid_client_metadata (RFC 7591
// §3.2.2 has every registration error a 400).
func TestSecurityStrictContentTypes(t *testing.T) {
	f := newFixture(t)
	e := f.env
	rs := [2]string{"mcp-resource-server", "rs-secret-0123456789abcdef"}
	tokenBody := form("grant_type", "refresh_token", "refresh_token", f.refresh, "client_id", f.publicID)
	tests := []struct {
		name, path, ctype, body string
		basic                   [2]string
	}{
		{"token json", "/oauth/token", "application/json", `{"grant_type":"refresh_token"}`, [2]string{}},
		{"token text", "/oauth/token", "text/plain", tokenBody, [2]string{}},
		{"token multipart", "/oauth/token", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nrefresh_token\r\n--x--\r\n", [2]string{}},
		{"token none", "/oauth/token", "", tokenBody, [2]string{}},
		{"token alias json", "/token", "application/json", `{}`, [2]string{}},
		{"register form", "/oauth/register", formCT, "redirect_uris=https://a.example/cb", [2]string{}},
		{"register text", "/oauth/register", "text/plain", `{"redirect_uris":["https://a.example/cb"]}`, [2]string{}},
		{"register none", "/oauth/register", "", `{"redirect_uris":["https://a.example/cb"]}`, [2]string{}},
		{"register alias form", "/register", formCT, "a=b", [2]string{}},
		{"revoke json", "/oauth/revoke", "application/json", `{"token":"x"}`, [2]string{}},
		{"revoke none", "/oauth/revoke", "", form("token", f.refresh, "client_id", f.publicID), [2]string{}},
		{"introspect json", "/oauth/introspect", "application/json", `{"token":"x"}`, rs},
		{"introspect text", "/oauth/introspect", "text/plain", form("token", f.basicAccess), rs},
	}
	before := e.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, hreq{path: tt.path, ctype: tt.ctype, body: tt.body, basic: tt.basic})
			want, code := http.StatusUnsupportedMediaType, oauthError(t, body)
			if strings.Contains(tt.path, "register") {
				want = http.StatusBadRequest
				if code != "invalid_client_metadata" {
					t.Errorf("registration error %q, want invalid_client_metadata", code)
				}
			}
			if resp.StatusCode != want || code == "" {
				t.Errorf("status %d body %.120s, want %d with an OAuth error", resp.StatusCode, body, want)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("error without Cache-Control: no-store")
			}
		})
	}
	diff(t, "store after wrong content types", e.snapshot(), before)
	// The refresh token still works: none of those requests used it.
	resp, _ := f.do(t, hreq{path: "/oauth/token", ctype: formCT + "; charset=utf-8", body: tokenBody})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("form with a charset parameter: %d, want 200", resp.StatusCode)
	}
}

// TestSecurityHostHeaderIgnored: a hostile Host header (and
// X-Forwarded-Host/Proto) never reaches a URL passgate builds: metadata,
// the login redirect, form actions, registration responses, error
// responses and WWW-Authenticate challenges all use the configured issuer.
func TestSecurityHostHeaderIgnored(t *testing.T) {
	f := newFixture(t)
	e := f.env
	const evil = "evil.example"
	hostile := http.Header{"X-Forwarded-Host": {evil}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"host=" + evil + ";proto=https"}}
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	authz := "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {f.publicID}, "redirect_uri": {testRedirect}, "code_challenge": {ch}, "code_challenge_method": {"S256"}, "state": {"s"}}.Encode()
	tests := []hreq{
		{method: "GET", path: "/.well-known/oauth-authorization-server"},
		{method: "GET", path: "/.well-known/oauth-protected-resource/mcp"},
		{method: "GET", path: "/.well-known/oauth-protected-resource"},
		{method: "GET", path: authz},                // redirect to the login page
		{method: "GET", path: authz, browser: true}, // redirect to the client with iss
		{method: "GET", path: "/login"},
		{method: "GET", path: "/logout", browser: true},
		{method: "GET", path: "/apps", browser: true},
		{method: "GET", path: "/apps"}, // redirect to login
		{path: "/login", ctype: formCT, body: form("username", "x", "password", "y")},
		{path: "/oauth/register", ctype: "application/json", body: `{"redirect_uris":["` + testRedirect + `"],"token_endpoint_auth_method":"none"}`},
		{path: "/oauth/token", ctype: formCT, body: form("grant_type", "authorization_code", "client_id", f.basicID, "code", "x")},
		{path: "/oauth/introspect", ctype: formCT, body: form("token", "x")},
	}
	for _, r := range tests {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			req, err := http.NewRequest(r.method, e.url(r.path), strings.NewReader(r.body))
			if r.method == "" {
				req, err = http.NewRequest("POST", e.url(r.path), strings.NewReader(r.body))
			}
			if err != nil {
				t.Fatal(err)
			}
			req.Host = evil
			for k, v := range hostile {
				req.Header[k] = v
			}
			if r.ctype != "" {
				req.Header.Set("Content-Type", r.ctype)
			}
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if r.browser {
				c.Jar = f.browser.Jar
				// The jar keys cookies by the URL's host, not req.Host.
				u, _ := url.Parse(e.issuer)
				for _, ck := range f.browser.Jar.Cookies(u) {
					req.AddCookie(ck)
				}
				c.Jar = nil
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), evil) {
				t.Errorf("body mentions the Host header: %.300s", b)
			}
			for k, vs := range resp.Header {
				for _, v := range vs {
					if strings.Contains(v, evil) {
						t.Errorf("header %s: %q mentions the Host header", k, v)
					}
				}
			}
			if loc := resp.Header.Get("Location"); loc != "" && !strings.HasPrefix(loc, e.issuer) && !strings.HasPrefix(loc, testRedirect) && !strings.HasPrefix(loc, "/") {
				t.Errorf("Location %q is neither the issuer nor the client", loc)
			}
		})
	}
}
