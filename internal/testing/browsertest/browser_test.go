package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
	clientName   = "Example Assistant"
)

// env is a running passgate with a user, plus the client's callback.
type env struct {
	srv *e2etest.Server
	cb  *callback
}

// newEnv starts passgate with extra serve flags and adds testUser with the
// CLI, as an operator would.
func newEnv(t *testing.T, args ...string) *env {
	t.Helper()
	return newEnvOpts(t, e2etest.Options{Args: args})
}

func newEnvOpts(t *testing.T, o e2etest.Options) *env {
	t.Helper()
	srv := e2etest.Start(t, o)
	srv.CLI(t, testPassword+"\n", "user", "add", testUser, "--password-stdin")
	return &env{srv: srv, cb: newCallback(t)}
}

// callback is the client's loopback redirect URI: it records the query of
// every request and answers with a small page.
type callback struct {
	URL string
	// Host is URL's host:port, which the consent page names.
	Host string
	// DocumentURL serves a Client ID Metadata Document for a client
	// named "Docs Bot" redirecting to URL.
	DocumentURL string
	hits        chan url.Values
}

func newCallback(t *testing.T) *callback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	c := &callback{URL: base + "/callback", Host: ln.Addr().String(), DocumentURL: base + "/client.json", hits: make(chan url.Values, 16)}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/client.json" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"client_id": c.DocumentURL, "client_name": "Docs Bot", "redirect_uris": []string{c.URL},
				"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
			})
			return
		}
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		c.hits <- r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>Connected</title><h1 id="done">Connected</h1>`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// client is a registered public client with a PKCE pair.
type client struct {
	ID, Verifier, Challenge, State, RedirectURI string
}

// register registers a public client with RFC 7591, redirecting to the
// callback.
func (e *env) register(t *testing.T) *client {
	t.Helper()
	return e.registerAs(t, clientName, e.cb.URL)
}

func (e *env) registerAs(t *testing.T, name, redirectURI string) *client {
	t.Helper()
	reg, err := e.srv.RegisterMetadata(t.Context(), map[string]any{
		"client_name":                name,
		"redirect_uris":              []string{redirectURI},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
	})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	v, c := e2etest.PKCE()
	return &client{ID: reg.ClientID, Verifier: v, Challenge: c, State: randHex(), RedirectURI: redirectURI}
}

func randHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *env) authorizeURL(c *client) string {
	return e.srv.URL("/oauth/authorize") + "?" + url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ID},
		"redirect_uri":          {c.RedirectURI},
		"state":                 {c.State},
		"code_challenge":        {c.Challenge},
		"code_challenge_method": {"S256"},
		"resource":              {e.srv.Resource},
		"scope":                 {"mcp"},
	}.Encode()
}

// token posts a token request and returns the status and JSON body.
func (e *env) token(t *testing.T, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := e.srv.HTTPClient.PostForm(e.srv.URL("/oauth/token"), v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// approve clicks Approve on the consent page b is on and returns the
// query the client's callback received.
func (e *env) approve(t *testing.T, b *Browser) url.Values {
	t.Helper()
	click(t, b, "button[value=approve]")
	select {
	case q := <-e.cb.hits:
		return q
	case <-time.After(10 * time.Second):
		t.Fatal("approve: the callback was not called")
		return nil
	}
}

// exchange redeems the code the callback received (its query q) for c,
// failing the test unless the token endpoint answers 200 with both tokens.
func (e *env) exchange(t *testing.T, c *client, q url.Values) (access, refresh string) {
	t.Helper()
	status, tok := e.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {c.RedirectURI},
		"client_id": {c.ID}, "code_verifier": {c.Verifier}, "resource": {e.srv.Resource},
	})
	access, _ = tok["access_token"].(string)
	refresh, _ = tok["refresh_token"].(string)
	if status != http.StatusOK || access == "" || refresh == "" {
		t.Fatalf("exchange the code: %d %v", status, tok["error"])
	}
	return access, refresh
}

// step bounds one browser step in time.
func step(t *testing.T, b *Browser, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, b *Browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %.60q: %v", expr, err)
	}
	return v
}

// navigate loads a URL and waits for the load event.
func navigate(t *testing.T, b *Browser, u string) {
	t.Helper()
	step(t, b, "navigate "+u, chromedp.Navigate(u))
}

// click clicks sel and waits for the page it leads to.
func click(t *testing.T, b *Browser, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// typeInto types text into an input, key by key.
func typeInto(t *testing.T, b *Browser, sel, text string) {
	t.Helper()
	// Not chromedp.Clear + SendKeys: Clear changes the value attribute, and
	// SendKeys (chromedp v0.23.0) reads the node's attributes without the
	// lock chromedp's event loop holds while it records that change, a data
	// race the race detector reports. Emptying the value property sends no
	// attribute event, and KeyEvent types into the focused field as a
	// person would, without reading the node.
	step(t, b, "type into "+sel,
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf("document.querySelector(%q).value = ''", sel)),
		chromedp.KeyEvent(text))
}

// signIn submits the login form as testUser with password.
func signIn(t *testing.T, b *Browser, password string) {
	t.Helper()
	typeInto(t, b, "#username", testUser)
	typeInto(t, b, "#password", password)
	click(t, b, "button[type=submit]")
}

func location(t *testing.T, b *Browser) string { return eval[string](t, b, `location.href`) }

// mustBeAt stops the test unless the browser is at a URL starting with
// prefix: after is the step that led there, want the page it should be.
func mustBeAt(t *testing.T, b *Browser, prefix, after, want string) {
	t.Helper()
	if loc := location(t, b); !strings.HasPrefix(loc, prefix) {
		t.Fatalf("%s: at %s, want %s", after, loc, want)
	}
}

func text(t *testing.T, b *Browser, sel string) string {
	t.Helper()
	return strings.TrimSpace(eval[string](t, b, fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel)))
}

// pageFacts is what checkPage reads from the page's DOM.
type pageFacts struct {
	Unlabelled   []string `json:"unlabelled"`
	Nameless     []string `json:"nameless"`
	Scripts      int      `json:"scripts"`
	InlineStyles int      `json:"inlineStyles"`
	Overflow     bool     `json:"overflow"`
	LiveRegions  int      `json:"liveRegions"`
	Lang         string   `json:"lang"`
	Title        string   `json:"title"`
	H1           int      `json:"h1"`
	Viewport     string   `json:"viewport"`
	Stylesheets  int      `json:"stylesheets"`
}

const factsJS = `(() => {
  const name = el => el.name || el.id || el.outerHTML.slice(0, 80);
  const unlabelled = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const byFor = el.id && [...document.querySelectorAll('label[for]')].some(l => l.htmlFor === el.id && l.textContent.trim() !== '');
    const wrapped = el.closest('label') && el.closest('label').textContent.trim() !== '';
    const aria = (el.getAttribute('aria-label') || '').trim() !== '' ||
      (el.getAttribute('aria-labelledby') || '').split(/\s+/).some(id => id && document.getElementById(id) && document.getElementById(id).textContent.trim() !== '');
    if (!(byFor || wrapped || aria)) unlabelled.push(name(el));
  }
  const nameless = [...document.querySelectorAll('button, a[href]')]
    .filter(el => el.textContent.trim() === '' && (el.getAttribute('aria-label') || '').trim() === '').map(name);
  return {
    unlabelled, nameless,
    // passgate.js, the one first-party script of the passkey pages, is
    // allowed; nothing else, and nothing inline.
    scripts: [...document.scripts].filter(s => !/\/static\/passgate\.js(\?|$)/.test(s.src)).length,
    inlineStyles: document.querySelectorAll('[style], style').length,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    liveRegions: document.querySelectorAll('[aria-live]').length,
    lang: document.documentElement.lang,
    title: document.title,
    h1: document.querySelectorAll('h1').length,
    viewport: (document.querySelector('meta[name=viewport]') || {}).content || '',
    stylesheets: [...document.styleSheets].filter(s => { try { return s.cssRules.length > 0 } catch (e) { return false } }).length,
  };
})()`

// checkPage checks the page in the browser: every input labelled, every
// button and link named, no script, no inline style, one h1, a live
// region, no horizontal scrolling at this viewport, the stylesheet loaded.
func checkPage(t *testing.T, b *Browser, what string) pageFacts {
	t.Helper()
	f := eval[pageFacts](t, b, factsJS)
	var errs []string
	if len(f.Unlabelled) > 0 {
		errs = append(errs, fmt.Sprintf("inputs without a label: %q", f.Unlabelled))
	}
	if len(f.Nameless) > 0 {
		errs = append(errs, fmt.Sprintf("buttons or links without a name: %q", f.Nameless))
	}
	if f.Scripts != 0 || f.InlineStyles != 0 {
		errs = append(errs, fmt.Sprintf("%d scripts, %d inline styles", f.Scripts, f.InlineStyles))
	}
	if f.Overflow {
		errs = append(errs, "the page scrolls sideways")
	}
	if f.LiveRegions == 0 {
		errs = append(errs, "no aria-live region")
	}
	if f.Lang == "" || f.H1 != 1 || f.Title == "" || !strings.Contains(f.Viewport, "width=device-width") {
		errs = append(errs, fmt.Sprintf("lang %q, %d h1, title %q, viewport %q", f.Lang, f.H1, f.Title, f.Viewport))
	}
	if f.Stylesheets != 1 {
		errs = append(errs, fmt.Sprintf("%d stylesheets loaded, want 1 (CSP or path broken?)", f.Stylesheets))
	}
	if len(errs) > 0 {
		t.Errorf("%s (%s): %s", what, location(t, b), strings.Join(errs, "; "))
	}
	return f
}

// walk runs the whole flow in the browser: authorize, wrong password,
// sign in, consent, approve, callback with a code, connected apps, revoke,
// logout, and an error page. shot, if not nil, is called on each page.
func walk(t *testing.T, e *env, b *Browser, shot func(name string)) {
	if shot == nil {
		shot = func(string) {}
	}
	c := e.register(t)

	// The authorization request sends an unknown browser to the login page.
	navigate(t, b, e.authorizeURL(c))
	mustBeAt(t, b, e.srv.URL("/login?"), "authorize", "the login page")
	checkPage(t, b, "login")
	for sel, want := range map[string]string{"#username": "username", "#password": "current-password"} {
		if got := eval[string](t, b, fmt.Sprintf(`document.querySelector(%q).autocomplete`, sel)); got != want {
			t.Errorf("login: %s autocomplete %q, want %q", sel, got, want)
		}
	}
	shot("login")

	// Focus is visible: moving through the form with the keyboard puts a
	// solid outline on the focused field.
	step(t, b, "tab", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`),
		chromedp.KeyEvent(kb.Tab))
	type focus struct {
		ID      string `json:"id"`
		Outline string `json:"outline"`
	}
	if f := eval[focus](t, b, `({id: document.activeElement.tagName + '#' + document.activeElement.id, outline: getComputedStyle(document.activeElement).outlineStyle})`); !strings.HasPrefix(f.ID, "INPUT#") && !strings.HasPrefix(f.ID, "BUTTON#") || f.Outline != "solid" {
		t.Errorf("login: after Tab, focus on %q with outline-style %q, want a field or button with a solid outline", f.ID, f.Outline)
	}

	// A wrong password: the error is shown in an aria-live region.
	signIn(t, b, "wrong password")
	msg := text(t, b, ".alert .msg")
	if !strings.Contains(msg, "Sign-in failed") {
		t.Errorf("wrong password: message %q", msg)
	}
	live := eval[string](t, b, `(() => { const m = document.querySelector('.alert .msg'); const r = m && m.closest('[aria-live]'); return r ? r.getAttribute('aria-live') + '/' + (r.getAttribute('role')||'') : '' })()`)
	if live != "assertive/alert" {
		t.Errorf("wrong password: the message is in live region %q, want assertive/alert", live)
	}
	if inv := eval[string](t, b, `document.querySelector('#password').getAttribute('aria-invalid') || ''`); inv != "true" {
		t.Errorf("wrong password: password field aria-invalid=%q", inv)
	}
	checkPage(t, b, "login error")
	shot("login-error")

	// The right password leads to the consent page.
	signIn(t, b, testPassword)
	checkPage(t, b, "consent")
	if got := text(t, b, ".client-name"); got != clientName {
		t.Errorf("consent: client name %q, want %q", got, clientName)
	}
	if got := text(t, b, ".redirect-host"); got != e.cb.Host {
		t.Errorf("consent: redirect host %q, want %q", got, e.cb.Host)
	}
	// Impossible to miss: large, and on the first screen without scrolling.
	type box struct {
		Font   float64 `json:"font"`
		Bottom float64 `json:"bottom"`
		Height float64 `json:"height"`
	}
	for _, sel := range []string{".redirect-host", ".client-name"} {
		bx := eval[box](t, b, fmt.Sprintf(`(() => { const el = document.querySelector(%q); const r = el.getBoundingClientRect(); return {font: parseFloat(getComputedStyle(el).fontSize), bottom: r.bottom, height: innerHeight} })()`, sel))
		if bx.Font < 18 || bx.Bottom > bx.Height {
			t.Errorf("consent: %s is %.0fpx and ends at %.0f of %.0f", sel, bx.Font, bx.Bottom, bx.Height)
		}
	}
	if s := text(t, b, ".scopes"); !strings.Contains(s, "Use the MCP server at") {
		t.Errorf("consent: scopes in words: %q", s)
	}
	shot("consent")

	// Approve: the browser lands on the client's redirect URI with a code.
	q := e.approve(t, b)
	if loc := location(t, b); !strings.HasPrefix(loc, e.cb.URL+"?") {
		t.Errorf("approve: at %s, want the callback", loc)
	}
	if !strings.HasPrefix(q.Get("code"), "pgc_") || q.Get("state") != c.State || q.Get("iss") != e.srv.Issuer {
		t.Fatalf("callback query: code %t state %q iss %q", strings.HasPrefix(q.Get("code"), "pgc_"), q.Get("state"), q.Get("iss"))
	}
	_, refresh := e.exchange(t, c, q)

	// Connected apps lists the client; revoking it ends its tokens.
	navigate(t, b, e.srv.URL("/apps"))
	checkPage(t, b, "apps")
	if got := text(t, b, ".app-name"); got != clientName {
		t.Errorf("apps: first app %q, want %q", got, clientName)
	}
	shot("apps")
	click(t, b, "button.danger")
	checkPage(t, b, "apps after revoke")
	if n := eval[int](t, b, `document.querySelectorAll('.app').length`); n != 0 {
		t.Errorf("apps after revoke: %d apps listed", n)
	}
	if status, m := e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {c.ID}}); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("refresh after revoke: %d %v, want 400 invalid_grant", status, m["error"])
	}

	// Logout asks first, then signs out.
	navigate(t, b, e.srv.URL("/logout"))
	checkPage(t, b, "logout")
	shot("logout")
	click(t, b, "button[type=submit]")
	checkPage(t, b, "signed out")
	if h := text(t, b, "h1"); h != "Signed out" {
		t.Errorf("logout: heading %q", h)
	}
	shot("logout-done")

	// An unknown client gets an error page, never a redirect.
	navigate(t, b, e.srv.URL("/oauth/authorize?response_type=code&client_id=unknown-client"))
	checkPage(t, b, "error")
	if h := text(t, b, "h1"); h != "Unknown application" {
		t.Errorf("unknown client: heading %q", h)
	}
	shot("error")

	if out := b.NonLoopback(); len(out) > 0 {
		t.Errorf("requests left loopback: %q", out)
	}
	if len(b.Requests()) < 10 {
		t.Errorf("only %d requests recorded: is the network listener working?", len(b.Requests()))
	}
}

// TestFlow logs in, approves, receives a code, revokes and signs out in
// Chromium at a phone and a desktop viewport, with branding configured.
func TestFlow(t *testing.T) {
	ChromiumPath(t)
	e := newEnv(t,
		"--brand-title", "Example Corp", "--brand-accent", "#0f766e",
		"--brand-footer", "Example Corp · help@example.com",
		"--login-limit=off", "--authorize-limit=off")
	for _, vp := range []Viewport{Phone, Desktop, Narrow} {
		t.Run(vp.Name, func(t *testing.T) {
			b := NewBrowser(t, vp, vp == Narrow)
			walk(t, e, b, func(name string) {
				if name != "login" {
					return
				}
				if got := text(t, b, ".brand-title"); got != "Example Corp" {
					t.Errorf("brand title %q", got)
				}
				if got := text(t, b, ".footer"); got != "Example Corp · help@example.com" {
					t.Errorf("footer %q", got)
				}
				// Light mode uses the accent as given; dark mode (the
				// narrow run) lifts this dark green.
				got := eval[string](t, b, `getComputedStyle(document.querySelector('button.primary')).backgroundColor`)
				if light := got == "rgb(15, 118, 110)"; light == (vp == Narrow) {
					t.Errorf("accent at %s: button background %q", vp.Name, got)
				}
			})
		})
	}
}

// TestErrorPages opens the pages that must not redirect (unknown client,
// unregistered redirect URI), the rate-limit page, and a locked account.
func TestErrorPages(t *testing.T) {
	ChromiumPath(t)
	e := newEnv(t, "--authorize-limit=3/1m", "--lockout-threshold=2", "--login-limit=off")
	c := e.register(t)
	b := NewBrowser(t, Phone, false)

	bad := e.authorizeURL(c)
	bad = strings.Replace(bad, url.QueryEscape(e.cb.URL), url.QueryEscape("http://127.0.0.1:1/elsewhere"), 1)
	for _, tc := range []struct{ name, url, heading, msg string }{
		{"unknown client", e.srv.URL("/oauth/authorize?response_type=code&client_id=nope"), "Unknown application", "not registered"},
		{"bad redirect", bad, "Unexpected return address", "redirect URI does not match"},
		{"ok", e.authorizeURL(c), "Sign in", ""},
		{"rate limited", e.authorizeURL(c), "Too many attempts", "Too many requests"},
	} {
		navigate(t, b, tc.url)
		checkPage(t, b, tc.name)
		if h := text(t, b, "h1"); h != tc.heading {
			t.Errorf("%s: heading %q, want %q", tc.name, h, tc.heading)
		}
		if tc.msg != "" {
			if m := text(t, b, "[aria-live] .msg"); !strings.Contains(m, tc.msg) {
				t.Errorf("%s: live message %q, want %q", tc.name, m, tc.msg)
			}
		}
	}
	if h := text(t, b, ".hint"); !strings.HasPrefix(h, "Try again in") {
		t.Errorf("rate limited: hint %q", h)
	}

	// Two failures lock the account: then even the right password fails,
	// with the same answer as a wrong one (no account probing) and a hint.
	navigate(t, b, e.srv.URL("/login"))
	for _, pw := range []string{"wrong 1", "wrong 2", testPassword} {
		signIn(t, b, pw)
	}
	if m := text(t, b, "[aria-live]"); !strings.Contains(m, "Sign-in failed") || !strings.Contains(m, "pauses") {
		t.Errorf("locked: live region %q", m)
	}
	if out := b.NonLoopback(); len(out) > 0 {
		t.Errorf("requests left loopback: %q", out)
	}
}

// TestCIMDConsent: for a Client ID Metadata Document client, the consent
// page shows the host publishing the document next to the redirect host,
// and approving works.
func TestCIMDConsent(t *testing.T) {
	ChromiumPath(t)
	e := newEnv(t, "--cimd-allow-loopback-http", "--login-limit=off", "--authorize-limit=off")
	b := NewBrowser(t, Phone, false)
	v, ch := e2etest.PKCE()
	c := &client{ID: e.cb.DocumentURL, Verifier: v, Challenge: ch, State: randHex(), RedirectURI: e.cb.URL}
	navigate(t, b, e.authorizeURL(c))
	signIn(t, b, testPassword)
	checkPage(t, b, "cimd consent")
	for sel, want := range map[string]string{".client-name": "Docs Bot", ".redirect-host": e.cb.Host, ".client-id-host": e.cb.Host} {
		if got := text(t, b, sel); got != want {
			t.Errorf("consent: %s = %q, want %q", sel, got, want)
		}
	}
	click(t, b, "button[value=approve]")
	select {
	case q := <-e.cb.hits:
		if !strings.HasPrefix(q.Get("code"), "pgc_") || q.Get("state") != c.State {
			t.Errorf("callback: code %t, state %q", strings.HasPrefix(q.Get("code"), "pgc_"), q.Get("state"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("approve: the callback was not called")
	}
	if out := b.NonLoopback(); len(out) > 0 {
		t.Errorf("requests left loopback: %q", out)
	}
}

// TestBrokenOverrideStopsStartup: passgate refuses to start when a
// template override does not parse, and says which file.
func TestBrokenOverrideStopsStartup(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "login.html"), []byte(`{{define "content"}}<h1>{{.Nope</h1>{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Binary(t), "serve", "--data-dir", t.TempDir(),
		"--http-listen", e2etest.FreeAddr(t), "--grpc-listen", "", "--metrics-listen", "",
		"--template-dir", dir, "--log-format", "text")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("passgate started with a broken template:\n%s", out)
	}
	if !strings.Contains(string(out), filepath.Join(dir, "login.html")) {
		t.Errorf("the error does not name the file:\n%s", out)
	}
}

// TestScreenshots writes docs/screenshots-style PNGs of every page at both
// viewports, light and dark, into $PASSGATE_SCREENSHOTS. It is skipped
// without that variable; scripts/screenshots.sh sets it.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("PASSGATE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set PASSGATE_SCREENSHOTS to a directory to write screenshots")
	}
	ChromiumPath(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A resource that is never contacted, so the pages show a realistic
	// host instead of a random port.
	e := newEnvOpts(t, e2etest.Options{Resource: "https://mcp.example.com/mcp", Args: []string{"--login-limit=off", "--authorize-limit=off"}})
	var mu sync.Mutex
	var written []string
	for _, vp := range []Viewport{Phone, Desktop} {
		for _, dark := range []bool{false, true} {
			scheme := "light"
			if dark {
				scheme = "dark"
			}
			t.Run(vp.Name+"-"+scheme, func(t *testing.T) {
				b := NewBrowser(t, vp, dark)
				takeIn := func(b *Browser, name string) {
					ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
					defer cancel()
					png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
					if err != nil {
						t.Fatalf("screenshot %s: %v", name, err)
					}
					p := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.png", name, vp.Name, scheme))
					if err := os.WriteFile(p, png, 0o644); err != nil {
						t.Fatal(err)
					}
					mu.Lock()
					written = append(written, p)
					mu.Unlock()
				}
				take := func(name string) { takeIn(b, name) }
				walk(t, e, b, func(name string) {
					if name != "consent" {
						take(name)
						return
					}
					// The consent page as a user adding a connector to
					// Claude sees it; the form is not submitted, so the
					// browser never goes to claude.ai.
					back := location(t, b)
					claude := e.registerAs(t, "Claude", "https://claude.ai/api/mcp/auth_callback")
					navigate(t, b, e.authorizeURL(claude))
					if got := text(t, b, ".redirect-host"); got != "claude.ai" {
						t.Errorf("consent for Claude: redirect host %q", got)
					}
					take(name)
					navigate(t, b, back)
				})
				// The second-factor pages, on an issuer with a domain
				// name so that passkeys are offered too.
				em := newMFAEnv(t, e2etest.Options{Resource: "https://mcp.example.com/mcp"})
				mb := NewBrowser(t, vp, dark)
				mfaWalk(t, em, mb, func(name string) { takeIn(mb, name) })
			})
		}
	}
	t.Logf("wrote %d screenshots to %s", len(written), dir)
}
