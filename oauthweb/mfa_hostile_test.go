package oauthweb

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// withLocalhostIssuer names the test server by localhost: WebAuthn needs
// a domain name, so passkeys are on.
func withLocalhostIssuer(c *Config) {
	u, _ := url.Parse(c.Issuer)
	_, port, _ := net.SplitHostPort(u.Host)
	c.Issuer = "http://localhost:" + port
}

func postJSON(t *testing.T, c *http.Client, u string, body any, hdr map[string]string) (*http.Response, map[string]string) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	_ = json.Unmarshal([]byte(readBody(t, resp)), &out)
	return resp, out
}

// TestPasskeyCeremoniesRefuseHostileInput: every ceremony endpoint
// answers malformed, forged, replayed, cross-site and unauthenticated
// requests with a clear JSON error and the right status, and changes
// nothing in the store.
func TestPasskeyCeremoniesRefuseHostileInput(t *testing.T) {
	e := newEnv(t, withSealer(""), withLocalhostIssuer)
	if e.s.rp == nil {
		t.Fatal("passkeys are off for a localhost issuer")
	}
	signedIn := e.browser()
	e.login(signedIn)
	anon := e.browser()
	before := e.snapshot()

	// A real options answer, to replay its state.
	resp, opts := postJSON(t, anon, e.url("/webauthn/login/options"), "{}", nil)
	if resp.StatusCode != http.StatusOK || opts["state"] == "" {
		t.Fatalf("login options: %d %v", resp.StatusCode, opts)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src "+e.issuer+"/static/passgate.js;") || !strings.Contains(csp, "connect-src "+e.issuer+"/webauthn/") {
		t.Errorf("CSP with passkeys: %q", csp)
	}
	state := opts["state"]
	sessCSRF := sessionCSRF(t, e, signedIn)

	tests := []struct {
		name   string
		client *http.Client
		path   string
		body   any
		hdr    map[string]string
		status int
	}{
		{"not JSON", anon, "/webauthn/login", "state=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"malformed JSON", anon, "/webauthn/login", "{", nil, http.StatusBadRequest},
		{"forged state", anon, "/webauthn/login", map[string]any{"state": "AAAA", "credential": map[string]any{}}, nil, http.StatusBadRequest},
		{"garbage credential", anon, "/webauthn/login", map[string]any{"state": state, "credential": map[string]any{"id": "x"}}, nil, http.StatusBadRequest},
		{"replayed state", anon, "/webauthn/login", map[string]any{"state": state, "credential": map[string]any{"id": "x"}}, nil, http.StatusBadRequest},
		{"oversize body", anon, "/webauthn/login", `{"state":"` + strings.Repeat("A", maxPasskeyBody) + `"}`, nil, http.StatusRequestEntityTooLarge},
		{"cross-site", anon, "/webauthn/login/options", "{}", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"factor options without session", anon, "/webauthn/second-factor/options", "{}", map[string]string{"X-CSRF-Token": "x"}, http.StatusUnauthorized},
		{"factor options without CSRF", signedIn, "/webauthn/second-factor/options", "{}", nil, http.StatusForbidden},
		{"factor options for a complete session", signedIn, "/webauthn/second-factor/options", "{}", map[string]string{"X-CSRF-Token": sessCSRF}, http.StatusConflict},
		{"factor finish with a login state", signedIn, "/webauthn/second-factor", map[string]any{"state": state, "csrf": sessCSRF}, nil, http.StatusConflict},
		{"register without CSRF", signedIn, "/webauthn/register/options", "{}", nil, http.StatusForbidden},
		{"register with a login state", signedIn, "/webauthn/register", map[string]any{"state": state, "csrf": sessCSRF, "name": "k"}, nil, http.StatusBadRequest},
		{"register with a control character in the name", signedIn, "/webauthn/register", map[string]any{"state": state, "csrf": sessCSRF, "name": "a\x1b[31m"}, nil, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := postJSON(t, tt.client, e.url(tt.path), tt.body, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%v)", resp.StatusCode, tt.status, body)
			}
			if tt.status != http.StatusForbidden && body["error"] == "" {
				t.Errorf("no error message in %v", body)
			}
			for _, ck := range resp.Cookies() {
				if strings.Contains(ck.Name, "session") && ck.MaxAge >= 0 {
					t.Errorf("a refused ceremony set a session cookie")
				}
			}
		})
	}
	diff(t, "store after hostile ceremonies", e.snapshot(), before)
	fails := e.auditEvents(store.EventPasskeyLogin)
	if len(fails) < 3 {
		t.Errorf("passkey_login failure rows = %d, want the refused attempts", len(fails))
	}
	reasons := map[string]int{}
	for _, f := range fails {
		if f.Success {
			t.Errorf("a refused passkey sign-in was recorded as a success: %+v", f)
		}
		reasons[f.Error]++
	}
	// The forged state and the replayed one (its challenge was spent by
	// the attempt before) are refused as states.
	if reasons["invalid_state"] != 2 || reasons["invalid_credential"] != 1 {
		t.Errorf("passkey_login failure reasons %v, want 2 invalid_state and 1 invalid_credential", reasons)
	}

	// A stale sign-in cannot register a passkey.
	e.clock.Advance(RecentSignIn + time.Minute)
	if resp, _ := postJSON(t, signedIn, e.url("/webauthn/register/options"), "{}", map[string]string{"X-CSRF-Token": sessCSRF}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("register options after %v: %d, want 403", RecentSignIn, resp.StatusCode)
	}
}

// sessionCSRF reads the session's CSRF token from the account page.
func sessionCSRF(t *testing.T, e *env, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(e.url("/account"))
	if err != nil {
		t.Fatal(err)
	}
	v := formFields(readBody(t, resp)).Get("csrf")
	if v == "" {
		t.Fatalf("no CSRF token on the account page (%d)", resp.StatusCode)
	}
	return v
}

// TestSecondFactorFormsRefuseHostileInput: the code form, the enrolment
// form and the account forms refuse forged, cross-session and oversize
// input without changing anything or counting a failure they did not
// check.
func TestSecondFactorFormsRefuseHostileInput(t *testing.T) {
	e := newEnv(t, withSealer(""))
	c := e.browser()
	e.login(c)
	secret, _ := e.enrolTOTP(c)
	_ = secret
	e.clock.Advance(time.Minute)

	// No session at all: back to the login page, nothing counted.
	anon := e.browser()
	before := e.snapshot()
	resp := postForm(t, noFollow(anon), e.url("/login/second-factor"), url.Values{"code": {"123456"}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/login") {
		t.Errorf("code without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A complete session has nothing to verify.
	resp = postForm(t, noFollow(c), e.url("/login/second-factor"), url.Values{"code": {"123456"}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("code with a complete session: %d", resp.StatusCode)
	}
	diff(t, "store after codes without a pending session", e.snapshot(), before)

	// A pending session: a forged CSRF token is refused before the code
	// is checked or counted.
	p := e.browser()
	e.passwordStep(p, "/apps")
	before = e.snapshot()
	resp = postForm(t, p, e.url("/login/second-factor"), url.Values{"csrf": {"forged"}, "code": {"123456"}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged CSRF: %d, want 403", resp.StatusCode)
	}
	diff(t, "store after a forged CSRF token", e.snapshot(), before)
	// Oversize and odd codes are failures, never errors.
	for _, code := range []string{strings.Repeat("9", 65), "12345\x00", "١٢٣٤٥٦", "<script>"} {
		if resp := e.secondFactor(p, code); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("code %q: %d, want 401", code, resp.StatusCode)
		}
	}
	// A form body only.
	req, _ := http.NewRequest(http.MethodPost, e.url("/login/second-factor"), strings.NewReader(`{"code":"1"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := p.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("JSON body: %v %v, want 415", resp.StatusCode, err)
	}

	// The account forms: a forged CSRF token removes nothing.
	before = e.snapshot()
	for _, path := range []string{"/account/totp/remove", "/account/recovery-codes", "/account/password", "/account/passkeys/remove"} {
		resp := postForm(t, c, e.url(path), url.Values{"csrf": {"forged"}, "current_password": {testPassword}})
		readBody(t, resp)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with a forged CSRF token: %d, want 403", path, resp.StatusCode)
		}
	}
	diff(t, "store after forged account forms", e.snapshot(), before)

	// A tampered or foreign enrolment stores nothing.
	resp, err := c.Get(e.url("/account/totp"))
	if err != nil {
		t.Fatal(err)
	}
	f := formFields(readBody(t, resp))
	for name, enrolment := range map[string]string{"tampered": f.Get("enrolment")[:10] + "AAAA" + f.Get("enrolment")[14:], "garbage": "%%%", "empty": ""} {
		g := url.Values{"csrf": {f.Get("csrf")}, "enrolment": {enrolment}, "code": {"123456"}}
		resp := postForm(t, c, e.url("/account/totp"), g)
		readBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s enrolment: %d, want 400", name, resp.StatusCode)
		}
	}
	diff(t, "store after forged enrolments", e.snapshot(), before)
}

// TestAccountManagesPasskeys lists, renames and removes passkeys with
// plain forms (no script), and refuses to remove the last second factor
// of a user the policy requires to have one.
func TestAccountManagesPasskeys(t *testing.T) {
	e := newEnv(t, withSealer("all"))
	ctx := t.Context()
	now := e.clock.Now()
	for _, p := range []store.Passkey{
		{ID: []byte("key-one"), Username: testUser, Name: "Laptop", Record: []byte("{}"), CreatedAt: now, BackupEligible: true, BackupState: true},
		{ID: []byte("key-two"), Username: testUser, Name: "Phone", Record: []byte("{}"), CreatedAt: now.Add(time.Second)},
	} {
		if err := e.st.CreatePasskey(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	// With passkeys the policy is met: the password leads to the
	// second-factor page, not to enrolment.
	b := e.browser()
	if next := e.passwordStep(b, "/apps"); next.Path != "/login/second-factor" {
		t.Fatalf("after the password: %s, want the second-factor page", next)
	}
	// Signed in (the test has no authenticator): a complete session put
	// in the store, as a passkey sign-in would make.
	c := e.browser()
	id := token.New(token.PrefixSession)
	if err := e.st.CreateSession(ctx, store.Session{IDHash: token.Hash(id), Username: testUser, CSRFToken: token.New(""),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeenAt: now}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.issuer)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: e.s.cookie, Value: id, Path: "/"}})
	resp, err := c.Get(e.url("/account"))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	for _, want := range []string{">Laptop<", ">Phone<", "synced", `aria-label="Remove passkey Phone"`} {
		if !strings.Contains(body, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	csrf := formFields(body).Get("csrf")
	kid := func(raw string) string { return base64URL([]byte(raw)) }
	resp = postForm(t, c, e.url("/account/passkeys/rename"), url.Values{"csrf": {csrf}, "id": {kid("key-two")}, "name": {"Work phone"}})
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, ">Work phone<") {
		t.Errorf("rename: %d", resp.StatusCode)
	}
	resp = postForm(t, c, e.url("/account/passkeys/rename"), url.Values{"csrf": {csrf}, "id": {kid("key-two")}, "name": {strings.Repeat("x", 65)}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("rename to 65 characters: %d, want 400", resp.StatusCode)
	}
	resp = postForm(t, c, e.url("/account/passkeys/remove"), url.Values{"csrf": {csrf}, "id": {kid("key-one")}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("remove: %d", resp.StatusCode)
	}
	// The last factor of a user who must have one stays.
	resp = postForm(t, c, e.url("/account/passkeys/remove"), url.Values{"csrf": {csrf}, "id": {kid("key-two")}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("remove the last passkey under --require-second-factor all: %d, want 403", resp.StatusCode)
	}
	keys, _ := e.st.ListPasskeys(ctx, testUser)
	if len(keys) != 1 || keys[0].Name != "Work phone" {
		t.Errorf("passkeys left: %+v", keys)
	}
	if n := len(e.auditEvents(store.EventPasskeyRemoved)); n != 1 {
		t.Errorf("passkey_removed rows = %d, want 1", n)
	}
}

func base64URL(b []byte) string { return strings.TrimRight(base64.URLEncoding.EncodeToString(b), "=") }

// secondFactorsDown is a store whose second-factor reads and writes fail
// as if the database were unreachable.
type secondFactorsDown struct{ store.Store }

// errDown is what a store method returns when the database is
// unreachable (here and in the unavailable store of TestStoreUnavailable).
var errDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

func (secondFactorsDown) GetTOTP(context.Context, string) (store.TOTP, error) {
	return store.TOTP{}, errDown
}
func (secondFactorsDown) SpendNonce(context.Context, string, time.Time, time.Time) error {
	return errDown
}

// TestSecondFactorStoreUnavailable: when the second-factor state cannot
// be read, a right password gets 503 and no session (it never falls back
// to "no second factor"), and a passkey ceremony answers 503.
func TestSecondFactorStoreUnavailable(t *testing.T) {
	e := newEnv(t, withSealer(""), withLocalhostIssuer)
	s := e.server(func(c *Config) { c.Store = secondFactorsDown{e.st} })
	h := s.Handler()
	form := url.Values{"csrf": {"c"}, "username": {testUser}, "password": {testPassword}}
	req := httptest.NewRequest(http.MethodPost, e.url("/login"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", formCT)
	req.AddCookie(&http.Cookie{Name: s.csrfCk, Value: "c"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("login with the second-factor state unreadable: %d, want 503", rec.Code)
	}
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == s.cookie && ck.MaxAge >= 0 {
			t.Errorf("a session cookie was set")
		}
	}
	if sessions, _ := e.st.ListSessions(t.Context(), testUser, e.clock.Now()); len(sessions) != 0 {
		t.Errorf("sessions created: %d", len(sessions))
	}

	rec = httptest.NewRecorder()
	opt := httptest.NewRequest(http.MethodPost, e.url("/webauthn/login/options"), strings.NewReader("{}"))
	opt.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, opt)
	var o map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &o)
	body, _ := json.Marshal(map[string]any{"state": o["state"], "credential": map[string]any{}})
	rec = httptest.NewRecorder()
	fin := httptest.NewRequest(http.MethodPost, e.url("/webauthn/login"), bytes.NewReader(body))
	fin.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, fin)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("passkey sign-in with the store down: %d, want 503", rec.Code)
	}
}
