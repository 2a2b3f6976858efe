package faulttest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// TestGracefulShutdown sends SIGTERM while a request is in flight: gRPC
// health goes NOT_SERVING, the in-flight request still gets its answer, and
// the process exits by itself.
func TestGracefulShutdown(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Args: serveArgs()})
	e2etest.AddUser(t, srv.OpenStore(t), user, password)
	cl := srv.RegisterClient(t)
	tok := login(t, cl)

	// A token request whose body arrives slowly: in flight when SIGTERM
	// comes.
	body := "grant_type=refresh_token&client_id=" + cl.ClientID + "&refresh_token=" + tok.RefreshToken
	conn, err := net.DialTimeout("tcp", srv.Opts.HTTPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /oauth/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		srv.Opts.HTTPAddr, len(body), body[:10])
	time.Sleep(100 * time.Millisecond) // the server has read the headers

	// Watch gRPC health on a stream, as Envoy's health checker would.
	hctx, hcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer hcancel()
	watch, err := healthpb.NewHealthClient(srv.GRPCConn()).Watch(hctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v; want SERVING", r.GetStatus(), err)
	}
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawNotServing := make(chan bool, 1)
	go func() {
		for {
			r, err := watch.Recv()
			if err != nil {
				sawNotServing <- false
				return
			}
			if r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				sawNotServing <- true
				// Like a client that moves away; an open Watch stream
				// would hold GracefulStop until --shutdown-timeout.
				hcancel()
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	// Finish the in-flight request: it must be answered, not cut.
	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatalf("finishing the in-flight request: %v", err)
	}
	reply, _ := io.ReadAll(io.LimitReader(conn, 64<<10))
	if !strings.HasPrefix(string(reply), "HTTP/1.1 200 ") || !strings.Contains(string(reply), `"access_token"`) {
		t.Errorf("in-flight refresh during shutdown answered %.80q; want 200 with tokens", reply)
	}
	select {
	case ok := <-sawNotServing:
		if !ok {
			t.Error("gRPC health stream ended without NOT_SERVING")
		}
	case <-time.After(10 * time.Second):
		t.Error("gRPC health never went NOT_SERVING")
	}
	select {
	case <-srv.Exited():
		if err := srv.ExitErr(); err != nil {
			t.Errorf("exit after SIGTERM: %v; want status 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("passgate did not exit within 5s of SIGTERM")
	}
	if !strings.Contains(srv.Logs(), `"shutting down"`) {
		t.Error(`no "shutting down" log line`)
	}
}

// TestReadinessDropsBeforeListenersClose checks that after SIGTERM /readyz
// answers 503 for a moment before the listener closes, so that a proxy or
// Kubernetes polling readiness moves traffic away before connections are
// refused.
func TestReadinessDropsBeforeListenersClose(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Args: serveArgs()})
	var saw503 atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 500 {
			code, err := srv.Readyz(context.Background())
			if err != nil {
				return
			}
			if code == http.StatusServiceUnavailable {
				saw503.Store(true)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	srv.Signal(syscall.SIGTERM)
	<-done
	if !saw503.Load() {
		t.Fatalf("after SIGTERM /readyz went from 200 straight to connection refused; passgate should answer 503 for a drain delay " +
			"(a --shutdown-delay in cmd/passgate) before closing its listeners")
	}
}

// replica is one passgate behind the client-side failover.
type replica struct {
	srv     *e2etest.Server
	serving atomic.Bool // from the health poller
}

// TestRollingRestart runs two replicas on one PostgreSQL and a load of
// checks with valid tokens spread over both, with failover as a proxy does
// it (skip a replica whose health is NOT_SERVING; on a connection error or
// Unavailable, retry on the other one), while replica A and then B are
// restarted. Not one check of a valid token may fail.
func TestRollingRestart(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a := &replica{srv: e2etest.Start(t, e2etest.Options{Name: "a", DatabaseURL: dbURL, Args: serveArgs()})}
	b := &replica{srv: e2etest.Start(t, e2etest.Options{Name: "b", DatabaseURL: dbURL, Resource: a.srv.Resource, Args: serveArgs()})}
	e2etest.AddUser(t, a.srv.OpenStore(t), user, password)
	cl := a.srv.RegisterClient(t)
	var toks []string
	for range 4 {
		toks = append(toks, login(t, cl).AccessToken)
	}
	replicas := []*replica{a, b}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range replicas {
		r.serving.Store(true)
		wg.Go(func() { // active health checking every 100ms
			for ctx.Err() == nil {
				st, err := r.srv.GRPCHealth(ctx, "envoy.service.auth.v3.Authorization")
				r.serving.Store(err == nil && st == healthpb.HealthCheckResponse_SERVING)
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	var checks, failovers, unavailable, failures atomic.Int64
	var failMu sync.Mutex
	var failSamples []string
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				tok := toks[i%len(toks)]
				first := (w + i) % 2
				ok := false
				var last string
				for attempt := range 4 {
					r := replicas[(first+attempt)%2]
					if !r.serving.Load() && attempt < 2 {
						continue
					}
					var code int
					var err error
					if i%2 == 0 {
						code, err = r.srv.CheckGRPC(ctx, tok)
					} else {
						code, err = r.srv.CheckHTTP(ctx, tok)
					}
					if err == nil && code == http.StatusOK {
						ok = true
						break
					}
					last = fmt.Sprintf("replica %s: %d %v", r.srv.Opts.Name, code, err)
					if err == nil && code == http.StatusServiceUnavailable {
						// The replica could not ask the store in time (a
						// cold pool right after its restart): retried like
						// nginx's proxy_next_upstream http_503 or Envoy's
						// retry_on: unavailable.
						unavailable.Add(1)
					} else if err == nil || ctx.Err() != nil {
						break // a decision, not a transport failure: no retry
					}
					failovers.Add(1)
				}
				if ctx.Err() != nil {
					return
				}
				checks.Add(1)
				if !ok {
					failures.Add(1)
					failMu.Lock()
					if len(failSamples) < 5 {
						failSamples = append(failSamples, last)
					}
					failMu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	for _, r := range replicas {
		r.srv.Stop(t)
		r.srv.Restart(t)
		// Like a rolling update: the next replica goes only once this one
		// is healthy again.
		deadline := time.Now().Add(10 * time.Second)
		for !r.serving.Load() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("%d checks, %d failovers (%d after an HTTP 503), %d failures", checks.Load(), failovers.Load(), unavailable.Load(), failures.Load())
	if checks.Load() < 100 {
		t.Errorf("only %d checks ran", checks.Load())
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d checks of valid tokens failed during the rolling restart, e.g. %q", n, failSamples)
	}
}
