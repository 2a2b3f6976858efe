package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// realClients are the registration and token request shapes of the MCP
// clients README's "Connecting clients" describes, one row each, as their
// trackers report them: claude.ai posting a static connector's secret
// (anthropics/claude-ai-mcp#667) and registering with client_secret_post
// (#1043); Claude Code's loopback callback (anthropics/claude-code#10439);
// Cursor's three redirect URIs (makeplane/plane-mcp-server#159,
// erp-mafia/accounted#2225); VS Code's (microsoft/vscode#278512);
// MCP Inspector's (modelcontextprotocol/inspector#556); ChatGPT's
// callback from OpenAI's connector documentation. When a client changes
// what it sends, change its row and the README together.
var realClients = []struct {
	name string
	// meta is the client's RFC 7591 registration request; nil for the
	// pre-registered client (OAUTH_CLIENT_ID/OAUTH_CLIENT_SECRET).
	meta map[string]any
	// redirect is the redirect_uri of its authorization request, when it
	// is not the first registered one (a loopback port chosen at run
	// time).
	redirect string
	// sends is how it authenticates at the token endpoint.
	sends string
}{
	{
		// A custom connector with a client ID and secret: claude.ai posts
		// the secret in the form, whatever the metadata advertises.
		name: "claude.ai static", sends: "client_secret_post",
	},
	{
		name: "claude.ai dynamic", sends: "client_secret_post",
		meta: map[string]any{
			"client_name": "Claude", "redirect_uris": []string{"https://claude.ai/api/mcp/auth_callback"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "client_secret_post",
		},
	},
	{
		name: "Claude Code", sends: "none",
		meta: map[string]any{
			"client_name": "Claude Code (my-server)", "redirect_uris": []string{"http://localhost:43117/callback"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "none",
		},
	},
	{
		// Cursor registers its app scheme, its web agents' callback and a
		// loopback one in one request, and uses the first.
		name: "Cursor", sends: "none",
		meta: map[string]any{
			"client_name": "Cursor",
			"redirect_uris": []string{"cursor://anysphere.cursor-mcp/oauth/callback",
				"https://www.cursor.com/agents/mcp/oauth/callback", "http://localhost:8787/callback"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "none",
		},
	},
	{
		// VS Code registers its web redirects and loopback with and
		// without its default port, then listens on 33418 or, when that
		// is taken, any free port.
		name: "VS Code", sends: "none", redirect: "http://127.0.0.1:59656/",
		meta: map[string]any{
			"client_name": "Visual Studio Code",
			"redirect_uris": []string{"https://insiders.vscode.dev/redirect", "https://vscode.dev/redirect",
				"http://127.0.0.1/", "http://127.0.0.1:33418/"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
		},
	},
	{
		// Without token_endpoint_auth_method, RFC 7591's default
		// (client_secret_basic) applies; the secret may then come in the
		// form too.
		name: "ChatGPT", sends: "client_secret_post",
		meta: map[string]any{
			"client_name": "ChatGPT", "redirect_uris": []string{"https://chatgpt.com/connector_platform_oauth_redirect"},
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		},
	},
	{
		name: "MCP Inspector", sends: "none",
		meta: map[string]any{
			"client_name": "MCP Inspector", "client_uri": "https://github.com/modelcontextprotocol/inspector",
			"redirect_uris": []string{"http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"},
			"grant_types":   []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"token_endpoint_auth_method": "none",
		},
	},
}

// TestRealClientsConnectWithDefaults replays each real client's requests
// against the real binary with default settings, on SQLite and on
// PostgreSQL: registration (or the pre-registered OAUTH_CLIENT_ID),
// authorization with login and consent, the code exchange with the
// client's token auth method and PKCE and the canonical resource, the
// check, a refresh, and the check with the new token. Before, claude.ai's
// static connector got invalid_client (client_secret_post against a
// client_secret_basic client) and Cursor invalid_redirect_uri.
func TestRealClientsConnectWithDefaults(t *testing.T) {
	const seedID, seedSecret = "claude-connector", "9f2c4e1a7b3d5f608e1c2a4b6d8f0a1c"
	for _, backend := range []struct {
		name string
		opts func(t *testing.T) e2etest.Options
	}{
		{"sqlite", func(t *testing.T) e2etest.Options { return e2etest.Options{} }},
		{"postgres", func(t *testing.T) e2etest.Options { return e2etest.Options{DatabaseURL: pgtest.NewDatabase(t)} }},
	} {
		t.Run(backend.name, func(t *testing.T) {
			o := backend.opts(t)
			// Only the pre-registered client's environment: everything
			// else is passgate's default.
			o.Env = []string{"OAUTH_CLIENT_ID=" + seedID, "OAUTH_CLIENT_SECRET=" + seedSecret}
			srv := e2etest.Start(t, o)
			e2etest.AddUser(t, srv.OpenStore(t), "alice", "correct horse battery")
			// One user connects every client from one browser: signed in
			// once, asked for consent by each new client.
			b := e2etest.NewBrowser()
			var secrets []string
			for _, rc := range realClients {
				t.Run(rc.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					cl := &e2etest.OAuthClient{Server: srv, ClientID: seedID, Secret: seedSecret,
						AuthMethod: rc.sends, Redirect: "https://claude.ai/api/mcp/auth_callback"}
					if rc.meta != nil {
						var err error
						if cl, err = srv.RegisterMetadata(ctx, rc.meta); err != nil {
							t.Fatalf("registration: %v", err)
						}
						if (cl.Secret != "") != (rc.sends != "none") {
							t.Fatalf("registered with method %q and secret %v, but the client sends %s", cl.AuthMethod, cl.Secret != "", rc.sends)
						}
						cl.AuthMethod = rc.sends
					}
					if rc.redirect != "" {
						cl.Redirect = rc.redirect
					}
					secrets = append(secrets, cl.Secret)
					tok, err := cl.Login(ctx, b, "alice", "correct horse battery")
					if err != nil {
						t.Fatalf("authorize, login, consent and code exchange: %v", err)
					}
					secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
					if code, err := srv.CheckHTTP(ctx, tok.AccessToken); err != nil || code != http.StatusOK {
						t.Fatalf("check with the access token = %d, %v; want 200", code, err)
					}
					fresh, err := cl.Refresh(ctx, tok.RefreshToken)
					if err != nil {
						t.Fatalf("refresh: %v", err)
					}
					secrets = append(secrets, fresh.AccessToken, fresh.RefreshToken)
					if code, err := srv.CheckHTTP(ctx, fresh.AccessToken); err != nil || code != http.StatusOK {
						t.Fatalf("check with the refreshed token = %d, %v; want 200", code, err)
					}
				})
			}
			srv.AssertNoSecrets(t, append(secrets, seedSecret)...)
		})
	}
}
