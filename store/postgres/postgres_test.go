package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
	"github.com/passgate/passgate/store/storetest"
)

func openDB(t *testing.T, url string) *DB {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	db, err := Open(t.Context(), url, logger)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestConformance runs the suite with one database and a fresh schema per
// sub-test (CREATE DATABASE costs a second or more; CREATE SCHEMA does not).
func TestConformance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openDB(t, pgtest.NewSchema(t, dbURL)) })
}

// TestMigrateConcurrently starts several replicas on one empty database at
// once: the advisory lock lets exactly one apply the migrations.
func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const n = 4
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = openDB(t, url)
	}
	applied := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { applied[i], errs[i] = dbs[i].Migrate(t.Context()) })
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Migrate %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	ms, _ := loadMigrations()
	if total != len(ms) {
		t.Errorf("migrations applied in total = %d, want %d (applied %v)", total, len(ms), applied)
	}
}

// TestInvalidationAcrossReplicas: a revocation through one *DB reaches the
// Subscribe of another *DB on the same database within a second.
func TestInvalidationAcrossReplicas(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := openDB(t, url), openDB(t, url)
	ctx := t.Context()
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	subB := storetest.Subscribe(t, b)
	subA := storetest.Subscribe(t, a)

	now := time.Now()
	var hashes []string
	for i, kind := range []string{store.KindAccess, store.KindRefresh} {
		tok := store.Token{Hash: fmt.Sprintf("%064x", i+1), Kind: kind, FamilyID: "fam", ClientID: "c", Username: "u",
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		hashes = append(hashes, tok.Hash)
		c := store.AuthCode{CodeHash: fmt.Sprintf("code%d", i), ClientID: "c", Username: "u", FamilyID: "fam", ExpiresAt: now.Add(time.Minute)}
		if err := a.CreateAuthCode(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
		g := store.CodeGrant{Access: tok, Refresh: store.Token{Hash: fmt.Sprintf("r%063x", i+1), Kind: store.KindRefresh, FamilyID: "other", ClientID: "c", Username: "u", ExpiresAt: now.Add(time.Hour)},
			Audit: store.AuditEvent{Event: store.EventTokenExchange, Success: true, CreatedAt: now}}
		if err := a.RedeemCode(ctx, c.CodeHash, now, g); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	got, err := a.RevokeFamily(ctx, "fam", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(len(got), 2); d != "" {
		t.Fatalf("revoked (-got +want):\n%s", d)
	}
	if !subB.WaitHashes(time.Second, hashes...) {
		t.Fatalf("replica B did not receive A's revocation within 1s")
	}
	t.Logf("revocation reached replica B after %v", time.Since(start))
	if !subA.WaitHashes(time.Second, hashes...) {
		t.Errorf("replica A did not receive its own revocation within 1s")
	}
}

// TestSubscribeReconnects kills the listener's backend: Subscribe must
// reconnect, announce All again, and keep delivering.
func TestSubscribeReconnects(t *testing.T) {
	url := pgtest.NewDatabase(t)
	db := openDB(t, url)
	ctx := t.Context()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sub := storetest.Subscribe(t, db)
	before := sub.AllCount()
	// Terminate every other backend on this database: that includes the
	// listener's dedicated connection.
	if _, err := db.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sub.AllCount() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sub.AllCount() == before {
		t.Fatalf("no All after the listener's connection was killed")
	}
	now := time.Now()
	tok := store.Token{Hash: strings.Repeat("a", 64), Kind: store.KindAccess, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(time.Hour)}
	c := store.AuthCode{CodeHash: "code", ClientID: "c", Username: "u", FamilyID: "f", ExpiresAt: now.Add(time.Minute)}
	g := store.CodeGrant{Access: tok, Refresh: store.Token{Hash: strings.Repeat("b", 64), Kind: store.KindRefresh, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(time.Hour)},
		Audit: store.AuditEvent{Event: store.EventTokenExchange, Success: true, CreatedAt: now}}
	// The pool's own connections were killed too: drop them.
	db.pool.Reset()
	if err := db.CreateAuthCode(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.RedeemCode(ctx, c.CodeHash, now, g); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeToken(ctx, tok.Hash, now, nil); err != nil {
		t.Fatal(err)
	}
	if !sub.WaitHashes(time.Second, tok.Hash) {
		t.Fatalf("revocation after reconnect not delivered within 1s")
	}
}

func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", nil)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open on a closed port: %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "secretpw") {
		t.Errorf("error leaks the password")
	}
	_, err = Open(ctx, "postgres://postgres:secretpw@[::1", nil)
	if err == nil || strings.Contains(err.Error(), "secretpw") {
		t.Errorf("Open with a bad URL: %v (must fail without quoting the password)", err)
	}

	db := openDB(t, pgtest.NewDatabase(t))
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.GetUser(ctx, "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetUser on a closed pool: %v, want ErrUnavailable", err)
	}
}

func TestPayloads(t *testing.T) {
	hash := strings.Repeat("f", 64)
	mk := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = hash
		}
		return out
	}
	tests := []struct {
		name       string
		n          int
		wantChunks int
		wantAll    bool
	}{
		{"none", 0, 0, false},
		{"one", 1, 1, false},
		{"one chunk", 121, 1, false},
		{"two chunks", 122, 2, false},
		{"max chunks", 121 * maxChunks, maxChunks, false},
		{"too many", 121*maxChunks + 1, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := payloads(mk(tt.n))
			if len(ps) != tt.wantChunks {
				t.Fatalf("%d payloads, want %d", len(ps), tt.wantChunks)
			}
			var got []string
			for _, p := range ps {
				if len(p) >= 8000 {
					t.Errorf("payload of %d bytes", len(p))
				}
				inv := parsePayload(p)
				if inv.All != tt.wantAll {
					t.Errorf("All = %v, want %v", inv.All, tt.wantAll)
				}
				got = append(got, inv.TokenHashes...)
			}
			if !tt.wantAll && len(got) != tt.n {
				t.Errorf("round trip gave %d hashes, want %d", len(got), tt.n)
			}
		})
	}
}

// FuzzPayloads: any list of hashes (hex, so never a comma) survives the
// chunking, every payload fits in a NOTIFY, and "all" is the only lossy
// answer.
func FuzzPayloads(f *testing.F) {
	f.Add(uint16(1), byte(0))
	f.Add(uint16(500), byte(7))
	f.Add(uint16(5000), byte(255))
	f.Fuzz(func(t *testing.T, n uint16, seed byte) {
		hashes := make([]string, int(n)%4000)
		for i := range hashes {
			hashes[i] = fmt.Sprintf("%064x", int(seed)*100000+i)
		}
		var got []string
		ps := payloads(hashes)
		for _, p := range ps {
			if len(p) >= 8000 {
				t.Fatalf("payload of %d bytes", len(p))
			}
			inv := parsePayload(p)
			if inv.All {
				if len(ps) != 1 {
					t.Fatalf("all mixed with lists")
				}
				return
			}
			got = append(got, inv.TokenHashes...)
		}
		if len(got) != len(hashes) {
			t.Fatalf("%d hashes back, want %d", len(got), len(hashes))
		}
		for i := range got {
			if got[i] != hashes[i] {
				t.Fatalf("hash %d changed", i)
			}
		}
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		db, err := Open(b.Context(), pgtest.NewDatabase(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	})
}

// TestStuckDatabase: a call that cannot finish before its deadline (here
// blocked by another transaction's row lock) fails with ErrUnavailable in
// time, and the blocked change is not applied.
func TestStuckDatabase(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := store.AuthCode{CodeHash: "code", ClientID: "c", Username: "u", FamilyID: "f", ExpiresAt: now.Add(time.Minute)}
	if err := db.CreateAuthCode(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	blocker, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM auth_codes WHERE code_hash = 'code' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	g := store.CodeGrant{
		Access:  store.Token{Hash: strings.Repeat("a", 64), Kind: store.KindAccess, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(time.Hour)},
		Refresh: store.Token{Hash: strings.Repeat("b", 64), Kind: store.KindRefresh, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(time.Hour)},
		Audit:   store.AuditEvent{Event: store.EventTokenExchange, CreatedAt: now},
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = db.RedeemCode(short, c.CodeHash, now, g)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("RedeemCode against a stuck row: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("RedeemCode took %v with a 300ms deadline", d)
	}
	blocker.Rollback(ctx)
	got, err := db.GetAuthCode(ctx, c.CodeHash, now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.UsedAt.IsZero() {
		t.Errorf("code used by a redemption that timed out")
	}
	if err := db.RedeemCode(ctx, c.CodeHash, now, g); err != nil {
		t.Errorf("RedeemCode after the lock is gone: %v", err)
	}
}

// TestConsentResourceMigrationKeepsRows runs
// storetest.ConsentResourceMigration on PostgreSQL.
func TestConsentResourceMigrationKeepsRows(t *testing.T) {
	ctx := t.Context()
	db := openDB(t, pgtest.NewDatabase(t))
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	storetest.ConsentResourceMigration(t, db, ms, func(before []store.Migration, when time.Time) error {
		return db.tx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			for _, m := range before {
				if _, err := tx.Exec(ctx, m.SQL); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO consents (username, client_id, scope, created_at, updated_at) VALUES ('alice', 'c1', 'mcp', $1, $1)`, when)
			return err
		})
	})
}
