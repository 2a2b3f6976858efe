package oauth

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestMatchRedirectURI(t *testing.T) {
	reg := []string{
		"https://claude.ai/api/mcp/auth_callback",
		"http://127.0.0.1/callback",
		"http://localhost:3000/cb?x=1",
		"http://[::1]/cb",
		"cursor://anysphere.cursor-retrieval/oauth/callback",
	}
	match := func(uri string) bool { return MatchRedirectURI(reg, uri) }
	validtest.Check(t, "MatchRedirectURI", validtest.Bool(match), validtest.Cases[string]{
		Accept: []string{
			"https://claude.ai/api/mcp/auth_callback",
			"cursor://anysphere.cursor-retrieval/oauth/callback",
			"http://127.0.0.1:51234/callback", // loopback, ephemeral port
			"http://127.0.0.1/callback",
			"http://[::1]:8080/cb",
			"http://localhost:4000/cb?x=1", // localhost, other port, keeps the query
		},
		Refuse: []string{
			"https://claude.ai/api/mcp/auth_callback/x",
			"https://claude.ai/api/mcp/auth_callback/", // trailing slash
			"https://claude.ai:8443/api/mcp/auth_callback",
			"https://claude.ai/api/mcp/auth_callback?a=b",
			"https://CLAUDE.ai/api/mcp/auth_callback", // uppercase host
			"https://claude.ai/api/mcp/auth_callback#x",
			"https://claude.ai@evil.example/api/mcp/auth_callback",
			"http://claude.ai/api/mcp/auth_callback",
			"http://localhost:4000/cb", // other port, without the query
			"http://localhost:3000/cb2?x=1",
			"http://127.0.0.2:5000/callback",
			"https://127.0.0.1:5000/callback",
			"http://localhost:80@evil.example/cb", // seed prefix bypass
			"http://user@127.0.0.1:1/callback",
			"http://127.0.0.1:0080/callback", // zero-padded port
			"http://127.0.0.1:70000/callback",
			"http://127.0.0.1:ab/callback",
			"http://127.0.0.1:80\\@evil.example/callback",
			"http://127.0.0.1:80/%63allback", // encoded path
			"",
			"https://claude.ai/api/mcp/auth_callback ", // trailing space
			"javascript:alert(1)",
			"HTTPS://claude.ai/api/mcp/auth_callback",
		},
	})
}

func TestValidateRedirectURI(t *testing.T) {
	with := func(policy PrivateSchemes) func(string) error {
		return func(uri string) error { return ValidateRedirectURI(uri, policy) }
	}
	// Private-use schemes: off refuses them all; the default takes
	// reverse-domain schemes and the known clients' (RFC 8252 §7.1);
	// any takes the rest.
	validtest.Check(t, "ValidateRedirectURI with private schemes off", with(PrivateSchemesOff), validtest.Cases[string]{
		Accept: []string{
			"https://claude.ai/api/mcp/auth_callback",
			"https://example.com/cb?a=b",
			"http://127.0.0.1/cb",
			"http://localhost:1234/cb",
			"http://[::1]:1234/cb",
			"http://LocalHost:1234/cb", // a host name is case-insensitive: LOCALHOST is loopback too
		},
		Refuse: []string{
			"cursor://anysphere.cursor-mcp/oauth/callback",
			"com.example.app:/oauth2redirect",
		},
	})
	validtest.Check(t, "ValidateRedirectURI with the default private schemes", with(PrivateSchemesDefault), validtest.Cases[string]{
		Accept: []string{
			"cursor://anysphere.cursor-mcp/oauth/callback",
			"vscode://vscode.mcp/cb",
			"vscode-insiders://vscode.mcp/cb",
			"windsurf://codeium.windsurf/cb",
			"claude://claude.ai/mcp-auth-callback/sdk", // the Claude desktop app
			"com.example.app:/oauth2redirect",
		},
		Refuse: []string{
			"myapp://cb",
			"javascript://x/%0aalert(1)",
		},
	})
	validtest.Check(t, "ValidateRedirectURI with the zero value (the default)", with(""), validtest.Cases[string]{
		Accept: []string{"cursor://anysphere.cursor-mcp/oauth/callback"},
	})
	validtest.Check(t, "ValidateRedirectURI with any private scheme", with(PrivateSchemesAny), validtest.Cases[string]{
		Accept: []string{"myapp://cb"},
		Refuse: []string{
			"http://example.com/cb",
			"http://localhost.evil.example/cb",
			"https://example.com/cb#frag",
			"https://user:pw@example.com/cb",
			"https://*.example.com/cb",
			"https:///cb",
			"https:opaque",
			"/relative/cb",
			"com.example.app:oauth2redirect", // opaque
			// Dangerous schemes are refused whatever the policy.
			"javascript://x/%0aalert(1)",
			"data://text/html,x",
			"file:///etc/passwd",
			"vbscript://x/y",
			"blob://x/y",
			"about://blank/x",
			"ftp://example.com/cb",
			"ws://127.0.0.1/cb",
			"wss://example.com/cb",
			"JavaScript://x/y", // not lowercase
			"https://exa mple.com/cb",
			"https://example.com/c\\b",
			"https://ex%41mple.com/cb",
			"http://LOCALHOST.evil.example/cb",
		},
	})
}

func TestParsePrivateSchemes(t *testing.T) {
	for in, want := range map[string]PrivateSchemes{
		"": PrivateSchemesDefault, "default": PrivateSchemesDefault, "off": PrivateSchemesOff, "any": PrivateSchemesAny,
		"ANY": PrivateSchemesAny, "true": PrivateSchemesAny, "false": PrivateSchemesOff,
	} {
		if got, err := ParsePrivateSchemes(in); err != nil || got != want {
			t.Errorf("ParsePrivateSchemes(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"on", "all", "cursor"} {
		if _, err := ParsePrivateSchemes(bad); err == nil {
			t.Errorf("ParsePrivateSchemes(%q) accepted", bad)
		}
	}
}

// FuzzMatchRedirectURI checks the matcher's invariant: an accepted URI has
// the registered URI's scheme and host, no userinfo and no fragment, and
// differs from it at most in the port of a loopback http URI.
func FuzzMatchRedirectURI(f *testing.F) {
	for _, s := range [][2]string{
		{"http://127.0.0.1/cb", "http://127.0.0.1:8080/cb"},
		{"http://localhost/cb", "http://localhost:80@evil.example/cb"},
		{"https://claude.ai/cb", "https://claude.ai/cb"},
		{"https://claude.ai/cb", "https://claude.ai.evil.example/cb"},
		{"http://[::1]/cb?a=b", "http://[::1]:1/cb?a=b"},
		{"cursor://x/cb", "cursor://x/cb"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, reg, req string) {
		if !MatchRedirectURI([]string{reg}, req) {
			return
		}
		if req == reg {
			return
		}
		r, err := url.Parse(reg)
		if err != nil {
			t.Fatalf("accepted %q for unparsable registered %q", req, reg)
		}
		q, err := url.Parse(req)
		if err != nil {
			t.Fatalf("accepted unparsable %q", req)
		}
		if q.Scheme != r.Scheme || q.Hostname() != r.Hostname() {
			t.Fatalf("accepted %q (scheme %q host %q) for %q (scheme %q host %q)", req, q.Scheme, q.Hostname(), reg, r.Scheme, r.Hostname())
		}
		if q.Scheme != "http" || !resource.IsLoopbackHost(q.Hostname()) {
			t.Fatalf("non-exact match %q for non-loopback %q", req, reg)
		}
		if q.User != nil || q.Fragment != "" || q.EscapedPath() != r.EscapedPath() || q.RawQuery != r.RawQuery {
			t.Fatalf("accepted %q differs from %q beyond the port", req, reg)
		}
	})
}

// FuzzValidateRedirectURI: anything accepted parses as an absolute URL
// without userinfo or fragment, and http only on loopback.
func FuzzValidateRedirectURI(f *testing.F) {
	for _, s := range []string{"https://a.example/cb", "http://127.0.0.1:1/x", "http://localhost:80@evil/", "cursor://x/y", "javascript:alert(1)"} {
		f.Add(s, uint8(2))
	}
	policies := []PrivateSchemes{PrivateSchemesOff, PrivateSchemesDefault, PrivateSchemesAny}
	f.Fuzz(func(t *testing.T, raw string, p uint8) {
		policy := policies[int(p)%len(policies)]
		if ValidateRedirectURI(raw, policy) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted unparsable %q", raw)
		}
		if u.User != nil || u.Fragment != "" || u.Scheme == "" || u.Opaque != "" {
			t.Fatalf("accepted %q with userinfo, fragment, opaque or no scheme", raw)
		}
		if u.Scheme == "http" && !resource.IsLoopbackHost(u.Hostname()) {
			t.Fatalf("accepted non-loopback http %q", raw)
		}
		if u.Scheme != "http" && u.Scheme != "https" && (!policy.allows(u.Scheme) || deniedSchemes[u.Scheme]) {
			t.Fatalf("accepted scheme %q with policy %q", u.Scheme, policy)
		}
	})
}

func TestPKCE(t *testing.T) {
	// RFC 7636 Appendix B.
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if got := ChallengeS256(verifier); got != challenge {
		t.Fatalf("ChallengeS256 = %q, want %q", got, challenge)
	}
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name                string
		verifier, challenge string
		want                bool
	}{
		{"rfc example", verifier, challenge, true},
		{"wrong verifier", verifier[:len(verifier)-1] + "x", challenge, false},
		{"short verifier", "abc", ChallengeS256("abc"), false},
		{"long verifier", string(long), ChallengeS256(string(long)), false},
		{"bad char verifier", verifier[:43] + "+", ChallengeS256(verifier[:43] + "+"), false},
		{"plain method value", verifier, verifier, false},
		{"padded challenge", verifier, challenge + "=", false},
		{"empty", "", "", false},
		{"128 chars ok", string(long[:128]), ChallengeS256(string(long[:128])), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyS256(tt.verifier, tt.challenge); got != tt.want {
				t.Errorf("VerifyS256 = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzVerifyS256: accepting implies the verifier is well formed and hashes
// to the challenge.
func FuzzVerifyS256(f *testing.F) {
	f.Add("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	f.Add("short", "x")
	f.Fuzz(func(t *testing.T, v, c string) {
		if VerifyS256(v, c) && (!ValidVerifier(v) || ChallengeS256(v) != c) {
			t.Fatalf("accepted %q for %q", v, c)
		}
	})
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"mcp", []string{"mcp"}, false},
		{"b a  b", []string{"a", "b"}, false},
		{"a\tb", nil, true},
		{"a\"b", nil, true},
		{"a\\b", nil, true},
		{"é", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseScope(%q) error = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("ParseScope(%q) (-got +want):\n%s", tt.in, diff)
		}
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, &Error{Code: CodeInvalidClient, Description: "bad", Status: 401, WWWAuthenticate: `Basic realm="passgate"`})
	if rec.Code != 401 {
		t.Errorf("status = %d", rec.Code)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json", "WWW-Authenticate": `Basic realm="passgate"`} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(body, map[string]string{"error": "invalid_client", "error_description": "bad"}); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
}

// TestRedirectKinds: which redirect URIs reach an app on the user's own
// device (where a client_id alone does not identify the client).
func TestRedirectKinds(t *testing.T) {
	tests := []struct {
		uri      string
		loopback bool
		scheme   string
	}{
		{"http://127.0.0.1:3000/cb", true, ""},
		{"http://localhost/cb", true, ""},
		{"http://[::1]:8080/cb", true, ""},
		{"https://127.0.0.1/cb", true, ""}, // any local program can serve https too
		{"https://app.example/cb", false, ""},
		{"http://app.example/cb", false, ""},
		{"http://127.0.0.1:80@evil.example/cb", false, ""},
		{"cursor://anysphere.cursor-retrieval/oauth/cb", false, "cursor"},
		{"com.example.app:/cb", false, "com.example.app"},
		{"HTTP://127.0.0.1/cb", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			got := struct {
				Loopback bool
				Scheme   string
			}{LoopbackRedirect(tt.uri), PrivateScheme(tt.uri)}
			want := struct {
				Loopback bool
				Scheme   string
			}{tt.loopback, tt.scheme}
			if d := cmp.Diff(got, want); d != "" {
				t.Errorf("(-got +want):\n%s", d)
			}
		})
	}
}

// TestLoopbackRedirectHostIsCaseInsensitive: the redirect rules used to have
// their own, case-sensitive loopback test, so http://LOCALHOST was refused at
// registration while resource URLs and issuers accepted it.
func TestLoopbackRedirectHostIsCaseInsensitive(t *testing.T) {
	for _, uri := range []string{"http://LOCALHOST/cb", "http://LocalHost:8080/cb"} {
		if err := ValidateRedirectURI(uri, PrivateSchemesOff); err != nil {
			t.Errorf("ValidateRedirectURI(%q) = %v, want nil", uri, err)
		}
		if !LoopbackRedirect(uri) {
			t.Errorf("LoopbackRedirect(%q) = false, want true", uri)
		}
	}
}

func TestValidScopeToken(t *testing.T) {
	validtest.Check(t, "ValidScopeToken", validtest.Bool(ValidScopeToken), validtest.Cases[string]{
		Accept: []string{"mcp", "mcp:read/write!#$%&'()*+,-.<=>?@[]^_`{|}~"},
		Refuse: []string{"", "a b", `a"b`, `a\b`, "a\tb", "a\x7fb", "sc\u00f6pe"},
	})
}

func TestValidateIssuer(t *testing.T) {
	validtest.Check(t, "ValidateIssuer", ValidateIssuer, validtest.Cases[string]{
		Accept: []string{
			"https://auth.example.com",
			"https://auth.example.com/tenant",
			"http://localhost:8080",
			"http://LOCALHOST:8080",
			"http://127.0.0.1:8080",
			"http://[::1]:8080",
		},
		Refuse: []string{
			"",
			"http://auth.example.com",       // http on a public host
			"http://localhost.evil.example", // a localhost lookalike
			"/auth",
			"https:///x",             // no host
			"https:auth.example.com", // opaque
			"https://auth.example.com?x=1",
			"https://auth.example.com?", // empty query
			"https://auth.example.com#x",
			"https://auth.example.com#", // empty fragment
			"https://user@auth.example.com",
			"HTTPS://auth.example.com", // uppercase scheme
			"ftp://auth.example.com",
			"https://auth.example.com/a b",
			"https://auth.example.com\\@evil.example",
			"https://auth.example.com/\n",
		},
	})
}

// FuzzValidateIssuer: an accepted issuer is an absolute https URL, or http
// on a loopback host, with no userinfo, query or fragment.
func FuzzValidateIssuer(f *testing.F) {
	for _, s := range []string{"https://auth.example.com", "http://localhost:8080", "http://localhost.evil.example", "https://a@b/", "https://a/#", "HTTP://LOCALHOST"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if ValidateIssuer(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			t.Fatalf("accepted %q", raw)
		}
		if u.Scheme != "https" && (u.Scheme != "http" || !resource.IsLoopbackHost(u.Hostname())) {
			t.Fatalf("accepted %q with scheme %q host %q", raw, u.Scheme, u.Hostname())
		}
	})
}
