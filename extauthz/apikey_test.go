package extauthz

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
	"github.com/passgate/passgate/store/sqlite"
)

// keyOutcome is the part of a Decision the API key tests look at.
type keyOutcome struct {
	Status int
	Reason string
	User   string // the user identity header, when allowed
}

func keyOutcomeOf(d Decision) keyOutcome {
	return keyOutcome{Status: d.Status, Reason: d.Reason.String(), User: headerValue(d.Headers, DefaultUserHeader)}
}

// checkKey checks req on c and compares the outcome with want.
func checkKey(t *testing.T, c *Checker, req Request, want keyOutcome) Decision {
	t.Helper()
	d, err := c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keyOutcomeOf(d), want); diff != "" {
		t.Errorf("outcome (-got +want):\n%s", diff)
	}
	return d
}

func at(host, path, secret string) Request {
	r := Request{Method: "POST", Scheme: "https", Host: host, Path: path, Headers: map[string]string{}}
	if secret != "" {
		r.Headers["authorization"] = "Bearer " + secret
	}
	return r
}

// TestAPIKeyBoundToResource: an API key is accepted only for the resources
// it is bound to. The legacy key (API_KEY) is bound to the configured
// resources: before, with AllowUnknownResources, a request for a host
// passgate does not protect was let through with the key in it, to an
// upstream the key was never meant for. A named key works only for the
// resources given at `apikey add`; elsewhere it is a 401 invalid_token like
// a token for another audience.
func TestAPIKeyBoundToResource(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db, APIKey: testKey, AllowUnknownResources: true})
	named := mintAPIKey(t, db, "ci", "mcp", mcpURL)
	const other, unknown = "other.example.com", "unknown.example.com"
	allowed := func(user string) keyOutcome { return keyOutcome{Status: 200, Reason: "api_key", User: user} }
	tests := []struct {
		name string
		req  Request
		want keyOutcome
	}{
		{"legacy key, configured resource", at("mcp.example.com", "/mcp", testKey), allowed("apikey:legacy")},
		{"legacy key, the other configured resource", at(other, "/mcp", testKey), allowed("apikey:legacy")},
		{"legacy key, unknown host", at(unknown, "/mcp", testKey), keyOutcome{Status: 401, Reason: "wrong_audience"}},
		{"legacy key, configured host but no resource path", at("mcp.example.com", "/files", testKey), keyOutcome{Status: 401, Reason: "wrong_audience"}},
		{"named key, its resource", at("mcp.example.com", "/mcp/tools", named), allowed("apikey:ci")},
		{"named key, another configured resource", at(other, "/mcp", named), keyOutcome{Status: 401, Reason: "wrong_audience"}},
		{"named key, unknown host", at(unknown, "/mcp", named), keyOutcome{Status: 401, Reason: "wrong_audience"}},
		{"unknown named key, unknown host", at(unknown, "/mcp", token.New(token.PrefixAPIKey)), keyOutcome{Status: 401, Reason: "wrong_audience"}},
		// What passgate does not protect stays the upstream's business.
		{"someone else's credential, unknown host", at(unknown, "/mcp", "their-own-token"), keyOutcome{Status: 200, Reason: "unprotected"}},
		{"no credential, unknown host", at(unknown, "/mcp", ""), keyOutcome{Status: 200, Reason: "unprotected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := checkKey(t, c, tt.req, tt.want)
			if d.Status == 401 {
				if www := headerValue(d.Headers, "WWW-Authenticate"); !strings.Contains(www, `error="invalid_token"`) {
					t.Errorf("401 with WWW-Authenticate %q, want error=\"invalid_token\"", www)
				}
				if strings.Contains(d.Body, testKey) || strings.Contains(d.Body, named) {
					t.Errorf("the denial repeats the key: %s", d.Body)
				}
			}
		})
	}
}

// TestAPIKeyScopeRulesApply: scope rules hold for API keys as for tokens.
// Before, the legacy key skipped them and reached /mcp/admin without the
// admin scope. Now it has no scopes; a named key has those given at
// `apikey add`.
func TestAPIKeyScopeRulesApply(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{
		Store: db, APIKey: testKey, Scopes: []string{"mcp", "admin"},
		RequiredScopes: []ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin"}}},
	})
	plain := mintAPIKey(t, db, "plain", "mcp", mcpURL)
	admin := mintAPIKey(t, db, "admin", "mcp admin", mcpURL)
	const host = "mcp.example.com"
	insufficient := keyOutcome{Status: 403, Reason: "insufficient_scope"}
	tests := []struct {
		name string
		req  Request
		want keyOutcome
	}{
		{"legacy key, unguarded path", at(host, "/mcp", testKey), keyOutcome{Status: 200, Reason: "api_key", User: "apikey:legacy"}},
		{"legacy key, guarded path", at(host, "/mcp/admin", testKey), insufficient},
		{"legacy key, guarded path behind dot segments", at(host, "/mcp/tools/../admin/x", testKey), insufficient},
		{"named key without the scope", at(host, "/mcp/admin", plain), insufficient},
		{"named key with the scope", at(host, "/mcp/admin", admin), keyOutcome{Status: 200, Reason: "api_key", User: "apikey:admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := checkKey(t, c, tt.req, tt.want)
			if d.Allow {
				if got := headerValue(d.Headers, DefaultScopeHeader); got != map[string]string{"apikey:legacy": "", "apikey:admin": "mcp admin"}[tt.want.User] {
					t.Errorf("scope header %q", got)
				}
			}
		})
	}
}

// TestAPIKeyOutsideToken68Refused: a static key that no client can send as
// "Authorization: Bearer KEY" (RFC 6750 b64token) is refused when the
// Checker is built, with a message that says why, instead of validating
// and then never matching.
func TestAPIKeyOutsideToken68Refused(t *testing.T) {
	db := openSQLite(t)
	tests := []struct {
		name, key string
		want      string // "" when accepted
	}{
		{"base64url", "seed-api-key-0123456789", ""},
		{"base64 with padding", "c2VlZC1hcGkta2V5LTAxMjM0NTY3ODk+/w==", ""},
		{"space", "seed api key 0123456789", "Bearer token characters"},
		{"comma", "seed,api,key,0123456789", "Bearer token characters"},
		{"quote", `seed"api"key"0123456789`, "Bearer token characters"},
		{"padding inside", "seed=api=key=0123456789", "Bearer token characters"},
		{"non-ASCII", "seed-api-key-0123456789é", "Bearer token characters"},
		{"colon", "seed:api:key:0123456789", "Bearer token characters"},
		{"too short", "short-key", "at least 16"},
		{"too long", strings.Repeat("k", maxTokenLen+1), "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: db, APIKey: tt.key})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewChecker refused %q: %v", tt.key, err)
				}
				// An accepted key is one the check can match.
				if d, _ := c.Check(context.Background(), at("mcp.example.com", "/mcp", tt.key)); !d.Allow {
					t.Errorf("accepted key %q is not let through: %v", tt.key, d.Reason)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "api key") {
				t.Fatalf("NewChecker(%q) = %v, want an api key error mentioning %q", tt.key, err, tt.want)
			}
			if strings.Contains(err.Error(), tt.key) {
				t.Errorf("the error repeats the key: %v", err)
			}
		})
	}
}

// FuzzValidateAPIKey: every key ValidateAPIKey accepts is one parseBearer
// reads back whole from "Authorization: Bearer KEY".
func FuzzValidateAPIKey(f *testing.F) {
	for _, s := range []string{"seed-api-key-0123456789", "abc def ghi jkl mno", "a==============b", "////////////////"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidateAPIKey(key) != nil {
			return
		}
		got, present, ok := parseBearer("Bearer " + key)
		if !present || !ok || got != key {
			t.Fatalf("ValidateAPIKey accepted %q but parseBearer reads %q, %v, %v", key, got, present, ok)
		}
	})
}

func TestValidateAPIKeyName(t *testing.T) {
	for _, name := range []string{"ci", "deploy-bot_2", "a.b", strings.Repeat("n", 64)} {
		if err := ValidateAPIKeyName(name); err != nil {
			t.Errorf("ValidateAPIKeyName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "legacy", "Legacy", "with space", "new\nline", "esc\x1b[31m", "a:b", "ü", strings.Repeat("n", 65)} {
		if err := ValidateAPIKeyName(name); err == nil {
			t.Errorf("ValidateAPIKeyName(%q) = nil, want an error", name)
		}
	}
}

// TestAPIKeyRevocationReachesOtherReplica: a named key cached by replica B
// and revoked through replica A's store is refused by B within one second,
// on PostgreSQL (LISTEN/NOTIFY) and on one SQLite file shared by two
// processes' handles (the invalidations table).
func TestAPIKeyRevocationReachesOtherReplica(t *testing.T) {
	backends := map[string]func(t *testing.T) (a, b store.Store){
		"postgres": func(t *testing.T) (store.Store, store.Store) {
			url := pgtest.NewDatabase(t)
			a := openPostgres(t, url)
			if _, err := a.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return a, openPostgres(t, url)
		},
		"sqlite": func(t *testing.T) (store.Store, store.Store) {
			path := filepath.Join(t.TempDir(), "passgate.db")
			open := func() store.Store {
				db, err := sqlite.Open(context.Background(), path, testLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			a := open()
			if _, err := a.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return a, open()
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			a, b := open(t)
			startChecker(t, Config{Store: a})
			cb := startChecker(t, Config{Store: b})
			ctx := context.Background()
			key := mintAPIKey(t, a, "ci", "mcp", mcpURL)
			warmCache(t, cb, key)
			if err := a.RevokeAPIKey(ctx, "ci", time.Now(), nil); err != nil {
				t.Fatal(err)
			}
			waitRevoked(t, cb, key)
		})
	}
}
