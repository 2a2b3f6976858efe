package e2etest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestMain(m *testing.M) { RunMain(m) }

// TestFlowAndRestart drives the harness end to end on SQLite: a user, a
// client, the browser flow, both checks, a refresh, and a restart that
// keeps everything.
func TestFlowAndRestart(t *testing.T) {
	srv := Start(t, Options{})
	AddUser(t, srv.OpenStore(t), "alice", "correct horse")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := srv.RegisterClient(t)
	b := NewBrowser()
	tok, err := cl.Login(ctx, b, "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := srv.CheckHTTP(ctx, tok.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("CheckHTTP = %d, %v; want 200", code, err)
	}
	if code, err := srv.CheckGRPC(ctx, tok.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("CheckGRPC = %d, %v; want 200", code, err)
	}
	if code, err := srv.CheckHTTP(ctx, "pga_unknown"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("CheckHTTP(unknown) = %d, %v; want 401", code, err)
	}
	if st, err := srv.GRPCHealth(ctx, ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("GRPCHealth = %v, %v", st, err)
	}
	if _, err := cl.Login(ctx, b, "alice", "wrong"); err != nil {
		// The browser has a session and consent: no password is asked.
		t.Fatalf("second authorization with a session: %v", err)
	}
	if err := srv.LoginOnly(ctx, NewBrowser(), "alice", "wrong"); err == nil {
		t.Fatal("LoginOnly with a wrong password succeeded")
	} else if he, ok := err.(*HTTPError); !ok || he.Status != http.StatusUnauthorized {
		t.Fatalf("LoginOnly with a wrong password: %v; want HTTP 401", err)
	}

	srv.Stop(t)
	srv.Restart(t)
	if code, err := srv.CheckHTTP(ctx, tok.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("after restart: CheckHTTP = %d, %v; want 200", code, err)
	}
	tok2, err := cl.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	if code, err := srv.CheckGRPC(ctx, tok2.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("after refresh: CheckGRPC = %d, %v; want 200", code, err)
	}
	out := srv.CLI(t, "", "user", "list")
	if !strings.Contains(out, "alice") {
		t.Errorf("user list = %q, want alice", out)
	}
	srv.AssertNoSecrets(t, "correct horse")
}

// TestPostgresStopStart checks the private PostgreSQL can go down and come
// back on its port.
func TestPostgresStopStart(t *testing.T) {
	pg := StartPostgres(t)
	url := pg.NewDatabase(t)
	srv := Start(t, Options{DatabaseURL: url})
	pg.Stop(t, "immediate")
	if _, err := srv.WaitReadyz(http.StatusServiceUnavailable, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pg.Start(t)
	if _, err := srv.WaitReadyz(http.StatusOK, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
