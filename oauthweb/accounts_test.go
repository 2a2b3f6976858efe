package oauthweb

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/postgres/pgtest"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

// bothStores runs fn against a fresh, migrated SQLite and PostgreSQL
// store: the races below are won or lost in the store.
func bothStores(t *testing.T, fn func(t *testing.T, st store.Store)) {
	backends := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"sqlite", func(t *testing.T) store.Store {
			st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "passgate.db"), nil)
			return storetest.Migrated(t, st, err)
		}},
		{"postgres", func(t *testing.T) store.Store {
			st, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), nil)
			return storetest.Migrated(t, st, err)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// bareServer is a Server on st with alice (testPassword) and a Hasher
// whose verifications the test counts. Requests go straight to the
// handler, so a burst is as concurrent as the goroutines make it (and a
// fuzz target, which cannot use newEnv, runs one too).
func bareServer(tb testing.TB, st store.Store, mutate func(*Config)) (*Server, *passwd.Hasher) {
	tb.Helper()
	hasher := createTestUser(tb, st, time.Now())
	rec, err := audit.New(st, prometheus.NewRegistry(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{Issuer: "http://127.0.0.1:9", Resources: testResources(tb, testResource), Store: st, Audit: rec, Hasher: hasher,
		Logger: slog.New(slog.NewTextHandler(tb.Output(), nil))}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s, hasher
}

// loginRequest is a login form post with a matching CSRF cookie.
func (s *Server) loginRequest(username, password string) *http.Request {
	form := url.Values{"username": {username}, "password": {password}, "csrf": {"csrf-value"}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", formCT)
	r.AddCookie(&http.Cookie{Name: s.csrfCk, Value: "csrf-value"})
	return r
}

func (s *Server) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// TestLockoutHoldsUnderConcurrentGuesses: 50 concurrent wrong guesses at
// one account (login rate limit off) get at most the lockout threshold of
// password verifications, and the right password is refused once the
// account is locked. It used to read the lock before the slow hash and
// never again: 21 guesses got 10 extra verifications and the right
// password was accepted after the lock.
func TestLockoutHoldsUnderConcurrentGuesses(t *testing.T) {
	bothStores(t, func(t *testing.T, st store.Store) {
		const threshold, burst = 10, 50
		s, hasher := bareServer(t, st, func(c *Config) { c.LockoutThreshold = threshold })
		var wg sync.WaitGroup
		var refused atomic.Int32
		start := make(chan struct{})
		for i := range burst {
			wg.Go(func() {
				<-start
				w := s.do(s.loginRequest(testUser, "wrong guess "+string(rune('a'+i%26))))
				if w.Code == http.StatusUnauthorized {
					refused.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if refused.Load() != burst {
			t.Errorf("%d of %d wrong guesses refused", refused.Load(), burst)
		}
		if n := hasher.Verifications(); n > threshold {
			t.Errorf("%d password verifications for %d concurrent guesses, want at most %d (the lockout threshold)", n, burst, threshold)
		}
		before := hasher.Verifications()
		w := s.do(s.loginRequest(testUser, testPassword))
		if w.Code != http.StatusUnauthorized || strings.Contains(strings.Join(w.Header().Values("Set-Cookie"), " "), s.cookie+"=") {
			t.Errorf("the right password while locked: %d, cookies %q; want 401 and no session", w.Code, w.Header().Values("Set-Cookie"))
		}
		if hasher.Verifications() != before {
			t.Error("a login attempt on a locked account ran a verification")
		}
		locked, err := st.ListAudit(t.Context(), store.AuditFilter{Event: store.EventAccountLocked})
		if err != nil || len(locked) != 1 {
			t.Errorf("account_locked rows: %d (%v), want exactly 1", len(locked), err)
		}
	})
}

// confidentialClient stores a client_secret_basic client and returns its
// ID and secret.
func confidentialClient(t *testing.T, s *Server, st store.Store, id, secret string) {
	t.Helper()
	hash, err := s.cfg.Hasher.Hash(t.Context(), secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateClient(t.Context(), store.Client{ID: id, SecretHash: hash, Name: id, RedirectURIs: []string{testRedirect},
		TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code", "refresh_token"},
		Source: store.ClientStatic, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func tokenRequest(basic string, form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", formCT)
	if basic != "" {
		r.Header.Set("Authorization", "Basic "+basic)
	}
	return r
}

func basicAuth(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
}

// TestTokenLimitHoldsUnderConcurrency: 50 concurrent token requests with
// a wrong client secret against a failures-only limit of 10 get at most
// 10 secret verifications; the rest are refused with 429 before any hash.
// The limit used to be checked before the hash and spent after it, so 16
// concurrent wrong secrets passed a limit of 10.
func TestTokenLimitHoldsUnderConcurrency(t *testing.T) {
	bothStores(t, func(t *testing.T, st store.Store) {
		const limit, burst = 10, 50
		limits := ratelimit.Set{LimitToken: ratelimit.New(ratelimit.Limit{Events: limit, Per: 15 * time.Minute}, nil, 0)}
		s, hasher := bareServer(t, st, func(c *Config) { c.RateLimit = limits.Reserve })
		confidentialClient(t, s, st, "seed-client", "the-right-secret-0123456789")
		base := hasher.Verifications()
		var wg sync.WaitGroup
		var tooMany atomic.Int32
		start := make(chan struct{})
		for range burst {
			wg.Go(func() {
				<-start
				w := s.do(tokenRequest(basicAuth("seed-client", "a-wrong-secret"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pgr_x"}}))
				if w.Code == http.StatusTooManyRequests {
					tooMany.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := hasher.Verifications() - base; n > limit {
			t.Errorf("%d secret verifications for %d concurrent wrong secrets, want at most %d", n, burst, limit)
		}
		if tooMany.Load() < burst-limit {
			t.Errorf("%d requests refused with 429, want at least %d", tooMany.Load(), burst-limit)
		}
	})
}

// TestClientLimitSpansAddresses: a client's secret verifications are also
// limited per client_id, so guesses spread over many addresses (each with
// a fresh per-IP bucket) still stop at the limit.
func TestClientLimitSpansAddresses(t *testing.T) {
	bothStores(t, func(t *testing.T, st store.Store) {
		limits := ratelimit.Set{LimitClientSecret: ratelimit.New(ratelimit.Limit{Events: 5, Per: time.Minute}, nil, 0)}
		var ip atomic.Int32
		s, hasher := bareServer(t, st, func(c *Config) {
			c.RateLimit = limits.Reserve
			c.ClientIP = func(*http.Request) string { return "192.0.2." + string(rune('0'+ip.Add(1)%10)) }
		})
		confidentialClient(t, s, st, "rs-client", "the-right-secret-0123456789")
		base := hasher.Verifications()
		statuses := map[int]int{}
		for range 20 {
			r := httptest.NewRequest(http.MethodPost, "/oauth/revoke", strings.NewReader(url.Values{"token": {"pga_x"}}.Encode()))
			r.Header.Set("Content-Type", formCT)
			r.Header.Set("Authorization", "Basic "+basicAuth("rs-client", "wrong"))
			statuses[s.do(r).Code]++
		}
		if n := hasher.Verifications() - base; n > 5 {
			t.Errorf("%d verifications across addresses, want at most 5 (the per-client limit)", n)
		}
		if statuses[http.StatusTooManyRequests] == 0 {
			t.Errorf("statuses %v: no 429", statuses)
		}
	})
}

// TestClientLimitIsNotTheIPLimit: the per-client_id limit on secret
// verifications is its own, larger bucket. An address that spends its
// per-IP token limit on wrong secrets for a client gets 429 itself, but
// the real client, from another address, still authenticates: the
// per-client_id bucket used to be the per-IP limit's size, so one address
// could hold up a client whose ID it knew.
func TestClientLimitIsNotTheIPLimit(t *testing.T) {
	bothStores(t, func(t *testing.T, st store.Store) {
		limits := ratelimit.Set{
			LimitToken:        ratelimit.New(ratelimit.Limit{Events: 3, Per: time.Minute}, nil, 0),
			LimitClientSecret: ratelimit.New(ratelimit.Limit{Events: 10, Per: time.Minute}, nil, 0),
		}
		var addr atomic.Value
		addr.Store("192.0.2.1")
		s, _ := bareServer(t, st, func(c *Config) {
			c.RateLimit = limits.Reserve
			c.ClientIP = func(*http.Request) string { return addr.Load().(string) }
		})
		confidentialClient(t, s, st, "held-client", "the-right-secret-0123456789")
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pgr_unknown"}}
		for i := range 4 {
			w := s.do(tokenRequest(basicAuth("held-client", "a-wrong-secret"), form))
			if want := map[bool]int{true: http.StatusUnauthorized, false: http.StatusTooManyRequests}[i < 3]; w.Code != want {
				t.Fatalf("wrong secret %d from one address: %d, want %d", i+1, w.Code, want)
			}
		}
		addr.Store("198.51.100.7")
		// The right secret with an unknown refresh token: authenticated,
		// then invalid_grant (400), not 429 and not invalid_client.
		w := s.do(tokenRequest(basicAuth("held-client", "the-right-secret-0123456789"), form))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "invalid_grant") {
			t.Fatalf("the real client from another address: %d %s, want 400 invalid_grant", w.Code, w.Body)
		}
	})
}

// TestBasicSecretDecodedOnce: HTTP Basic credentials are form-urlencoded
// then base64 (RFC 6749 §2.3.1) and decoded exactly once. A wrong secret
// with a '%' used to cost two verifications (decoded, then raw), and a
// client sending its secret unencoded was accepted on the second.
func TestBasicSecretDecodedOnce(t *testing.T) {
	e := newEnv(t)
	const id, secret = "seed-client", "s3cret%41bc-0123456789"
	e.secret(secret)
	confidentialClient(t, e.s, e.st, id, secret)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pgr_unknown"}}
	tests := []struct {
		name      string
		basic     string
		wantCode  int
		wantError string
		wantHash  uint64 // verifications
	}{
		// Encoded: the secret authenticates (then the grant fails).
		{"encoded", basicAuth(url.QueryEscape(id), url.QueryEscape(secret)), http.StatusBadRequest, "invalid_grant", 1},
		// Unencoded: "%41" decodes to "A", a different secret. One
		// verification, no second try with the raw value.
		{"raw is not verified a second time", basicAuth(id, secret), http.StatusUnauthorized, "invalid_client", 1},
		{"wrong secret with a percent", basicAuth(id, "wrong%41secret"), http.StatusUnauthorized, "invalid_client", 1},
		// Not form-urlencoded at all: refused before any hash.
		{"undecodable", basicAuth(id, "bad%zzsecret"), http.StatusUnauthorized, "invalid_client", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.s.cfg.Hasher.Verifications()
			w := e.s.do(tokenRequest(tt.basic, form))
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), `"error":"`+tt.wantError+`"`) {
				t.Errorf("%d %s; want %d %s", w.Code, w.Body.String(), tt.wantCode, tt.wantError)
			}
			if n := e.s.cfg.Hasher.Verifications() - before; n != tt.wantHash {
				t.Errorf("%d verifications, want %d", n, tt.wantHash)
			}
		})
	}
}

// TestLoginRefusesControlCharacters: a username with control characters
// fails like a wrong password, runs no verification, counts against no
// account, and is recorded escaped (a raw CR/LF or ESC used to reach the
// audit log and the operator's terminal).
func TestLoginRefusesControlCharacters(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LockoutThreshold = 3 })
	for _, name := range []string{"alice\r\n2026-01-01T00:00:00Z  login_success  ok  admin", "\x1b]0;owned\x07", "ali\u202ece", "a\u0085b"} {
		before := e.s.cfg.Hasher.Verifications()
		w := e.s.do(e.s.loginRequest(name, testPassword))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("login as %q: %d, want 401", name, w.Code)
		}
		if e.s.cfg.Hasher.Verifications() != before {
			t.Errorf("login as %q ran a verification", name)
		}
		if lf, _ := e.st.GetLoginFailures(t.Context(), name); lf.Count != 0 {
			t.Errorf("login as %q was counted: %+v", name, lf)
		}
	}
	for _, ev := range e.auditEvents(store.EventLoginFailure) {
		for _, r := range ev.Username {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
				t.Errorf("audit row records the raw username %q", ev.Username)
				break
			}
		}
	}
}

// TestClientIDControlCharactersRefused: the token, revocation and
// introspection endpoints refuse a client_id with control characters
// before anything records it, and the audit row holds it escaped.
func TestClientIDControlCharactersRefused(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/oauth/token", "/oauth/revoke", "/oauth/introspect"} {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"pgr_x"}, "token": {"pga_x"}, "client_id": {"evil\n\x1b[2J"}, "client_secret": {"x"}}
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", formCT)
		w := e.s.do(r)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "invalid_client") {
			t.Errorf("%s: %d %s, want 401 invalid_client", path, w.Code, w.Body.String())
		}
	}
	for _, ev := range e.auditEvents(store.EventTokenFailure) {
		if strings.ContainsAny(ev.ClientID, "\n\x1b") {
			t.Errorf("audit row records the raw client_id %q", ev.ClientID)
		}
	}
}
