package sqlite

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/storetest"
)

func newTestDB(t *testing.T) *DB {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "passgate.db"), logger)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newTestDB(t) })
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file::memory:"} {
		if _, err := Open(t.Context(), p, nil); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	db := newTestDB(t)
	if _, err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.GetUser(t.Context(), "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("GetUser on closed DB: %v, want ErrUnavailable", err)
	}
	if err := db.CreateUser(t.Context(), store.User{Username: "x"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CreateUser on closed DB: %v, want ErrUnavailable", err)
	}
}

// TestSubscribeEndsOnClose checks that Close ends Subscribe calls, so a
// forgotten subscriber cannot outlive the store.
func TestSubscribeEndsOnClose(t *testing.T) {
	db := newTestDB(t)
	done := make(chan error, 1)
	go func() { done <- db.Subscribe(context.Background(), func(store.Invalidation) {}) }()
	time.Sleep(10 * time.Millisecond)
	db.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Subscribe: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Subscribe did not return after Close")
	}
}

// TestTwoHandlesOneFile: a second *DB on the same file (the CLI while the
// server runs) migrates to nothing and sees the first one's writes.
func TestTwoHandlesOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	ctx := t.Context()
	a, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := a.Migrate(ctx); err != nil || n == 0 {
		t.Fatalf("Migrate a = %d, %v", n, err)
	}
	if n, err := b.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("Migrate b = %d, %v; want 0", n, err)
	}
	if err := a.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetUser(ctx, "alice"); err != nil {
		t.Errorf("b does not see a's user: %v", err)
	}
	if err := b.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("duplicate through b: %v, want ErrAlreadyExists", err)
	}
}

func TestBackup(t *testing.T) {
	db := newTestDB(t)
	ctx := t.Context()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, dest); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	restored, err := Open(ctx, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if err := restored.Ping(ctx); err != nil {
		t.Errorf("Ping restored: %v", err)
	}
	if _, err := restored.GetUser(ctx, "alice"); err != nil {
		t.Errorf("restored user: %v", err)
	}
}
