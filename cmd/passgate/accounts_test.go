package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/postgres/pgtest"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

// backend is one store the CLI tests run against: the environment that
// points the CLI at it, and an opener for the test's own handle.
type backend struct {
	name    string
	env     []string
	dataDir string // SQLite's; empty for PostgreSQL
	open    func(t *testing.T) store.Store
}

func backends(t *testing.T) []backend {
	dir := t.TempDir()
	pgURL := pgtest.NewDatabase(t)
	return []backend{
		{"sqlite", []string{"PASSGATE_DATA_DIR=" + dir}, dir, func(t *testing.T) store.Store {
			st, err := sqlite.Open(t.Context(), filepath.Join(dir, "passgate.db"), nil)
			return storetest.Migrated(t, st, err)
		}},
		{"postgres", []string{"DATABASE_URL=" + pgURL}, "", func(t *testing.T) store.Store {
			st, err := postgres.Open(t.Context(), pgURL, nil)
			return storetest.Migrated(t, st, err)
		}},
	}
}

// signIn stores what a signed-in user has, for a test that checks a
// command ends it: an access and a refresh token (issueTokens) and a
// browser session whose ID hash is "sess-"+user. It returns the tokens'
// hashes.
func signIn(t *testing.T, st store.Store, user, label string) []string {
	t.Helper()
	hashes := issueTokens(t, st, user, label)
	now := time.Now()
	if err := st.CreateSession(t.Context(), store.Session{IDHash: "sess-" + user, Username: user, CSRFToken: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return hashes
}

// signedInAlice is the user alice, added with the CLI, signed in (signIn)
// on a store handle of the test's own, whose subscriber stands for another
// replica's cache.
type signedInAlice struct {
	st     store.Store
	hashes []string
	inv    *storetest.Collector
}

func aliceSignedIn(t *testing.T, b backend, label string) signedInAlice {
	t.Helper()
	passgateOK(t, b.env, "first-passphrase-ok\n", "user", "add", "alice", "--password-stdin")
	st := b.open(t)
	hashes := signIn(t, st, "alice", label)
	return signedInAlice{st: st, hashes: hashes, inv: storetest.Subscribe(t, st)}
}

// wantSignedOut checks that what (a command) ended alice's sign-ins: her
// tokens are revoked, her session is gone, and the revocation reached the
// other handle's subscriber.
func (a signedInAlice) wantSignedOut(t *testing.T, what string) {
	t.Helper()
	for _, h := range a.hashes {
		tok, err := a.st.GetToken(t.Context(), h, time.Now())
		if err != nil || tok.RevokedAt.IsZero() {
			t.Errorf("%s token still valid after %s (err %v)", tok.Kind, what, err)
		}
	}
	if _, err := a.st.GetSession(t.Context(), "sess-alice", time.Now()); err == nil {
		t.Errorf("session survived %s", what)
	}
	if !a.inv.WaitHashes(5*time.Second, a.hashes...) {
		t.Error("the revocation did not reach another handle's subscriber within 5s")
	}
}

// issueTokens stores an access and a refresh token for user, as a code
// grant would, and returns their hashes.
func issueTokens(t *testing.T, st store.Store, user, label string) []string {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	if err := st.CreateClient(ctx, store.Client{ID: "c-" + label, Name: "c", RedirectURIs: []string{"https://app.example/cb"},
		TokenEndpointAuthMethod: "none", Source: store.ClientStatic, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	code := store.AuthCode{CodeHash: "code-" + label, ClientID: "c-" + label, Username: user, RedirectURI: "https://app.example/cb",
		CodeChallenge: "x", CodeChallengeMethod: "S256", Scope: "mcp", Resource: "https://mcp.example/mcp", FamilyID: "f-" + label,
		CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	if err := st.CreateAuthCode(ctx, code, nil); err != nil {
		t.Fatal(err)
	}
	at := store.Token{Hash: "at-" + label, Kind: store.KindAccess, FamilyID: code.FamilyID, ClientID: code.ClientID, Username: user,
		Scope: "mcp", Resource: code.Resource, FamilyExpiresAt: now.Add(24 * time.Hour), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	rt := at
	rt.Hash, rt.Kind, rt.ExpiresAt = "rt-"+label, store.KindRefresh, now.Add(24*time.Hour)
	if err := st.RedeemCode(ctx, code.CodeHash, now, store.CodeGrant{Access: at, Refresh: rt,
		Audit: store.AuditEvent{Event: store.EventTokenExchange, Success: true, CreatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	return []string{at.Hash, rt.Hash}
}

// TestPasswordChangeRevokesTokens: `passgate user passwd` ends the user's
// sessions and revokes their tokens (a refresh token issued under the old
// password used to live on for 30 days), and the revocation reaches
// the subscriber of another handle on the store, as another replica's
// cache would, through the store's invalidations.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			alice := aliceSignedIn(t, b, "pw")
			stdout, stderr, code := passgate(t, b.env, "second-passphrase-ok\n", "user", "passwd", "alice", "--password-stdin")
			if code != 0 {
				t.Fatalf("user passwd: %s", stderr)
			}
			if !strings.Contains(stdout, "revoked 2 tokens") {
				t.Errorf("user passwd output %q does not say it revoked the 2 tokens", stdout)
			}
			alice.wantSignedOut(t, "the password change")
		})
	}
}

// TestPasswordHashEnvAppliedOnlyWhenChanged: OAUTH_PASSWORD_HASH no longer
// reverts `passgate user passwd admin` at every restart; a changed hash is
// applied once, ending admin's sessions and tokens with a warning.
func TestPasswordHashEnvAppliedOnlyWhenChanged(t *testing.T) {
	h1, _ := passwd.Hash("first-seed-passphrase", 4)
	h2, _ := passwd.Hash("changed-by-user-passwd", 4)
	h3, _ := passwd.Hash("second-seed-passphrase", 4)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			st := b.open(t)
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			start := func(hash string) {
				t.Helper()
				if err := bootstrap(ctx, st, &Config{SeedPasswordHash: hash}, testCost, &bytes.Buffer{}, logger); err != nil {
					t.Fatalf("bootstrap: %v", err)
				}
			}
			adminHash := func() string {
				t.Helper()
				u, err := st.GetUser(ctx, "admin")
				if err != nil {
					t.Fatal(err)
				}
				return u.PasswordHash
			}
			start(h1)
			if adminHash() != h1 {
				t.Fatal("first start did not create admin from OAUTH_PASSWORD_HASH")
			}
			// The operator changes the password; restarts keep it.
			if _, err := st.SetPassword(ctx, "admin", h2, time.Now(), nil); err != nil {
				t.Fatal(err)
			}
			start(h1)
			start(h1)
			if adminHash() != h2 {
				t.Fatal("a restart with the same OAUTH_PASSWORD_HASH reverted the password set by user passwd")
			}
			// A changed hash is applied once, and ends everything.
			hashes := issueTokens(t, st, "admin", "seed")
			logs.Reset()
			start(h3)
			if adminHash() != h3 {
				t.Fatal("a changed OAUTH_PASSWORD_HASH was not applied")
			}
			for _, h := range hashes {
				if tok, err := st.GetToken(ctx, h, time.Now()); err != nil || tok.RevokedAt.IsZero() {
					t.Errorf("admin's %s token survived the changed OAUTH_PASSWORD_HASH (err %v)", tok.Kind, err)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "revoked") {
				t.Errorf("no warning when applying a changed hash:\n%s", logs.String())
			}
			if strings.Contains(logs.String(), h3) {
				t.Error("the log contains the password hash")
			}
		})
	}
}

// TestPasswordHashEnvKeepsPasswordChangedBeforeUpgrade: upgrading from a
// passgate that re-applied OAUTH_PASSWORD_HASH at every start, a differing
// admin password was changed since that start; it is kept, with a warning.
func TestPasswordHashEnvKeepsPasswordChangedBeforeUpgrade(t *testing.T) {
	ctx := t.Context()
	st := backends(t)[0].open(t)
	h1, _ := passwd.Hash("first-seed-passphrase", 4)
	h2, _ := passwd.Hash("changed-by-user-passwd", 4)
	if err := st.CreateUser(ctx, store.User{Username: "admin", PasswordHash: h2, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if err := bootstrap(ctx, st, &Config{SeedPasswordHash: h1}, testCost, &bytes.Buffer{}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if u, _ := st.GetUser(ctx, "admin"); u.PasswordHash != h2 {
		t.Error("the password changed before the upgrade was reverted")
	}
	if !strings.Contains(logs.String(), "kept the current password") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

// TestAuditEscapesControlCharacters: values chosen by a requester (a
// username, a client_id, a user agent) reach `passgate audit`,
// `session list` and the other tables escaped: a CR/LF cannot forge a row
// and no escape sequence reaches the operator's terminal.
func TestAuditEscapesControlCharacters(t *testing.T) {
	b := backends(t)[0]
	st := b.open(t)
	ctx := t.Context()
	now := time.Now()
	forged := "alice\n" + now.Format(time.RFC3339) + "  login_success  ok  admin"
	esc := "\x1b]0;owned\x07\x1b[2J"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.RecordAudit(ctx, store.AuditEvent{Event: store.EventLoginFailure, Username: forged, ClientID: esc, UserAgent: "ua\r", IP: "192.0.2.1", Error: "x\u009b31m", CreatedAt: now}))
	must(st.CreateSession(ctx, store.Session{IDHash: "s1", Username: "bob", CSRFToken: "c", UserAgent: "Mozilla\x1b[8m\nhidden", IP: "192.0.2.2", CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeenAt: now}))
	must(st.CreateClient(ctx, store.Client{ID: "dyn\x1b[1m", Name: "Evil\u202eppa", RedirectURIs: []string{"https://x.example/cb"}, TokenEndpointAuthMethod: "none", Source: store.ClientDynamic, CreatedAt: now}))

	for _, args := range [][]string{{"audit"}, {"session", "list"}, {"client", "list"}, {"user", "list"}} {
		stdout, stderr, code := passgate(t, b.env, "", args...)
		if code != 0 {
			t.Fatalf("passgate %v: %s", args, stderr)
		}
		for i, r := range stdout {
			if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e') {
				t.Errorf("passgate %v prints the raw control character %U at byte %d:\n%q", args, r, i, stdout)
				break
			}
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		want := map[string]int{"audit": 2, "session": 2, "client": 2, "user": 1}[args[0]]
		if len(lines) != want {
			t.Errorf("passgate %v printed %d lines, want %d (header and rows):\n%s", args, len(lines), want, stdout)
		}
	}
	stdout, _, _ := passgate(t, b.env, "", "audit")
	if !strings.Contains(stdout, `alice\n`) || !strings.Contains(stdout, `\x1b]0;owned\a`) {
		t.Errorf("audit does not show the escaped values:\n%s", stdout)
	}
	// --json stays exact (encoding/json escapes), so tools see the truth.
	stdout, _, _ = passgate(t, b.env, "", "audit", "--json")
	if !strings.Contains(stdout, `\u001b]0;owned`) {
		t.Errorf("audit --json lost the value:\n%s", stdout)
	}
}

// TestUserAddAppliesPasswordPolicy: `user add` and `user passwd` refuse a
// password outside the policy (the issue's 5-character one among them),
// saying why, and store nothing.
func TestUserAddAppliesPasswordPolicy(t *testing.T) {
	b := backends(t)[0]
	tests := []struct {
		name, user, password string
		args                 []string
		want                 string // "" accepted
	}{
		{"five characters", "u1", "abcde", nil, "too short"},
		{"common", "u2", "password1", nil, "too common"},
		{"common, capitalised", "u3", "Qwertyuiop", nil, "too common"},
		{"the username", "administrator", "Administrator", nil, "is the username"},
		{"73 bytes", "u4", strings.Repeat("x", 73), nil, "at most 72 bytes"},
		{"below a raised minimum", "u5", "eleven-char", []string{"--min-password-length", "12"}, "at least 12"},
		{"passphrase", "u6", "correct horse battery staple", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"user", "add", tt.user, "--password-stdin"}, tt.args...)
			_, stderr, code := passgate(t, b.env, tt.password+"\n", args...)
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("refused: %s", stderr)
				}
				return
			}
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want a refusal saying %q", code, stderr, tt.want)
			}
			if strings.Contains(stderr, tt.password) && len(tt.password) > 12 {
				t.Errorf("the error repeats the password")
			}
		})
	}
	users, err := b.open(t).ListUsers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if !slices.Equal(names, []string{"u6"}) {
		t.Errorf("users after the refusals: %v, want only u6", names)
	}
	// user passwd applies it too.
	if _, stderr, code := passgate(t, b.env, "abcde\n", "user", "passwd", "u6", "--password-stdin"); code == 0 || !strings.Contains(stderr, "too short") {
		t.Errorf("user passwd accepted a 5-character password: %s", stderr)
	}
}

// TestClientAddValidatesLikeRegistration: `client add --redirect-uri`
// goes through the registration rule (oauth.ValidateRedirectURI).
func TestClientAddValidatesLikeRegistration(t *testing.T) {
	b := backends(t)[0]
	for _, uri := range []string{"javascript:alert(1)", "http://evil.example/cb", "https://app.example/cb#frag", "https://*.example/cb", "myapp://cb"} {
		if _, stderr, code := passgate(t, b.env, "", "client", "add", "--name", "X", "--redirect-uri", uri); code == 0 {
			t.Errorf("client add accepted %q", uri)
		} else if !strings.Contains(stderr, "redirect") {
			t.Errorf("client add %q: %s", uri, stderr)
		}
	}
	// Private-use schemes: the known clients' by default, none when off
	// (or false, as when the flag was a boolean), any with any.
	if _, stderr, code := passgate(t, b.env, "", "client", "add", "--name", "Cursor", "--redirect-uri", "cursor://anysphere.cursor-mcp/oauth/callback"); code != 0 {
		t.Errorf("client add refused Cursor's redirect URI by default: %s", stderr)
	}
	if _, _, code := passgate(t, b.env, "", "client", "add", "--name", "Cursor", "--redirect-uri", "cursor://cb", "--allow-private-schemes=off"); code == 0 {
		t.Error("client add --allow-private-schemes=off accepted a private scheme")
	}
	if _, stderr, code := passgate(t, b.env, "", "client", "add", "--name", "Mine", "--redirect-uri", "myapp://cb", "--allow-private-schemes", "any"); code != 0 {
		t.Errorf("client add with --allow-private-schemes any refused a private scheme: %s", stderr)
	}
	if _, _, code := passgate(t, append(b.env, "PASSGATE_ALLOW_PRIVATE_SCHEMES=false"), "", "client", "add", "--name", "Cursor", "--redirect-uri", "cursor://cb"); code == 0 {
		t.Error("client add with PASSGATE_ALLOW_PRIVATE_SCHEMES=false accepted a private scheme")
	}
	if _, _, code := passgate(t, b.env, "", "client", "add", "--name", "X", "--id", "id\x1b[2J", "--redirect-uri", "https://app.example/cb"); code == 0 {
		t.Error("client add accepted an --id with an escape sequence")
	}
}
