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
	"encoding/json"
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
	"github.com/passgate/passgate/store/internal/sqlstore"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is a store.Store on one SQLite file. It is safe for concurrent use.
// The embedded sqlstore.Store holds the transaction scripts; DB supplies
// the connections, codecs and the invalidation hub.
type DB struct {
	*sqlstore.Store
	writer *sql.DB // exactly one connection, BEGIN IMMEDIATE
	reader *sql.DB // query_only pool
	logger *slog.Logger
	hub    *hub
	origin string // random; marks this handle's rows in invalidations
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
	db := &DB{writer: writer, reader: reader, logger: logger, hub: newHub(), origin: hex.EncodeToString(b[:])}
	db.Store = sqlstore.New(sqlstore.Config{
		Name:       "sqlite",
		Logger:     logger,
		Dialect:    dialect,
		Migrations: migrationFS,
		Dir:        "migrations",
		Read:       &preparedReader{db: reader},
		Write:      querier[*sql.DB]{writer},
		Tx: func(ctx context.Context, fn func(sqlstore.Querier) error) error {
			return db.tx(ctx, func(tx *sql.Tx) error { return fn(querier[*sql.Tx]{tx}) })
		},
		Invalidate: db.recordInvalidation,
		Published:  func(hashes []string) { db.hub.publish(store.Invalidation{TokenHashes: hashes}) },
		Cleanup:    deleteOldInvalidations,
	})
	return db, nil
}

// dialect is SQLite's part of the shared SQL: times as fixed-width TEXT,
// lists as JSON arrays, and no row locks, since the writer's BEGIN
// IMMEDIATE already holds the database's write lock.
var dialect = sqlstore.Dialect{
	Time:        func(t time.Time) any { return ts(t) },
	ScanTime:    func(t *time.Time) any { return tm(t) },
	Strings:     jsonStrings,
	ScanStrings: func(s *[]string) any { return jsonScan{s} },
	InList:      "IN (SELECT value FROM json_each($1))",
	MapErr:      mapErr,
	UndefinedTable: func(err error) bool {
		return strings.Contains(err.Error(), "no such table")
	},
	ForUpdate: "",
	SchemaMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	)`,
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

// querier adapts a *sql.DB or *sql.Tx to sqlstore.Querier.
type querier[T interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}] struct{ c T }

func (q querier[T]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.c.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier[T]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (q querier[T]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.c.QueryRowContext(ctx, query, args...)
}

// sqlRows gives *sql.Rows the Close of sqlstore.Rows; the error Close
// could return is also Err's.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// preparedReader is the reader pool as a sqlstore.Querier whose QueryRow
// prepares each query once and reuses the statement: the proxy check looks
// tokens and API keys up on every cache miss, and a prepared statement
// skips parsing and planning. The queries are the store's constants, so
// the cache stays small.
type preparedReader struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts atomic.Pointer[map[string]*sql.Stmt] // copied on write
}

func (r *preparedReader) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return querier[*sql.DB]{r.db}.Exec(ctx, query, args...)
}

func (r *preparedReader) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return querier[*sql.DB]{r.db}.Query(ctx, query, args...)
}

func (r *preparedReader) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	stmt, err := r.prepared(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return stmt.QueryRowContext(ctx, args...)
}

func (r *preparedReader) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if m := r.stmts.Load(); m != nil {
		if stmt := (*m)[query]; stmt != nil {
			return stmt, nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.stmts.Load()
	if old != nil {
		if stmt := (*old)[query]; stmt != nil {
			return stmt, nil
		}
	}
	// Preparing fails until the table exists (before Migrate): nothing is
	// cached then.
	stmt, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*sql.Stmt, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[query] = stmt
	r.stmts.Store(&m)
	return stmt, nil
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// ---- list encoding ----

// jsonStrings encodes a list for a TEXT column as a JSON array.
func jsonStrings(s []string) any {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a []string always marshals
	}
	return string(b)
}

// jsonScan scans a JSON-array TEXT column into a list.
type jsonScan struct{ s *[]string }

func (j jsonScan) Scan(v any) error {
	var b []byte
	switch v := v.(type) {
	case nil: // an outer join without a row
		*j.s = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scan list: unexpected %T", v)
	}
	if err := json.Unmarshal(b, j.s); err != nil {
		return fmt.Errorf("scan list: %w", err)
	}
	return nil
}

// loadMigrations returns the embedded migrations by version.
func loadMigrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}
