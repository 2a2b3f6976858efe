package main

import (
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
)

// TestUserMFAListAndReset: `passgate user mfa list` shows the factor and
// the recovery codes left; `user mfa reset` removes them, ends the user's
// sessions and revokes their tokens on every handle, on both stores.
func TestUserMFAListAndReset(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			if _, stderr, code := passgate(t, b.env, "first-passphrase-ok\n", "user", "add", "alice", "--password-stdin"); code != 0 {
				t.Fatalf("user add: %s", stderr)
			}
			st := b.open(t)
			now := time.Now()
			if err := st.EnrollTOTP(ctx, store.TOTP{Username: "alice", Secret: []byte("sealed"), CreatedAt: now}, []string{"h1", "h2"}, now, nil); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := passgate(t, b.env, "", "user", "mfa", "list", "alice")
			if code != 0 || !strings.Contains(stdout, "totp") || !strings.Contains(stdout, "2 recovery codes left") {
				t.Fatalf("user mfa list = %q, %q, %d", stdout, stderr, code)
			}
			hashes := issueTokens(t, st, "alice", "mfa")
			if err := st.CreateSession(ctx, store.Session{IDHash: "sess-alice", Username: "alice", CSRFToken: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			inv := subscribe(t, st)
			stdout, stderr, code = passgate(t, b.env, "", "user", "mfa", "reset", "alice")
			if code != 0 || !strings.Contains(stdout, "revoked 2 tokens") {
				t.Fatalf("user mfa reset = %q, %q, %d", stdout, stderr, code)
			}
			if _, err := st.GetTOTP(ctx, "alice"); err == nil {
				t.Error("TOTP survived the reset")
			}
			if _, err := st.GetSession(ctx, "sess-alice", time.Now()); err == nil {
				t.Error("session survived the reset")
			}
			if !inv.wait(5*time.Second, hashes...) {
				t.Error("the revocation did not reach another handle's subscriber within 5s")
			}
			rows, err := st.ListAudit(ctx, store.AuditFilter{Event: store.EventMFAReset})
			if err != nil || len(rows) != 1 {
				t.Errorf("mfa_reset rows = %v, %v", rows, err)
			}
			if _, stderr, code := passgate(t, b.env, "", "user", "mfa", "reset", "nobody"); code == 0 || !strings.Contains(stderr, "no user") {
				t.Errorf("reset of an unknown user: %d %q", code, stderr)
			}
		})
	}
}
