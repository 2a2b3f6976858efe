package faulttest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestStuckDatabase holds an ACCESS EXCLUSIVE lock on the tokens table so
// every token lookup blocks, as a stuck database or a long migration
// would. The checks must answer within their budget (--store-timeout):
// from the cache, or failing closed; nothing may hang.
func TestStuckDatabase(t *testing.T) {
	const budget = 250 * time.Millisecond
	pg := e2etest.StartPostgres(t)
	dbURL := pg.NewDatabase(t)
	srv := e2etest.Start(t, e2etest.Options{DatabaseURL: dbURL, Args: serveArgs("--store-timeout=" + budget.String())})
	e2etest.AddUser(t, srv.OpenStore(t), user, password)
	cl := srv.RegisterClient(t)
	waitArmed(t, srv)
	cached := login(t, cl)
	uncached := login(t, cl)
	wantCheck(t, srv, "before the lock", cached.AccessToken, http.StatusOK)

	locker := e2etest.PGConn(t, dbURL)
	ctx := e2etest.Context(t, time.Minute)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			tx.Rollback(context.Background())
		}
	}
	defer unlock()

	for i := range 3 { // every time, not only the first
		took := timed(func() { wantCheck(t, srv, "cached token, table locked", cached.AccessToken, http.StatusOK) })
		if took > 100*time.Millisecond {
			t.Errorf("cached checks took %v with the table locked", took)
		}
		took = timed(func() {
			c := e2etest.Context(t, 10*time.Second)
			if got, err := srv.CheckHTTP(c, uncached.AccessToken); err != nil || got != http.StatusServiceUnavailable {
				t.Errorf("HTTP check of an uncached token, table locked = %d, %v; want 503", got, err)
			}
			if got, err := srv.CheckGRPC(c, uncached.AccessToken); !e2etest.IsUnavailable(err) {
				t.Errorf("gRPC check of an uncached token, table locked = %d, %v; want Unavailable", got, err)
			}
		})
		// Two checks, each within the budget plus scheduling slack.
		if took > 2*budget+time.Second {
			t.Errorf("round %d: failing closed took %v; budget %v per check", i, took, budget)
		}
	}
	if v := metric(t, srv, "passgate_check_store_errors_total"); v < 1 {
		t.Errorf("passgate_check_store_errors_total = %v, want > 0", v)
	}

	// The token endpoint must not hang either: every store call has a
	// deadline, and a deadline is a 503 temporarily_unavailable.
	var rerr error
	took := timed(func() {
		_, rerr = cl.Refresh(e2etest.Context(t, 12*time.Second), cached.RefreshToken)
	})
	he := httpErr(rerr)
	switch {
	case he != nil && he.Status == http.StatusServiceUnavailable && he.Code == "temporarily_unavailable" && took < 11*time.Second:
		t.Logf("refresh with the table locked: 503 after %v", took.Round(time.Millisecond))
	default:
		unlock()
		t.Fatalf("refresh with the tokens table locked: %v after %v; want 503 temporarily_unavailable within 11s "+
			"(store calls on the OAuth endpoints have no deadline: cmd/passgate should bound each request's context, see docs/operations.md)", rerr, took.Round(time.Millisecond))
	}

	unlock()
	if got, err := waitCheck(srv, uncached.AccessToken, http.StatusOK, 5*time.Second); got != http.StatusOK {
		t.Errorf("after the lock: HTTP check = %d, %v; want 200", got, err)
	}
	if _, err := cl.Refresh(e2etest.Context(t, 10*time.Second), uncached.RefreshToken); err != nil {
		t.Errorf("refresh after the lock: %v", err)
	}
}
