package oauthweb

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

// fuzzServer is an in-process authorization server on SQLite for fuzz
// targets (which cannot use newEnv's *testing.T), with a user and a
// confidential client, and a raw handle to count rows.
type fuzzServer struct {
	s         *Server
	st        store.Store
	h         http.Handler
	raw       *sql.DB
	clientID  string
	secret    string
	loginCSRF string
}

// newFuzzServer applies mutate, if not nil, to the server's Config.
func newFuzzServer(tb testing.TB, mutate func(*Config)) *fuzzServer {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(tb.TempDir(), "passgate.db")
	st, err := sqlite.Open(tb.Context(), path, nil)
	st = storetest.Migrated(tb, st, err)
	now := time.Now()
	s, hasher := bareServer(tb, st, func(c *Config) {
		c.Issuer, c.Logger, c.LockoutThreshold = "http://127.0.0.1:9999", slog.New(slog.DiscardHandler), -1
		if mutate != nil {
			mutate(c)
		}
	})
	const secret = "pgcs_fuzzsecret0123456789abcdefghijklmnopqrstu"
	shash, _ := hasher.Hash(ctx, secret)
	if err := st.CreateClient(ctx, store.Client{ID: "conf", SecretHash: shash, RedirectURIs: []string{testRedirect},
		TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code", "refresh_token"},
		Source: store.ClientStatic, CreatedAt: now}); err != nil {
		tb.Fatal(err)
	}
	// A client anyone could have registered, redirecting to their site.
	if err := st.CreateClient(ctx, store.Client{ID: "dyn", RedirectURIs: []string{evilRedirect}, TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"}, Source: store.ClientDynamic, CreatedAt: now}); err != nil {
		tb.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { raw.Close() })
	return &fuzzServer{s: s, st: st, h: s.Handler(), raw: raw, clientID: "conf", secret: secret, loginCSRF: strings.Repeat("c", 43)}
}

func (f *fuzzServer) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := f.raw.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// oauthErrorCodes are the error codes the token endpoint may answer
// (RFC 6749 §5.2, plus temporarily_unavailable).
var oauthErrorCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "invalid_target": true, "temporarily_unavailable": true,
}

// FuzzTokenForm: whatever form body reaches the token endpoint, with or
// without the confidential client's real credentials, the answer is a
// 4xx OAuth JSON error with a known code and no-store, never a token, and
// no token row is written.
func FuzzTokenForm(f *testing.F) {
	for _, s := range []string{
		"grant_type=authorization_code&code=pgc_AAAA&code_verifier=" + strings.Repeat("v", 43) + "&redirect_uri=" + url.QueryEscape(testRedirect),
		"grant_type=refresh_token&refresh_token=pgr_x&client_id=conf",
		"grant_type=client_credentials&scope=mcp",
		"grant_type=authorization_code&grant_type=refresh_token",
		"code=%zz&grant_type=authorization_code",
		"client_id=conf&client_secret=wrong&grant_type=refresh_token&refresh_token=",
		"grant_type=authorization_code&resource=http%3A%2F%2F127.0.0.1%3A9%2Fmcp&resource=https%3A%2F%2Fevil.example",
		";;;&&&==",
		"",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	srv := newFuzzServer(f, nil)
	f.Fuzz(func(t *testing.T, body string, basic bool) {
		req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", formCT)
		if basic {
			req.SetBasicAuth(srv.clientID, srv.secret)
		}
		rec := httptest.NewRecorder()
		srv.h.ServeHTTP(rec, req)
		switch rec.Code {
		case 400, 401, 413:
		default:
			t.Fatalf("token %q: status %d: %s", body, rec.Code, rec.Body)
		}
		var e struct {
			Error       string `json:"error"`
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !oauthErrorCodes[e.Error] || e.AccessToken != "" {
			t.Fatalf("token %q: body %s", body, rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("token %q: no Cache-Control: no-store", body)
		}
		if srv.count(t, "tokens") != 0 {
			t.Fatalf("token %q wrote a token", body)
		}
	})
}

// FuzzLoginForm: whatever form body and login-CSRF cookie are posted to
// /login, the answer is a page or a redirect with a known status; a
// session exists only after a redirect, and a redirect only for the right
// username, password and double-submitted CSRF token; the submitted
// password is never echoed, and the redirect stays on the issuer.
func FuzzLoginForm(f *testing.F) {
	srv := newFuzzServer(f, nil)
	good := url.Values{"username": {testUser}, "password": {testPassword}, "csrf": {srv.loginCSRF}, "return_to": {"/oauth/authorize?client_id=x"}}
	for _, s := range []string{
		good.Encode(),
		"username=alice&password=wrong&csrf=" + srv.loginCSRF,
		"username=alice&password=" + url.QueryEscape(testPassword) + "&csrf=nope",
		"username=alice&password=" + url.QueryEscape(testPassword) + "&csrf=" + srv.loginCSRF + "&return_to=https%3A%2F%2Fevil.example",
		"username=&password=&csrf=",
		"username=" + strings.Repeat("a", 300) + "&password=x&csrf=" + srv.loginCSRF,
		"%gg=1&username=alice",
		"return_to=%2F%2Fevil.example&username=alice&password=x",
	} {
		f.Add(s, srv.loginCSRF)
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, body, cookie string) {
		req := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		req.Header.Set("Content-Type", formCT)
		if c := (&http.Cookie{Name: "passgate_login", Value: cookie}); c.Valid() == nil && cookie != "" {
			req.AddCookie(c)
		}
		before := srv.count(t, "sessions")
		rec := httptest.NewRecorder()
		srv.h.ServeHTTP(rec, req)
		after := srv.count(t, "sessions")
		form, perr := url.ParseQuery(body)
		rightCreds := perr == nil && form.Get("username") == testUser && form.Get("password") == testPassword &&
			cookie != "" && form.Get("csrf") == cookie
		switch rec.Code {
		case http.StatusSeeOther:
			if !rightCreds {
				t.Fatalf("login %q (cookie %q) succeeded without the right credentials and CSRF token", body, cookie)
			}
			if after != before+1 {
				t.Fatalf("login %q: redirect without a new session", body)
			}
			loc := rec.Header().Get("Location")
			if !strings.HasPrefix(loc, "http://127.0.0.1:9999/") {
				t.Fatalf("login %q redirected off the issuer to %q", body, loc)
			}
		case 400, 401, 403, 413:
			if after != before {
				t.Fatalf("login %q: status %d but a session was created", body, rec.Code)
			}
		default:
			t.Fatalf("login %q: status %d", body, rec.Code)
		}
		if perr == nil {
			if pw := form.Get("password"); len(pw) >= 8 && strings.Contains(rec.Body.String(), pw) {
				t.Fatalf("login %q: the page echoes the password", body)
			}
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("login %q: no Cache-Control: no-store", body)
		}
	})
}

// FuzzAuthorizeLoggedOut: whatever query a logged-out browser brings to
// /oauth/authorize, passgate answers with a page or a redirect to its own
// login page, or, for the operator's client only, a redirect to that
// client's registered URI; never to a URI a dynamically registered client
// chose, and nothing is written (no code, no consent).
func FuzzAuthorizeLoggedOut(f *testing.F) {
	for _, s := range []string{
		"response_type=token&client_id=dyn&redirect_uri=" + url.QueryEscape(evilRedirect),
		"response_type=code&client_id=dyn&state=x",
		"response_type=code&client_id=dyn&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=S256&scope=admin",
		"client_id=dyn&client_id=conf",
		"response_type=token&client_id=conf&redirect_uri=" + url.QueryEscape(testRedirect),
		"response_type=code&client_id=conf&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=S256",
		"client_id=nope&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
		"%zz",
		"",
	} {
		f.Add(s)
	}
	srv := newFuzzServer(f, nil)
	f.Fuzz(func(t *testing.T, query string) {
		req, err := http.NewRequest("GET", "http://127.0.0.1:9999/oauth/authorize", nil)
		if err != nil {
			t.Skip()
		}
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		srv.h.ServeHTTP(rec, req)
		loc := rec.Header().Get("Location")
		switch rec.Code {
		case http.StatusFound:
			if !strings.HasPrefix(loc, "http://127.0.0.1:9999/login?") && !strings.HasPrefix(loc, testRedirect+"?") {
				t.Fatalf("authorize %q redirected to %q", query, loc)
			}
		case 400, 414, 500, 503:
			if loc != "" {
				t.Fatalf("authorize %q: status %d with Location %q", query, rec.Code, loc)
			}
		default:
			t.Fatalf("authorize %q: status %d", query, rec.Code)
		}
		if n := srv.count(t, "auth_codes") + srv.count(t, "consents"); n != 0 {
			t.Fatalf("authorize %q wrote %d rows", query, n)
		}
	})
}

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

// FuzzSecondFactorCode posts arbitrary codes for a pending session: the
// sign-in completes only for the current TOTP code or an unused recovery
// code, and nothing answers 5xx.
func FuzzSecondFactorCode(f *testing.F) {
	ctx := context.Background()
	now := time.Now()
	sealer, err := mfa.NewSealer(bytes.Repeat([]byte{7}, mfa.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	fs := newFuzzServer(f, func(c *Config) { c.Sealer = sealer })
	s, st, h := fs.s, fs.st, fs.h
	en, err := mfa.NewEnrolment("passgate", testUser)
	if err != nil {
		f.Fatal(err)
	}
	const recovery = "abcd-efgh-jkmn-pqrs"
	if err := st.EnrollTOTP(ctx, store.TOTP{Username: testUser, Secret: sealer.Seal(testUser, []byte(en.Secret)), CreatedAt: now},
		[]string{token.Hash(recovery)}, now, nil); err != nil {
		f.Fatal(err)
	}
	code, _ := mfa.Code(en.Secret, now)
	for _, seed := range []string{code, recovery, strings.ToUpper(recovery), "000000", "", " ", strings.Repeat("1", 70), "12 34 56", "١٢٣٤٥٦", "abcd-efgh-jkmn-pqr\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, code string) {
		id := token.New(token.PrefixSession)
		n := time.Now()
		if err := st.CreateSession(ctx, store.Session{IDHash: token.Hash(id), Username: testUser, CSRFToken: "csrf", CreatedAt: n, ExpiresAt: n.Add(time.Minute), Pending: true}); err != nil {
			t.Fatal(err)
		}
		form := url.Values{"csrf": {"csrf"}, "code": {code}, "return_to": {"/apps"}}
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9999/login/second-factor", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", formCT)
		req.AddCookie(&http.Cookie{Name: s.cookie, Value: id})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("code %q: status %d", code, w.Code)
		}
		if w.Code != http.StatusSeeOther {
			return
		}
		_, totpErr := mfa.Verify(en.Secret, code, time.Now())
		rc, isRecovery := mfa.NormalizeRecoveryCode(code)
		if totpErr != nil && (!isRecovery || rc != recovery) {
			t.Fatalf("code %q completed the sign-in", code)
		}
		if loc := w.Header().Get("Location"); loc != "http://127.0.0.1:9999/apps" {
			t.Fatalf("code %q: redirect to %q", code, loc)
		}
	})
}
