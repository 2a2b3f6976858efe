// Package postgres is passgate's store for several replicas: PostgreSQL
// through pgx/v5 and pgxpool.
//
// Concurrency across replicas rests on single conditional statements
// (UPDATE … WHERE used_at IS NULL …, UPDATE … WHERE rotated_at IS NULL …)
// whose row locks make exactly one of any number of racing transactions
// win, and on SELECT … FOR UPDATE for the login-failure counter. All
// transactions run at READ COMMITTED.
//
// Revocations are broadcast with pg_notify on the channel
// passgate_invalidate inside the revoking transaction, so they are
// delivered if and only if it commits. A payload is a comma-separated list
// of token hashes (chunked below PostgreSQL's 8000-byte limit) or the word
// "all" when a revocation is too large to list. Subscribe LISTENs on a
// dedicated connection, reconnecting with backoff.
//
// Times are timestamptz (microsecond precision; finer digits are
// truncated) and are returned in UTC. Expiry is judged by the caller's
// clock passed in as now, never by the database's now(), so replicas must
// keep their clocks in sync (NTP); skew shifts expiry by the skew.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passgate/passgate/store"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is a store.Store on a PostgreSQL database. It is safe for concurrent
// use, and several DBs (in several processes) may share one database.
type DB struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}
}

// defaultMaxConns is the pool size unless the URL sets pool_max_conns.
const defaultMaxConns = 10

// connectTimeout bounds each connection attempt unless the URL sets
// connect_timeout, so an unreachable server fails fast with ErrUnavailable.
const connectTimeout = 5 * time.Second

// Open connects to the database at url (a postgres:// URL or key=value
// DSN; pgxpool parameters such as pool_max_conns are honoured) and checks
// that it answers. It does not migrate: call Migrate. A server that does
// not answer yields an error wrapping store.ErrUnavailable.
func Open(ctx context.Context, url string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error may quote the URL, password included: don't wrap it.
		return nil, errors.New("open postgres: invalid database URL")
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr(fmt.Errorf("open postgres: %w", err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, mapErr(fmt.Errorf("open postgres: %w", err))
	}
	return &DB{pool: pool, logger: logger, closed: make(chan struct{})}, nil
}

// Close closes the pool and ends every Subscribe call.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.closed)
		db.pool.Close()
	})
	return nil
}

// ---- errors ----

// mapErr maps driver errors onto the store's sentinel errors, keeping the
// original in the chain.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, store.ErrAlreadyExists) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %w", store.ErrAlreadyExists, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, cannot connect now
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "57014": // query_canceled (statement_timeout)
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr), pgconn.Timeout(err),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "closed pool"),
		strings.Contains(err.Error(), "conn closed"):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// ---- time encoding ----

// tv encodes t for a NOT NULL column, in UTC at microsecond precision.
func tv(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ntv encodes t for a nullable column: the zero time is NULL.
func ntv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return tv(t)
}

// tzScan scans a nullable timestamptz into a UTC time (zero for NULL).
type tzScan struct{ t *time.Time }

func (s tzScan) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*s.t = time.Time{}
		return nil
	}
	if v.InfinityModifier != pgtype.Finite {
		return fmt.Errorf("scan time: infinite timestamp")
	}
	*s.t = v.Time.UTC()
	if s.t.IsZero() {
		*s.t = time.Time{}
	}
	return nil
}

func tm(t *time.Time) tzScan { return tzScan{t} }

// ---- migrations ----

// loadMigrations returns the embedded migrations by version.
func loadMigrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}

// migrateLock is the pg_advisory_xact_lock key that serialises Migrate
// across replicas starting together ("passgate" in ASCII, truncated).
const migrateLock int64 = 0x7061737367617465

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, in one transaction holding an advisory lock, so
// replicas that start together apply each migration exactly once.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, err
	}
	applied := 0
	err = db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
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
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
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
		db.logger.InfoContext(ctx, "applied postgres migrations", "count", applied)
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
	err = db.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return errors.New("ping: database is not migrated")
		}
		return mapErr(fmt.Errorf("ping: %w", err))
	}
	if current != len(ms) {
		return fmt.Errorf("ping: schema version %d, want %d", current, len(ms))
	}
	return nil
}

// tx runs fn in a READ COMMITTED transaction and commits if fn returns
// nil. Errors are mapped.
func (db *DB) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return mapErr(fmt.Errorf("begin: %w", err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return mapErr(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return mapErr(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// ---- notifications ----

// Channel is the LISTEN/NOTIFY channel carrying invalidations.
const Channel = "passgate_invalidate"

const (
	// maxPayload stays below PostgreSQL's 8000-byte NOTIFY payload limit.
	maxPayload = 7900
	// maxChunks bounds the notifications one revocation sends; past it a
	// single "all" is cheaper for everyone.
	maxChunks  = 16
	allPayload = "all"
)

// payloads splits hashes into comma-separated NOTIFY payloads, or returns
// just "all" when there are too many.
func payloads(hashes []string) []string {
	var out []string
	var b strings.Builder
	for _, h := range hashes {
		if b.Len() > 0 && b.Len()+1+len(h) > maxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(h)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	if len(out) > maxChunks {
		return []string{allPayload}
	}
	return out
}

// parsePayload is the inverse of payloads.
func parsePayload(p string) store.Invalidation {
	if p == allPayload || p == "" {
		return store.Invalidation{All: true}
	}
	return store.Invalidation{TokenHashes: strings.Split(p, ",")}
}

// notify queues the invalidation of hashes in tx; PostgreSQL delivers it
// only if tx commits.
func notify(ctx context.Context, tx pgx.Tx, hashes []string) error {
	for _, p := range payloads(hashes) {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, p); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
	}
	return nil
}

// Backoff bounds for Subscribe's reconnection loop. The cap keeps recovery
// after an outage within a few seconds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Subscribe LISTENs on a dedicated connection (not from the pool) and calls
// fn for every invalidation any replica commits. After each (re)connection
// it first calls fn with All set, because notifications sent while it was
// disconnected are lost. It reconnects with backoff until ctx is done or
// the DB is closed, and then returns nil.
func (db *DB) Subscribe(ctx context.Context, fn func(store.Invalidation)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-db.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := minBackoff
	for {
		connected, err := db.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = minBackoff
		}
		db.logger.WarnContext(ctx, "invalidation listener disconnected; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// listen runs one LISTEN session until it fails; connected reports whether
// it got as far as listening.
func (db *DB) listen(ctx context.Context, fn func(store.Invalidation)) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, mapErr(fmt.Errorf("connect listener: %w", err))
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return false, mapErr(fmt.Errorf("listen: %w", err))
	}
	fn(store.Invalidation{All: true})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, mapErr(fmt.Errorf("wait for notification: %w", err))
		}
		fn(parsePayload(n.Payload))
	}
}
