package browsertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// mfaEnv is a running passgate whose issuer is http://localhost:PORT:
// WebAuthn refuses IP addresses as relying-party IDs, and Chromium treats
// localhost as a secure context.
type mfaEnv struct {
	*env
	issuer string
}

func (e *mfaEnv) url(path string) string { return e.issuer + path }

func (e *mfaEnv) authorizeURL(c *client) string {
	return strings.Replace(e.env.authorizeURL(c), e.srv.Issuer, e.issuer, 1)
}

// stores runs fn on SQLite and on PostgreSQL (skipped without one, unless
// CI=true), as the two deployments passgate supports.
func stores(t *testing.T, fn func(t *testing.T, o e2etest.Options)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, e2etest.Options{}) })
	t.Run("postgres", func(t *testing.T) {
		db := pgtest.NewDatabase(t)
		// Replicas share the sealing key through a file; one is needed
		// for second factors on PostgreSQL.
		key := filepath.Join(t.TempDir(), "secret.key")
		k := make([]byte, mfa.KeySize)
		_, _ = rand.Read(k)
		if err := os.WriteFile(key, []byte(fmt.Sprintf("%x\n", k)), 0o600); err != nil {
			t.Fatal(err)
		}
		fn(t, e2etest.Options{DatabaseURL: db, Args: []string{"--secret-key-file", key}})
	})
}

func newMFAEnv(t *testing.T, o e2etest.Options, args ...string) *mfaEnv {
	t.Helper()
	o.HTTPAddr = e2etest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(o.HTTPAddr)
	issuer := "http://localhost:" + port
	o.Args = append(append(o.Args, "--issuer", issuer, "--login-limit=off", "--authorize-limit=off"), args...)
	return &mfaEnv{env: newEnvOpts(t, o), issuer: issuer}
}

// approveAndRedeem approves the consent page the browser is on, and
// redeems the code the client's callback receives for a token.
func (e *mfaEnv) approveAndRedeem(t *testing.T, b *Browser, c *client) string {
	t.Helper()
	if got := text(t, b, ".client-name"); got != clientName {
		t.Fatalf("expected the consent page at %s, found %q", location(t, b), text(t, b, "h1"))
	}
	access, _ := e.exchange(t, c, e.approve(t, b))
	return access
}

// addAuthenticator gives the browser a virtual platform authenticator
// with user verification (a fingerprint that always matches), through
// the DevTools WebAuthn domain.
func addAuthenticator(t *testing.T, b *Browser) webauthn.AuthenticatorID {
	return addAuthenticatorPresence(t, b, true)
}

// addAuthenticatorPresence is addAuthenticator whose user-presence test
// passes at once (presence true) or waits until setPresence.
func addAuthenticatorPresence(t *testing.T, b *Browser, presence bool) webauthn.AuthenticatorID {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
		Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
		IsUserVerified: true, AutomaticPresenceSimulation: presence,
		// cdproto always sends generateCmtgKeyOnNextOperation with
		// addCredential, which Chromium refuses unless the authenticator
		// claims the extension.
		HasCmtgKey: true,
	}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return res.AuthenticatorID
}

func setPresence(t *testing.T, b *Browser, id webauthn.AuthenticatorID, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, webauthn.SetAutomaticPresenceSimulation, webauthn.SetAutomaticPresenceSimulationParams{AuthenticatorID: id, Enabled: on}); err != nil {
		t.Fatalf("WebAuthn.setAutomaticPresenceSimulation: %v", err)
	}
}

// addCredential copies a credential onto another browser's authenticator.
func addCredential(t *testing.T, b *Browser, id webauthn.AuthenticatorID, src *webauthn.Credential) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, webauthn.AddCredential, webauthn.AddCredentialParams{AuthenticatorID: id, Credential: &webauthn.Credential{
		CredentialID: src.CredentialID, IsResidentCredential: true, RpID: src.RpID, PrivateKey: src.PrivateKey,
		UserHandle: src.UserHandle, SignCount: src.SignCount, UserName: src.UserName,
	}})
	if err != nil {
		t.Fatalf("WebAuthn.addCredential: %v", err)
	}
}

func credentials(t *testing.T, b *Browser, id webauthn.AuthenticatorID) []*webauthn.Credential {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	return res.Credentials
}

// waitFor polls a JavaScript condition until it is true.
func waitFor(t *testing.T, b *Browser, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within 15s (at %s: %q)", what, location(t, b), text(t, b, "main"))
}

// signInAt opens the login page (or follows the authorization request to
// it) and submits the password.
func signInAt(t *testing.T, b *Browser, u string) {
	t.Helper()
	navigate(t, b, u)
	signIn(t, b, testPassword)
}

// TestPasskeyInChromium registers a passkey on the account page with
// Chromium's virtual authenticator, signs out, and then, from a fresh
// browser holding only that passkey, completes an MCP client's
// authorization without typing a password; on both stores.
func TestPasskeyInChromium(t *testing.T) {
	ChromiumPath(t)
	stores(t, func(t *testing.T, o e2etest.Options) {
		e := newMFAEnv(t, o)
		a := NewBrowser(t, Phone, false)
		auth := addAuthenticator(t, a)

		signInAt(t, a, e.url("/login?return_to=%2Faccount"))
		mustBeAt(t, a, e.url("/account"), "after sign-in", "the account page")
		checkPage(t, a, "account")
		if n := eval[int](t, a, `[...document.scripts].filter(s => s.src.includes('/static/passgate.js')).length`); n != 1 {
			t.Errorf("account page loads passgate.js %d times, want once", n)
		}
		waitFor(t, a, "passkey button shown", `!document.querySelector('[data-passkey=register]').hidden`)
		typeInto(t, a, "#passkey-name", "Test phone")
		step(t, a, "add a passkey", chromedp.Click(chromedp.CSS(`[data-passkey=register] button`)))
		waitFor(t, a, "passkey listed", `[...document.querySelectorAll('.passkey-row strong')].some(e => e.textContent === 'Test phone')`)
		creds := credentials(t, a, auth)
		if len(creds) != 1 || !creds[0].IsResidentCredential || creds[0].RpID != "localhost" {
			t.Fatalf("virtual authenticator holds %d credentials (%+v), want one discoverable for localhost", len(creds), creds)
		}
		if out := e.srv.CLI(t, "", "user", "mfa", "list", testUser); !strings.Contains(out, "passkey Test phone") {
			t.Errorf("user mfa list does not show the passkey:\n%s", out)
		}

		// Sign out.
		navigate(t, a, e.url("/logout"))
		click(t, a, "button[type=submit]")

		// A fresh browser, with the passkey on its authenticator and no
		// cookies, completes the authorization with the passkey alone.
		// The authenticator waits for "presence" until the page is
		// checked, then the button asks for the passkey.
		b := NewBrowser(t, Desktop, true)
		bauth := addAuthenticatorPresence(t, b, false)
		addCredential(t, b, bauth, creds[0])
		c := e.register(t)
		navigate(t, b, e.authorizeURL(c))
		mustBeAt(t, b, e.url("/login?"), "authorize", "the login page")
		checkPage(t, b, "login with passkeys")
		if ac := eval[string](t, b, `document.querySelector('#username').getAttribute('autocomplete')`); ac != "username webauthn" {
			t.Errorf("username autocomplete %q, want %q (conditional UI)", ac, "username webauthn")
		}
		waitFor(t, b, "passkey sign-in button shown", `!document.querySelector('[data-passkey=login]').hidden`)
		setPresence(t, b, bauth, true)
		// A click in the page's own script: the waiting autofill request
		// may complete and navigate at any moment.
		eval[bool](t, b, `(() => { const btn = document.querySelector('[data-passkey=login] button'); if (btn) btn.click(); return true })()`)
		waitFor(t, b, "consent after the passkey", `!!document.querySelector('.client-name')`)
		e.approveAndRedeem(t, b, c)
		if after := credentials(t, b, bauth); len(after) != 1 || after[0].SignCount <= creds[0].SignCount {
			t.Errorf("the authenticator's counter did not advance: %v", after)
		}
		out := e.srv.CLI(t, "", "audit", "--event", "passkey_login")
		if !strings.Contains(out, testUser) {
			t.Errorf("no passkey_login audit row for %s:\n%s", testUser, out)
		}

		// Conditional UI: in another fresh browser whose authenticator
		// answers at once, opening the authorization request is enough:
		// the passkey offered in the username field's autofill signs in
		// (the virtual authenticator picks it, as a person would).
		d := NewBrowser(t, Phone, false)
		addCredential(t, d, addAuthenticator(t, d), credentials(t, b, bauth)[0])
		c2 := e.register(t)
		navigate(t, d, e.authorizeURL(c2))
		waitFor(t, d, "consent through the autofill", `!!document.querySelector('.client-name')`)
		e.approveAndRedeem(t, d, c2)
	})
}

// TestTOTPInChromium enrols an authenticator app in Chromium (the test
// computes the codes from the secret the page shows), signs in with a
// code and with a recovery code, and shows that wrong codes count toward
// the account's lockout; on both stores.
func TestTOTPInChromium(t *testing.T) {
	ChromiumPath(t)
	stores(t, func(t *testing.T, o e2etest.Options) {
		e := newMFAEnv(t, o, "--lockout-threshold=3")
		a := NewBrowser(t, Phone, false)
		signInAt(t, a, e.url("/login?return_to=%2Faccount"))
		click(t, a, `a[href$="/account/totp"]`)
		checkPage(t, a, "enrol")
		if src := eval[string](t, a, `document.querySelector('img.qr').getAttribute('src')`); !strings.HasPrefix(src, "data:image/png;base64,") {
			t.Fatalf("QR code src %.40q, want an inline PNG", src)
		}
		if w := eval[int](t, a, `document.querySelector('img.qr').naturalWidth`); w < 100 {
			t.Errorf("QR code did not render (natural width %d)", w)
		}
		secret := text(t, a, "#secret")
		code, err := mfa.Code(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		typeInto(t, a, "#code", code)
		click(t, a, "button[type=submit]")
		checkPage(t, a, "recovery codes")
		codes := eval[[]string](t, a, `[...document.querySelectorAll('.codes code')].map(e => e.textContent)`)
		if len(codes) != mfa.RecoveryCodeCount {
			t.Fatalf("%d recovery codes shown, want %d", len(codes), mfa.RecoveryCodeCount)
		}

		// A fresh browser: password, then a code for the next period
		// (this period's was spent by the enrolment).
		c := e.register(t)
		b := NewBrowser(t, Desktop, false)
		signInAt(t, b, e.authorizeURL(c))
		mustBeAt(t, b, e.url("/login/second-factor"), "after the password", "the second-factor page")
		checkPage(t, b, "second factor")
		next, _ := mfa.Code(secret, time.Now().Add(mfa.Period))
		typeInto(t, b, "#code", next)
		click(t, b, "button[type=submit]")
		e.approveAndRedeem(t, b, c)

		// A recovery code works once.
		r := NewBrowser(t, Phone, true)
		signInAt(t, r, e.url("/login?return_to=%2Fapps"))
		typeInto(t, r, "#code", codes[0])
		click(t, r, "button[type=submit]")
		mustBeAt(t, r, e.url("/apps"), "recovery code", "connected apps")
		r2 := NewBrowser(t, Phone, false)
		signInAt(t, r2, e.url("/login?return_to=%2Fapps"))
		typeInto(t, r2, "#code", codes[0])
		click(t, r2, "button[type=submit]")
		if msg := text(t, r2, ".alert .msg"); !strings.Contains(msg, "did not work") {
			t.Errorf("reused recovery code: message %q", msg)
		}
		e.srv.CLI(t, "", "user", "unlock", testUser)

		// Wrong codes count toward the lockout: with a threshold of 3,
		// the password and two wrong codes lock the account, and then
		// even the right code is refused.
		l := NewBrowser(t, Phone, false)
		signInAt(t, l, e.url("/login?return_to=%2Fapps"))
		for _, wrong := range []string{"000000", "999999"} {
			if wrong == next {
				wrong = "123456"
			}
			typeInto(t, l, "#code", wrong)
			click(t, l, "button[type=submit]")
		}
		// LOCKED UNTIL is the last column ("-" when not locked).
		if out := e.srv.CLI(t, "", "user", "list"); lineOf(out, testUser) == "" || strings.HasSuffix(strings.TrimSpace(lineOf(out, testUser)), " -") {
			t.Errorf("user list does not show %s locked:\n%s", testUser, out)
		}
		later, _ := mfa.Code(secret, time.Now().Add(mfa.Period))
		typeInto(t, l, "#code", later)
		click(t, l, "button[type=submit]")
		if msg := text(t, l, ".alert .msg"); !strings.Contains(msg, "paused") {
			t.Errorf("right code while locked: message %q, want the lockout", msg)
		}
		if strings.HasPrefix(location(t, l), e.url("/apps")) {
			t.Errorf("signed in while locked")
		}
	})
}

func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestRequireSecondFactorAllInChromium: with --require-second-factor all,
// the password alone leads to enrolment, never to consent or a code; the
// user gets a token only after enrolling.
func TestRequireSecondFactorAllInChromium(t *testing.T) {
	ChromiumPath(t)
	stores(t, func(t *testing.T, o e2etest.Options) {
		e := newMFAEnv(t, o, "--require-second-factor=all")
		c := e.register(t)
		b := NewBrowser(t, Phone, false)
		signInAt(t, b, e.authorizeURL(c))
		mustBeAt(t, b, e.url("/account/totp"), "after the password", "enrolment")
		checkPage(t, b, "required enrolment")
		// Going around the enrolment does not help: the authorization
		// request sends the browser back to the login page.
		navigate(t, b, e.authorizeURL(c))
		mustBeAt(t, b, e.url("/login"), "authorize with only a password", "the login page")
		select {
		case q := <-e.cb.hits:
			t.Fatalf("the client received %v with only a password", q)
		default:
		}
		signIn(t, b, testPassword)
		secret := text(t, b, "#secret")
		code, _ := mfa.Code(secret, time.Now())
		typeInto(t, b, "#code", code)
		click(t, b, "button[type=submit]")
		click(t, b, "a.button.primary")
		e.approveAndRedeem(t, b, c)

		// Another user meets the requirement with a passkey instead of
		// an app, right after the password, and goes on to consent.
		e.srv.CLI(t, testPassword+"\n", "user", "add", "bob", "--password-stdin")
		c2 := e.register(t)
		p := NewBrowser(t, Desktop, false)
		addAuthenticator(t, p)
		navigate(t, p, e.authorizeURL(c2))
		typeInto(t, p, "#username", "bob")
		typeInto(t, p, "#password", testPassword)
		click(t, p, "button[type=submit]")
		mustBeAt(t, p, e.url("/account/totp"), "bob after the password", "enrolment")
		waitFor(t, p, "passkey enrolment offered", `!document.querySelector('[data-passkey=register]').hidden`)
		eval[bool](t, p, `(() => { document.querySelector('[data-passkey=register] button').click(); return true })()`)
		waitFor(t, p, "consent after enrolling a passkey", `!!document.querySelector('.client-name')`)
		e.approveAndRedeem(t, p, c2)
		if out := e.srv.CLI(t, "", "user", "mfa", "list", "bob"); !strings.Contains(out, "passkey") {
			t.Errorf("bob's factors:\n%s", out)
		}
	})
}

// mfaWalk visits the account page, sets up an authenticator app, shows
// the recovery codes, signs out and signs in again up to the second-factor
// page, calling shot on each page.
func mfaWalk(t *testing.T, e *mfaEnv, b *Browser, shot func(name string)) {
	t.Helper()
	signInAt(t, b, e.url("/login?return_to=%2Faccount"))
	waitFor(t, b, "passkey controls shown", `!document.querySelector('[data-passkey=register]').hidden`)
	checkPage(t, b, "account")
	shot("account")
	click(t, b, `a[href$="/account/totp"]`)
	checkPage(t, b, "enrol")
	shot("enroll")
	code, _ := mfa.Code(text(t, b, "#secret"), time.Now())
	typeInto(t, b, "#code", code)
	click(t, b, "button[type=submit]")
	checkPage(t, b, "recovery codes")
	shot("recovery")
	navigate(t, b, e.url("/logout"))
	click(t, b, "button[type=submit]")
	signInAt(t, b, e.url("/login?return_to=%2Fapps"))
	checkPage(t, b, "second factor")
	shot("second-factor")
}

// TestMFAPages walks the second-factor pages at every viewport and checks
// each: labels, names, no script but passgate.js, no sideways scrolling.
func TestMFAPages(t *testing.T) {
	ChromiumPath(t)
	for _, vp := range []Viewport{Phone, Desktop, Narrow} {
		t.Run(vp.Name, func(t *testing.T) {
			e := newMFAEnv(t, e2etest.Options{})
			mfaWalk(t, e, NewBrowser(t, vp, vp == Narrow), func(string) {})
		})
	}
}
