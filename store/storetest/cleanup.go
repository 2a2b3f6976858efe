package storetest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
)

// DeleteBatches runs the cases of the DeleteExpired contract that need
// several batches: every expired row goes and every live one stays, a
// write issued during a long cleanup is not held until it ends, and a
// cancelled cleanup keeps (and counts) the batches it committed.
// newStore, as Run's, returns an open store on a fresh, empty, not yet
// migrated database, closed at t.Cleanup; its DeleteExpired must delete
// at most batch rows per transaction (a backend's test-only setting), so
// a few thousand rows make hundreds of batches.
func DeleteBatches(t *testing.T, newStore func(t *testing.T) store.Store, batch int) {
	if batch < 1 || batch > 20 {
		t.Fatalf("DeleteBatches: batch %d, want 1..20 so that the cases span many batches", batch)
	}
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, batch int)
	}{
		{"EveryExpiredRowGoes", testDeleteEveryBatch},
		{"WriteNotHeldForWholeCleanup", testDeleteLetsWritersIn},
		{"CancelKeepsCommittedBatches", testDeleteCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t), batch) })
	}
}

// deleteNow is the clock of the batched cleanups: everything seeded
// before it has expired, everything after is live.
var deleteNow = at(7 * time.Hour)

// testDeleteEveryBatch seeds each kind of row DeleteExpired removes, in
// counts below, at and above multiples of the batch, beside live rows.
// The exact count, and a second call that finds nothing, prove every
// expired row went; reads at a clock where nothing has expired prove the
// live ones stayed.
func testDeleteEveryBatch(t *testing.T, s store.Store, batch int) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))

	deadSessions := 3*batch + 1
	sessions := seedSessions(t, s, "dead", deadSessions, at(time.Hour))
	live := seedSessions(t, s, "live", 2, at(8*time.Hour))

	// Each grant: its code (at +10m) and access token (at +6h) expire,
	// its refresh token (at +30d) lives.
	grants := batch + 1
	var refresh, access []string
	for i := range grants {
		g := issue(t, s, "batch "+strconv.Itoa(i), "c1", "alice")
		access = append(access, g.Access.Hash)
		refresh = append(refresh, g.Refresh.Hash)
	}

	deadNonces := 2 * batch // an exact multiple: the last batch is full
	for i := range deadNonces {
		must(t, "SpendNonce", s.SpendNonce(ctx, h("dead nonce "+strconv.Itoa(i)), base, at(time.Hour)))
	}
	must(t, "SpendNonce", s.SpendNonce(ctx, h("live nonce"), base, at(8*time.Hour)))

	lapsed := batch + 1
	for i := range lapsed {
		_, _, err := s.ReserveLoginAttempt(ctx, "lapsed"+strconv.Itoa(i), base, 15*time.Minute, 10, time.Hour)
		must(t, "ReserveLoginAttempt", err)
	}
	_, _, err := s.ReserveLoginAttempt(ctx, "locked", at(6*time.Hour+30*time.Minute), time.Minute, 1, time.Hour)
	must(t, "ReserveLoginAttempt", err)

	oldAudit := batch + 2
	for range oldAudit {
		must(t, "RecordAudit", s.RecordAudit(ctx, store.AuditEvent{Event: store.EventLoginSuccess, Success: true, CreatedAt: at(-100 * 24 * time.Hour)}))
	}
	// Plus the token_exchange row each grant wrote, at base: kept.

	want := int64(deadSessions + 2*grants + deadNonces + lapsed + oldAudit)
	n, err := s.DeleteExpired(ctx, deleteNow, at(-90*24*time.Hour))
	must(t, "DeleteExpired", err)
	if n != want {
		t.Errorf("DeleteExpired removed %d rows, want %d", n, want)
	}
	if n, err := s.DeleteExpired(ctx, deleteNow, at(-90*24*time.Hour)); err != nil || n != 0 {
		t.Errorf("DeleteExpired again = %d, %v; want 0, nil (all expired rows went the first time)", n, err)
	}

	early := at(time.Second)
	for _, id := range sessions {
		if _, err := s.GetSession(ctx, id, early); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired session still there: %v", err)
		}
	}
	for _, id := range live {
		if _, err := s.GetSession(ctx, id, early); err != nil {
			t.Errorf("live session: %v", err)
		}
	}
	for i := range grants {
		if _, err := s.GetToken(ctx, access[i], early); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired access token still there: %v", err)
		}
		if _, err := s.GetToken(ctx, refresh[i], early); err != nil {
			t.Errorf("live refresh token: %v", err)
		}
	}
	wantErr(t, "SpendNonce of the live nonce", s.SpendNonce(ctx, h("live nonce"), deleteNow, at(9*time.Hour)), store.ErrAlreadyExists)
	if f, _ := s.GetLoginFailures(ctx, "locked"); f.Count != 1 {
		t.Errorf("locked account's failures removed: %+v", f)
	}
	if n := auditCount(t, s); n != grants {
		t.Errorf("audit rows left = %d, want the %d token exchanges", n, grants)
	}
}

// testDeleteLetsWritersIn records a login failure while a cleanup of
// hundreds of batches runs and requires it to return while the cleanup
// still has expired rows to delete. Under one transaction for the whole
// cleanup, SQLite's single writer would hold the write until the last
// row was gone.
func testDeleteLetsWritersIn(t *testing.T, s store.Store, batch int) {
	ctx := t.Context()
	ids := seedSessions(t, s, "dead", 200*batch, at(time.Hour))
	first, last := ids[0], ids[len(ids)-1]

	done := startCleanup(ctx, s)
	// The cleanup deletes the earliest expiry first: once the first
	// session is gone, a batch has committed and the cleanup is under way.
	waitGone(t, s, first)

	start := time.Now()
	_, _, err := s.ReserveLoginAttempt(ctx, "bob", deleteNow, 15*time.Minute, 10, time.Hour)
	took := time.Since(start)
	must(t, "ReserveLoginAttempt during cleanup", err)
	if _, err := s.GetSession(ctx, last, at(time.Second)); errors.Is(err, store.ErrNotFound) {
		t.Errorf("a login failure recorded once the cleanup's first batch had committed returned (after %v) only when its last expired row was gone too: the cleanup committed as a whole, holding the write until it ended", took)
	} else if err != nil {
		t.Errorf("GetSession: %v", err)
	}

	r := <-done
	must(t, "DeleteExpired", r.err)
	if r.n != int64(len(ids)) {
		t.Errorf("DeleteExpired removed %d rows, want %d", r.n, len(ids))
	}
	if f, err := s.GetLoginFailures(ctx, "bob"); err != nil || f.Count != 1 {
		t.Errorf("login failure recorded during the cleanup: %+v, %v; want count 1", f, err)
	}
}

// testDeleteCancelled cancels a cleanup after its first batch committed:
// it returns an error and the number of rows its committed batches
// deleted, exactly the rows gone, and the next call deletes the rest.
func testDeleteCancelled(t *testing.T, s store.Store, batch int) {
	ids := seedSessions(t, s, "dead", 200*batch, at(time.Hour))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := startCleanup(ctx, s)
	waitGone(t, s, ids[0])
	cancel()
	r := <-done
	if r.err == nil {
		t.Fatalf("DeleteExpired cancelled after its first batch = %d, nil; want an error", r.n)
	}
	if r.n < int64(batch) || r.n >= int64(len(ids)) {
		t.Errorf("cancelled DeleteExpired = %d, %v; want between %d (one batch) and %d", r.n, r.err, batch, len(ids))
	}
	left, err := s.ListSessions(t.Context(), "alice", at(time.Second))
	must(t, "ListSessions", err)
	if got := int64(len(ids) - len(left)); got != r.n {
		t.Errorf("cancelled DeleteExpired reported %d rows, but %d are gone", r.n, got)
	}
	n, err := s.DeleteExpired(t.Context(), deleteNow, time.Time{})
	must(t, "DeleteExpired after cancel", err)
	if n != int64(len(left)) {
		t.Errorf("DeleteExpired after cancel removed %d rows, want the %d left", n, len(left))
	}
}

// cleanupResult is what DeleteExpired returned.
type cleanupResult struct {
	n   int64
	err error
}

// startCleanup runs DeleteExpired at deleteNow in the background.
func startCleanup(ctx context.Context, s store.Store) <-chan cleanupResult {
	done := make(chan cleanupResult, 1)
	go func() {
		n, err := s.DeleteExpired(ctx, deleteNow, time.Time{})
		done <- cleanupResult{n, err}
	}()
	return done
}

// seedSessions creates n sessions of alice, expiring one millisecond apart
// from expires on, from four goroutines (PostgreSQL commits one at a
// time are slow), and returns their ID hashes in expiry order.
func seedSessions(t *testing.T, s store.Store, label string, n int, expires time.Time) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h(label + " session " + strconv.Itoa(i))
	}
	const workers = 4
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = s.CreateSession(t.Context(), store.Session{IDHash: ids[i], Username: "alice", CSRFToken: "x",
					CreatedAt: base, ExpiresAt: expires.Add(time.Duration(i) * time.Millisecond)})
			}
		})
	}
	wg.Wait()
	must(t, "CreateSession", errors.Join(errs...))
	return ids
}

// waitGone waits until the session idHash is deleted, reading at a clock
// where it has not expired.
func waitGone(t *testing.T, s store.Store, idHash string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.GetSession(t.Context(), idHash, at(time.Second))
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		must(t, "GetSession", err)
		if time.Now().After(deadline) {
			t.Fatalf("the cleanup's first batch did not commit within 30s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}
