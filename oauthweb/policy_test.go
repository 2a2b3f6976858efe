package oauthweb

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/store"
)

// engOnlyPolicy lets only the group eng reach testResource.
const engOnlyPolicy = "resources:\n  - url: " + testResource + "\n    allow: [group:eng]\n"

// TestAuthorizeRefusesUserOutsidePolicy: a user the access policy does not
// list for the resource gets an error page at /oauth/authorize: no consent
// form, no code, nothing stored, an access_denied audit row. Once the user
// joins the group the same request reaches consent; a consent form shown
// before the user left the group is refused when posted.
func TestAuthorizeRefusesUserOutsidePolicy(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Policy = testPolicy(t, engOnlyPolicy) })
	ctx := t.Context()
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(e.publicClient(), "")
	authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("resource", testResource))

	before := e.snapshot()
	resp, err := noFollow(b).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access not allowed") || strings.Contains(body, `name="decision"`) {
		t.Fatalf("authorize for a user outside the policy: status %d:\n%s", resp.StatusCode, body)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("redirected to %q", loc)
	}
	after := e.snapshot()
	for _, table := range []string{"auth_codes", "tokens", "consents"} {
		if len(after[table]) != len(before[table]) {
			t.Errorf("%s changed: %v -> %v", table, before[table], after[table])
		}
	}
	evs := e.auditEvents(store.EventAccessDenied)
	if len(evs) != 1 || evs[0].Username != testUser || evs[0].Error != "user_not_allowed" || evs[0].Success {
		t.Errorf("access_denied audit rows = %+v", evs)
	}

	// In the group: consent is shown.
	if _, err := e.st.SetUserGroups(ctx, testUser, []string{"eng"}, e.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	resp, err = noFollow(b).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body = readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="decision"`) {
		t.Fatalf("authorize for a group member: status %d", resp.StatusCode)
	}
	// Out of the group before approving: the consent post is refused.
	if _, err := e.st.SetUserGroups(ctx, testUser, nil, e.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	form := formFields(body)
	form.Set("decision", "approve")
	resp = postForm(t, noFollow(b), e.url("/consent"), form)
	if body = readBody(t, resp); !strings.Contains(body, "Access not allowed") {
		t.Errorf("consent after leaving the group does not say why:\n%s", body)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Errorf("consent after leaving the group: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := e.snapshot(); len(got["auth_codes"]) != len(before["auth_codes"]) || len(got["consents"]) != len(before["consents"]) {
		t.Errorf("a code or consent was stored for a refused user")
	}
	if n := len(e.auditEvents(store.EventAccessDenied)); n != 2 {
		t.Errorf("access_denied rows = %d, want 2", n)
	}
}

// TestTokenEndpointRefusesUserOutsidePolicy: a refresh (and a code issued
// just before) for a user the policy no longer allows gets invalid_grant
// and no token.
func TestTokenEndpointRefusesUserOutsidePolicy(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Policy = testPolicy(t, engOnlyPolicy) })
	ctx := t.Context()
	if _, err := e.st.SetUserGroups(ctx, testUser, []string{"eng"}, e.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	e.login(b)
	conf := e.oauth2Config(e.publicClient(), "")
	exchangeable := func() (string, string) {
		v := oauth2.GenerateVerifier()
		cb := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("resource", testResource)))
		return cb.Query().Get("code"), v
	}
	code, verifier := exchangeable()
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	pending, pendingVerifier := exchangeable()

	if _, err := e.st.SetUserGroups(ctx, testUser, nil, e.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("refresh for a user outside the policy: %v, want invalid_grant", err)
	}
	if _, err := conf.Exchange(ctx, pending, oauth2.VerifierOption(pendingVerifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("code exchange for a user outside the policy: %v, want invalid_grant", err)
	}
	if n := len(e.auditEvents(store.EventAccessDenied)); n != 2 {
		t.Errorf("access_denied rows = %d, want 2", n)
	}
}
