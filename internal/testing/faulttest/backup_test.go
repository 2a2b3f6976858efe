package faulttest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// TestBackupRestore backs up a live store the ways docs/operations.md
// describes, restores each backup into a fresh store, starts passgate on it
// and checks that the tokens issued before the backup still pass and
// refresh.
func TestBackupRestore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		srv := e2etest.Start(t, e2etest.Options{Args: serveArgs()})
		e2etest.AddUser(t, srv.OpenStore(t), user, password)
		cl := srv.RegisterClient(t)
		tok := login(t, cl)

		// Online, while passgate runs: VACUUM INTO (pure Go, the same
		// SQLite passgate uses) and, when installed, the sqlite3 shell's
		// .backup.
		backups := map[string]string{}
		dir := t.TempDir()
		vac := filepath.Join(dir, "vacuum", "passgate.db")
		os.MkdirAll(filepath.Dir(vac), 0o700)
		if _, err := e2etest.SQL(t, srv.Opts.DataDir).ExecContext(e2etest.Context(t, 30*time.Second), `VACUUM INTO ?`, vac); err != nil {
			t.Fatalf("VACUUM INTO: %v", err)
		}
		backups["VACUUM INTO"] = filepath.Dir(vac)
		if sqlite3, err := exec.LookPath("sqlite3"); err == nil {
			bk := filepath.Join(dir, "shell", "passgate.db")
			os.MkdirAll(filepath.Dir(bk), 0o700)
			if out, err := exec.Command(sqlite3, e2etest.SQLitePath(srv.Opts.DataDir), ".backup '"+bk+"'").CombinedOutput(); err != nil {
				t.Fatalf("sqlite3 .backup: %v\n%s", err, out)
			}
			backups["sqlite3 .backup"] = filepath.Dir(bk)
		} else {
			t.Log("sqlite3 shell not installed; testing VACUUM INTO only")
		}
		srv.Stop(t)
		for name, dataDir := range backups {
			restored := e2etest.Start(t, e2etest.Options{Name: name, DataDir: dataDir, Resource: srv.Resource, Args: serveArgs()})
			verifyRestored(t, name, restored, cl, tok)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		bin := e2etest.NeedPostgresBin(t)
		srcURL := pgtest.NewDatabase(t)
		srv := e2etest.Start(t, e2etest.Options{DatabaseURL: srcURL, Args: serveArgs()})
		e2etest.AddUser(t, srv.OpenStore(t), user, password)
		cl := srv.RegisterClient(t)
		tok := login(t, cl)

		dump := filepath.Join(t.TempDir(), "passgate.dump")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "--format=custom", "--no-owner", "--file", dump, "--dbname", srcURL).CombinedOutput(); err != nil {
			t.Fatalf("pg_dump: %v\n%s", err, out)
		}
		dstURL := pgtest.NewDatabase(t)
		if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_restore"), "--no-owner", "--exit-on-error", "--dbname", dstURL, dump).CombinedOutput(); err != nil {
			t.Fatalf("pg_restore: %v\n%s", err, out)
		}
		srv.Stop(t)
		restored := e2etest.Start(t, e2etest.Options{Name: "restored", DatabaseURL: dstURL, Resource: srv.Resource, Args: serveArgs()})
		verifyRestored(t, "pg_restore", restored, cl, tok)
	})
}

func verifyRestored(t *testing.T, name string, srv *e2etest.Server, cl *e2etest.OAuthClient, tok *e2etest.Tokens) {
	t.Helper()
	wantCheck(t, srv, name+": access token", tok.AccessToken, http.StatusOK)
	rcl := &e2etest.OAuthClient{Server: srv, ClientID: cl.ClientID}
	next, err := rcl.Refresh(e2etest.Context(t, 10*time.Second), tok.RefreshToken)
	if err != nil {
		t.Errorf("%s: refresh: %v", name, err)
		return
	}
	wantCheck(t, srv, name+": refreshed access token", next.AccessToken, http.StatusOK)
	if _, err := rcl.Login(e2etest.Context(t, 20*time.Second), e2etest.NewBrowser(), user, password); err != nil {
		t.Errorf("%s: login on the restored store: %v", name, err)
	}
}
