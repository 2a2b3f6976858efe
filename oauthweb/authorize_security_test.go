package oauthweb

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/cimd"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/store"
)

const (
	evilRedirect   = "https://evil.example/cb"
	staticRedirect = "https://app.example/cb"
	cimdID         = "https://tool.example/oauth/client.json"
	testResource2  = "http://127.0.0.1:9/other-mcp"
)

// authzQuery is an authorization request for clientID to redirect,
// valid unless kv changes it ("<del>" drops a parameter).
func authzQuery(clientID, redirect string, kv ...string) string {
	v := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {"xyz"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<del>" {
			v.Del(kv[i])
		} else {
			v.Set(kv[i], kv[i+1])
		}
	}
	return "/oauth/authorize?" + v.Encode()
}

// cimdResolver resolves cimdID into a metadata-document client that
// redirects to redirects.
func cimdResolver(redirects ...string) func(context.Context, string) (store.Client, error) {
	return func(_ context.Context, id string) (store.Client, error) {
		if id != cimdID {
			return store.Client{}, fmt.Errorf("fetch: %w", store.ErrNotFound)
		}
		return store.Client{ID: id, Name: "Tool", RedirectURIs: redirects, Source: cimd.SourceMetadataDocument}, nil
	}
}

// TestAuthorizeErrorsNeverRedirectUntrustedBeforeLogin: with open
// registration an attacker registers a client whose redirect URI is their
// own site (or publishes a metadata document that says so); a logged-out
// victim following a link to /oauth/authorize with a bad parameter must
// see passgate's error page, never a 302 to that site (OAuth 2.1 §7.12.2,
// RFC 9700 §4.11.2). Operator-registered clients, and a client the
// signed-in user approved before, get the error at their redirect URI. Nothing in the
// store changes.
func TestAuthorizeErrorsNeverRedirectUntrustedBeforeLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ResolveClient = cimdResolver(evilRedirect) })
	ctx := context.Background()
	dynID := e.register(map[string]any{"redirect_uris": []string{evilRedirect}, "token_endpoint_auth_method": "none", "client_name": "Totally Legit"})["client_id"].(string)
	e.staticClient("static-app", "App", "", staticRedirect)
	approvedID := e.register(map[string]any{"redirect_uris": []string{evilRedirect}, "token_endpoint_auth_method": "none", "client_name": "Chosen"})["client_id"].(string)
	if err := e.st.PutConsent(ctx, store.Consent{Username: testUser, ClientID: approvedID, Resource: testResource, Scope: "mcp",
		CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	signedIn := e.browser()
	e.login(signedIn)

	tests := []struct {
		name     string
		path     string
		signedIn bool
		// redirect is where a 302 must go; "" means an error page, no
		// Location at all.
		redirect string
		err      string
	}{
		{"unknown client", authzQuery("nope", evilRedirect, "response_type", "token"), false, "", ""},
		{"unknown client signed in", authzQuery("nope", evilRedirect, "response_type", "token"), true, "", ""},
		{"dynamic client unregistered redirect", authzQuery(dynID, "https://other.example/cb"), false, "", ""},
		{"dynamic client response_type token", authzQuery(dynID, evilRedirect, "response_type", "token"), false, "", ""},
		{"dynamic client no PKCE", authzQuery(dynID, evilRedirect, "code_challenge", "<del>"), false, "", ""},
		{"dynamic client bad scope", authzQuery(dynID, evilRedirect, "scope", "admin"), false, "", ""},
		{"dynamic client foreign resource", authzQuery(dynID, evilRedirect, "resource", "https://evil.example/mcp"), false, "", ""},
		{"dynamic client implied redirect", authzQuery(dynID, evilRedirect, "redirect_uri", "<del>", "response_type", "x"), false, "", ""},
		{"metadata document client bad param", authzQuery(cimdID, evilRedirect, "code_challenge_method", "plain"), false, "", ""},
		{"static client bad param", authzQuery("static-app", staticRedirect, "response_type", "token"), false, staticRedirect, "unsupported_response_type"},
		// Signed in, but the user never approved this client: a link
		// naming it must not turn passgate into its redirector either.
		{"dynamic client signed in, never approved", authzQuery(dynID, evilRedirect, "response_type", "token"), true, "", ""},
		{"metadata document client signed in, never approved", authzQuery(cimdID, evilRedirect, "code_challenge", "<del>"), true, "", ""},
		// Signed in and approved before (any resource): the client's
		// errors go to it as usual.
		{"approved dynamic client signed in", authzQuery(approvedID, evilRedirect, "response_type", "token"), true, evilRedirect, "unsupported_response_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := noFollow(e.browser())
			if tt.signedIn {
				c = noFollow(signedIn)
			}
			before := e.snapshot()
			resp, err := c.Get(e.url(tt.path))
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			loc := resp.Header.Get("Location")
			if tt.redirect == "" {
				if loc != "" || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, Location %q; want 400 and passgate's error page", resp.StatusCode, loc)
				}
				// Signed in, the page may offer the way back as a link
				// (the user decides); before sign-in it names no site.
				if !tt.signedIn && strings.Contains(body, "evil.example") {
					t.Errorf("the error page links to the attacker's site")
				}
				if tt.signedIn && strings.HasPrefix(tt.name, "dynamic client") && !strings.Contains(body, `href="https://evil.example/cb?error=`) {
					t.Errorf("signed in: the page does not offer the way back as a link:\n%s", body)
				}
			} else {
				u, err := url.Parse(loc)
				if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc, tt.redirect+"?") {
					t.Fatalf("status %d, Location %q; want 302 to %s", resp.StatusCode, loc, tt.redirect)
				}
				diff(t, "redirected error", u.Query().Get("error"), tt.err)
				if u.Query().Get("state") != "xyz" || u.Query().Get("iss") != e.issuer {
					t.Errorf("redirect query %v: want state and iss", u.Query())
				}
			}
			diff(t, "store", e.snapshot(), before)
		})
	}
	// The page names the problem without the request's own values.
	resp, err := e.browser().Get(e.url(authzQuery(dynID, evilRedirect, "response_type", "token")))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, "Invalid sign-in request") || !strings.Contains(body, "unsupported_response_type") {
		t.Errorf("error page lacks the heading or the error code:\n%.600s", body)
	}
}

// consentOrCode fetches an authorization URL with a signed-in browser and
// reports whether passgate showed the consent page (true) or redirected
// with a code (false); anything else fails the test.
func consentOrCode(t *testing.T, e *env, b *http.Client, authURL string) (consent bool, page string) {
	t.Helper()
	resp, err := noFollow(b).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	switch {
	case resp.StatusCode == http.StatusOK && strings.Contains(body, `name="decision"`):
		return true, body
	case resp.StatusCode == http.StatusFound:
		u, _ := url.Parse(resp.Header.Get("Location"))
		if c := u.Query().Get("code"); c != "" {
			e.secret(c)
			return false, ""
		}
	}
	t.Fatalf("authorize: status %d, Location %q; want the consent page or a code", resp.StatusCode, resp.Header.Get("Location"))
	return false, ""
}

// codeCount is how many authorization codes the store holds.
func (e *env) codeCount() int {
	e.t.Helper()
	var n int
	if err := e.raw.QueryRow(`SELECT count(*) FROM auth_codes`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestStoredRedirectURIsHeldToTodaysRules: a pre-registered client stored
// by an older passgate, or by hand, with a redirect URI today's rules
// refuse (javascript:, http off loopback, a fragment) gets passgate's
// error page at /oauth/authorize, signed in or not, never a redirect there;
// its good URI still works.
func TestStoredRedirectURIsHeldToTodaysRules(t *testing.T) {
	e := newEnv(t)
	bad := []string{"javascript:alert(document.cookie)//", "http://evil.example/cb", staticRedirect + "#frag"}
	e.staticClient("old-static", "Old", "", append([]string{staticRedirect}, bad...)...)
	signedIn := e.browser()
	e.login(signedIn)
	for _, u := range bad {
		for _, in := range []bool{false, true} {
			c := noFollow(e.browser())
			if in {
				c = noFollow(signedIn)
			}
			before := e.snapshot()
			resp, err := c.Get(e.url(authzQuery("old-static", u)))
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if loc := resp.Header.Get("Location"); loc != "" || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s (signed in %v): status %d, Location %q; want 400 and passgate's error page", u, in, resp.StatusCode, loc)
			}
			if strings.Contains(body, "evil.example") || strings.Contains(body, "javascript:") {
				t.Errorf("%s: the error page names the refused URI", u)
			}
			diff(t, "store", e.snapshot(), before)
		}
	}
	// The good URI: a bad parameter is still reported there (operator
	// clients get their errors at their redirect URI).
	resp, err := noFollow(e.browser()).Get(e.url(authzQuery("old-static", staticRedirect, "response_type", "token")))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, staticRedirect+"?") {
		t.Errorf("good URI: status %d, Location %q; want 302 there", resp.StatusCode, loc)
	}
}

// TestConsentIsPerResource: approving a client for resource A does not
// approve it for resource B (RFC 8707 audiences are separate servers), nor
// for wider scopes on A; each asks again and no code is issued until the
// user approves. The apps page lists each resource.
func TestConsentIsPerResource(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Resources = testResources(t, testResource, testResource2)
		c.Scopes = []string{"mcp", "read"}
	})
	// A confidential client: its identity is assured, so consent is
	// remembered and only the resource and scope decide.
	reg := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "client_secret_basic", "client_name": "Conf App"})
	clientID := reg["client_id"].(string)
	conf := e.oauth2Config(clientID, reg["client_secret"].(string))
	authURL := func(res string, scopes ...string) string {
		c := *conf
		c.Scopes = scopes
		return c.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", res))
	}
	b := e.browser()
	e.login(b)
	e.authorize(b, authURL(testResource, "mcp"))
	if asked, _ := consentOrCode(t, e, b, authURL(testResource, "mcp")); asked {
		t.Fatal("the same request for A asked again; consent should be remembered")
	}

	codes := e.codeCount()
	asked, page := consentOrCode(t, e, b, authURL(testResource2, "mcp"))
	if !asked {
		t.Fatal("a client approved for A got a code for B without a consent page")
	}
	if !strings.Contains(page, testResource2) {
		t.Errorf("the consent page does not name resource B")
	}
	if asked, _ := consentOrCode(t, e, b, authURL(testResource, "mcp", "read")); !asked {
		t.Error("wider scopes on A got a code without a consent page")
	}
	if n := e.codeCount(); n != codes {
		t.Errorf("codes: %d, want %d (none issued while asking)", n, codes)
	}

	e.clock.Advance(time.Minute)
	e.authorize(b, authURL(testResource2, "mcp"))
	if asked, _ := consentOrCode(t, e, b, authURL(testResource2, "mcp")); asked {
		t.Error("B asked again after it was approved")
	}
	list, err := e.st.ListConsents(context.Background(), testUser)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.ClientID+" "+c.Resource+" "+c.Scope)
	}
	diff(t, "consents", got, []string{clientID + " " + testResource2 + " mcp", clientID + " " + testResource + " mcp"})

	resp, err := b.Get(e.url("/apps"))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if strings.Count(body, `class="app"`) != 1 || !strings.Contains(body, testResource) || !strings.Contains(body, testResource2) {
		t.Errorf("apps page: want one app listing both resources:\n%s", body)
	}
}

// TestPublicClientConsentAskedEveryTime: a public client redirecting to
// loopback or a private-use scheme can be anyone (RFC 8252 §8.6; Claude
// Code's and VS Code's metadata documents are public), so an earlier
// consent does not answer for it: the page comes back every time, and says
// the app runs on this computer and who vouches for its name. Confidential
// clients and https redirect URIs are remembered. With
// RememberPublicConsent the operator opts into remembering all.
func TestPublicClientConsentAskedEveryTime(t *testing.T) {
	type client struct {
		name, id, redirect string
		remembered         bool
		says               []string // on the consent page
	}
	setup := func(t *testing.T, remember bool) (*env, []client) {
		e := newEnv(t, func(c *Config) {
			c.RememberPublicConsent = remember
			c.PrivateSchemes = oauth.PrivateSchemesAny // cursor://cb has no '.'
			c.ResolveClient = cimdResolver(testRedirect)
		})
		public := e.publicClient()
		app := e.register(map[string]any{"redirect_uris": []string{"cursor://cb"}, "token_endpoint_auth_method": "none", "client_name": "Cursorish"})["client_id"].(string)
		web := e.register(map[string]any{"redirect_uris": []string{"https://web.example/cb"}, "token_endpoint_auth_method": "none", "client_name": "Web App"})["client_id"].(string)
		confID := e.register(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "client_secret_post", "client_name": "Conf"})["client_id"].(string)
		return e, []client{
			{"metadata document on loopback", cimdID, testRedirect, remember, []string{"this computer", "published by <strong class=\"client-id-host\">tool.example"}},
			{"dynamic public on loopback", public, testRedirect, remember, []string{"this computer", "self-declared"}},
			{"dynamic public on a private scheme", app, "cursor://cb", remember, []string{"an app installed on this device", "cursor:", "self-declared"}},
			{"dynamic public on https", web, "https://web.example/cb", true, []string{"self-declared"}},
			{"confidential on loopback", confID, testRedirect, true, []string{"this computer"}},
		}
	}
	for _, remember := range []bool{false, true} {
		t.Run(fmt.Sprintf("RememberPublicConsent=%t", remember), func(t *testing.T) {
			e, clients := setup(t, remember)
			b := e.browser()
			e.login(b)
			for _, c := range clients {
				t.Run(c.name, func(t *testing.T) {
					u := e.url(authzQuery(c.id, c.redirect, "resource", testResource))
					asked, page := consentOrCode(t, e, b, u)
					if !asked {
						t.Fatal("first request: no consent page")
					}
					for _, s := range c.says {
						if !strings.Contains(page, s) {
							t.Errorf("consent page lacks %q", s)
						}
					}
					f := formFields(page)
					f.Set("decision", "approve")
					resp := postForm(t, noFollow(b), e.url("/consent"), f)
					readBody(t, resp)
					if resp.StatusCode != http.StatusSeeOther {
						t.Fatalf("approve: %d", resp.StatusCode)
					}
					codes := e.codeCount()
					asked, _ = consentOrCode(t, e, b, u)
					if asked == c.remembered {
						t.Errorf("second request: consent page shown = %t, want %t", asked, !c.remembered)
					}
					if asked && e.codeCount() != codes {
						t.Errorf("a code was stored while asking")
					}
				})
			}
		})
	}
}

// TestRegistrationErrorsAre400: RFC 7591 §3.2.2 answers every registration
// error with 400 and invalid_client_metadata or invalid_redirect_uri; only
// a body over the size limit is refused with 413. Nothing is stored.
func TestRegistrationErrorsAre400(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, path, ctype, body string
		status                  int
		err                     string
	}{
		{"text/plain", "/oauth/register", "text/plain", `{"redirect_uris":["https://a.example/cb"]}`, 400, "invalid_client_metadata"},
		{"form", "/oauth/register", formCT, "redirect_uris=https://a.example/cb", 400, "invalid_client_metadata"},
		{"no content type", "/oauth/register", "", `{"redirect_uris":["https://a.example/cb"]}`, 400, "invalid_client_metadata"},
		{"malformed content type", "/oauth/register", "application/json; =", `{"redirect_uris":["https://a.example/cb"]}`, 400, "invalid_client_metadata"},
		{"alias form", "/register", formCT, "a=b", 400, "invalid_client_metadata"},
		{"bad redirect", "/oauth/register", "application/json", `{"redirect_uris":["http://a.example/cb"]}`, 400, "invalid_redirect_uri"},
		{"oversize", "/oauth/register", "application/json", `{"redirect_uris":["https://a.example/cb"],"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "invalid_client_metadata"},
	}
	before := e.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.send(t, hreq{path: tt.path, ctype: tt.ctype, body: tt.body}, nil)
			if resp.StatusCode != tt.status || oauthError(t, body) != tt.err {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.err)
			}
		})
	}
	diff(t, "store", e.snapshot(), before)
}
