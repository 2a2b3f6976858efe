package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

const (
	user     = "alice"
	password = "correct horse battery"
)

// serveArgs are the flags every fault test runs passgate with: no rate
// limits (all the load comes from 127.0.0.1), plus extra.
func serveArgs(extra ...string) []string {
	return append([]string{
		"--login-limit=off", "--token-limit=off", "--authorize-limit=off",
		"--register-limit=off", "--register-success-limit=off", "--revoke-limit=off",
	}, extra...)
}

// login runs the whole flow with a fresh browser, failing the test on error.
func login(t *testing.T, cl *e2etest.OAuthClient) *e2etest.Tokens {
	t.Helper()
	tok, err := cl.Login(e2etest.Context(t, 30*time.Second), e2etest.NewBrowser(), user, password)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return tok
}

// wantCheck asserts both checks answer want for tok.
func wantCheck(t *testing.T, srv *e2etest.Server, what, tok string, want int) {
	t.Helper()
	ctx := e2etest.Context(t, 10*time.Second)
	if got, err := srv.CheckHTTP(ctx, tok); err != nil || got != want {
		t.Errorf("%s: HTTP check = %d, %v; want %d", what, got, err, want)
	}
	if got, err := srv.CheckGRPC(ctx, tok); err != nil || got != want {
		t.Errorf("%s: gRPC check = %d, %v; want %d", what, got, err, want)
	}
}

// waitCheck polls the HTTP check until it answers want or timeout passes.
func waitCheck(srv *e2etest.Server, tok string, want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := srv.CheckHTTP(context.Background(), tok)
		if err == nil && got == want {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpErr returns err as an *e2etest.HTTPError, or nil.
func httpErr(err error) *e2etest.HTTPError {
	var he *e2etest.HTTPError
	if errors.As(err, &he) {
		return he
	}
	return nil
}

// metric returns the value of the first sample line starting with name
// (including labels, e.g. `passgate_check_cache_invalidations_total{kind="all"}`),
// or -1.
func metric(t *testing.T, srv *e2etest.Server, name string) float64 {
	t.Helper()
	text, err := srv.Metrics(context.Background())
	if err != nil {
		t.Errorf("metrics: %v", err)
		return -1
	}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// waitArmed waits until the check cache is armed, which happens when the
// invalidation subscription delivers its first "drop everything": before
// that, verified tokens are not cached (a revocation could be missed).
func waitArmed(t *testing.T, srv *e2etest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, srv, `passgate_check_cache_invalidations_total{kind="all"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation subscription did not start within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
