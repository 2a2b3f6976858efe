package oauthweb

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/token"
)

// TestResourceIndicatorCanonical: a resource indicator is compared in
// canonical form at /oauth/authorize and /oauth/token (uppercase scheme
// and host, default or zero-padded port, trailing slash), an empty
// resource= counts as omitted (OAuth 2.1 §3.1), and what is stored is the
// canonical identifier. Hostile spellings are TestHostileInputs rows.
func TestResourceIndicatorCanonical(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(e.publicClient(), "")
	for _, tt := range []struct{ name, authz, token, refresh string }{
		{"uppercase", "HTTP://127.0.0.1:9/mcp", "http://127.0.0.1:9/mcp", "HTTP://127.0.0.1:9/mcp/"},
		{"trailing slash", "http://127.0.0.1:9/mcp/", "http://127.0.0.1:9/mcp/", ""},
		{"zero-padded port", "http://127.0.0.1:0009/mcp", "HTTP://127.0.0.1:9/mcp", "http://127.0.0.1:9/mcp"},
		{"encoded unreserved", "http://127.0.0.1:9/%6Dcp", "", "http://127.0.0.1:9/m%63p/"},
		{"empty means omitted", "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			// SetAuthURLParam with "" still sends resource=.
			cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", tt.authz)))
			code := cb.Query().Get("code")
			if code == "" {
				t.Fatalf("authorize with resource %q: %v", tt.authz, cb.Query())
			}
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", tt.token))
			if err != nil {
				t.Fatalf("exchange with resource %q: %v", tt.token, err)
			}
			e.secret(tok.AccessToken, tok.RefreshToken)
			at, err := e.st.GetToken(ctx, token.Hash(tok.AccessToken), e.clock.Now())
			if err != nil || at.Resource != testResource {
				t.Fatalf("access token audience %q, %v; want %q", at.Resource, err, testResource)
			}
			resp := postForm(t, http.DefaultClient, e.url("/oauth/token"), map[string][]string{
				"grant_type": {"refresh_token"}, "client_id": {conf.ClientID}, "refresh_token": {tok.RefreshToken}, "resource": {tt.refresh},
			})
			if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
				t.Fatalf("refresh with resource %q: %d %s", tt.refresh, resp.StatusCode, body)
			}
		})
	}
}

// TestResourceIndicatorOrigin: the origin the root metadata document
// describes names the origin's only resource; with several resources on
// the origin it is invalid_target.
func TestResourceIndicatorOrigin(t *testing.T) {
	for _, tt := range []struct {
		name      string
		resources []string
		want      string // "" means invalid_target
	}{
		{"one resource", []string{testResource}, testResource},
		{"two on the origin", []string{testResource, "http://127.0.0.1:9/other"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Resources = testResources(t, tt.resources...) })
			b := e.browser()
			e.login(b)
			conf := e.oauth2Config(e.publicClient(), "")
			verifier := oauth2.GenerateVerifier()
			cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", "http://127.0.0.1:9/")))
			if tt.want == "" {
				if got := cb.Query().Get("error"); got != "invalid_target" {
					t.Fatalf("authorize with the shared origin: %v; want invalid_target", cb.Query())
				}
				return
			}
			tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", "http://127.0.0.1:9"))
			if err != nil {
				t.Fatal(err)
			}
			e.secret(tok.AccessToken, tok.RefreshToken)
			at, err := e.st.GetToken(context.Background(), token.Hash(tok.AccessToken), e.clock.Now())
			if err != nil || at.Resource != tt.want {
				t.Fatalf("audience %q, %v; want %q", at.Resource, err, tt.want)
			}
		})
	}
}

// TestResourceStoredAsConfigured: tokens and consents stored before
// identifiers were canonicalized carry the resource exactly as it was
// configured ("HTTP://127.0.0.1:9/mcp/" here); they keep working: the
// refresh token refreshes with the canonical indicator and the consent is
// still remembered.
func TestResourceStoredAsConfigured(t *testing.T) {
	const configured = "HTTP://127.0.0.1:9/mcp/"
	e := newEnv(t, func(c *Config) { c.Resources = testResources(t, configured) })
	reg := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "client_name": "Confidential", "token_endpoint_auth_method": "client_secret_basic"})
	conf := e.oauth2Config(reg["client_id"].(string), reg["client_secret"].(string))
	b := e.browser()
	e.login(b)
	tok := e.codeFlow(b, conf)

	// Rewrite the rows as an older passgate stored them.
	for _, q := range []string{"UPDATE tokens SET resource = ?", "UPDATE consents SET resource = ?"} {
		if res, err := e.raw.Exec(q, configured); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n == 0 {
			t.Fatalf("%s: no rows", q)
		}
	}

	resp, body := e.send(t, hreq{path: "/oauth/token", ctype: formCT, basic: [2]string{conf.ClientID, conf.ClientSecret},
		body: form("grant_type", "refresh_token", "refresh_token", tok.RefreshToken, "resource", testResource)}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshing a token stored with the configured spelling: %d %s", resp.StatusCode, body)
	}
	// The consent recorded under the configured spelling is found: no page.
	resp, err := noFollow(b).Get(conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", testResource)))
	if err != nil {
		t.Fatal(err)
	}
	body = readBody(t, resp)
	if resp.StatusCode != http.StatusFound || strings.Contains(body, `name="decision"`) {
		t.Fatalf("consent stored under the configured spelling was not remembered: %d", resp.StatusCode)
	}
}

// TestResourceIndicatorDefaultPort: a resource on the scheme's default
// port is named with or without it.
func TestResourceIndicatorDefaultPort(t *testing.T) {
	const configured = "http://127.0.0.1/mcp"
	e := newEnv(t, func(c *Config) { c.Resources = testResources(t, configured) })
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(e.publicClient(), "")
	verifier := oauth2.GenerateVerifier()
	cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", "http://127.0.0.1:80/mcp")))
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", "HTTP://127.0.0.1:80/mcp/"))
	if err != nil {
		t.Fatalf("authorize with the default port: %v (callback %v)", err, cb.Query())
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	at, err := e.st.GetToken(context.Background(), token.Hash(tok.AccessToken), e.clock.Now())
	if err != nil || at.Resource != configured {
		t.Fatalf("audience %q, %v; want %q", at.Resource, err, configured)
	}
}
