package extauthz

import (
	"context"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

func openPostgres(t testing.TB, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestTwoReplicasPostgres: two passgate replicas on one PostgreSQL. A token
// cached by replica B and revoked through replica A is refused by B within
// one second (LISTEN/NOTIFY), for a single revocation and for a user-wide
// one.
func TestTwoReplicasPostgres(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := openPostgres(t, url)
	if _, err := a.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	seedStore(t, a)
	b := openPostgres(t, url)
	startChecker(t, Config{Store: a}) // replica A runs its own checker too
	cb := startChecker(t, Config{Store: b})
	ctx := context.Background()

	revokes := []struct {
		name   string
		revoke func(tok string) ([]string, error)
	}{
		{"RevokeToken", func(tok string) ([]string, error) {
			return a.RevokeToken(ctx, token.Hash(tok), time.Now(), nil)
		}},
		{"RevokeUserTokens", func(string) ([]string, error) {
			return a.RevokeUserTokens(ctx, testUser, "", time.Now(), &store.AuditEvent{Event: store.EventTokenRevoked, Success: true, Username: testUser, CreatedAt: time.Now()})
		}},
	}
	for _, rv := range revokes {
		t.Run(rv.name, func(t *testing.T) {
			tok := mint(t, a, mintOpts{})
			hits := func() float64 { return testutilValue(cb.metrics.hits) }
			for range 2 {
				if d, err := cb.Check(ctx, bearer(tok)); err != nil || !d.Allow {
					t.Fatalf("replica B before revocation: %+v %v", d, err)
				}
			}
			before := hits()
			if d, _ := cb.Check(ctx, bearer(tok)); !d.Allow || hits() != before+1 {
				t.Fatalf("token not served from B's cache (hits %v -> %v)", before, hits())
			}
			revoked, err := rv.revoke(tok)
			if err != nil || len(revoked) == 0 {
				t.Fatalf("revoke via A: %v, %v", revoked, err)
			}
			start := time.Now()
			for {
				d, err := cb.Check(ctx, bearer(tok))
				if err != nil {
					t.Fatal(err)
				}
				if !d.Allow {
					t.Logf("refused by B %v after revocation via A (%v)", time.Since(start), d.Reason)
					if d.Reason != ReasonRevoked {
						t.Errorf("reason %v, want revoked", d.Reason)
					}
					break
				}
				if time.Since(start) > time.Second {
					t.Fatal("replica B still allows the token 1s after replica A revoked it")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// BenchmarkCheckPostgres: the check on PostgreSQL; a miss is one indexed
// lookup by token hash over loopback.
func BenchmarkCheckPostgres(b *testing.B) {
	db := openPostgres(b, pgtest.NewDatabase(b))
	if _, err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	seedStore(b, db)
	c := startChecker(b, Config{Store: db, Logger: discard()})
	e := &benchEnv{c: c, hit: mint(b, db, mintOpts{})}
	for range 200 {
		tok := mint(b, db, mintOpts{})
		e.pool = append(e.pool, tok)
		e.keys = append(e.keys, hashSecret(tok))
	}
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		r := bearer(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := c.Check(ctx, r); !d.Allow {
				b.Fatal("denied")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, err := c.Check(ctx, bearer(e.missToken())); !d.Allow {
				b.Fatal("denied: ", d.Reason, err)
			}
		}
	})
}
