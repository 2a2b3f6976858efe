package oauthweb

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const stepUpPolicy = `
resources:
  - url: ` + testResource + `
    scopes: {admin: [mcp]}
    scope_descriptions: {admin: "Run the deploy tools on production"}
    rules: [{method: tools/call, name: "deploy_*", scope: admin}]
`

func stepUpEnv(t *testing.T, capScopes bool) *env {
	t.Helper()
	return newEnv(t, func(c *Config) {
		c.Scopes, c.BaseScopes, c.ClientScopeCap = []string{"admin", "mcp"}, []string{"mcp"}, capScopes
		c.Policy = testPolicy(t, stepUpPolicy)
	})
}

// TestStepUp: the protected-resource metadata advertises the base scope; a
// client that registered scope "mcp" (as the MCP SDKs do, from
// scopes_supported) later asks for "mcp admin" and gets it after consent
// that says what admin allows; a request for admin alone brings the mcp it
// implies; a refresh never widens.
func TestStepUp(t *testing.T) {
	e := stepUpEnv(t, false)
	ctx := t.Context()
	resp, err := http.Get(e.url("/.well-known/oauth-protected-resource/mcp"))
	if err != nil {
		t.Fatal(err)
	}
	var prm struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal([]byte(readBody(t, resp)), &prm); err != nil || len(prm.ScopesSupported) != 1 || prm.ScopesSupported[0] != "mcp" {
		t.Errorf("protected-resource scopes_supported = %v (%v), want [mcp]", prm.ScopesSupported, err)
	}

	clientID := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none", "client_name": "Step", "scope": "mcp"})["client_id"].(string)
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(clientID, "")
	exchange := func(scope string) *oauth2.Token {
		t.Helper()
		conf.Scopes = strings.Fields(scope)
		verifier := oauth2.GenerateVerifier()
		cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", testResource)))
		if cb.Query().Get("code") == "" {
			t.Fatalf("scope %q: no code: %v", scope, cb.Query())
		}
		tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("scope %q: exchange: %v", scope, err)
		}
		e.secret(tok.AccessToken, tok.RefreshToken)
		return tok
	}
	if tok := exchange("mcp"); tok.Extra("scope") != "mcp" {
		t.Errorf("base token scope = %v", tok.Extra("scope"))
	}
	// The consent for the wider request says what admin allows.
	conf.Scopes = []string{"mcp", "admin"}
	resp, err = b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", testResource)))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, "Run the deploy tools on production") {
		t.Errorf("consent page does not describe admin:\n%s", body)
	}
	wide := exchange("mcp admin")
	if wide.Extra("scope") != "admin mcp" {
		t.Errorf("stepped-up token scope = %v, want admin mcp", wide.Extra("scope"))
	}
	if tok := exchange("admin"); tok.Extra("scope") != "admin mcp" {
		t.Errorf("admin alone: token scope = %v, want admin mcp (implied)", tok.Extra("scope"))
	}

	// Refresh never widens: a base token's refresh asking for admin fails.
	base := exchange("mcp")
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {base.RefreshToken}, "client_id": {clientID}, "scope": {"mcp admin"}}
	resp, err = http.PostForm(e.url("/oauth/token"), form)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_scope" {
		t.Errorf("widening refresh: %d %s", resp.StatusCode, body)
	}
}

// TestClientScopeCap: with ClientScopeCap the registered scope caps the
// request, as before step-up.
func TestClientScopeCap(t *testing.T) {
	e := stepUpEnv(t, true)
	clientID := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none", "client_name": "Step", "scope": "mcp"})["client_id"].(string)
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(clientID, "")
	conf.Scopes = []string{"mcp", "admin"}
	cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", testResource)))
	if got := cb.Query().Get("error"); got != "invalid_scope" {
		t.Errorf("capped client asking for more: error %q, want invalid_scope", got)
	}
}
