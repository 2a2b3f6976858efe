package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the driver store/sqlite uses, for the bulk insert

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

// benchUser is the account the login flood guesses the password of.
const benchUser = "bench"

// Spread of the seeded tokens over users and clients: the cache interns
// these strings, so a realistic spread matters for its memory.
const (
	seedUsers   = 10_000
	seedClients = 100
)

// seedRow is token i of set as the store keeps it: live for a day, or
// with expired an hour past its expiry (for measuring the cleanup). All
// rows share their times, so that seeding formats them once.
func seedRow(set tokenSet, i int, resourceURL string, now time.Time, expired bool) store.Token {
	t := store.Token{
		Hash:            token.Hash(set.at(i)),
		Kind:            store.KindAccess,
		FamilyID:        "bench-" + strconv.Itoa(i),
		ClientID:        "bench-client-" + strconv.Itoa(i%seedClients),
		Username:        "user" + strconv.Itoa(i%seedUsers),
		Scope:           "mcp",
		Resource:        resourceURL,
		FamilyExpiresAt: now.Add(30 * 24 * time.Hour),
		CreatedAt:       now,
		// Far expiry: no token may lapse during the run.
		ExpiresAt: now.Add(24 * time.Hour),
	}
	if expired {
		t.CreatedAt = now.Add(-25 * time.Hour)
		t.ExpiresAt = now.Add(-time.Hour)
		t.FamilyExpiresAt = t.ExpiresAt
	}
	return t
}

// prepareStore migrates st, creates the bench user and checks that the
// store itself reads the seeded tokens back as live access tokens for the
// resource (so a change of the schema cannot silently turn every "valid"
// token of the benchmark into an unknown one).
func prepareStore(ctx context.Context, st store.Store) error {
	if _, err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	hash, err := passwd.Hash(token.New("")[:20], passwd.DefaultCost)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := st.CreateUser(ctx, store.User{Username: benchUser, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

func verifySeed(ctx context.Context, st store.Store, set tokenSet, n int, resourceURL string) error {
	now := time.Now()
	for _, i := range []int{0, n / 2, n - 1} {
		t, err := st.GetToken(ctx, token.Hash(set.at(i)), now)
		if err != nil {
			return fmt.Errorf("verify seeded token %d: %w", i, err)
		}
		if t.Kind != store.KindAccess || t.Resource != resourceURL || !t.RevokedAt.IsZero() || !t.ExpiresAt.After(now.Add(time.Hour)) {
			return fmt.Errorf("verify seeded token %d: store returned %+v", i, t)
		}
	}
	return nil
}

// sqliteTimeLayout is store/sqlite's storage format for times.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

// seedSQLite creates passgate's SQLite database at path and inserts
// tokens 0 to n-1 of set. The store API inserts tokens only together with
// a code or a rotation (one transaction each), far too slow for millions,
// so the rows go in with a prepared INSERT of 1,000 rows at a time, a
// transaction per 50,000 rows; verifySeed then reads them back through
// the store.
func seedSQLite(ctx context.Context, path string, set tokenSet, n int, resourceURL string, expired bool) error {
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	if err := prepareStore(ctx, st); err != nil {
		st.Close()
		return err
	}
	st.Close()

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)&_pragma=threads(2)")
	if err != nil {
		return fmt.Errorf("seed sqlite: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// Secondary indexes are dropped during the load and rebuilt from their
	// own definitions after it (sorting on two threads), and rows go in in
	// primary-key order: both turn random B-tree inserts into appends,
	// several times faster. Without a journal during the load every page
	// is written once, not to the WAL and again at the checkpoint; a
	// failed seed is thrown away anyway.
	names, defs, err := tokenIndexes(ctx, db)
	if err != nil {
		return fmt.Errorf("seed sqlite: %w", err)
	}
	for _, n := range names {
		if _, err := db.ExecContext(ctx, `DROP INDEX "`+n+`"`); err != nil {
			return fmt.Errorf("seed sqlite: %w", err)
		}
	}
	now := time.Now()
	t0 := seedRow(set, 0, resourceURL, now, expired)
	// A statement inserts perStmt rows from one JSON array of their own
	// columns (?1); the columns every row shares are ?2 to ?7. The driver
	// looks up every parameter by a linear search, so a statement with a
	// parameter per value would cost the square of its rows.
	const q = `INSERT INTO tokens (hash, family_id, client_id, username, kind, scope, resource, family_expires_at, created_at, expires_at)
		SELECT value->>0, value->>1, value->>2, value->>3, ?2, ?3, ?4, ?5, ?6, ?7 FROM json_each(?1)`
	shared := []any{t0.Kind, t0.Scope, t0.Resource, sqliteTime(t0.FamilyExpiresAt), sqliteTime(t0.CreatedAt), sqliteTime(t0.ExpiresAt)}
	const perStmt, perTx = 1000, 50_000
	order := hashOrder(set, n)
	var rows []byte
	for lo := 0; lo < n; lo += perTx {
		hi := min(lo+perTx, n)
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			stmt, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for from := lo; from < hi; from += perStmt {
				rows = append(rows[:0], '[')
				for j, k := range order[from:min(from+perStmt, hi)] {
					t := seedRow(set, int(k.i), resourceURL, now, expired)
					if j > 0 {
						rows = append(rows, ',')
					}
					rows = append(rows, '[')
					for c, v := range []string{t.Hash, t.FamilyID, t.ClientID, t.Username} {
						if c > 0 {
							rows = append(rows, ',')
						}
						rows = strconv.AppendQuote(rows, v)
					}
					rows = append(rows, ']')
				}
				rows = append(rows, ']')
				if _, err := stmt.ExecContext(ctx, append([]any{string(rows)}, shared...)...); err != nil {
					return err
				}
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("seed sqlite: %w", err)
		}
	}
	for _, d := range defs {
		if _, err := db.ExecContext(ctx, d); err != nil {
			return fmt.Errorf("seed sqlite: rebuild index: %w", err)
		}
	}
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode = WAL`); err != nil {
		return fmt.Errorf("seed sqlite: back to WAL: %w", err)
	}
	if expired {
		return nil
	}
	st, err = sqlite.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	return verifySeed(ctx, st, set, n, resourceURL)
}

// hashKey places token i in the order of its hash, the tokens' primary
// key, by the hash's first 8 bytes: 16 bytes a token where the hex hashes
// would take 80. Two tokens sharing 8 bytes (about one pair in 10^11 at
// 10M) only cost an insert out of order.
type hashKey struct {
	prefix uint64
	i      uint32
}

// hashOrder returns tokens 0 to n-1 of set sorted by hash.
func hashOrder(set tokenSet, n int) []hashKey {
	keys := make([]hashKey, n)
	for i := range keys {
		sum := sha256.Sum256([]byte(set.at(i)))
		keys[i] = hashKey{prefix: binary.BigEndian.Uint64(sum[:8]), i: uint32(i)}
	}
	slices.SortFunc(keys, func(a, b hashKey) int { return cmp.Compare(a.prefix, b.prefix) })
	return keys
}

// tokenIndexes returns the names and definitions of the tokens table's
// secondary indexes.
func tokenIndexes(ctx context.Context, db *sql.DB) (names, defs []string, err error) {
	rows, err := db.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return nil, nil, err
		}
		names, defs = append(names, n), append(defs, d)
	}
	return names, defs, rows.Err()
}

func sqliteTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(sqliteTimeLayout)
}

// createPostgresDB creates a database of our own next to adminURL's and
// returns its URL and a function that drops it.
func createPostgresDB(ctx context.Context, adminURL string) (string, func(), error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, errors.New("-postgres must be a postgres:// URL")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "passgate_bench_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

// seedPostgres migrates the database and COPYs tokens 0 to n-1 of set
// in. The table's indexes, primary key included, are dropped for the COPY
// and built after it: one sort each instead of a random B-tree insert per
// row and index, which made 1M tokens take 23 s.
func seedPostgres(ctx context.Context, dbURL string, set tokenSet, n int, resourceURL string, expired bool) error {
	st, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := prepareStore(ctx, st); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var defs []string
	rows, err := conn.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'tokens' AND indexname <> 'tokens_pkey'`)
	if err == nil {
		defs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return fmt.Errorf("seed postgres: read indexes: %w", err)
	}
	now := time.Now()
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		t := seedRow(set, i, resourceURL, now, expired)
		i++
		return []any{t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource, t.FamilyExpiresAt, t.CreatedAt, t.ExpiresAt}, nil
	})
	cols := []string{"hash", "kind", "family_id", "client_id", "username", "scope", "resource", "family_expires_at", "created_at", "expires_at"}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '512MB'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE tokens DROP CONSTRAINT tokens_pkey`); err != nil {
			return err
		}
		for _, d := range defs {
			name := strings.Fields(strings.TrimPrefix(d, "CREATE INDEX "))[0]
			if _, err := tx.Exec(ctx, `DROP INDEX `+name); err != nil {
				return err
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tokens"}, cols, src); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE tokens ADD CONSTRAINT tokens_pkey PRIMARY KEY (hash)`); err != nil {
			return err
		}
		for _, d := range defs {
			if _, err := tx.Exec(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE tokens"); err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	if expired {
		return nil
	}
	return verifySeed(ctx, st, set, n, resourceURL)
}
