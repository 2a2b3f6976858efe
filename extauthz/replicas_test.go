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
			warmCache(t, cb, tok)
			revoked, err := rv.revoke(tok)
			if err != nil || len(revoked) == 0 {
				t.Fatalf("revoke via A: %v, %v", revoked, err)
			}
			waitRevoked(t, cb, tok)
		})
	}
}

// BenchmarkCheckPostgres: the check on PostgreSQL; a miss is one indexed
// lookup by token hash over loopback.
func BenchmarkCheckPostgres(b *testing.B) {
	e := newBenchEnvOn(b, openBenchPostgres(b), 0)
	b.Run("hit", func(b *testing.B) {
		r := bearer(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := e.c.Check(context.Background(), r); !d.Allow {
				b.Fatal("denied")
			}
		}
	})
	b.Run("miss", func(b *testing.B) { benchMisses(b, e) })
}

// openBenchPostgres opens, migrates and seeds a fresh PostgreSQL database.
func openBenchPostgres(b *testing.B) store.Store {
	db := openPostgres(b, pgtest.NewDatabase(b))
	if _, err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	seedStore(b, db)
	return db
}
