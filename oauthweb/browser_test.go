package oauthweb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

func TestPageHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.login(b)
	for _, path := range []string{"/login", "/logout", "/apps", "/oauth/authorize?client_id=nope"} {
		resp, err := b.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS header on a cookie page", path)
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
			t.Errorf("%s: inline script or style", path)
		}
	}
	// The stylesheet is served from the binary.
	resp, err := http.Get(e.url("/static/passgate.css"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "prefers-color-scheme: dark") {
		t.Errorf("stylesheet: %d", resp.StatusCode)
	}
}

func TestSecureCookies(t *testing.T) {
	e := newEnv(t)
	s := e.server(func(c *Config) { c.Issuer = "https://auth.example.com" })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://auth.example.com/login", nil))
	ck := rec.Result().Cookies()
	if len(ck) != 1 || !strings.HasPrefix(ck[0].Name, "__Host-") || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode || ck[0].Path != "/" || ck[0].Domain != "" {
		t.Fatalf("cookie %+v: want __Host-, Secure, HttpOnly, SameSite=Lax, Path=/", ck)
	}
	// Over http on loopback: no Secure, no prefix, still HttpOnly and Lax.
	resp, err := http.Get(e.url("/login"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	ck = resp.Cookies()
	if len(ck) != 1 || ck[0].Secure || strings.HasPrefix(ck[0].Name, "__Host-") || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("http cookie %+v", ck)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LockoutThreshold = 3 })
	ctx := context.Background()
	attempt := func(b *http.Client, user, pass, returnTo string) *http.Response {
		resp, err := b.Get(e.url("/login?" + url.Values{"return_to": {returnTo}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		f := formFields(readBody(t, resp))
		f.Set("username", user)
		f.Set("password", pass)
		resp = postForm(t, noFollow(b), e.url("/login"), f)
		return resp
	}
	// Wrong password and unknown user get the same answer.
	b := e.browser()
	r1 := attempt(b, testUser, "wrong password", "")
	body1 := readBody(t, r1)
	r2 := attempt(b, "mallory", "wrong password", "")
	body2 := readBody(t, r2)
	if r1.StatusCode != r2.StatusCode || r1.StatusCode != http.StatusUnauthorized {
		t.Errorf("statuses %d, %d", r1.StatusCode, r2.StatusCode)
	}
	strip := func(s string) string { return formCSRF.ReplaceAllString(s, "") }
	if strip(body1) != strip(body2) {
		t.Error("unknown user and wrong password pages differ")
	}
	if evs := e.auditEvents(store.EventLoginFailure); len(evs) != 2 || evs[0].Username != "mallory" || evs[0].Error == "" {
		t.Errorf("login_failure audit: %+v", evs)
	}

	// Session rotation: a pre-existing session cookie is replaced and its
	// session deleted.
	e.login(b)
	oldCookie := sessionCookie(t, e, b)
	e.login(b)
	newCookie := sessionCookie(t, e, b)
	if oldCookie == newCookie {
		t.Fatal("session ID not rotated at login")
	}
	if _, err := e.st.GetSession(ctx, token.Hash(oldCookie), e.clock.Now()); err == nil {
		t.Error("old session survives a new login")
	}
	e.secret(oldCookie, newCookie)

	// Open redirect: an outside return URL becomes the apps page.
	for _, rt := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "/oauth/authorize/../../evil", "javascript:alert(1)"} {
		resp := attempt(e.browser(), testUser, testPassword, rt)
		readBody(t, resp)
		if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != e.url("/apps") {
			t.Errorf("return_to %q: %d to %q", rt, resp.StatusCode, loc)
		}
	}
	good := "/oauth/authorize?client_id=x&state=y"
	resp := attempt(e.browser(), testUser, testPassword, good)
	readBody(t, resp)
	if loc := resp.Header.Get("Location"); loc != e.url(good) {
		t.Errorf("return_to authorize: %q", loc)
	}

	// Lockout: three failures lock the account; even the right password
	// then fails with the same page.
	for range 3 {
		readBody(t, attempt(e.browser(), testUser, "nope", ""))
	}
	resp = attempt(e.browser(), testUser, testPassword, "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Sign-in failed") {
		t.Errorf("locked account: %d", resp.StatusCode)
	}
	if len(e.auditEvents(store.EventAccountLocked)) != 1 {
		t.Error("no account_locked audit event")
	}
	e.clock.Advance(16 * time.Minute)
	resp = attempt(e.browser(), testUser, testPassword, "")
	readBody(t, resp)
	if resp.StatusCode != 303 {
		t.Errorf("after the lock expired: %d", resp.StatusCode)
	}
}

var formCSRF = mustRE(`name="csrf" value="[^"]*"`)

func sessionCookie(t *testing.T, e *env, b *http.Client) string {
	t.Helper()
	u, _ := url.Parse(e.issuer)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "passgate_session" {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func TestConsentDenyLogoutAndApps(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	clientID := e.publicClient()
	conf := e.oauth2Config(clientID, "")
	b := e.browser()
	e.login(b)
	resp, err := b.Get(conf.AuthCodeURL("deny-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	f := formFields(readBody(t, resp))
	f.Set("decision", "deny")
	resp = postForm(t, b, e.url("/consent"), f)
	readBody(t, resp)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "deny-state" || loc.Query().Get("iss") != e.issuer {
		t.Fatalf("deny: %d %v", resp.StatusCode, loc)
	}
	if _, err := e.st.GetConsent(ctx, testUser, clientID, testResource); err == nil {
		t.Error("denied consent was stored")
	}
	if len(e.auditEvents(store.EventConsentDenied)) != 1 {
		t.Error("no consent_denied audit event")
	}

	// Approve, then revoke from the apps page.
	tok := e.codeFlow(b, conf)
	resp, err = b.Get(e.url("/apps"))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if !strings.Contains(body, "Test Client") || !strings.Contains(body, "last used") || !strings.Contains(body, testResource) {
		t.Fatalf("apps page lacks the client:\n%s", body)
	}
	f = formFields(body)
	resp = postForm(t, noFollow(b), e.url("/apps/revoke"), f)
	readBody(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("apps revoke: %d", resp.StatusCode)
	}
	if _, err := e.st.GetConsent(ctx, testUser, clientID, testResource); err == nil {
		t.Error("consent survives revocation")
	}
	if at, _ := e.st.GetToken(ctx, token.Hash(tok.AccessToken), e.clock.Now()); at.RevokedAt.IsZero() {
		t.Error("token survives app revocation")
	}

	// Logout ends the session.
	cookie := sessionCookie(t, e, b)
	e.secret(cookie)
	resp, _ = b.Get(e.url("/logout"))
	f = formFields(readBody(t, resp))
	resp = postForm(t, b, e.url("/logout"), f)
	if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "signed out") {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if _, err := e.st.GetSession(ctx, token.Hash(cookie), e.clock.Now()); err == nil {
		t.Error("session survives logout")
	}
	if len(e.auditEvents(store.EventLogout)) != 1 {
		t.Error("no logout audit event")
	}
	// The apps page now asks for a login.
	resp, _ = noFollow(b).Get(e.url("/apps"))
	readBody(t, resp)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.url("/login?")) {
		t.Errorf("apps after logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestTemplateOverride(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	withDir := func(c *Config) { c.TemplateDir = dir }
	if err := os.WriteFile(filepath.Join(dir, "login.html"), []byte(`{{define "content"}}<h1>Custom login</h1>{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.server(withDir).Handler().ServeHTTP(rec, httptest.NewRequest("GET", e.url("/login"), nil))
	if !strings.Contains(rec.Body.String(), "Custom login") {
		t.Error("override not used")
	}
	if err := os.WriteFile(filepath.Join(dir, "consent.html"), []byte(`{{define "content"}}{{.Nope`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(e.config(withDir)); err == nil || !strings.Contains(err.Error(), "consent.html") {
		t.Errorf("broken override: %v, want an error naming consent.html", err)
	}
}

func TestPrefillSingleUser(t *testing.T) {
	for _, prefill := range []bool{false, true} {
		e := newEnv(t, func(c *Config) { c.PrefillSingleUser = prefill })
		resp, err := http.Get(e.url("/login"))
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if got := strings.Contains(body, `value="`+testUser+`"`); got != prefill {
			t.Errorf("prefill %v: username shown %v", prefill, got)
		}
	}
}
