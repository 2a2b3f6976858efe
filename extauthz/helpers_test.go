package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

const (
	mcpURL   = "https://mcp.example.com/mcp"
	otherURL = "https://other.example.com/mcp"
	// sameHostURL is a second resource on mcpURL's host.
	sameHostURL = "https://mcp.example.com/other"
	testUser    = "alice"
	testCli     = "client-1"
	testKey     = "seed-api-key-0123456789"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openSQLite opens and migrates a fresh SQLite store with one user and one
// client.
func openSQLite(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "passgate.db"), testLogger(t))
	db = storetest.Migrated(t, db, err)
	seedStore(t, db)
	return db
}

func seedStore(t testing.TB, st store.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	if err := st.CreateUser(ctx, store.User{Username: testUser, PasswordHash: "$2b$10$x", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateClient(ctx, store.Client{
		ID: testCli, Name: "Test", RedirectURIs: []string{"http://127.0.0.1/cb"}, TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"}, Scope: "mcp admin", Source: store.ClientStatic, CreatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
}

// mintOpts describes a token to issue through the store's real grant path.
type mintOpts struct {
	user     string        // default testUser (must exist for groups to be read)
	resource string        // default mcpURL
	scope    string        // default "mcp"
	ttl      time.Duration // default 1h; negative: already expired
	// refreshAsAccessPrefix stores the access-prefixed secret as a refresh
	// token, to test the kind check.
	refreshAsAccessPrefix bool
}

// mint issues a token pair by creating and redeeming a code, and returns the
// access-prefixed secret.
func mint(t testing.TB, st store.Store, o mintOpts) string {
	t.Helper()
	if o.resource == "" {
		o.resource = mcpURL
	}
	if o.scope == "" {
		o.scope = "mcp"
	}
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	if o.user == "" {
		o.user = testUser
	}
	ctx := context.Background()
	now := time.Now()
	code := token.New(token.PrefixCode)
	family := token.New("fam_")
	if err := st.CreateAuthCode(ctx, store.AuthCode{
		CodeHash: token.Hash(code), ClientID: testCli, Username: o.user, RedirectURI: "http://127.0.0.1/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256",
		Scope: o.scope, Resource: o.resource, FamilyID: family, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
	}, nil); err != nil {
		t.Fatal(err)
	}
	access, refresh := token.New(token.PrefixAccess), token.New(token.PrefixRefresh)
	secret := access
	if o.refreshAsAccessPrefix {
		refresh = token.New(token.PrefixAccess)
		secret = refresh
	}
	tok := func(secret, kind string, ttl time.Duration) store.Token {
		return store.Token{Hash: token.Hash(secret), Kind: kind, FamilyID: family, ClientID: testCli, Username: o.user,
			Scope: o.scope, Resource: o.resource, FamilyExpiresAt: now.Add(24 * time.Hour), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	}
	if err := st.RedeemCode(ctx, token.Hash(code), now, store.CodeGrant{
		Access:  tok(access, store.KindAccess, o.ttl),
		Refresh: tok(refresh, store.KindRefresh, 24*time.Hour),
		Audit:   store.AuditEvent{Event: store.EventTokenExchange, Success: true, ClientID: testCli, Username: testUser, CreatedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// faultStore injects the faults a real database cannot be made to show on
// demand in a unit test: LookupToken, LookupTokens and LookupAPIKey (the check's reads) failing (down) or
// hanging until its context ends (stuck). Everything else is the real store.
type faultStore struct {
	store.Store
	down, stuck atomic.Bool
}

func (f *faultStore) LookupToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	if f.stuck.Load() {
		<-ctx.Done()
		return store.Token{}, fmt.Errorf("lookup token: %w: %w", store.ErrUnavailable, ctx.Err())
	}
	if f.down.Load() {
		return store.Token{}, fmt.Errorf("lookup token: %w: connection refused", store.ErrUnavailable)
	}
	return f.Store.LookupToken(ctx, hash, now)
}

func (f *faultStore) LookupTokens(ctx context.Context, hashes []string, now time.Time) ([]store.Token, error) {
	if f.stuck.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("lookup tokens: %w: %w", store.ErrUnavailable, ctx.Err())
	}
	if f.down.Load() {
		return nil, fmt.Errorf("lookup tokens: %w: connection refused", store.ErrUnavailable)
	}
	return f.Store.LookupTokens(ctx, hashes, now)
}

func (f *faultStore) LookupAPIKey(ctx context.Context, hash string) (store.APIKey, error) {
	if f.stuck.Load() {
		<-ctx.Done()
		return store.APIKey{}, fmt.Errorf("lookup api key: %w: %w", store.ErrUnavailable, ctx.Err())
	}
	if f.down.Load() {
		return store.APIKey{}, fmt.Errorf("lookup api key: %w: connection refused", store.ErrUnavailable)
	}
	return f.Store.LookupAPIKey(ctx, hash)
}

// startChecker builds a Checker on st and runs it until the test ends,
// returning once its cache is armed (the subscription is live).
func startChecker(t testing.TB, cfg Config) *Checker {
	t.Helper()
	if cfg.Resources == nil {
		cfg.Resources = resource.MustParseAll(mcpURL, otherURL)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.StoreTimeout == 0 {
		// Generous: the test machine is shared and loaded; tests of the
		// budget itself set their own.
		cfg.StoreTimeout = 5 * time.Second
	}
	c, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !c.cache.Armed() {
		if time.Now().After(deadline) {
			t.Fatal("cache not armed: Subscribe never delivered its initial invalidation")
		}
		time.Sleep(time.Millisecond)
	}
	return c
}

func bearer(tok string) Request {
	return Request{Method: "POST", Scheme: "https", Host: "mcp.example.com", Path: "/mcp",
		Headers: map[string]string{"authorization": "Bearer " + tok}}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// warmCache checks secret on c until c serves it from its cache, failing
// the test if it is refused.
func warmCache(t *testing.T, c *Checker, secret string) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if d, err := c.Check(ctx, bearer(secret)); err != nil || !d.Allow {
			t.Fatalf("before revocation: %+v %v", d, err)
		}
	}
	hits := testutil.ToFloat64(c.metrics.hits)
	if d, _ := c.Check(ctx, bearer(secret)); !d.Allow || testutil.ToFloat64(c.metrics.hits) != hits+1 {
		t.Fatalf("not served from the cache (hits %v -> %v)", hits, testutil.ToFloat64(c.metrics.hits))
	}
}

// waitRevoked checks secret on c until it is refused, which must happen
// within one second and for ReasonRevoked.
func waitRevoked(t *testing.T, c *Checker, secret string) {
	t.Helper()
	start := time.Now()
	for {
		d, err := c.Check(context.Background(), bearer(secret))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allow {
			t.Logf("refused %v after the revocation (%v)", time.Since(start), d.Reason)
			if d.Reason != ReasonRevoked {
				t.Errorf("reason %v, want revoked", d.Reason)
			}
			return
		}
		if time.Since(start) > time.Second {
			t.Fatal("still allowed 1s after the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mintAPIKey stores a named API key bound to resources with scope, as
// `passgate apikey add` does, and returns the key.
func mintAPIKey(t testing.TB, st store.Store, name, scope string, resources ...string) string {
	t.Helper()
	key := token.New(token.PrefixAPIKey)
	if err := st.CreateAPIKey(context.Background(), store.APIKey{
		Name: name, Hash: token.Hash(key), Resources: resources, Scope: scope, CreatedAt: time.Now(),
	}, nil); err != nil {
		t.Fatal(err)
	}
	return key
}

func headerValue(hs []Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}
