package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/storetest"
)

// TestUserMFAListAndReset: `passgate user mfa list` shows the factor and
// the recovery codes left; `user mfa reset` removes them, ends the user's
// sessions and revokes their tokens on every handle, on both stores.
func TestUserMFAListAndReset(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			passgateOK(t, b.env, "first-passphrase-ok\n", "user", "add", "alice", "--password-stdin")
			st := b.open(t)
			now := time.Now()
			if err := st.EnrollTOTP(ctx, store.TOTP{Username: "alice", Secret: []byte("sealed"), CreatedAt: now}, []string{"h1", "h2"}, now, nil); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := passgate(t, b.env, "", "user", "mfa", "list", "alice")
			if code != 0 || !strings.Contains(stdout, "totp") || !strings.Contains(stdout, "2 recovery codes left") {
				t.Fatalf("user mfa list = %q, %q, %d", stdout, stderr, code)
			}
			hashes := signIn(t, st, "alice", "mfa")
			inv := storetest.Subscribe(t, st)
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
			if !inv.WaitHashes(5*time.Second, hashes...) {
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

// TestServeRejectsBadSecondFactorConfiguration: an unknown policy, a
// group policy (groups are not wired in yet), and a required second factor
// on PostgreSQL without a shared key stop serve with exit 2, naming the
// flag, before anything listens.
func TestServeRejectsBadSecondFactorConfiguration(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"unknown policy", []string{"serve", "--require-second-factor", "sometimes"}, nil, []string{"--require-second-factor", "off, optional, all or group:NAME"}},
		{"empty group", []string{"serve"}, []string{"PASSGATE_REQUIRE_SECOND_FACTOR=group:"}, []string{"--require-second-factor"}},
		{"group with PostgreSQL and no key", []string{"serve", "--require-second-factor", "group:admins", "--database", "postgres://127.0.0.1:1/x"}, nil, []string{"group:admins", "--secret-key-file"}},
		{"all on PostgreSQL without a key file", []string{"serve", "--require-second-factor", "all", "--database", "postgres://db.invalid/x"}, nil, []string{"--secret-key-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantUsageError(t, tt.env, tt.args, tt.want...)
		})
	}
}

// TestServeRefusesAMalformedSecretKey: a key file that is not 32 bytes
// stops serve instead of sealing with a weak or truncated key.
func TestServeRefusesAMalformedSecretKey(t *testing.T) {
	key := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := passgate(t, []string{"PASSGATE_DATA_DIR=" + t.TempDir()}, "", "serve", "--secret-key-file", key,
		"--http-listen", "127.0.0.1:0", "--grpc-listen", "", "--metrics-listen", "")
	if code == 0 || !strings.Contains(stderr, "secret key") {
		t.Errorf("serve with a malformed key: exit %d, stderr:\n%s", code, stderr)
	}
}
