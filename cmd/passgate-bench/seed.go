package main

import (
	"context"
	"crypto/rand"
	"database/sql"
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

// mintTokens returns n fresh access tokens.
func mintTokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = token.New(token.PrefixAccess)
	}
	return out
}

// seedRow is tokens[i] as the store keeps it.
func seedRow(tokens []string, i int, resourceURL string, now time.Time) store.Token {
	return store.Token{
		Hash:            token.Hash(tokens[i]),
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
}

// seedRowAt is seedRow, or with expired an hour past its expiry (for
// measuring the cleanup).
func seedRowAt(tokens []string, i int, resourceURL string, now time.Time, expired bool) store.Token {
	t := seedRow(tokens, i, resourceURL, now)
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

func verifySeed(ctx context.Context, st store.Store, tokens []string, resourceURL string) error {
	now := time.Now()
	for _, i := range []int{0, len(tokens) / 2, len(tokens) - 1} {
		t, err := st.GetToken(ctx, token.Hash(tokens[i]), now)
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

// seedSQLite creates passgate's SQLite database in dir and inserts the
// tokens. The store API inserts tokens only together with a code or a
// rotation (one transaction each), far too slow for a million, so the rows
// go in with one prepared INSERT per batch; verifySeed then reads them back
// through the store.
func seedSQLite(ctx context.Context, path string, tokens []string, resourceURL string, expired bool) error {
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	if err := prepareStore(ctx, st); err != nil {
		st.Close()
		return err
	}
	st.Close()

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return fmt.Errorf("seed sqlite: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// Secondary indexes are dropped during the load and rebuilt from their
	// own definitions after it, and rows go in in primary-key order: both
	// turn random B-tree inserts into appends, several times faster.
	rows, err := db.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("seed sqlite: %w", err)
	}
	var names, defs []string
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			rows.Close()
			return fmt.Errorf("seed sqlite: %w", err)
		}
		names, defs = append(names, n), append(defs, d)
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, `DROP INDEX "`+n+`"`); err != nil {
			return fmt.Errorf("seed sqlite: %w", err)
		}
	}
	order := make([]int, len(tokens))
	hashes := make([]string, len(tokens))
	for i := range tokens {
		order[i], hashes[i] = i, token.Hash(tokens[i])
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(hashes[a], hashes[b]) })
	now := time.Now()
	const batch = 50_000
	for lo := 0; lo < len(order); lo += batch {
		hi := min(lo+batch, len(order))
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO tokens (hash, kind, family_id, client_id, username, scope, resource, family_expires_at, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for _, i := range order[lo:hi] {
				t := seedRowAt(tokens, i, resourceURL, now, expired)
				if _, err := stmt.ExecContext(ctx, t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource,
					sqliteTime(t.FamilyExpiresAt), sqliteTime(t.CreatedAt), sqliteTime(t.ExpiresAt)); err != nil {
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
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("seed sqlite: checkpoint: %w", err)
	}
	if expired {
		return nil
	}
	st, err = sqlite.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	return verifySeed(ctx, st, tokens, resourceURL)
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

// seedPostgres migrates the database and COPYs the tokens in.
func seedPostgres(ctx context.Context, dbURL string, tokens []string, resourceURL string, expired bool) error {
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
	now := time.Now()
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= len(tokens) {
			return nil, nil
		}
		t := seedRowAt(tokens, i, resourceURL, now, expired)
		i++
		return []any{t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource, t.FamilyExpiresAt, t.CreatedAt, t.ExpiresAt}, nil
	})
	cols := []string{"hash", "kind", "family_id", "client_id", "username", "scope", "resource", "family_expires_at", "created_at", "expires_at"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"tokens"}, cols, src); err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE tokens"); err != nil {
		return fmt.Errorf("seed postgres: %w", err)
	}
	if expired {
		return nil
	}
	return verifySeed(ctx, st, tokens, resourceURL)
}
