package oauthweb

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/oauth"
)

// FuzzRegistration: whatever parseRegistration accepts has valid redirect
// URIs, a supported auth method and grant types, and only supported
// scopes.
func FuzzRegistration(f *testing.F) {
	for _, s := range []string{
		`{"redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"none"}`,
		`{"redirect_uris":["http://127.0.0.1:1/cb","cursor://x/y"],"grant_types":["refresh_token","authorization_code","x"],"scope":"mcp read"}`,
		`{"redirect_uris":["http://localhost:80@evil/"]}`,
		`{"redirect_uris":null,"client_name":"\u0000"}`,
		`[]`, `null`, `{"redirect_uris":[1]}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, private bool) {
		policy := oauth.PrivateSchemesDefault
		if private {
			policy = oauth.PrivateSchemesAny
		}
		s := &Server{cfg: Config{Scopes: []string{"mcp"}, PrivateSchemes: policy}}
		c, oe := s.parseRegistration(body)
		if oe != nil {
			if oe.Code != oauth.CodeInvalidClientMetadata && oe.Code != oauth.CodeInvalidRedirectURI {
				t.Fatalf("error code %q", oe.Code)
			}
			return
		}
		if len(c.RedirectURIs) == 0 || len(c.RedirectURIs) > maxRedirectURIs {
			t.Fatalf("accepted %d redirect URIs", len(c.RedirectURIs))
		}
		for _, u := range c.RedirectURIs {
			if err := oauth.ValidateRedirectURI(u, policy); err != nil {
				t.Fatalf("accepted invalid redirect URI %q: %v", u, err)
			}
		}
		if !slices.Contains(clientAuthMethods, c.TokenEndpointAuthMethod) {
			t.Fatalf("accepted auth method %q", c.TokenEndpointAuthMethod)
		}
		if !slices.Equal(c.GrantTypes, []string{"authorization_code", "refresh_token"}) {
			t.Fatalf("grant types %v", c.GrantTypes)
		}
		if c.Scope != "" && c.Scope != "mcp" {
			t.Fatalf("scope %q", c.Scope)
		}
		for _, r := range c.Name {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in name %q", c.Name)
			}
		}
	})
}

// FuzzSafeReturn: the post-login redirect is always on the issuer's
// origin, at the authorization endpoint or the apps page.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/oauth/authorize?client_id=x", "//evil.example", "/\\evil", "https://evil.example/oauth/authorize", "/apps", "/oauth/authorize/../x", "/authorize?%0d%0aSet-Cookie:x"} {
		f.Add(s)
	}
	s := &Server{origin: "https://auth.example.com", prefix: "", base: "https://auth.example.com"}
	s.endpoints.apps = s.base + "/apps"
	f.Fuzz(func(t *testing.T, raw string) {
		got := s.safeReturn(raw)
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("safeReturn(%q) = %q does not parse", raw, got)
		}
		if u.Scheme != "https" || u.Host != "auth.example.com" || u.User != nil {
			t.Fatalf("safeReturn(%q) = %q leaves the origin", raw, got)
		}
		if p := u.EscapedPath(); p != "/oauth/authorize" && p != "/authorize" && p != "/apps" {
			t.Fatalf("safeReturn(%q) = %q: path %q", raw, got, p)
		}
		if strings.ContainsAny(got, "\r\n\\") {
			t.Fatalf("safeReturn(%q) = %q has a control character", raw, got)
		}
	})
}
