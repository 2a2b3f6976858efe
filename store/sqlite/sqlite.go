// Package sqlite is passgate's default store: one SQLite file, written
// through modernc.org/sqlite (pure Go, no cgo) in WAL mode.
//
// Concurrency: all writes go through a single connection that begins every
// transaction with BEGIN IMMEDIATE, so read-modify-write sequences
// (redeeming a code, rotating a refresh token, counting login failures) are
// serialised within the process and, through SQLite's write lock and
// busy_timeout, against other processes on the same file (the CLI while
// `passgate serve` runs). Reads use a separate pool of query-only
// connections and, thanks to WAL, never wait for the writer.
//
// Times are stored as TEXT in the fixed-width UTC layout
// 2006-01-02T15:04:05.000000Z: it sorts and compares as a string, is
// readable in the sqlite3 shell (SELECT * FROM auth_logs), and round-trips
// exactly at microsecond precision (finer digits are truncated). A zero
// time.Time is stored as NULL where the column allows it.
//
// Invalidations (Subscribe) are fanned out in process right after commit,
// and also written to an invalidations table that other processes on the
// same file poll, so a revocation by the CLI reaches a running server's
// caches within a fraction of a second. Several server replicas belong on
// PostgreSQL, not on one SQLite file.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/passgate/passgate/store"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is a store.Store on one SQLite file. It is safe for concurrent use.
type DB struct {
	writer *sql.DB // exactly one connection, BEGIN IMMEDIATE
	reader *sql.DB // query_only pool
	logger *slog.Logger
	hub    *hub
	origin string // random; marks this handle's rows in invalidations

	stmtMu sync.Mutex
	// Prepared on first use, see prepared.
	getToken, lookupToken, lookupAPIKey atomic.Pointer[sql.Stmt]
}

// busyTimeout is how long a statement waits for another process's write
// lock before failing with "database is locked" (mapped to
// store.ErrUnavailable). It must exceed any transaction passgate runs.
const busyTimeout = 10 * time.Second

// Open opens the SQLite database at path, creating the file (mode 0600)
// and its directory (0700) if needed. It does not migrate: call Migrate. path is a file name; ":memory:" is not supported
// since the writer and reader pools would see different databases.
func Open(ctx context.Context, path string, logger *slog.Logger) (*DB, error) {
	// A '?' would start the driver's DSN parameters.
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite: path must be a plain file name without '?', got %q", path)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The file holds password and token hashes: keep it private. SQLite
	// creates the -wal and -shm files with the main file's permissions.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(int(busyTimeout/time.Millisecond))+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL in WAL mode loses no committed transaction when the process
	// dies (kill -9); only an OS crash or power loss may lose the last
	// ones, never corrupt the file.
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// Create the file and switch it to WAL before readers connect.
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, mapErr(fmt.Errorf("open sqlite %s: %w", path, err))
	}

	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout("+strconv.Itoa(int(busyTimeout/time.Millisecond))+")")
	rq.Add("_pragma", "foreign_keys(1)")
	rq.Set("_query_only", "1")
	reader, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, mapErr(fmt.Errorf("open sqlite %s: %w", path, err))
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &DB{writer: writer, reader: reader, logger: logger, hub: newHub(), origin: hex.EncodeToString(b[:])}, nil
}

// Close closes both connection pools and ends every Subscribe call.
func (db *DB) Close() error {
	db.hub.close()
	return errors.Join(db.writer.Close(), db.reader.Close())
}

// Backup writes a consistent copy of the database to dest (which must not
// exist) while the store stays online, using VACUUM INTO.
func (db *DB) Backup(ctx context.Context, dest string) error {
	if _, err := db.writer.ExecContext(ctx, "VACUUM INTO ?", dest); err != nil {
		return mapErr(fmt.Errorf("backup sqlite: %w", err))
	}
	return nil
}

// ---- errors ----

// mapErr maps driver errors onto the store's sentinel errors, keeping the
// original in the chain for logs.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", store.ErrAlreadyExists, err)
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "sql: database is closed") || strings.Contains(err.Error(), "sql: statement is closed") {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// ---- time encoding ----

// timeLayout is fixed-width so that string order is time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// ts encodes t for a NOT NULL column (the zero time becomes year 1).
func ts(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(timeLayout)
}

// nts encodes t for a nullable column: the zero time is NULL.
func nts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

// nullTime scans a TEXT time column that may be NULL.
type nullTime struct{ t *time.Time }

func (n nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*n.t = time.Time{}
		return nil
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	}
	return fmt.Errorf("scan time: unexpected %T", v)
}

func (n nullTime) parse(s string) error {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return fmt.Errorf("scan time: %w", err)
	}
	if t.IsZero() {
		t = time.Time{}
	}
	*n.t = t.UTC()
	return nil
}

func tm(t *time.Time) nullTime { return nullTime{t} }

// ---- migrations ----

// loadMigrations returns the embedded migrations by version.
func loadMigrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, all in one IMMEDIATE transaction, so two processes
// migrating at once serialise and the second applies nothing.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, err
	}
	applied := 0
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TEXT NOT NULL
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary's %d", current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, ts(time.Now())); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Name, err)
			}
			applied++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if applied > 0 {
		db.logger.InfoContext(ctx, "applied sqlite migrations", "count", applied)
	}
	return applied, nil
}

// Ping checks that the database answers and carries every migration.
func (db *DB) Ping(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	var current int
	err = db.reader.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return errors.New("ping: database is not migrated")
		}
		return mapErr(fmt.Errorf("ping: %w", err))
	}
	if current != len(ms) {
		return fmt.Errorf("ping: schema version %d, want %d", current, len(ms))
	}
	return nil
}

// tx runs fn in a write transaction (BEGIN IMMEDIATE on the single writer
// connection) and commits if fn returns nil. Errors are mapped.
func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(fmt.Errorf("begin: %w", err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return mapErr(err)
	}
	if err := tx.Commit(); err != nil {
		return mapErr(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// exec runs one write statement outside an explicit transaction and
// returns the number of rows it changed.
func (db *DB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := db.writer.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, mapErr(err)
	}
	return n, nil
}
