// Package sqlstore is the store.Store that passgate's SQL backends share:
// every transaction script (redeem, rotate, revoke-and-invalidate, lockout,
// migrate, ping, …) written once against a narrow Querier and a Dialect.
// A backend supplies only what its driver and database make its own:
// connections and the write transaction (SQLite's single BEGIN IMMEDIATE
// writer, PostgreSQL's pool at READ COMMITTED), value codecs, error
// mapping, and how a committed revocation reaches other processes
// (LISTEN/NOTIFY, or an invalidations table plus an in-process hub).
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/passgate/passgate/store"
)

// Row is one result row, as *sql.Row or pgx.Row. Scan returns an error
// satisfying errors.Is(err, sql.ErrNoRows) when there is no row (pgx's
// ErrNoRows does).
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set, as pgx.Rows (database/sql's needs a Close
// without a result).
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs statements on a connection, pool or transaction. Errors are
// the driver's; Store maps them with Dialect.MapErr.
type Querier interface {
	// Exec runs a statement and returns the number of rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Dialect is what differs between the SQL databases in the statements
// and values themselves.
type Dialect struct {
	// Time encodes a time for a NOT NULL column (the zero time included).
	Time func(time.Time) any
	// ScanTime returns a scan destination that stores a nullable time
	// column into *t, in UTC, NULL as the zero time. It must not allocate:
	// LookupToken calls it on every cache miss of the proxy check.
	ScanTime func(t *time.Time) any
	// Strings encodes a non-nil list of strings; ScanStrings decodes one.
	Strings func([]string) any
	// ScanStrings decodes NULL (from an outer join) as nil.
	ScanStrings func(*[]string) any
	// InList matches a column against a list of strings encoded with
	// Strings, following "column ": PostgreSQL's "= ANY($1)" on a text
	// array, SQLite's "IN (SELECT value FROM json_each($1))" on a JSON
	// array. Both keep the column's index (one probe per element).
	InList string
	// MapErr maps driver errors onto store.ErrAlreadyExists and
	// store.ErrUnavailable, keeping the original in the chain.
	MapErr func(error) error
	// UndefinedTable reports whether err says a table does not exist.
	UndefinedTable func(error) bool
	// InKeys, optional, matches a primary key against a subquery of at
	// most a batch of its values, %s in it standing for the subquery;
	// "IN (%s)" if empty. SQLite probes the key per selected value.
	// PostgreSQL plans IN as a hash join against a scan of the whole
	// table, so it uses "= ANY(ARRAY(%s))": one index probe per value.
	InKeys string
	// ForUpdate is appended to the SELECT that reads a row the
	// transaction then writes (" FOR UPDATE", or "" where the transaction
	// already holds the write lock).
	ForUpdate string
	// SchemaMigrations creates the schema_migrations table if missing;
	// MigrateLock, if set, runs first in Migrate's transaction to
	// serialise concurrent migrations.
	SchemaMigrations string
	MigrateLock      string
}

// Config is a backend's part of a Store. Every field is required unless
// marked optional.
type Config struct {
	// Name names the backend in log messages.
	Name    string
	Logger  *slog.Logger
	Dialect Dialect
	// Migrations holds the backend's NNNN_name.sql files in Dir.
	Migrations fs.FS
	Dir        string
	// Read serves reads outside a transaction; Write runs single
	// statements outside a transaction.
	Read, Write Querier
	// Tx runs fn in a write transaction and commits if fn returns nil.
	// It maps errors with Dialect.MapErr. Concurrent calls must serialise
	// on the rows fn writes (row locks, or one writer at a time).
	Tx func(ctx context.Context, fn func(Querier) error) error
	// Invalidate records, inside the revoking transaction tx, that hashes
	// were revoked, so other processes learn it if and only if tx commits.
	Invalidate func(ctx context.Context, tx Querier, hashes []string, now time.Time) error
	// Published, optional, is called with the revoked hashes after the
	// revoking transaction committed.
	Published func(hashes []string)
	// Cleanup, optional, deletes the backend's own expired bookkeeping
	// in a write transaction of DeleteExpired's.
	Cleanup func(ctx context.Context, tx Querier, now time.Time) error
}

// Store implements every store.Store method but Subscribe and Close on
// top of a Config. It is safe for concurrent use if the Config's parts are.
type Store struct {
	c           Config
	deleteBatch int // rows per DeleteExpired transaction
}

// New returns a Store for c.
func New(c Config) *Store {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{c: c, deleteBatch: DeleteBatch}
}

func (db *Store) tx(ctx context.Context, fn func(Querier) error) error {
	return db.c.Tx(ctx, fn)
}

// write is the transaction script every writing method shares: it runs
// fn in a write transaction and then inserts audit, if not nil, in the
// same transaction, so a change and its audit row commit together or not
// at all. Errors are wrapped with op.
func (db *Store) write(ctx context.Context, op string, audit *store.AuditEvent, fn func(tx Querier) error) error {
	err := db.tx(ctx, func(tx Querier) error {
		if err := fn(tx); err != nil {
			return err
		}
		return db.insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// revoke is write for a change that revokes (or deletes) tokens: fn
// returns their hashes, whose invalidation is recorded (Config.Invalidate)
// in the same transaction, before the audit row, so other processes learn
// it if and only if the change commits. After the commit the hashes are
// published and returned.
func (db *Store) revoke(ctx context.Context, op string, now time.Time, audit *store.AuditEvent, fn func(tx Querier) ([]string, error)) ([]string, error) {
	var hashes []string
	err := db.write(ctx, op, audit, func(tx Querier) error {
		var err error
		if hashes, err = fn(tx); err != nil {
			return err
		}
		return db.c.Invalidate(ctx, tx, hashes, now)
	})
	if err != nil {
		return nil, err
	}
	db.published(hashes)
	return hashes, nil
}

func (db *Store) mapErr(err error) error {
	if err == nil {
		return nil
	}
	return db.c.Dialect.MapErr(err)
}

func (db *Store) time(t time.Time) any { return db.c.Dialect.Time(t) }

// nullTime encodes t for a nullable column: the zero time is NULL.
func (db *Store) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return db.c.Dialect.Time(t)
}

func (db *Store) scanTime(t *time.Time) any { return db.c.Dialect.ScanTime(t) }

func (db *Store) strings(s []string) any { return db.c.Dialect.Strings(nonNil(s)) }

func (db *Store) scanStrings(s *[]string) any { return db.c.Dialect.ScanStrings(s) }

func (db *Store) published(hashes []string) {
	if db.c.Published != nil {
		db.c.Published(hashes)
	}
}

// ---- migrations ----

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, all in one write transaction (after MigrateLock, if
// any), so processes migrating at once serialise and each migration is
// applied exactly once.
func (db *Store) Migrate(ctx context.Context) (int, error) {
	ms, err := store.LoadMigrations(db.c.Migrations, db.c.Dir)
	if err != nil {
		return 0, err
	}
	applied := 0
	err = db.tx(ctx, func(tx Querier) error {
		if db.c.Dialect.MigrateLock != "" {
			if _, err := tx.Exec(ctx, db.c.Dialect.MigrateLock); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, db.c.Dialect.SchemaMigrations); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary's %d", current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, db.time(time.Now())); err != nil {
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
		db.c.Logger.InfoContext(ctx, "applied "+db.c.Name+" migrations", "count", applied)
	}
	return applied, nil
}

// Ping checks that the database answers and carries every migration.
func (db *Store) Ping(ctx context.Context) error {
	ms, err := store.LoadMigrations(db.c.Migrations, db.c.Dir)
	if err != nil {
		return err
	}
	var current int
	err = db.c.Read.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		if db.c.Dialect.UndefinedTable(err) {
			return errors.New("ping: database is not migrated")
		}
		return db.mapErr(fmt.Errorf("ping: %w", err))
	}
	if current != len(ms) {
		return fmt.Errorf("ping: schema version %d, want %d", current, len(ms))
	}
	return nil
}
