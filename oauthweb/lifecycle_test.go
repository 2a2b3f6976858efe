package oauthweb

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// grant runs the flow for a new public client and returns its config and
// token.
func (e *env) grant(scope ...string) (*oauth2.Config, *oauth2.Token) {
	e.t.Helper()
	conf := e.oauth2Config(e.publicClient(), "")
	if len(scope) > 0 {
		conf.Scopes = scope
	}
	b := e.browser()
	e.login(b)
	return conf, e.codeFlow(b, conf)
}

// refreshRaw posts a refresh grant and returns status and body.
func (e *env) refreshRaw(clientID, rt string, extra ...string) (int, string) {
	e.t.Helper()
	v := url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {rt}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	resp, err := http.PostForm(e.url("/oauth/token"), v)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, readBody(e.t, resp)
}

func TestRefreshReuseDetection(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	conf, tok := e.grant()
	status, first := e.refreshRaw(conf.ClientID, tok.RefreshToken)
	if status != 200 {
		t.Fatalf("refresh: %d %s", status, first)
	}
	var r1 tokenResponse
	_ = json.Unmarshal([]byte(first), &r1)
	e.secret(r1.AccessToken, r1.RefreshToken)

	// Within the grace window the same request gets the same answer.
	e.clock.Advance(2 * time.Second)
	status, again := e.refreshRaw(conf.ClientID, tok.RefreshToken)
	if status != 200 || again != first {
		t.Fatalf("replay within grace: %d, same answer %v", status, again == first)
	}
	// The stored grace response is sealed: the new tokens are not in it
	// in clear.
	old, _ := e.st.GetToken(ctx, token.Hash(tok.RefreshToken), e.clock.Now())
	if len(old.GraceResponse) == 0 || strings.Contains(string(old.GraceResponse), r1.RefreshToken) || strings.Contains(string(old.GraceResponse), "access_token") {
		t.Fatal("grace response missing or stored in clear")
	}

	// After the grace window the old token is reuse: the family dies.
	e.clock.Advance(10 * time.Second)
	status, body := e.refreshRaw(conf.ClientID, tok.RefreshToken)
	if status != 400 || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("reuse after grace: %d %s", status, body)
	}
	for _, s := range []string{tok.AccessToken, r1.AccessToken, r1.RefreshToken} {
		tk, err := e.st.GetToken(ctx, token.Hash(s), e.clock.Now())
		if err != nil || tk.RevokedAt.IsZero() {
			t.Errorf("token of the family not revoked (err %v)", err)
		}
	}
	if status, body := e.refreshRaw(conf.ClientID, r1.RefreshToken); status != 400 || oauthError(t, body) != "invalid_grant" {
		t.Errorf("descendant refresh token still works: %d %s", status, body)
	}
	if got := introspect(t, e, r1.AccessToken); got["active"] != false {
		t.Errorf("descendant access token still active: %v", got)
	}
	if evs := e.auditEvents(store.EventRefreshReuseDetected); len(evs) != 1 || evs[0].ClientID != conf.ClientID || evs[0].Username != testUser {
		t.Errorf("refresh_reuse_detected audit: %+v", evs)
	}
}

func TestRefreshScopeAndLifetime(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Scopes = []string{"mcp", "read"}
		c.RefreshIdleTTL = time.Hour
		c.RefreshTokenTTL = 90 * time.Minute
	})
	ctx := context.Background()
	conf, tok := e.grant("mcp", "read", "offline_access")
	if tok.Extra("scope") != "mcp read" {
		t.Fatalf("granted scope %v, want offline_access dropped", tok.Extra("scope"))
	}
	// Narrower is fine and applies to the access token only.
	status, body := e.refreshRaw(conf.ClientID, tok.RefreshToken, "scope", "read")
	if status != 200 {
		t.Fatalf("narrower refresh: %d %s", status, body)
	}
	var r tokenResponse
	_ = json.Unmarshal([]byte(body), &r)
	e.secret(r.AccessToken, r.RefreshToken)
	if r.Scope != "read" {
		t.Errorf("scope = %q, want read", r.Scope)
	}
	rt, _ := e.st.GetToken(ctx, token.Hash(r.RefreshToken), e.clock.Now())
	if rt.Scope != "mcp read" || rt.Resource != testResource {
		t.Errorf("new refresh token scope %q resource %q", rt.Scope, rt.Resource)
	}
	// Wider than the grant: invalid_scope, nothing rotated.
	if status, body := e.refreshRaw(conf.ClientID, r.RefreshToken, "scope", "mcp read write"); status != 400 || oauthError(t, body) != "invalid_scope" {
		t.Errorf("wider refresh: %d %s", status, body)
	}
	// Idle lifetime: unused for longer than RefreshIdleTTL.
	e.clock.Advance(50 * time.Minute)
	status, body = e.refreshRaw(conf.ClientID, r.RefreshToken)
	if status != 200 {
		t.Fatalf("refresh within idle TTL: %d %s", status, body)
	}
	_ = json.Unmarshal([]byte(body), &r)
	e.secret(r.AccessToken, r.RefreshToken)
	// Absolute lifetime: the new token expires with the family, 90
	// minutes after the code grant, however recently it was used.
	rt, _ = e.st.GetToken(ctx, token.Hash(r.RefreshToken), e.clock.Now())
	if want := rt.FamilyExpiresAt; !rt.ExpiresAt.Equal(want) {
		t.Errorf("refresh token expires %v, want capped at family end %v", rt.ExpiresAt, want)
	}
	e.clock.Advance(41 * time.Minute)
	if status, body := e.refreshRaw(conf.ClientID, r.RefreshToken); status != 400 || oauthError(t, body) != "invalid_grant" {
		t.Errorf("refresh after absolute lifetime: %d %s", status, body)
	}
}

func TestRefreshIdleExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RefreshIdleTTL = time.Hour })
	conf, tok := e.grant()
	e.clock.Advance(61 * time.Minute)
	if status, body := e.refreshRaw(conf.ClientID, tok.RefreshToken); status != 400 || oauthError(t, body) != "invalid_grant" {
		t.Errorf("idle refresh token: %d %s", status, body)
	}
}

// TestConcurrentRefresh: of concurrent refreshes with one token, exactly
// one rotates; with a grace window the others get that same answer,
// without one they fail.
func TestConcurrentRefresh(t *testing.T) {
	for _, grace := range []time.Duration{5 * time.Second, -1} {
		e := newEnv(t, func(c *Config) { c.RefreshGrace = grace })
		conf, tok := e.grant()
		const n = 8
		var wg sync.WaitGroup
		bodies := make([]string, n)
		statuses := make([]int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i], bodies[i] = e.refreshRaw(conf.ClientID, tok.RefreshToken)
			}()
		}
		wg.Wait()
		distinct := map[string]bool{}
		ok := 0
		for i := range n {
			if statuses[i] == 200 {
				ok++
				distinct[bodies[i]] = true
				var r tokenResponse
				_ = json.Unmarshal([]byte(bodies[i]), &r)
				e.secret(r.AccessToken, r.RefreshToken)
			}
		}
		if len(distinct) != 1 {
			t.Errorf("grace %v: %d distinct successful answers, want 1", grace, len(distinct))
		}
		if grace > 0 && ok != n {
			t.Errorf("grace %v: %d of %d succeeded, want all with the same answer", grace, ok, n)
		}
		if grace < 0 && ok != 1 {
			t.Errorf("no grace: %d succeeded, want exactly 1", ok)
		}
	}
}

func TestCodeExpiry(t *testing.T) {
	e := newEnv(t)
	conf := e.oauth2Config(e.publicClient(), "")
	b := e.browser()
	e.login(b)
	v := oauth2.GenerateVerifier()
	cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
	e.clock.Advance(10*time.Minute + time.Second)
	if _, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(v)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("expired code: %v, want invalid_grant", err)
	}
}

// TestConfidentialClients: client_secret_basic with form-urlencoded
// credentials (RFC 6749 §2.3.1; raw ones are TestBasicSecretDecodedOnce's),
// and client_secret_post; a seed-style static client with exact redirect
// URIs.
func TestConfidentialClients(t *testing.T) {
	e := newEnv(t)
	const id, secret = "mcp+a8ff0614/d0153f07", "cql+JlRh/OpGE3n%5ZOe"
	e.staticClient(id, "Seed client", secret, testRedirect, "https://claude.ai/api/mcp/auth_callback")
	b := e.browser()
	e.login(b)
	{
		conf := e.oauth2Config(id, secret)
		v := oauth2.GenerateVerifier()
		cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
		resp, body := e.send(t, hreq{path: "/oauth/token", ctype: formCT, basic: [2]string{url.QueryEscape(id), url.QueryEscape(secret)},
			body: form("grant_type", "authorization_code", "code", cb.Query().Get("code"), "code_verifier", v, "redirect_uri", testRedirect)}, nil)
		if resp.StatusCode != 200 {
			t.Errorf("basic: %d %s", resp.StatusCode, body)
		}
		var r tokenResponse
		_ = json.Unmarshal([]byte(body), &r)
		e.secret(r.AccessToken, r.RefreshToken)
	}
	// The seed's prefix bypass does not match the exact URIs.
	resp, _ := noFollow(b).Get(e.url("/oauth/authorize?" + url.Values{"client_id": {id}, "response_type": {"code"}, "redirect_uri": {"https://claude.ai/api/mcp/auth_callback/../../evil"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}.Encode()))
	readBody(t, resp)
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("prefix-extended redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// client_secret_post through x/oauth2's AuthStyleInParams.
	reg := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "client_secret_post"})
	conf := e.oauth2Config(reg["client_id"].(string), reg["client_secret"].(string))
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	tok := e.codeFlow(b, conf)
	// A confidential client may introspect its own token.
	form := url.Values{"token": {tok.AccessToken}, "client_id": {conf.ClientID}, "client_secret": {conf.ClientSecret}}
	resp, err := http.PostForm(e.url("/oauth/introspect"), form)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `"active":true`) {
		t.Errorf("own-token introspection: %s", body)
	}
}
