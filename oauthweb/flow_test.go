package oauthweb

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// TestFullFlow drives the whole MCP authorization flow with
// golang.org/x/oauth2: register → authorize → login → consent → code →
// token → refresh, then introspection and revocation.
func TestFullFlow(t *testing.T) {
	for _, path := range []string{"", "/auth"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			fullFlow(t, newEnv(t, func(c *Config) { c.Issuer += path }))
		})
	}
}

func fullFlow(t *testing.T, e *env) {
	ctx := context.Background()
	clientID := e.publicClient()
	conf := e.oauth2Config(clientID, "")
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", testResource))

	b := e.browser()
	// Not logged in: authorize sends the browser to the login page.
	resp, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `autocomplete="current-password"`) {
		t.Fatalf("expected the login page, got %d", resp.StatusCode)
	}
	if !strings.Contains(body, `for="username"`) || !strings.Contains(body, `aria-live`) {
		t.Error("login page lacks labels or an aria-live region")
	}
	f := formFields(body)
	f.Set("username", testUser)
	f.Set("password", testPassword)
	resp = postForm(t, noFollow(b), e.url("/login"), f)
	readBody(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, e.url("/oauth/authorize?")) {
		t.Fatalf("login redirected to %q, want our authorize endpoint", loc)
	}
	// The consent page names the client and the redirect host.
	resp, err = b.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body = readBody(t, resp)
	if !strings.Contains(body, "Test Client") || !strings.Contains(body, `<strong class="redirect-host">127.0.0.1</strong>`) {
		t.Fatalf("consent page lacks client name or redirect host:\n%s", body)
	}
	cb := e.authorize(b, authURL)
	q := cb.Query()
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != testRedirect {
		t.Fatalf("redirected to %q", got)
	}
	if q.Get("state") != "st4te" || q.Get("iss") != e.issuer || q.Get("code") == "" {
		t.Fatalf("callback query %v lacks state, iss or code", q)
	}

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	if !token.HasPrefix(tok.AccessToken, token.PrefixAccess) || !token.HasPrefix(tok.RefreshToken, token.PrefixRefresh) {
		t.Fatalf("token values lack their prefixes")
	}
	if tok.TokenType != "Bearer" || tok.Extra("scope") != "mcp" || tok.ExpiresIn != 3600 {
		t.Errorf("token response: type %q scope %v expires_in %d", tok.TokenType, tok.Extra("scope"), tok.ExpiresIn)
	}
	at, err := e.st.GetToken(ctx, token.Hash(tok.AccessToken), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if at.Resource != testResource || at.Username != testUser || at.ClientID != clientID {
		t.Errorf("access token bound to %q/%q/%q", at.Resource, at.Username, at.ClientID)
	}

	// The code is single use: a replay fails and revokes what it issued.
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a replayed code was accepted")
	}
	at, _ = e.st.GetToken(ctx, token.Hash(tok.AccessToken), e.clock.Now())
	if at.RevokedAt.IsZero() {
		t.Fatal("replaying the code did not revoke its tokens")
	}

	// A second authorization is approved silently (consent remembered).
	verifier = oauth2.GenerateVerifier()
	cb = e.authorize(b, conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier)))
	if cb.Query().Get("code") == "" {
		t.Fatalf("second authorization did not return a code: %v", cb)
	}
	tok, err = conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)

	// Refresh rotates both tokens.
	old := *tok
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	e.secret(fresh.AccessToken, fresh.RefreshToken)
	if fresh.RefreshToken == old.RefreshToken || fresh.AccessToken == old.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	rt, _ := e.st.GetToken(ctx, token.Hash(old.RefreshToken), e.clock.Now())
	if rt.RotatedAt.IsZero() {
		t.Fatal("old refresh token not marked rotated")
	}

	// Introspection needs a credential; with one it sees the new token.
	e2 := introspect(t, e, fresh.AccessToken)
	if e2["active"] != true || e2["aud"] != testResource || e2["username"] != testUser || e2["client_id"] != clientID {
		t.Errorf("introspection: %v", e2)
	}
	// Revocation of the new refresh token kills the family.
	resp = postForm(t, http.DefaultClient, e.url("/oauth/revoke"), url.Values{"client_id": {clientID}, "token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if got := introspect(t, e, fresh.AccessToken); got["active"] != false {
		t.Errorf("access token still active after its family was revoked: %v", got)
	}

	for _, ev := range []string{store.EventLoginSuccess, store.EventAuthorizeRequest, store.EventConsentGranted, store.EventTokenExchange, store.EventTokenRefresh, store.EventTokenRevoked, store.EventClientRegistration} {
		if len(e.auditEvents(ev)) == 0 {
			t.Errorf("no %s audit event", ev)
		}
	}
	if evs := e.auditEvents(store.EventLoginSuccess); evs[0].IP != "127.0.0.1" || evs[0].UserAgent == "" {
		t.Errorf("login audit lacks ip or user agent: %+v", evs[0])
	}
}

const rsID, rsSecret = "mcp-resource-server", "rs-secret-0123456789abcdef"

func introspect(t *testing.T, e *env, tok string) map[string]any {
	t.Helper()
	e.secret(rsSecret)
	resp, body := e.send(t, hreq{path: "/oauth/introspect", ctype: formCT, body: form("token", tok), basic: [2]string{rsID, rsSecret}}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %s", resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
