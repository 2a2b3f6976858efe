// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// It connects to TEST_DATABASE_URL, or to
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable when that is
// unset. When no PostgreSQL answers, tests are skipped, except with CI=true,
// where they fail: CI must run the PostgreSQL half of the suite.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL returns TEST_DATABASE_URL or DefaultURL.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewDatabase creates a uniquely named, empty database and returns its URL
// (the base URL with the database name replaced). The database is dropped,
// WITH (FORCE) so open connections do not stop it, at t.Cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := BaseURL()
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: TEST_DATABASE_URL must be a postgres:// URL")
	}
	name := "passgate_test_" + randomName()
	id := pgx.Identifier{name}.Sanitize()
	createDropped(t, base, "database "+name, "CREATE DATABASE "+id, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)")
	u.Path = "/" + name
	return u.String()
}

// createDropped runs create on the database at dbURL, failing the test if
// it fails, and drop at t.Cleanup on a fresh connection (the test may have
// closed or broken its own). what names the object in errors.
func createDropped(t testing.TB, dbURL, what, create, drop string) {
	t.Helper()
	conn := connect(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, create)
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("pgtest: create %s: %v", what, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", what, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, drop); err != nil {
			t.Errorf("pgtest: drop %s: %v", what, err)
		}
	})
}

// NewSchema creates a uniquely named, empty schema in the database at dbURL
// (typically from NewDatabase) and returns dbURL with search_path set to
// it, so a store opened on that URL keeps its tables there. It is much
// cheaper than a database per test; the schema is dropped at t.Cleanup.
// LISTEN/NOTIFY channels and advisory locks are per database, so tests
// sharing one database through schemas must not run in parallel if they
// count notifications.
func NewSchema(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: bad database URL")
	}
	name := "s_" + randomName()
	id := pgx.Identifier{name}.Sanitize()
	createDropped(t, dbURL, "schema "+name, "CREATE SCHEMA "+id, "DROP SCHEMA IF EXISTS "+id+" CASCADE")
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// connect connects to base, skipping (or, with CI=true, failing) the test
// when PostgreSQL does not answer.
func connect(t testing.TB, base string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err == nil {
		return conn
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("pgtest: PostgreSQL unavailable (CI=true, not skipping): %v", err)
	}
	t.Skipf("pgtest: PostgreSQL unavailable, skipping: %v", err)
	return nil
}
