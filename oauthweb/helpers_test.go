package oauthweb

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/testing/e2etest/proc"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/testing/clocktest"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
	testResource = "http://127.0.0.1:9/mcp"
	testRedirect = "http://127.0.0.1/callback"
)

type env struct {
	t      *testing.T
	srv    *httptest.Server
	s      *Server
	st     *sqlite.DB
	raw    *sql.DB // a second, read-only view for snapshots
	clock  *clocktest.Clock
	logs   *proc.Buffer // collects logs from concurrent handlers
	issuer string
	// secrets collects every secret value the test saw, checked against
	// the logs at cleanup.
	secrets []string
}

func newEnv(t *testing.T, mutate ...func(*Config)) *env {
	t.Helper()
	return newEnvWrapped(t, nil, mutate...)
}

// createTestUser creates testUser with testPassword in st, created and
// updated at now, and returns the cheap Hasher that hashed it.
func createTestUser(tb testing.TB, st store.Store, now time.Time) *passwd.Hasher {
	tb.Helper()
	hasher, err := passwd.NewHasher(2, 4)
	if err != nil {
		tb.Fatal(err)
	}
	hash, err := hasher.Hash(tb.Context(), testPassword)
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.CreateUser(tb.Context(), store.User{Username: testUser, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
		tb.Fatal(err)
	}
	return hasher
}

// newEnvWrapped is newEnv with the server's handler wrapped, e.g. to mount
// a protected MCP endpoint next to the authorization server.
func newEnvWrapped(t *testing.T, wrap func(*env, http.Handler) http.Handler, mutate ...func(*Config)) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passgate.db")
	logs := &proc.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := sqlite.Open(t.Context(), path, logger)
	st = storetest.Migrated(t, st, err)
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	clk := clocktest.New(time.Now().UTC().Truncate(time.Second))
	hasher := createTestUser(t, st, clk.Now())
	rec, err := audit.New(st, prometheus.NewRegistry(), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	res := testResources(t, testResource)
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	cfg := Config{
		Issuer: issuer, Resources: res, Store: st, Audit: rec, Hasher: hasher,
		Logger: logger, Now: clk.Now, Metrics: prometheus.NewRegistry(),
		IntrospectionCredentials: map[string]string{"mcp-resource-server": "rs-secret-0123456789abcdef"},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	issuer = cfg.Issuer
	e := &env{t: t, srv: srv, s: s, st: st, raw: raw, clock: clk, logs: logs, issuer: issuer, secrets: []string{testPassword}}
	h := s.Handler()
	if wrap != nil {
		h = wrap(e, h)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(e.checkLogs)
	return e
}

// checkLogs fails the test if any secret the test handled reached the
// logs.
func (e *env) checkLogs() {
	logs := e.logs.String()
	for _, s := range e.secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret (%.8s…) appears in the logs", s)
		}
	}
	for _, pfx := range []string{"pga_", "pgr_", "pgc_", "pgs_", "pgcs_"} {
		if strings.Contains(logs, pfx) {
			e.t.Errorf("something with secret prefix %q appears in the logs", pfx)
		}
	}
}

func (e *env) secret(s ...string) { e.secrets = append(e.secrets, s...) }

// snapshot dumps every table but the audit log, to show a request changed
// nothing.
func (e *env) snapshot() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, table := range []string{"users", "clients", "sessions", "auth_codes", "tokens", "consents", "login_failures", "totp_secrets", "recovery_codes", "passkeys"} {
		rows, err := e.raw.Query("SELECT * FROM " + table + " ORDER BY 1")
		if err != nil {
			e.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				e.t.Fatal(err)
			}
			out[table] = append(out[table], fmt.Sprint(vals...))
		}
		rows.Close()
	}
	return out
}

func (e *env) url(path string) string { return e.issuer + path }

// browser is a cookie-keeping client that does not follow redirects to
// other hosts (the client's callback).
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != e.srv.Listener.Addr().String() {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// noFollow returns a client with the same jar that stops at every
// redirect.
func noFollow(c *http.Client) *http.Client {
	return &http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formFields returns the hidden fields of the page.
func formFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v.Add(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// hreq is a raw request to the test server.
type hreq struct {
	method, path, ctype, body string // method: POST if empty
	header                    http.Header
	basic                     [2]string // HTTP Basic client_id, secret
	browser                   bool      // send the session cookie (fixture.do)
}

// send sends r to e's server with the cookies of jar (none if nil),
// without following redirects, and returns the response and its body.
func (e *env) send(t *testing.T, r hreq, jar http.CookieJar) (*http.Response, string) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	req, err := http.NewRequest(r.method, e.url(r.path), strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.basic[0] != "" {
		req.SetBasicAuth(r.basic[0], r.basic[1])
	}
	resp, err := noFollow(&http.Client{Jar: jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

// register registers a client by RFC 7591 and returns the response.
func (e *env) register(meta map[string]any) map[string]any {
	e.t.Helper()
	b, _ := json.Marshal(meta)
	resp, err := http.Post(e.url("/oauth/register"), "application/json", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		e.t.Fatal(err)
	}
	if s, ok := out["client_secret"].(string); ok {
		e.secret(s)
	}
	return out
}

func (e *env) publicClient() string {
	e.t.Helper()
	return e.register(map[string]any{
		"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none", "client_name": "Test Client",
	})["client_id"].(string)
}

// staticClient stores an operator-configured confidential client
// (client_secret_basic) with redirect URIs uris. An empty secret stores a
// hash no secret matches.
func (e *env) staticClient(id, name, secret string, uris ...string) {
	e.t.Helper()
	hash := "x"
	if secret != "" {
		e.secret(secret)
		hash, _ = e.s.cfg.Hasher.Hash(context.Background(), secret)
	}
	if err := e.st.CreateClient(context.Background(), store.Client{
		ID: id, SecretHash: hash, Name: name, RedirectURIs: uris,
		TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code", "refresh_token"},
		Source: store.ClientStatic, CreatedAt: e.clock.Now(),
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) oauth2Config(clientID, secret string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret,
		Endpoint:    oauth2.Endpoint{AuthURL: e.url("/oauth/authorize"), TokenURL: e.url("/oauth/token"), AuthStyle: style},
		RedirectURL: testRedirect, Scopes: []string{"mcp"},
	}
}

// passwordStep signs c in with the password only (from the login page
// for returnTo, if any) and returns where the login page sent it.
func (e *env) passwordStep(c *http.Client, returnTo string) *url.URL {
	e.t.Helper()
	page := "/login"
	if returnTo != "" {
		page += "?" + url.Values{"return_to": {returnTo}}.Encode()
	}
	resp, err := c.Get(e.url(page))
	if err != nil {
		e.t.Fatal(err)
	}
	f := formFields(readBody(e.t, resp))
	f.Set("username", testUser)
	f.Set("password", testPassword)
	resp = postForm(e.t, noFollow(c), e.url("/login"), f)
	readBody(e.t, resp)
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("password step: status %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// login signs the browser in through the login page.
func (e *env) login(c *http.Client) {
	e.t.Helper()
	e.passwordStep(c, "")
}

// testResources parses protected resources' URLs for Config.Resources.
func testResources(tb testing.TB, urls ...string) []resource.Resource {
	tb.Helper()
	rs, err := resource.ParseAll(urls)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// testPolicy compiles an access policy file's text for Config.Policy.
func testPolicy(t *testing.T, text string) *policy.Holder {
	t.Helper()
	f, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(f, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewHolder(p)
}

// authorize runs the browser part of the flow for authURL from a
// logged-in browser, approving consent if asked, and returns the callback
// URL the browser was sent to.
func (e *env) authorize(c *http.Client, authURL string) *url.URL {
	e.t.Helper()
	resp, err := c.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	body := readBody(e.t, resp)
	if resp.StatusCode == http.StatusOK && strings.Contains(body, `name="decision"`) {
		f := formFields(body)
		f.Set("decision", "approve")
		resp = postForm(e.t, c, e.url("/consent"), f)
		readBody(e.t, resp)
		if resp.StatusCode != http.StatusSeeOther {
			e.t.Fatalf("consent: status %d, want 303", resp.StatusCode)
		}
	}
	loc := resp.Header.Get("Location")
	if resp.StatusCode == http.StatusBadRequest {
		// An error for a client the user never approved is a page with the
		// way back as a link: follow it, as the user who started the
		// sign-in would (TestAuthorizeErrorsNeverRedirectUntrustedBeforeLogin
		// holds that it is never followed automatically).
		m := regexp.MustCompile(`<a class="button" href="([^"]+)" rel="noreferrer">Return to `).FindStringSubmatch(body)
		if m == nil {
			e.t.Fatalf("authorize: status %d: %s", resp.StatusCode, body)
		}
		loc = html.UnescapeString(m[1])
	} else if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("authorize: status %d: %s", resp.StatusCode, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		e.t.Fatal(err)
	}
	if code := u.Query().Get("code"); code != "" {
		e.secret(code)
	}
	return u
}

// codeFlow runs the authorization code flow for conf from a logged-in
// browser with a fresh PKCE verifier: authorize (approving consent if
// asked), then exchange the code. opts go into both the authorization
// request and the token request. It returns the tokens, noted as secrets.
func (e *env) codeFlow(c *http.Client, conf *oauth2.Config, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	e.t.Helper()
	v := oauth2.GenerateVerifier()
	cb := e.authorize(c, conf.AuthCodeURL("s", append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(v)}, opts...)...))
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), append([]oauth2.AuthCodeOption{oauth2.VerifierOption(v)}, opts...)...)
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	return tok
}

// config returns a copy of e's server configuration, changed by mutate,
// for a second server over the same store. Its Metrics is nil: e's
// registry already holds the collectors of e's server.
func (e *env) config(mutate ...func(*Config)) Config {
	cfg := e.s.cfg
	cfg.Metrics = nil
	for _, m := range mutate {
		m(&cfg)
	}
	return cfg
}

// server builds a second server from e.config(mutate...).
func (e *env) server(mutate ...func(*Config)) *Server {
	e.t.Helper()
	s, err := New(e.config(mutate...))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// oauthError decodes an OAuth JSON error body.
func oauthError(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &v)
	return v.Error
}

// auditEvents returns the audit rows of one event, newest first.
func (e *env) auditEvents(event string) []store.AuditEvent {
	e.t.Helper()
	evs, err := e.st.ListAudit(context.Background(), store.AuditFilter{Event: event})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func diff(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("%s (-got +want):\n%s", what, d)
	}
}

var _ = oauth.CodeInvalidGrant

func mustRE(s string) *regexp.Regexp { return regexp.MustCompile(s) }
