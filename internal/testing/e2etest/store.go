package e2etest

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

// SQLitePath is the database file passgate uses in a data directory.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "passgate.db") }

// OpenStore opens (and migrates) the server's store from the test process:
// the SQLite file in its data directory (safe while the server runs: WAL
// and busy_timeout) or its PostgreSQL database. It is closed when the test
// ends.
func (s *Server) OpenStore(t testing.TB) store.Store {
	t.Helper()
	return OpenStore(t, s.Opts.DatabaseURL, s.Opts.DataDir)
}

// OpenStore opens and migrates a store: PostgreSQL when databaseURL is not
// empty, else SQLite in dataDir. It is closed when the test ends.
func OpenStore(t testing.TB, databaseURL, dataDir string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		st  store.Store
		err error
	)
	if databaseURL != "" {
		st, err = postgres.Open(ctx, databaseURL, nil)
	} else {
		st, err = sqlite.Open(ctx, SQLitePath(dataDir), nil)
	}
	if err != nil {
		t.Fatalf("e2e: open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("e2e: migrate: %v", err)
	}
	return st
}

// AddUser creates a user with a cheap bcrypt hash (cost 4, so logins under
// load do not spend seconds hashing); passgate verifies any cost.
func AddUser(t testing.TB, st store.Store, username, password string) {
	t.Helper()
	h, err := passwd.Hash(password, 4)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.CreateUser(ctx, store.User{Username: username, PasswordHash: h, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatalf("e2e: add user %s: %v", username, err)
	}
}

// SQL opens a raw connection to the server's database for queries a store
// does not offer (consistency checks, locks): *sql.DB on the SQLite file
// (read-write; use with care while the server runs), closed at test end.
// For PostgreSQL use PGConn.
func SQL(t testing.TB, dataDir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+SQLitePath(dataDir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("e2e: open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PGConn connects to a PostgreSQL URL, closed at test end.
func PGConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("e2e: connect postgres: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}
