package e2etest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// RedirectURI is the loopback callback RegisterClient registers. Nothing
// listens there: the flow reads the code from the Location header.
const RedirectURI = "http://127.0.0.1:1/callback"

// HTTPError is a non-success answer from passgate: the status, the OAuth
// error code when the body was an OAuth JSON error (or "" for pages), and
// the body (never containing secrets the client sent).
type HTTPError struct {
	Op     string
	Status int
	Code   string // OAuth "error", e.g. temporarily_unavailable
	Body   string
}

func (e *HTTPError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: HTTP %d %s", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
}

func newHTTPError(op string, resp *http.Response, body []byte) *HTTPError {
	e := &HTTPError{Op: op, Status: resp.StatusCode, Body: string(body)}
	var oe struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &oe) == nil {
		e.Code = oe.Error
	}
	return e
}

// Browser is a user agent with a cookie jar that does not follow
// redirects, so each step of the flow is visible.
type Browser struct {
	HTTP *http.Client
	// Trace lists the pages OAuthClient.Authorize went through with this
	// browser: "login" when it had to sign in, "consent" when it was asked
	// to approve. A test may reset it to see what the next run needs.
	Trace []string
}

// NewBrowser returns a Browser with an empty cookie jar. Requests are
// bounded by 30s each.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{HTTP: &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Get fetches u and returns the response with its body read.
func (b *Browser) Get(ctx context.Context, u string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	return do(b.HTTP, req)
}

// PostForm posts v to u as a browser form would.
func (b *Browser) PostForm(ctx context.Context, u string, v url.Values) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(b.HTTP, req)
}

func do(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

var (
	formRE   = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// Form returns the action and hidden fields of the first form in an HTML
// page (the login and consent pages have exactly one).
func Form(page []byte) (action string, fields url.Values, err error) {
	m := formRE.FindSubmatch(page)
	if m == nil {
		return "", nil, fmt.Errorf("no form in page: %.300q", page)
	}
	fields = url.Values{}
	for _, h := range hiddenRE.FindAllSubmatch(m[2], -1) {
		fields.Add(html.UnescapeString(string(h[1])), html.UnescapeString(string(h[2])))
	}
	return html.UnescapeString(string(m[1])), fields, nil
}

// OAuthClient is a registered client of one server: by default a public
// client (PKCE, no secret) redirecting to RedirectURI.
type OAuthClient struct {
	Server   *Server
	ClientID string
	// Resource is the RFC 8707 resource the client asks tokens for.
	// Optional: Server.Resource when empty.
	Resource string
	// Scope is the scope the client asks for. Optional: "mcp" when empty.
	Scope string
	// Redirect is the redirect_uri the client sends in the authorization
	// and token requests. Optional: RedirectURI when empty.
	Redirect string
	// Secret and AuthMethod are how the client authenticates at the token
	// endpoint: AuthMethod "client_secret_post" sends client_id and
	// client_secret in the form, "client_secret_basic" sends them
	// form-urlencoded in HTTP Basic (RFC 6749 §2.3.1); "" or "none" sends
	// only client_id.
	Secret, AuthMethod string
}

func (c *OAuthClient) redirect() string {
	if c.Redirect != "" {
		return c.Redirect
	}
	return RedirectURI
}

func (c *OAuthClient) resource() string {
	if c.Resource != "" {
		return c.Resource
	}
	return c.Server.Resource
}

func (c *OAuthClient) scope() string {
	if c.Scope != "" {
		return c.Scope
	}
	return "mcp"
}

// RegisterClient registers a public client with RFC 7591 dynamic
// registration and fails the test on error.
func (s *Server) RegisterClient(t testing.TB) *OAuthClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.Register(ctx)
	if err != nil {
		t.Fatalf("e2e: register client: %v", err)
	}
	return c
}

// Register registers a public client with RFC 7591 dynamic registration.
func (s *Server) Register(ctx context.Context) (*OAuthClient, error) {
	return s.RegisterMetadata(ctx, map[string]any{
		"client_name":                "e2e",
		"redirect_uris":              []string{RedirectURI},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
	})
}

// RegisterMetadata registers a client with the RFC 7591 metadata meta, as
// a real client's registration request would, and returns it with the
// secret and token_endpoint_auth_method of the response. Redirect is the
// first of meta's redirect_uris. A refusal is an *HTTPError.
func (s *Server) RegisterMetadata(ctx context.Context, meta map[string]any) (*OAuthClient, error) {
	body, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL("/oauth/register"), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b, err := do(s.HTTPClient, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, newHTTPError("register", resp, b)
	}
	var reg struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		AuthMethod   string   `json:"token_endpoint_auth_method"`
		RedirectURIs []string `json:"redirect_uris"`
	}
	if err := json.Unmarshal(b, &reg); err != nil || reg.ClientID == "" || len(reg.RedirectURIs) == 0 {
		return nil, fmt.Errorf("register: bad response %q", b)
	}
	return &OAuthClient{Server: s, ClientID: reg.ClientID, Secret: reg.ClientSecret, AuthMethod: reg.AuthMethod, Redirect: reg.RedirectURIs[0]}, nil
}

// PKCE returns a fresh code verifier and its S256 challenge.
func PKCE() (verifier, challenge string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	verifier = base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthorizeURL is the authorization request for challenge and state.
func (c *OAuthClient) AuthorizeURL(challenge, state string) string {
	return c.Server.URL("/oauth/authorize") + "?" + url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ClientID},
		"redirect_uri":          {c.redirect()},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
		"resource":              {c.resource()},
		"scope":                 {c.scope()},
	}.Encode()
}

// Authorize runs the browser part of the flow and returns the code and
// its verifier: GET /oauth/authorize; if sent to the login page, GET it
// and POST the form with username and password; back at /oauth/authorize,
// POST the consent form with decision=approve when it is shown; then read
// the code from the redirect to the client's redirect URI (checking state
// and iss). A
// Browser that already has a session skips the login. The client is public
// on a loopback redirect, so passgate asks for consent every time unless
// the server runs with --remember-public-consent; then a Browser that
// already consented goes straight through.
// Any unexpected answer is an *HTTPError naming the step.
func (c *OAuthClient) Authorize(ctx context.Context, b *Browser, username, password string) (code, verifier string, err error) {
	verifier, challenge := PKCE()
	state := strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(verifier[:12])), "=")
	cb, status, err := b.Approve(ctx, c.AuthorizeURL(challenge, state), c.redirect(), username, password)
	if err != nil {
		return "", "", err
	}
	q := cb.Query()
	if e := q.Get("error"); e != "" {
		return "", "", &HTTPError{Op: "authorize redirect", Status: status, Code: e, Body: q.Get("error_description")}
	}
	if q.Get("state") != state {
		return "", "", fmt.Errorf("authorize: state mismatch")
	}
	if q.Get("iss") != c.Server.Issuer {
		return "", "", fmt.Errorf("authorize: iss %q, want %q", q.Get("iss"), c.Server.Issuer)
	}
	return q.Get("code"), verifier, nil
}

// Approve plays the user for an authorization request URL that any client
// built (such as an MCP SDK's): GET it; if sent to the login page, sign in
// with username and password; approve the consent page when it is shown;
// and return the redirect to redirectURI (code or error in its query) with
// the status that carried it. It checks neither state nor iss: the caller
// knows what it sent. Form actions are resolved against the page that
// holds them, as a browser does, so the flow works through a proxy (b.HTTP
// may carry the proxy's Transport). Any other answer is an *HTTPError
// naming the step.
func (b *Browser) Approve(ctx context.Context, authURL, redirectURI, username, password string) (callback *url.URL, status int, err error) {
	resp, body, err := b.Get(ctx, authURL)
	for step := 0; step < 6; step++ {
		if err != nil {
			return nil, 0, err
		}
		switch {
		case resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther:
			loc, lerr := resp.Location()
			if lerr != nil {
				return nil, 0, fmt.Errorf("authorize: bad Location: %w", lerr)
			}
			if strings.HasPrefix(loc.String(), redirectURI) {
				return loc, resp.StatusCode, nil
			}
			resp, body, err = b.Get(ctx, loc.String())
		case resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`name="password"`)):
			action, fields, ferr := Form(body)
			if ferr != nil {
				return nil, 0, ferr
			}
			fields.Set("username", username)
			fields.Set("password", password)
			b.Trace = append(b.Trace, "login")
			resp, body, err = b.PostForm(ctx, formURL(resp, action), fields)
			if err == nil && resp.StatusCode != http.StatusSeeOther {
				return nil, 0, newHTTPError("login", resp, body)
			}
		case resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`name="decision"`)):
			action, fields, ferr := Form(body)
			if ferr != nil {
				return nil, 0, ferr
			}
			fields.Set("decision", "approve")
			b.Trace = append(b.Trace, "consent")
			resp, body, err = b.PostForm(ctx, formURL(resp, action), fields)
			if err == nil && resp.StatusCode != http.StatusSeeOther {
				return nil, 0, newHTTPError("consent", resp, body)
			}
		default:
			return nil, 0, newHTTPError("authorize", resp, body)
		}
	}
	return nil, 0, fmt.Errorf("authorize: too many steps")
}

// formURL resolves a form's action against the URL of the page (resp)
// that holds it.
func formURL(resp *http.Response, action string) string {
	u, err := resp.Request.URL.Parse(action)
	if err != nil {
		return action // the POST then fails with the parse error
	}
	return u.String()
}

// Tokens is a token endpoint success response.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// Exchange redeems code with its PKCE verifier at the token endpoint.
func (c *OAuthClient) Exchange(ctx context.Context, code, verifier string) (*Tokens, error) {
	return c.token(ctx, "code exchange", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"code_verifier": {verifier},
		"redirect_uri":  {c.redirect()},
		"client_id":     {c.ClientID},
		"resource":      {c.resource()},
	})
}

// Refresh exchanges a refresh token for new tokens.
func (c *OAuthClient) Refresh(ctx context.Context, refresh string) (*Tokens, error) {
	return c.token(ctx, "refresh", url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refresh},
		"client_id":     {c.ClientID},
	})
}

func (c *OAuthClient) token(ctx context.Context, op string, v url.Values) (*Tokens, error) {
	basic := c.AuthMethod == "client_secret_basic"
	switch {
	case basic:
		v.Del("client_id")
	case c.AuthMethod == "client_secret_post":
		v.Set("client_secret", c.Secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server.URL("/oauth/token"), strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	if basic {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.Secret))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := do(c.Server.HTTPClient, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, newHTTPError(op, resp, body)
	}
	var tk Tokens
	if err := json.Unmarshal(body, &tk); err != nil || tk.AccessToken == "" {
		return nil, fmt.Errorf("%s: bad token response", op)
	}
	return &tk, nil
}

// Login runs Authorize and Exchange: the whole flow for a user.
func (c *OAuthClient) Login(ctx context.Context, b *Browser, username, password string) (*Tokens, error) {
	code, verifier, err := c.Authorize(ctx, b, username, password)
	if err != nil {
		return nil, err
	}
	return c.Exchange(ctx, code, verifier)
}

// LoginOnly GETs the login page and posts the form, without an
// authorization request: it returns nil after a successful sign-in (a 303
// redirect) or an *HTTPError (503 when the store is down).
func (s *Server) LoginOnly(ctx context.Context, b *Browser, username, password string) error {
	resp, body, err := b.Get(ctx, s.URL("/login"))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return newHTTPError("login page", resp, body)
	}
	action, fields, err := Form(body)
	if err != nil {
		return err
	}
	fields.Set("username", username)
	fields.Set("password", password)
	resp, body, err = b.PostForm(ctx, formURL(resp, action), fields)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return newHTTPError("login", resp, body)
	}
	return nil
}
