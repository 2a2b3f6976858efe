package faulttest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/token"
)

// TestPostgresOutage stops passgate's PostgreSQL (as a crash would), checks
// what passgate does while it is down, starts it again and checks that
// passgate recovers by itself and has not kept a token revoked while its
// invalidation listener was disconnected.
func TestPostgresOutage(t *testing.T) {
	pg := e2etest.StartPostgres(t)
	dbURL := pg.NewDatabase(t)
	srv := e2etest.Start(t, e2etest.Options{DatabaseURL: dbURL, Args: serveArgs("--store-timeout=300ms")})
	e2etest.AddUser(t, srv.OpenStore(t), user, password)
	cl := srv.RegisterClient(t)
	waitArmed(t, srv)

	cached := login(t, cl)   // checked before the outage: in the cache
	revoked := login(t, cl)  // cached too, revoked right after the restart
	uncached := login(t, cl) // never checked before the outage
	wantCheck(t, srv, "before the outage, cached", cached.AccessToken, http.StatusOK)
	wantCheck(t, srv, "before the outage, to be revoked", revoked.AccessToken, http.StatusOK)
	// A code issued before the outage, redeemed during it.
	code, verifier, err := cl.Authorize(e2etest.Context(t, 10*time.Second), e2etest.NewBrowser(), user, password)
	if err != nil {
		t.Fatal(err)
	}

	pg.Stop(t, "immediate")
	down := time.Now()

	t.Run("readiness", func(t *testing.T) {
		if _, err := srv.WaitReadyz(http.StatusServiceUnavailable, 3*time.Second); err != nil {
			t.Error(err)
		} else {
			t.Logf("readyz 503 %v after PostgreSQL stopped", time.Since(down).Round(time.Millisecond))
		}
		st, err := srv.GRPCHealth(e2etest.Context(t, 5*time.Second), "envoy.service.auth.v3.Authorization")
		if err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("gRPC health = %v, %v; want NOT_SERVING", st, err)
		}
		wantGauges(t, srv, 0)
	})
	t.Run("cached tokens keep working", func(t *testing.T) {
		took := timed(func() { wantCheck(t, srv, "cached token during the outage", cached.AccessToken, http.StatusOK) })
		if took > time.Second {
			t.Errorf("cached checks took %v", took)
		}
	})
	t.Run("uncached tokens fail closed", func(t *testing.T) {
		ctx := e2etest.Context(t, 10*time.Second)
		took := timed(func() {
			if got, err := srv.CheckHTTP(ctx, uncached.AccessToken); err != nil || got != http.StatusServiceUnavailable {
				t.Errorf("HTTP check of an uncached token = %d, %v; want 503", got, err)
			}
			if got, err := srv.CheckGRPC(ctx, uncached.AccessToken); !e2etest.IsUnavailable(err) {
				t.Errorf("gRPC check of an uncached token = %d, %v; want a gRPC Unavailable error", got, err)
			}
		})
		if took > 2*time.Second {
			t.Errorf("failing closed took %v; the store timeout is 300ms", took)
		}
	})
	t.Run("login answers 503", func(t *testing.T) {
		var err error
		took := timed(func() { err = srv.LoginOnly(e2etest.Context(t, 20*time.Second), e2etest.NewBrowser(), user, password) })
		if he := httpErr(err); he == nil || he.Status != http.StatusServiceUnavailable || !strings.Contains(he.Body, "temporarily unavailable") {
			t.Errorf("login during the outage: %v; want HTTP 503 with a 'temporarily unavailable' page", err)
		}
		if took > 5*time.Second {
			t.Errorf("login took %v to fail", took)
		}
	})
	t.Run("token endpoint answers 503 temporarily_unavailable", func(t *testing.T) {
		for name, call := range map[string]func() error{
			"refresh": func() error {
				_, err := cl.Refresh(e2etest.Context(t, 20*time.Second), cached.RefreshToken)
				return err
			},
			"code": func() error { _, err := cl.Exchange(e2etest.Context(t, 20*time.Second), code, verifier); return err },
		} {
			var err error
			took := timed(func() { err = call() })
			if he := httpErr(err); he == nil || he.Status != http.StatusServiceUnavailable || he.Code != "temporarily_unavailable" {
				t.Errorf("%s during the outage: %v; want HTTP 503 temporarily_unavailable", name, err)
			}
			if took > 5*time.Second {
				t.Errorf("%s took %v to fail", name, took)
			}
		}
	})

	// Back up. Revoke through another connection at once: passgate's
	// listener is probably still in its reconnect backoff and misses the
	// NOTIFY, so only the resynchronisation (cache dropped on reconnect)
	// can stop the cached token.
	pg.Start(t)
	up := time.Now()
	other := e2etest.OpenStore(t, dbURL, "")
	if _, err := other.RevokeToken(e2etest.Context(t, 10*time.Second), token.Hash(revoked.RefreshToken), time.Now(), nil); err != nil {
		t.Fatalf("revoke after restart: %v", err)
	}

	if _, err := srv.WaitReadyz(http.StatusOK, 10*time.Second); err != nil {
		t.Fatalf("no recovery: %v", err)
	}
	t.Logf("readyz 200 %v after PostgreSQL started", time.Since(up).Round(time.Millisecond))
	if got, err := waitCheck(srv, revoked.AccessToken, http.StatusUnauthorized, 5*time.Second); got != http.StatusUnauthorized {
		t.Errorf("token revoked during the listener's reconnection: HTTP check = %d, %v; want 401 within 5s", got, err)
	}
	if got, err := srv.CheckGRPC(e2etest.Context(t, 5*time.Second), revoked.AccessToken); err != nil || got != http.StatusUnauthorized {
		t.Errorf("revoked token: gRPC check = %d, %v; want 401", got, err)
	}
	if st, err := srv.GRPCHealth(e2etest.Context(t, 5*time.Second), ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health after recovery = %v, %v; want SERVING", st, err)
	}
	wantGauges(t, srv, 1)
	wantCheck(t, srv, "uncached token after recovery", uncached.AccessToken, http.StatusOK)
	wantCheck(t, srv, "cached token after recovery", cached.AccessToken, http.StatusOK)
	if _, err := cl.Exchange(e2etest.Context(t, 10*time.Second), code, verifier); err != nil {
		t.Errorf("code issued before the outage, redeemed after it: %v", err)
	}
	if _, err := cl.Refresh(e2etest.Context(t, 10*time.Second), cached.RefreshToken); err != nil {
		t.Errorf("refresh after recovery: %v", err)
	}
	fresh := login(t, cl)
	wantCheck(t, srv, "token issued after recovery", fresh.AccessToken, http.StatusOK)

	// What operators see.
	if v := metric(t, srv, "passgate_check_store_errors_total"); v < 1 {
		t.Errorf("passgate_check_store_errors_total = %v, want > 0", v)
	}
	if v := metric(t, srv, `passgate_check_cache_invalidations_total{kind="all"}`); v < 2 {
		t.Errorf(`passgate_check_cache_invalidations_total{kind="all"} = %v, want >= 2 (start and reconnect)`, v)
	}
	for _, msg := range []string{"invalidation listener disconnected; reconnecting", "store unavailable", "token lookup failed; failing closed"} {
		if !strings.Contains(srv.Logs(), msg) {
			t.Errorf("no log line %q", msg)
		}
	}
	srv.AssertNoSecrets(t, password)
}

// wantGauges checks that passgate_store_up and passgate_ready are v, as
// the store-unreachable alert (deploy/prometheus-alerts.yml) reads them.
func wantGauges(t *testing.T, srv *e2etest.Server, v int) {
	t.Helper()
	text, err := srv.Metrics(e2etest.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"passgate_store_up", "passgate_ready"} {
		if want := fmt.Sprintf("\n%s %d\n", name, v); !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}
