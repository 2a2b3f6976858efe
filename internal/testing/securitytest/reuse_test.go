package securitytest

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// TestStolenRefreshTokenKillsFamilyAtTheProxy drives the real binary: a
// code grant, a refresh (rotation), then the old refresh token replayed
// after the grace window, as an attacker holding a stolen copy would. The
// whole family must die everywhere: at the token endpoint, in
// introspection, and at both proxy checks, whose caches already held the
// access tokens.
func TestStolenRefreshTokenKillsFamilyAtTheProxy(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			opts := e2etest.Options{Args: []string{"--refresh-grace=1s", "--token-limit=off", "--login-limit=off", "--authorize-limit=off"}}
			if backend == "postgres" {
				opts.DatabaseURL = pgtest.NewDatabase(t)
			}
			srv := e2etest.Start(t, opts)
			ctx := e2etest.Context(t, 60*time.Second)
			e2etest.AddUser(t, srv.OpenStore(t), "alice", "pw")
			cl := srv.RegisterClient(t)
			first, err := cl.Login(ctx, e2etest.NewBrowser(), "alice", "pw")
			if err != nil {
				t.Fatalf("code grant: %v", err)
			}
			second, err := cl.Refresh(ctx, first.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if second.RefreshToken == first.RefreshToken {
				t.Fatal("refresh did not rotate the refresh token")
			}
			// Both access tokens are valid and now cached by the checks.
			for _, at := range []string{first.AccessToken, second.AccessToken} {
				if code, err := srv.CheckHTTP(ctx, at); code != http.StatusOK {
					t.Fatalf("HTTP check of a fresh token: %d %v", code, err)
				}
				if code, err := srv.CheckGRPC(ctx, at); code != http.StatusOK {
					t.Fatalf("gRPC check of a fresh token: %d %v", code, err)
				}
			}

			time.Sleep(1500 * time.Millisecond) // past --refresh-grace
			_, err = cl.Refresh(ctx, first.RefreshToken)
			var he *e2etest.HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusBadRequest || he.Code != "invalid_grant" {
				t.Fatalf("replayed refresh token after the grace window: %v, want 400 invalid_grant", err)
			}

			// The legitimate client's current refresh token died with the family.
			if _, err := cl.Refresh(ctx, second.RefreshToken); !errors.As(err, &he) || he.Code != "invalid_grant" {
				t.Errorf("the family's newest refresh token still works: %v", err)
			}
			// Every access token of the family is refused by both checks
			// within a second, cached or not.
			deadline := time.Now().Add(time.Second)
			for _, at := range []string{first.AccessToken, second.AccessToken} {
				for {
					h, _ := srv.CheckHTTP(ctx, at)
					g, _ := srv.CheckGRPC(ctx, at)
					if h == http.StatusUnauthorized && g == http.StatusUnauthorized {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("a revoked family's access token still passes the checks 1s after reuse detection (HTTP %d, gRPC %d)", h, g)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if !introspectInactive(t, srv, second.AccessToken) {
				t.Error("introspection still reports the family's access token active")
			}
			srv.AssertNoSecrets(t, first.AccessToken, first.RefreshToken, second.AccessToken, second.RefreshToken)
		})
	}
}

// introspectInactive asks /oauth/introspect with a confidential client
// registered through the CLI (introspection needs credentials).
func introspectInactive(t *testing.T, srv *e2etest.Server, tok string) bool {
	t.Helper()
	out := srv.CLI(t, "", "client", "add", "--name", "introspector", "--redirect-uri", "https://rs.example/cb")
	id := regexp.MustCompile(`client_id:\s+(\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`client_secret:\s+(\S+)`).FindStringSubmatch(out)
	if id == nil || secret == nil {
		t.Fatalf("client add printed no credentials: %s", out)
	}
	resp, body := postForm(t, srv, "/oauth/introspect", url.Values{"token": {tok}}, id[1], secret[1])
	active, ok := body["active"].(bool)
	if resp.StatusCode != http.StatusOK || !ok {
		t.Fatalf("introspect: %d %v", resp.StatusCode, body)
	}
	return !active
}
