package faulttest

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// loadWorker runs logins, grants and refreshes for one client and keeps
// what got a success answer.
type loadWorker struct {
	cl *e2etest.OAuthClient

	browsers  []*e2etest.Browser // signed in and consented
	codes     []string           // redeemed with success
	access    []string           // from every successful token response
	chains    []string           // latest refresh token of each family
	logins    int
	exchanges int
	refreshes int
	err       error // first failure before the kill
}

func (w *loadWorker) run(ctx context.Context, killed *atomic.Bool) {
	fail := func(err error) bool {
		if killed.Load() || ctx.Err() != nil {
			return true
		}
		w.err = err
		return true
	}
	for ctx.Err() == nil {
		b := e2etest.NewBrowser()
		code, verifier, err := w.cl.Authorize(ctx, b, user, password)
		if err != nil && fail(err) {
			return
		}
		w.browsers = append(w.browsers, b)
		w.logins++
		tok, err := w.cl.Exchange(ctx, code, verifier)
		if err != nil && fail(err) {
			return
		}
		w.codes = append(w.codes, code)
		w.exchanges++
		w.access = append(w.access, tok.AccessToken)
		w.chains = append(w.chains, tok.RefreshToken)
		for range 3 {
			next, err := w.cl.Refresh(ctx, w.chains[len(w.chains)-1])
			if err != nil && fail(err) {
				return
			}
			w.refreshes++
			w.access = append(w.access, next.AccessToken)
			w.chains[len(w.chains)-1] = next.RefreshToken
		}
	}
}

// TestKillUnderLoad kills passgate with SIGKILL at a random moment of a load
// of logins, code grants and refreshes, restarts it, and checks that every
// answer that was a success still holds, that the audit log has a row for
// each, and that the store is consistent.
func TestKillUnderLoad(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			o := e2etest.Options{
				// A one-minute grace window: a refresh whose rotation
				// committed but whose answer died with the process is
				// answered again (the same tokens) after the restart.
				// The harness's client is public on a loopback redirect,
				// whose consent is asked every time by default; remembering
				// it lets the test see that consents survive the kill.
				Args: serveArgs("--refresh-grace=1m", "--remember-public-consent"),
			}
			if backend == "postgres" {
				o.DatabaseURL = pgtest.NewDatabase(t)
			}
			srv := e2etest.Start(t, o)
			st := srv.OpenStore(t)
			e2etest.AddUser(t, st, user, password)

			const nWorkers = 4
			workers := make([]*loadWorker, nWorkers)
			for i := range workers {
				workers[i] = &loadWorker{cl: srv.RegisterClient(t)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var killed atomic.Bool
			var wg sync.WaitGroup
			for _, w := range workers {
				wg.Go(func() { w.run(ctx, &killed) })
			}
			after := time.Duration(700+rand.IntN(1000)) * time.Millisecond
			time.Sleep(after)
			killed.Store(true)
			srv.Kill(t)
			cancel()
			wg.Wait()
			total := 0
			for i, w := range workers {
				if w.err != nil {
					t.Errorf("worker %d failed before the kill: %v", i, w.err)
				}
				total += w.exchanges
			}
			t.Logf("killed after %v: %d code grants answered", after, total)
			if total == 0 {
				t.Fatal("no grant completed before the kill; the load did not run")
			}

			srv.Restart(t)
			vctx := e2etest.Context(t, time.Minute)
			for i, w := range workers {
				for _, a := range w.access {
					if got, err := srv.CheckHTTP(vctx, a); err != nil || got != http.StatusOK {
						t.Errorf("worker %d: an access token from a success answer: check = %d, %v; want 200", i, got, err)
					}
				}
				for _, r := range w.chains {
					if _, err := w.cl.Refresh(vctx, r); err != nil {
						t.Errorf("worker %d: the last refresh token of a family: %v", i, err)
					}
				}
				for _, c := range w.codes {
					ac, err := st.GetAuthCode(vctx, token.Hash(c), time.Now())
					if err != nil || ac.UsedAt.IsZero() {
						t.Errorf("worker %d: a redeemed code: %+v, %v; want it marked used", i, ac.UsedAt, err)
					}
				}
				for _, b := range w.browsers {
					b.Trace = nil
					// A wrong password: only a surviving session gets through.
					if _, _, err := w.cl.Authorize(vctx, b, user, "wrong password"); err != nil || len(b.Trace) != 0 {
						t.Errorf("worker %d: a signed-in, consented browser: %v, steps %v; want a code at once (session and consent kept)", i, err, b.Trace)
					}
				}
				countAudit := func(event string, filter func(store.AuditEvent) bool) int {
					rows, err := st.ListAudit(vctx, store.AuditFilter{Event: event, ClientID: w.cl.ClientID})
					if err != nil {
						t.Fatal(err)
					}
					n := 0
					for _, r := range rows {
						if r.Success && filter(r) {
							n++
						}
					}
					return n
				}
				all := func(store.AuditEvent) bool { return true }
				if n := countAudit(store.EventTokenExchange, all); n < w.exchanges {
					t.Errorf("worker %d: %d token_exchange audit rows for %d successful grants", i, n, w.exchanges)
				}
				if n := countAudit(store.EventTokenRefresh, func(e store.AuditEvent) bool { return e.Error == "" }); n < w.refreshes {
					t.Errorf("worker %d: %d token_refresh audit rows for %d successful refreshes", i, n, w.refreshes)
				}
			}
			logins := 0
			for _, w := range workers {
				logins += w.logins
			}
			rows, err := st.ListAudit(vctx, store.AuditFilter{Event: store.EventLoginSuccess, Username: user})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < logins {
				t.Errorf("%d login_success audit rows for %d successful logins", len(rows), logins)
			}
			checkConsistency(t, srv)
		})
	}
}

// consistencyQueries each count rows that must not exist.
var consistencyQueries = []struct{ name, sql string }{
	{"codes marked used without both tokens", `
		SELECT COUNT(*) FROM auth_codes c WHERE c.used_at IS NOT NULL AND (
			NOT EXISTS (SELECT 1 FROM tokens t WHERE t.family_id = c.family_id AND t.kind = 'access') OR
			NOT EXISTS (SELECT 1 FROM tokens t WHERE t.family_id = c.family_id AND t.kind = 'refresh'))`},
	{"tokens without a redeemed code", `
		SELECT COUNT(*) FROM tokens t WHERE NOT EXISTS (
			SELECT 1 FROM auth_codes c WHERE c.family_id = t.family_id AND c.used_at IS NOT NULL)`},
	{"refresh families without exactly one unrotated token (a rotation without its successor)", `
		SELECT COUNT(*) FROM (SELECT family_id FROM tokens WHERE kind = 'refresh' GROUP BY family_id
			HAVING SUM(CASE WHEN rotated_at IS NULL THEN 1 ELSE 0 END) <> 1) f`},
	{"rotated refresh tokens without an access token issued at the rotation", `
		SELECT COUNT(*) FROM tokens r WHERE r.kind = 'refresh' AND r.rotated_at IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM tokens a WHERE a.family_id = r.family_id AND a.kind = 'access' AND a.created_at = r.rotated_at)`},
}

// checkConsistency queries the tables directly.
func checkConsistency(t *testing.T, srv *e2etest.Server) {
	t.Helper()
	ctx := e2etest.Context(t, 30*time.Second)
	var count func(q string) (int, error)
	if srv.Opts.DatabaseURL != "" {
		conn := e2etest.PGConn(t, srv.Opts.DatabaseURL)
		count = func(q string) (n int, err error) { err = conn.QueryRow(ctx, q).Scan(&n); return n, err }
	} else {
		db := e2etest.SQL(t, srv.Opts.DataDir)
		var res string
		if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
			t.Errorf("sqlite integrity_check = %q, %v", res, err)
		}
		count = func(q string) (n int, err error) { err = db.QueryRowContext(ctx, q).Scan(&n); return n, err }
	}
	for _, c := range consistencyQueries {
		n, err := count(c.sql)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if n != 0 {
			t.Errorf("%d %s", n, c.name)
		}
	}
}
