package main

import (
	"os"
	"path/filepath"
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
			alice := aliceSignedIn(t, b, "mfa")
			st := alice.st
			now := time.Now()
			if err := st.EnrollTOTP(ctx, store.TOTP{Username: "alice", Secret: []byte("sealed"), CreatedAt: now}, []string{"h1", "h2"}, now, nil); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := passgate(t, b.env, "", "user", "mfa", "list", "alice")
			if code != 0 || !strings.Contains(stdout, "totp") || !strings.Contains(stdout, "2 recovery codes left") {
				t.Fatalf("user mfa list = %q, %q, %d", stdout, stderr, code)
			}
			stdout, stderr, code = passgate(t, b.env, "", "user", "mfa", "reset", "alice")
			if code != 0 || !strings.Contains(stdout, "revoked 2 tokens") {
				t.Fatalf("user mfa reset = %q, %q, %d", stdout, stderr, code)
			}
			if _, err := st.GetTOTP(ctx, "alice"); err == nil {
				t.Error("TOTP survived the reset")
			}
			alice.wantSignedOut(t, "the reset")
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
