package sqlite

import (
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/storetest"
)

func newTestDB(t *testing.T) *DB {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "passgate.db"), logger)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newTestDB(t) })
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file::memory:", "/tmp/x.db?_pragma=journal_mode(DELETE)"} {
		if _, err := Open(t.Context(), p, nil); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	db := newTestDB(t)
	if _, err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetToken(t.Context(), "x", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetToken: %v", err)
	}
	db.Close()
	if _, err := db.GetToken(t.Context(), "x", time.Now()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetToken on closed DB: %v, want ErrUnavailable", err)
	}
	if _, err := db.GetUser(t.Context(), "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetUser on closed DB: %v, want ErrUnavailable", err)
	}
	if err := db.CreateUser(t.Context(), store.User{Username: "x"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CreateUser on closed DB: %v, want ErrUnavailable", err)
	}
}

// TestTwoHandlesOneFile: a second *DB on the same file (the CLI while the
// server runs) migrates to nothing and sees the first one's writes.
func TestTwoHandlesOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	ctx := t.Context()
	a, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := a.Migrate(ctx); err != nil || n == 0 {
		t.Fatalf("Migrate a = %d, %v", n, err)
	}
	if n, err := b.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("Migrate b = %d, %v; want 0", n, err)
	}
	if err := a.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetUser(ctx, "alice"); err != nil {
		t.Errorf("b does not see a's user: %v", err)
	}
	if err := b.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("duplicate through b: %v, want ErrAlreadyExists", err)
	}

	// Revocations through one handle (the CLI) reach the subscribers of
	// another (the server) within a second, through the invalidations
	// table; the revoking handle's own subscribers hear them in process.
	subB := storetest.Subscribe(t, b)
	subA := storetest.Subscribe(t, a)
	now := time.Now()
	hash := strings.Repeat("e", 64)
	c := store.AuthCode{CodeHash: "code", ClientID: "c", Username: "alice", FamilyID: "f", ExpiresAt: now.Add(time.Minute)}
	if err := a.CreateAuthCode(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	g := store.CodeGrant{
		Access:  store.Token{Hash: hash, Kind: store.KindAccess, FamilyID: "f", ClientID: "c", Username: "alice", ExpiresAt: now.Add(time.Hour)},
		Refresh: store.Token{Hash: strings.Repeat("f", 64), Kind: store.KindRefresh, FamilyID: "f", ClientID: "c", Username: "alice", ExpiresAt: now.Add(time.Hour)},
		Audit:   store.AuditEvent{Event: store.EventTokenExchange, CreatedAt: now},
	}
	if err := a.RedeemCode(ctx, c.CodeHash, now, g); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.DeleteUser(ctx, "alice", now); err != nil {
		t.Fatal(err)
	}
	if !subB.WaitHashes(time.Second, g.Access.Hash, g.Refresh.Hash) {
		t.Fatalf("the other handle did not see the revocation within 1s")
	}
	t.Logf("revocation crossed handles in %v", time.Since(start))
	if !subA.WaitHashes(time.Second, g.Access.Hash) {
		t.Errorf("own handle did not see its revocation")
	}
}

func TestBackup(t *testing.T) {
	db := newTestDB(t)
	ctx := t.Context()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, dest); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	restored, err := Open(ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if err := restored.Ping(ctx); err != nil {
		t.Errorf("Ping restored: %v", err)
	}
	if _, err := restored.GetUser(ctx, "alice"); err != nil {
		t.Errorf("restored user: %v", err)
	}
}

// TestSlowSubscriberCollapses: a subscriber that falls far behind gets one
// All instead of an unbounded queue.
func TestSlowSubscriberCollapses(t *testing.T) {
	h := newHub()
	s := &subscriber{wake: make(chan struct{}, 1)}
	h.subs[s] = struct{}{}
	for i := range maxPending + 10 {
		h.publish(store.Invalidation{TokenHashes: []string{string(rune('a' + i%26))}})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > maxPending {
		t.Fatalf("%d invalidations queued, want at most %d", len(s.pending), maxPending)
	}
	if !s.pending[0].All {
		t.Errorf("overflowed queue does not start with All: %+v", s.pending[0])
	}
	h.publish(store.Invalidation{}) // empty: not queued
	// The publication that overflowed is covered by the All; the 9 after
	// it are queued behind it.
	if n := len(s.pending); n != 10 {
		t.Errorf("queue length %d, want 10 (All plus the 9 after it)", n)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		db, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "passgate.db")
	db, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("database file mode %v, want no group/other access", perm)
	}
}

// TestInvalidationRowsTrimmed: DeleteExpired trims the cross-process
// invalidation rows once they are older than invalidationRetention, and
// does not count them.
func TestInvalidationRowsTrimmed(t *testing.T) {
	db := newTestDB(t)
	ctx := t.Context()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := store.AuthCode{CodeHash: "code", ClientID: "c", Username: "u", FamilyID: "f", ExpiresAt: now.Add(time.Minute)}
	if err := db.CreateAuthCode(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	g := store.CodeGrant{
		Access:  store.Token{Hash: "a", Kind: store.KindAccess, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(48 * time.Hour)},
		Refresh: store.Token{Hash: "r", Kind: store.KindRefresh, FamilyID: "f", ClientID: "c", Username: "u", ExpiresAt: now.Add(48 * time.Hour)},
		Audit:   store.AuditEvent{Event: store.EventTokenExchange, CreatedAt: now},
	}
	if err := db.RedeemCode(ctx, c.CodeHash, now, g); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeFamily(ctx, "f", now, nil); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM invalidations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("invalidation rows = %d, want 1", n)
	}
	if _, err := db.DeleteExpired(ctx, now.Add(invalidationRetention/2), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Errorf("fresh invalidation row trimmed")
	}
	n, err := db.DeleteExpired(ctx, now.Add(2*invalidationRetention), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 { // the code went in the first call; tokens live 48h
		t.Errorf("DeleteExpired = %d, want 0 (invalidation rows are not counted)", n)
	}
	if n := count(); n != 0 {
		t.Errorf("old invalidation rows left: %d", n)
	}
}

// TestConsentResourceMigrationKeepsRows runs
// storetest.ConsentResourceMigration on SQLite.
func TestConsentResourceMigrationKeepsRows(t *testing.T) {
	ctx := t.Context()
	db := newTestDB(t)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	storetest.ConsentResourceMigration(t, db, ms, func(before []store.Migration, when time.Time) error {
		return db.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
				return err
			}
			for _, m := range before {
				if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, m.Version, m.Name, ts(when)); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO consents (username, client_id, scope, created_at, updated_at) VALUES ('alice', 'c1', 'mcp', ?, ?)`, ts(when), ts(when))
			return err
		})
	})
}
