package deploy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

// pageWalker is the harness's browser (a cookie jar, no redirects
// followed) talking to passgate through a proxy at base.
type pageWalker struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newPageWalker(t *testing.T, base string, rt http.RoundTripper) *pageWalker {
	b := e2etest.NewBrowser()
	b.HTTP.Transport = rt
	return &pageWalker{t: t, base: base, c: b.HTTP}
}

// do sends method to target (a path on base, or an absolute URL passgate
// gave) and fails unless passgate itself answered: its pages carry its
// Content-Security-Policy and X-Frame-Options, which neither the proxy's
// own 404 nor the MCP server sends. It returns the status, the resolved
// Location, if any, and the body.
func (w *pageWalker) do(method, target string, form url.Values) (int, string, string) {
	w.t.Helper()
	u, err := url.Parse(w.base)
	if err != nil {
		w.t.Fatal(err)
	}
	if u, err = u.Parse(target); err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(w.t.Context(), 30*time.Second)
	defer cancel()
	var req *http.Request
	if method == http.MethodPost {
		req, err = http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", w.base)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, u.String(), nil)
	}
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, u.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	body := string(b)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src") || resp.Header.Get("X-Frame-Options") != "DENY" {
		w.t.Fatalf("%s %s = %d without passgate's page headers (the proxy or the MCP server answered): %.300q", method, u.Path, resp.StatusCode, body)
	}
	loc := ""
	if l := resp.Header.Get("Location"); l != "" {
		lu, err := resp.Request.URL.Parse(l)
		if err != nil {
			w.t.Fatal(err)
		}
		loc = lu.String()
	}
	return resp.StatusCode, loc, body
}

// wantRedirect fails unless status is a redirect to path on base.
func (w *pageWalker) wantRedirect(what string, status int, loc, path string) {
	w.t.Helper()
	u, err := url.Parse(loc)
	if status/100 != 3 || err != nil || u.Path != path || !strings.HasPrefix(loc, w.base+"/") {
		w.t.Fatalf("%s = %d to %q, want a redirect to %s%s", what, status, loc, w.base, path)
	}
}

// signIn submits the login page at loginURL with user and password and
// returns where passgate sends the browser next.
func (w *pageWalker) signIn(loginURL, user, password string) string {
	w.t.Helper()
	status, _, page := w.do(http.MethodGet, loginURL, nil)
	if status != http.StatusOK {
		w.t.Fatalf("login page = %d", status)
	}
	action, fields, err := e2etest.Form([]byte(page))
	if err != nil {
		w.t.Fatal(err)
	}
	fields.Set("username", user)
	fields.Set("password", password)
	status, loc, _ := w.do(http.MethodPost, action, fields)
	if status != http.StatusSeeOther {
		w.t.Fatalf("POST login = %d", status)
	}
	return loc
}

var totpSecretRE = regexp.MustCompile(`id="secret">([A-Z2-7]+)<`)

// testTwoStepSignInThroughProxy signs user in twice through the proxy at
// base, with passgate requiring a second factor of everyone: signed out,
// /account and /login/second-factor send the browser to the login page;
// the first sign-in enrols TOTP on /account/totp and lands on /account; a
// second browser signs in with the password and then a code on
// /login/second-factor, and reaches /account. Every answer on the way is
// passgate's own page (pageWalker.do).
func testTwoStepSignInThroughProxy(t *testing.T, base string, rt http.RoundTripper, user, password string) {
	w := newPageWalker(t, base, rt)

	// Signed out: both pages are passgate's, and send the browser to sign in.
	status, loc, _ := w.do(http.MethodGet, "/account", nil)
	w.wantRedirect("GET /account signed out", status, loc, "/login")
	loginURL := loc
	status, loc, _ = w.do(http.MethodGet, "/login/second-factor", nil)
	w.wantRedirect("GET /login/second-factor signed out", status, loc, "/login")

	// First sign-in: the password, then enrolment on /account/totp.
	next := w.signIn(loginURL, user, password)
	w.wantRedirect("POST login (no factor yet)", http.StatusSeeOther, next, "/account/totp")
	status, _, page := w.do(http.MethodGet, next, nil)
	m := totpSecretRE.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		t.Fatalf("enrolment page = %d without a secret: %.300q", status, page)
	}
	secret := m[1]
	action, fields, err := e2etest.Form([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	code, err := mfa.Code(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fields.Set("code", code)
	status, _, page = w.do(http.MethodPost, action, fields)
	if status != http.StatusOK || !strings.Contains(page, "Two-step verification is on for "+user) {
		t.Fatalf("POST /account/totp = %d: %.300q", status, page)
	}
	status, _, page = w.do(http.MethodGet, "/account", nil)
	if status != http.StatusOK || !strings.Contains(page, user) {
		t.Fatalf("GET /account after enrolment = %d: %.300q", status, page)
	}

	// Second sign-in, in another browser: the password, then the code on
	// /login/second-factor. The next period's code, as the current one was
	// spent on enrolment (each step works once).
	w2 := newPageWalker(t, base, rt)
	status, loc, _ = w2.do(http.MethodGet, "/account", nil)
	w2.wantRedirect("GET /account signed out", status, loc, "/login")
	next = w2.signIn(loc, user, password)
	w2.wantRedirect("POST login (enrolled)", http.StatusSeeOther, next, "/login/second-factor")
	status, _, page = w2.do(http.MethodGet, next, nil)
	if status != http.StatusOK || !strings.Contains(page, "Two-step verification") {
		t.Fatalf("GET /login/second-factor = %d: %.300q", status, page)
	}
	action, fields, err = e2etest.Form([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	if code, err = mfa.Code(secret, time.Now().Add(mfa.Period)); err != nil {
		t.Fatal(err)
	}
	fields.Set("code", code)
	status, loc, page = w2.do(http.MethodPost, action, fields)
	w2.wantRedirect("POST /login/second-factor: "+page, status, loc, "/account")
	status, _, page = w2.do(http.MethodGet, loc, nil)
	if status != http.StatusOK || !strings.Contains(page, user) {
		t.Fatalf("GET /account after two-step sign-in = %d: %.300q", status, page)
	}
}

// TestTwoStepSignInThroughNginx: the second-factor and account pages work
// through real nginx with the shipped deploy/nginx.conf and the real
// passgate binary requiring a second factor.
func TestTwoStepSignInThroughNginx(t *testing.T) {
	st := startPassgateStack(t, "sqlite", "--require-second-factor=all")
	testTwoStepSignInThroughProxy(t, st.ngx.URL, st.ngx.Transport, "alice", "correct horse battery")
}

// TestTwoStepSignInThroughCaddy: the same through real Caddy with the
// shipped deploy/caddy/Caddyfile, whose other paths go to the MCP server
// (a recorder here, which must see none of these requests).
func TestTwoStepSignInThroughCaddy(t *testing.T) {
	passAddr := e2etest.FreeAddr(t)
	rec := startRecorder(t)
	addr := startCaddy(t, caddyOptions{Hosts: []string{nameA}, PassgateAddr: passAddr, UpstreamAddr: rec.addr()})
	_, port, _ := net.SplitHostPort(addr)
	base := "http://" + net.JoinHostPort(nameA, port)
	srv := e2etest.Start(t, e2etest.Options{
		HTTPAddr: passAddr,
		Resource: base + "/mcp",
		Args:     []string{"--issuer", base, "--require-second-factor=all"},
	})
	e2etest.AddUser(t, srv.OpenStore(t), "alice", "correct horse")
	testTwoStepSignInThroughProxy(t, base, http.DefaultTransport, "alice", "correct horse")
	if n := len(rec.received()); n != 0 {
		t.Errorf("%d requests reached the MCP server", n)
	}
}
