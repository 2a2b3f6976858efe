package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestDrainingReplicaStaysNotReady: once shutdown has begun, a store ping
// that was in flight cannot make /readyz say ready again, which would send
// a proxy's traffic back to a replica about to stop; gRPC health, on the
// server extauthz.NewGRPCServer builds, stays NOT_SERVING too.
func TestDrainingReplicaStaysNotReady(t *testing.T) {
	std := stdio{out: io.Discard, err: io.Discard, getenv: func(string) string { return "" }, hashCost: testCost}
	c, err := loadServeConfig([]string{"--data-dir", t.TempDir(), "--http-listen", e2etest.FreeAddr(t), "--grpc-listen", e2etest.FreeAddr(t),
		"--metrics-listen", "", "--shutdown-delay", "3s"}, std)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(t.Context(), c, slog.New(slog.NewTextHandler(t.Output(), nil)), std)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()

	conn, err := grpc.NewClient(a.addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	state := func() (int, healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := http.Get("http://" + a.addr("http") + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: extauthz.AuthorizationService})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h.GetStatus()
	}
	if code, h := state(); code != 200 || h != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before shutdown: /readyz %d, gRPC health %v; want 200, SERVING", code, h)
	}
	cancel() // SIGTERM
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if code, _ := state(); code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready 2s after shutdown began")
		}
	}
	a.setReady(true) // the answer of a ping that was in flight
	if code, h := state(); code != 503 || h != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("draining, after a late ping: /readyz %d, gRPC health %v; want 503, NOT_SERVING", code, h)
	}
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
