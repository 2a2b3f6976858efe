package oauthweb

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/store"
)

func getJSON(t *testing.T, h http.Handler, target, host string) (int, http.Header, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	if host != "" {
		req.Host = host
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var v map[string]any
	if rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
	}
	return rec.Code, rec.Header(), v
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	res, err := resource.ParseAll([]string{"https://mcp.example.com/mcp", "https://other.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	example := func(c *Config) { c.Issuer, c.Resources = "https://example.com/auth", res }
	h := e.server(example).Handler()
	want := map[string]any{
		"issuer":                                         "https://example.com/auth",
		"authorization_endpoint":                         "https://example.com/auth/oauth/authorize",
		"token_endpoint":                                 "https://example.com/auth/oauth/token",
		"registration_endpoint":                          "https://example.com/auth/oauth/register",
		"revocation_endpoint":                            "https://example.com/auth/oauth/revoke",
		"introspection_endpoint":                         "https://example.com/auth/oauth/introspect",
		"scopes_supported":                               []any{"mcp"},
		"response_types_supported":                       []any{"code"},
		"response_modes_supported":                       []any{"query"},
		"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []any{"S256"},
		"token_endpoint_auth_methods_supported":          []any{"none", "client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []any{"none", "client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported":  []any{"client_secret_basic", "client_secret_post"},
		"authorization_response_iss_parameter_supported": true,
	}
	for _, path := range []string{"/.well-known/oauth-authorization-server/auth", "/.well-known/oauth-authorization-server", "/auth/.well-known/oauth-authorization-server"} {
		// A hostile Host header changes nothing.
		code, hdr, got := getJSON(t, h, "http://x"+path, "evil.example")
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		diff(t, path, got, want)
		if hdr.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS", path)
		}
	}
	prm := func(res string) map[string]any {
		return map[string]any{
			"resource": res, "authorization_servers": []any{"https://example.com/auth"}, "scopes_supported": []any{"mcp"},
			"bearer_methods_supported": []any{"header"}, "resource_name": strings.TrimSuffix(strings.TrimPrefix(res, "https://"), "/"),
		}
	}
	for _, tt := range []struct{ path, host, res string }{
		{"/.well-known/oauth-protected-resource/mcp", "mcp.example.com", "https://mcp.example.com/mcp"},
		{"/.well-known/oauth-protected-resource/mcp", "evil.example", "https://mcp.example.com/mcp"},
		// RFC 9728 §3.3: the root document describes the origin it was
		// fetched from (the Host only picks a configured one).
		{"/.well-known/oauth-protected-resource", "mcp.example.com", "https://mcp.example.com"},
		{"/.well-known/oauth-protected-resource", "MCP.example.com:443", "https://mcp.example.com"},
		{"/.well-known/oauth-protected-resource", "other.example.com", "https://other.example.com"},
		{"/.well-known/oauth-protected-resource", "evil.example", "https://mcp.example.com"},
	} {
		code, _, got := getJSON(t, h, "http://x"+tt.path, tt.host)
		if code != 200 {
			t.Fatalf("%s: %d", tt.path, code)
		}
		diff(t, tt.path, got, prm(tt.res))
	}
	if code, _, _ := getJSON(t, h, "http://x/.well-known/oauth-protected-resource/nope", ""); code != 404 {
		t.Errorf("unknown resource metadata: %d", code)
	}
	if code, _, _ := getJSON(t, h, "http://x/.well-known/openid-configuration", ""); code != 404 {
		t.Errorf("openid-configuration: %d, want 404 (not OIDC)", code)
	}

	// Preflight on API endpoints, never on pages.
	for _, tt := range []struct {
		path string
		cors bool
	}{
		{"/auth/oauth/token", true}, {"/auth/oauth/register", true}, {"/auth/oauth/revoke", true},
		{"/.well-known/oauth-authorization-server/auth", true}, {"/token", true},
		{"/auth/login", false}, {"/auth/consent", false},
	} {
		req := httptest.NewRequest("OPTIONS", "http://x"+tt.path, nil)
		req.Header.Set("Origin", "http://localhost:6274")
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("Access-Control-Allow-Origin") == "*" && rec.Code == 204
		if got != tt.cors {
			t.Errorf("OPTIONS %s: %d, allow-origin %q", tt.path, rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	}

	// Closed registration is neither advertised nor served.
	s := e.server(example, func(c *Config) { c.Registration = RegistrationClosed })
	_, _, got := getJSON(t, s.Handler(), "http://x/.well-known/oauth-authorization-server/auth", "")
	if _, ok := got["registration_endpoint"]; ok {
		t.Error("closed registration advertised")
	}
}

// TestAliases: the 2025-03-26 default endpoints on the origin reach the
// same handlers.
func TestAliases(t *testing.T) {
	e := newEnv(t)
	b, _ := json.Marshal(map[string]any{"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none"})
	resp, err := http.Post(e.url("/register"), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 201 {
		t.Fatalf("/register alias: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Post(e.url("/token"), formCT, strings.NewReader("grant_type=password"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 401 && oauthError(t, body) == "" {
		t.Fatalf("/token alias: %d %s", resp.StatusCode, body)
	}
}

func TestRegistration(t *testing.T) {
	e := newEnv(t)
	got := e.register(map[string]any{
		"redirect_uris":              []string{"https://claude.ai/api/mcp/auth_callback", "http://localhost:6274/oauth/callback"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		"client_name":                "Claude\u202e\u0007",
		"scope":                      "mcp offline_access",
		"software_statement":         "ignored",
		"logo_uri":                   "javascript:alert(1)",
	})
	id, _ := got["client_id"].(string)
	if id == "" {
		t.Fatal("no client_id")
	}
	if _, ok := got["client_id_issued_at"].(float64); !ok {
		t.Errorf("client_id_issued_at %T, want a number", got["client_id_issued_at"])
	}
	delete(got, "client_id")
	delete(got, "client_id_issued_at")
	diff(t, "registration", got, map[string]any{
		"redirect_uris":              []any{"https://claude.ai/api/mcp/auth_callback", "http://localhost:6274/oauth/callback"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []any{"authorization_code", "refresh_token"},
		"response_types":             []any{"code"},
		"client_name":                "Claude",
		"scope":                      "mcp",
	})
	c, err := e.st.GetClient(context.Background(), id)
	if err != nil || c.Source != store.ClientDynamic || c.SecretHash != "" {
		t.Errorf("stored client %+v, %v", c, err)
	}
	// Default method is client_secret_basic: a secret, hashed at rest.
	got = e.register(map[string]any{"redirect_uris": []string{"https://a.example/cb"}})
	secret, _ := got["client_secret"].(string)
	if got["token_endpoint_auth_method"] != "client_secret_basic" || !strings.HasPrefix(secret, "pgcs_") || got["client_secret_expires_at"] != float64(0) {
		t.Errorf("confidential registration: %v", got)
	}
	c, _ = e.st.GetClient(context.Background(), got["client_id"].(string))
	if c.SecretHash == "" || strings.Contains(c.SecretHash, secret) {
		t.Error("client secret not hashed")
	}
	if evs := e.auditEvents(store.EventClientRegistration); len(evs) != 2 || !evs[0].Success {
		t.Errorf("client_registration audit: %+v", evs)
	}

	// Private-use schemes: Cursor's by default; any scheme only with the
	// option.
	e.register(map[string]any{"redirect_uris": []string{"cursor://anysphere.cursor-retrieval/oauth/user-x/callback"}, "token_endpoint_auth_method": "none"})
	e2 := newEnv(t, func(c *Config) { c.PrivateSchemes = oauth.PrivateSchemesAny })
	e2.register(map[string]any{"redirect_uris": []string{"myapp://oauth/callback"}, "token_endpoint_auth_method": "none"})

	// Initial access token mode.
	const iat = "initial-access-token-0123456789"
	e3 := newEnv(t, func(c *Config) { c.Registration = RegistrationToken; c.RegistrationToken = iat })
	e3.secret(iat)
	body := `{"redirect_uris":["https://a.example/cb"]}`
	for _, tt := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer " + iat, 201}} {
		r := hreq{path: "/oauth/register", ctype: "application/json; charset=utf-8", body: body}
		if tt.auth != "" {
			r.header = http.Header{"Authorization": {tt.auth}}
		}
		resp, b := e3.send(t, r, nil)
		if resp.StatusCode != tt.status {
			t.Errorf("auth %q: %d %s", tt.auth, resp.StatusCode, b)
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(b), &m)
		if s, ok := m["client_secret"].(string); ok {
			e3.secret(s)
		}
	}
}

// unavailable is the real store with one method failing as if the
// database were unreachable.
type unavailable struct {
	store.Store
}

func (unavailable) GetClient(context.Context, string) (store.Client, error) {
	return store.Client{}, errDown
}

func (unavailable) CreateClient(context.Context, store.Client) error {
	return errDown
}

func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	h := e.server(func(c *Config) { c.Store = unavailable{e.st} }).Handler()
	for _, tt := range []struct {
		method, path, ctype, body string
		json                      bool
	}{
		{"POST", "/oauth/token", formCT, "grant_type=authorization_code&client_id=x&code=y&code_verifier=z", true},
		{"POST", "/oauth/register", "application/json", `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"none"}`, true},
		{"POST", "/oauth/revoke", formCT, "client_id=x&token=y", true},
		{"GET", "/oauth/authorize?client_id=x&response_type=code", "", "", false},
	} {
		req := httptest.NewRequest(tt.method, e.url(tt.path), strings.NewReader(tt.body))
		if tt.ctype != "" {
			req.Header.Set("Content-Type", tt.ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d, want 503", tt.method, tt.path, rec.Code)
		}
		if tt.json && oauthError(t, rec.Body.String()) != "temporarily_unavailable" {
			t.Errorf("%s: body %s", tt.path, rec.Body.String())
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{Issuer: "http://example.com", Registration: "maybe", RefreshGrace: time.Hour})
	if err == nil {
		t.Fatal("New accepted an empty config")
	}
	for _, want := range []string{"issuer must use https", "at least one resource", "store is required", "audit recorder", "hasher", "registration", "refresh grace 1h0m0s: at most 1m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
