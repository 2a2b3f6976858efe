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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/internal/sqlstore"
)

var _ store.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is a store.Store on a PostgreSQL database. It is safe for concurrent
// use, and several DBs (in several processes) may share one database.
// The embedded sqlstore.Store holds the transaction scripts; DB supplies
// the pool, codecs and LISTEN/NOTIFY.
type DB struct {
	*sqlstore.Store
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
	db := &DB{pool: pool, logger: logger, closed: make(chan struct{})}
	db.Store = sqlstore.New(sqlstore.Config{
		Name:       "postgres",
		Logger:     logger,
		Dialect:    dialect,
		Migrations: migrationFS,
		Dir:        "migrations",
		Read:       querier[*pgxpool.Pool]{pool},
		Write:      querier[*pgxpool.Pool]{pool},
		Tx: func(ctx context.Context, fn func(sqlstore.Querier) error) error {
			return db.tx(ctx, func(tx pgx.Tx) error { return fn(querier[pgx.Tx]{tx}) })
		},
		Invalidate: notify,
	})
	return db, nil
}

// dialect is PostgreSQL's part of the shared SQL: timestamptz, text[]
// lists, row locks for read-then-write, and an advisory lock around
// Migrate so replicas starting together apply each migration once.
var dialect = sqlstore.Dialect{
	Time:        func(t time.Time) any { return tv(t) },
	ScanTime:    func(t *time.Time) any { return tm(t) },
	Strings:     func(s []string) any { return s },
	ScanStrings: func(s *[]string) any { return s },
	InList:      "= ANY($1)",
	InKeys:      "= ANY(ARRAY(%s))",
	MapErr:      mapErr,
	UndefinedTable: func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable
	},
	ForUpdate: " FOR UPDATE",
	SchemaMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`,
	MigrateLock: `SELECT pg_advisory_xact_lock(` + strconv.FormatInt(migrateLock, 10) + `)`,
}

// querier adapts a pool or transaction to sqlstore.Querier.
type querier[T interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}] struct{ c T }

func (q querier[T]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.c.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (q querier[T]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.c.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (q querier[T]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return q.c.QueryRow(ctx, query, args...)
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
		case pgErr.Code == pgerrcode.UniqueViolation:
			return fmt.Errorf("%w: %w", store.ErrAlreadyExists, err)
		case pgerrcode.IsConnectionException(pgErr.Code),
			pgErr.Code == pgerrcode.AdminShutdown, pgErr.Code == pgerrcode.CrashShutdown,
			pgErr.Code == pgerrcode.CannotConnectNow,
			pgErr.Code == pgerrcode.TooManyConnections,
			pgErr.Code == pgerrcode.QueryCanceled: // statement_timeout
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
func notify(ctx context.Context, tx sqlstore.Querier, hashes []string, _ time.Time) error {
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
