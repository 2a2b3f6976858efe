package oauthweb

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/store"
)

func withSealer(policy string) func(*Config) {
	return func(c *Config) {
		s, err := mfa.NewSealer(bytes.Repeat([]byte{42}, mfa.KeySize))
		if err != nil {
			panic(err)
		}
		c.Sealer = s
		if policy != "" {
			p, err := mfa.ParsePolicy(policy)
			if err != nil {
				panic(err)
			}
			c.SecondFactor = p
		}
	}
}

var (
	secretRE   = regexp.MustCompile(`id="secret">([A-Z2-7]+)<`)
	recoveryRE = regexp.MustCompile(`<li><code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</code></li>`)
)

// enrolTOTP enrols an authenticator from c's session page and returns
// the secret and recovery codes.
func (e *env) enrolTOTP(c *http.Client) (secret string, codes []string) {
	e.t.Helper()
	resp, err := c.Get(e.url("/account/totp"))
	if err != nil {
		e.t.Fatal(err)
	}
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("enrol page: %d", resp.StatusCode)
	}
	if !strings.Contains(body, `src="data:image/png;base64,`) {
		e.t.Errorf("enrol page has no inline PNG QR code")
	}
	m := secretRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no secret on the enrol page")
	}
	secret = m[1]
	e.secret(secret)
	f := formFields(body)
	f.Set("code", totpCode(e.t, secret, e.clock.Now()))
	resp = postForm(e.t, c, e.url("/account/totp"), f)
	body = readBody(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("enrol: %d", resp.StatusCode)
	}
	for _, m := range recoveryRE.FindAllStringSubmatch(body, -1) {
		codes = append(codes, m[1])
	}
	if len(codes) != mfa.RecoveryCodeCount {
		e.t.Fatalf("%d recovery codes shown, want %d", len(codes), mfa.RecoveryCodeCount)
	}
	e.secret(codes...)
	return secret, codes
}

func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := mfa.Code(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// secondFactor posts code on c's second-factor page.
func (e *env) secondFactor(c *http.Client, code string) *http.Response {
	e.t.Helper()
	resp, err := c.Get(e.url("/login/second-factor?return_to=%2Fapps"))
	if err != nil {
		e.t.Fatal(err)
	}
	body := readBody(e.t, resp)
	f := formFields(body)
	f.Set("code", code)
	resp = postForm(e.t, noFollow(c), e.url("/login/second-factor"), f)
	readBody(e.t, resp)
	return resp
}

func TestTOTPEnrolAndSignIn(t *testing.T) {
	e := newEnv(t, withSealer(""), func(c *Config) { c.LockoutThreshold = 5 })
	ctx := context.Background()
	c := e.browser()
	e.login(c)
	secret, codes := e.enrolTOTP(c)
	row, err := e.st.GetTOTP(ctx, testUser)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(row.Secret, []byte(secret)) {
		t.Fatalf("TOTP secret stored in clear")
	}
	if n := len(e.auditEvents(store.EventMFAEnrolled)); n != 1 {
		t.Errorf("mfa_enrolled rows = %d, want 1", n)
	}

	// A fresh browser: the password alone gives a pending session only.
	b := e.browser()
	next := e.passwordStep(b, "/apps")
	if next.Path != "/login/second-factor" {
		t.Fatalf("after the password: %s, want the second-factor page", next)
	}
	resp, err := noFollow(b).Get(e.url("/apps"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/login") {
		t.Fatalf("pending session reached /apps: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The code used for the enrolment is spent (replay within its window).
	if resp := e.secondFactor(b, totpCode(t, secret, e.clock.Now())); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d, want 401", resp.StatusCode)
	}
	// A wrong code is refused and counted toward the lockout.
	wrong := "000000"
	if wrong == totpCode(t, secret, e.clock.Now().Add(30*time.Second)) {
		wrong = "000001"
	}
	if resp := e.secondFactor(b, wrong); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d, want 401", resp.StatusCode)
	}
	lf, _ := e.st.GetLoginFailures(ctx, testUser)
	if lf.Count != 3 { // the password step's reservation is kept, plus two codes
		t.Errorf("login failures after two bad codes = %d, want 3", lf.Count)
	}
	fails := e.auditEvents(store.EventMFAFailure)
	if len(fails) != 2 || fails[0].Error != "invalid_code" || fails[1].Error != "code_reused" {
		t.Errorf("mfa_failure rows: %+v", fails)
	}
	// The next period's code passes, and clears the counter.
	e.clock.Advance(30 * time.Second)
	resp = e.secondFactor(b, totpCode(t, secret, e.clock.Now()))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.url("/apps") {
		t.Fatalf("good code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if lf, _ := e.st.GetLoginFailures(ctx, testUser); lf.Count != 0 {
		t.Errorf("login failures after success = %d, want 0", lf.Count)
	}
	resp, err = b.Get(e.url("/apps"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connected apps") {
		t.Fatalf("/apps after the second factor: %d", resp.StatusCode)
	}

	// A recovery code works once, typed loosely.
	r1 := e.browser()
	e.passwordStep(r1, "/apps")
	if resp := e.secondFactor(r1, strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("recovery code: %d, want 303", resp.StatusCode)
	}
	r2 := e.browser()
	e.passwordStep(r2, "/apps")
	if resp := e.secondFactor(r2, codes[3]); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reused recovery code: %d, want 401", resp.StatusCode)
	}
	if n, _ := e.st.CountRecoveryCodes(ctx, testUser); n != mfa.RecoveryCodeCount-1 {
		t.Errorf("recovery codes left = %d, want %d", n, mfa.RecoveryCodeCount-1)
	}
	if n := len(e.auditEvents(store.EventRecoveryCodeUsed)); n != 1 {
		t.Errorf("recovery_code_used rows = %d, want 1", n)
	}
}

func TestSecondFactorLockout(t *testing.T) {
	e := newEnv(t, withSealer(""), func(c *Config) { c.LockoutThreshold = 3 })
	c := e.browser()
	e.login(c)
	secret, _ := e.enrolTOTP(c)
	e.clock.Advance(30 * time.Second)
	b := e.browser()
	e.passwordStep(b, "/apps")
	good := totpCode(t, secret, e.clock.Now())
	wrong := "123456"
	if wrong == good {
		wrong = "654321"
	}
	for range 2 { // with the password step's reservation: 3, the threshold
		e.secondFactor(b, wrong)
	}
	if n := len(e.auditEvents(store.EventAccountLocked)); n != 1 {
		t.Fatalf("account_locked rows = %d, want 1", n)
	}
	// Locked: even the right code is refused, and a fresh password
	// attempt does not unlock it.
	if resp := e.secondFactor(b, good); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("right code while locked: %d, want 401", resp.StatusCode)
	}
	if _, err := e.st.GetTOTP(context.Background(), testUser); err != nil {
		t.Fatal(err)
	}
	if tt, _ := e.st.GetTOTP(context.Background(), testUser); tt.LastStep >= e.clock.Now().Unix()/30 {
		t.Errorf("the refused code's step was spent")
	}
}

// TestRequireSecondFactorAll: with --require-second-factor all, a user
// who knows only the password gets no authorization code.
func TestRequireSecondFactorAll(t *testing.T) {
	e := newEnv(t, withSealer("all"))
	clientID := e.publicClient()
	conf := e.oauth2Config(clientID, "")
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", testResource))
	authPath := strings.TrimPrefix(authURL, e.issuer)

	b := e.browser()
	next := e.passwordStep(b, authPath)
	if next.Path != "/account/totp" || next.Query().Get("return_to") != authPath {
		t.Fatalf("after the password: %s, want enrolment returning to the authorization", next)
	}
	// The pending session cannot authorize, consent or reach the account.
	for _, path := range []string{authPath, "/apps", "/account", "/login/second-factor"} {
		resp, err := noFollow(b).Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		loc := resp.Header.Get("Location")
		if strings.Contains(loc, "code=") || resp.StatusCode == http.StatusOK {
			t.Fatalf("GET %s with a pending session: %d %s", path, resp.StatusCode, loc)
		}
	}
	resp := postForm(t, noFollow(b), e.url("/consent"), url.Values{"decision": {"approve"}})
	readBody(t, resp)
	if strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Fatalf("consent with a pending session issued a code")
	}
	if n := len(e.auditEvents(store.EventLoginSuccess)); n != 0 {
		t.Errorf("login_success recorded for the password alone: %d", n)
	}

	// Enrolling completes the sign-in and goes back to the authorization.
	resp, err := b.Get(e.url(next.RequestURI()))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	m := secretRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("enrol page: %d", resp.StatusCode)
	}
	f := formFields(body)
	f.Set("code", totpCode(t, m[1], e.clock.Now()))
	resp = postForm(t, b, e.url("/account/totp"), f)
	body = readBody(t, resp)
	cont := regexp.MustCompile(`<a class="button primary" href="([^"]+)"`).FindStringSubmatch(body)
	if cont == nil {
		t.Fatalf("no continue link after enrolment")
	}
	u := e.authorize(b, html.UnescapeString(cont[1]))
	if u.Query().Get("code") == "" {
		t.Fatalf("no code after enrolment: %s", u)
	}
}

func TestAccountChangePassword(t *testing.T) {
	e := newEnv(t, withSealer(""))
	ctx := context.Background()
	c := e.browser()
	e.login(c)
	other := e.browser()
	e.login(other)
	resp, err := c.Get(e.url("/account"))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `for="current_password"`) {
		t.Fatalf("account page: %d", resp.StatusCode)
	}
	f := formFields(body)
	f.Set("current_password", "wrong password here")
	f.Set("new_password", "a brand new passphrase")
	f.Set("confirm_password", "a brand new passphrase")
	resp = postForm(t, c, e.url("/account/password"), f)
	readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong current password: %d, want 401", resp.StatusCode)
	}
	if lf, _ := e.st.GetLoginFailures(ctx, testUser); lf.Count != 1 {
		t.Errorf("wrong current password not counted: %d", lf.Count)
	}
	// Without the session's CSRF token nothing changes.
	bad := url.Values{"csrf": {"nope"}, "current_password": {testPassword}, "new_password": {"x y z w v u t s"}, "confirm_password": {"x y z w v u t s"}}
	resp = postForm(t, c, e.url("/account/password"), bad)
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad csrf: %d, want 403", resp.StatusCode)
	}
	f.Set("current_password", testPassword)
	resp = postForm(t, c, e.url("/account/password"), f)
	body = readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Your password was changed") {
		t.Fatalf("change: %d", resp.StatusCode)
	}
	u, _ := e.st.GetUser(ctx, testUser)
	if e.s.cfg.Hasher.Verify(ctx, u.PasswordHash, "a brand new passphrase") != nil {
		t.Errorf("password not changed")
	}
	// This browser goes on; the other one is signed out.
	for _, tc := range []struct {
		c    *http.Client
		want int
	}{{c, http.StatusOK}, {other, http.StatusFound}} {
		resp, err := noFollow(tc.c).Get(e.url("/account"))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		if resp.StatusCode != tc.want {
			t.Errorf("account after the change: %d, want %d", resp.StatusCode, tc.want)
		}
	}
	// An old sign-in must sign in again before changing anything.
	e.clock.Advance(RecentSignIn + time.Minute)
	resp, err = c.Get(e.url("/account"))
	if err != nil {
		t.Fatal(err)
	}
	f = formFields(readBody(t, resp))
	resp = postForm(t, noFollow(c), e.url("/account/recovery-codes"), f)
	readBody(t, resp)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/login?") {
		t.Fatalf("stale sign-in: %d %s, want a trip to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}
