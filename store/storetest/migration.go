package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/store"
)

// ConsentResourceMigration checks that a consent recorded before consents
// were per resource survives the *_consent_resource.sql migration with an
// empty resource, so the client stays listed (and revocable) but matches
// no request: the user is asked again.
//
// s is an open store on a fresh, empty, NOT yet migrated database; ms are
// the backend's migrations in order. seed must, in one transaction, create
// the backend's schema_migrations table, apply and record each migration in
// before, and insert the consent (username 'alice', client_id 'c1', scope
// 'mcp', created_at and updated_at at when) the way the old schema stored it.
func ConsentResourceMigration(t *testing.T, s store.Store, ms []store.Migration, seed func(before []store.Migration, when time.Time) error) {
	t.Helper()
	ctx := t.Context()
	idx := slices.IndexFunc(ms, func(m store.Migration) bool { return strings.HasSuffix(m.Name, "_consent_resource.sql") })
	if idx < 0 {
		t.Fatal("no consent_resource migration")
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := seed(ms[:idx], when); err != nil {
		t.Fatalf("seed the schema before the consent_resource migration: %v", err)
	}
	if n, err := s.Migrate(ctx); err != nil || n != len(ms)-idx {
		t.Fatalf("Migrate = %d, %v; want %d", n, err, len(ms)-idx)
	}
	list, err := s.ListConsents(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Consent{{Username: "alice", ClientID: "c1", Scope: "mcp", CreatedAt: when, UpdatedAt: when}}
	if d := cmp.Diff(list, want); d != "" {
		t.Errorf("consents after migration (-got +want):\n%s", d)
	}
	if _, err := s.GetConsent(ctx, "alice", "c1", "https://mcp.example.com/mcp"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConsent for a resource after migration = %v, want ErrNotFound", err)
	}
}

// Migrated is for tests that need a ready store, not the conformance
// suite: given a backend's Open results, it fails the test on err, closes
// s at cleanup and migrates it.
//
//	st, err := sqlite.Open(ctx, path, nil)
//	st = storetest.Migrated(t, st, err)
func Migrated[S store.Store](tb testing.TB, s S, err error) S {
	tb.Helper()
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(tb.Context()); err != nil {
		tb.Fatalf("migrate store: %v", err)
	}
	return s
}
