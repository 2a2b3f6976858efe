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
	conn := connect(t, base)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "passgate_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
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
