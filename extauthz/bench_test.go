package extauthz

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// The no-op references allow everything without looking: the cheapest
// possible check, which passgate's numbers are read against (issue 9).
type noopGRPC struct {
	authv3.UnimplementedAuthorizationServer
}

var noopOK = &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (noopGRPC) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return noopOK, nil
}

var noopHTTP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

func noopCheck(context.Context, Request) (Decision, error) {
	return Decision{Allow: true, Status: 200}, nil
}

// benchEnv is a Checker on SQLite with one token to hit and a pool of
// tokens to miss with.
type benchEnv struct {
	c    *Checker
	hit  string
	pool []string
	keys [][32]byte
	next int
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	return newBenchEnvOn(b, openSQLite(b), -1)
}

// newBenchEnvOn is newBenchEnv on db (seeded) with Config.BatchWait
// batchWait, as cmd/passgate configures each store: -1 (no batching) on
// SQLite, 0 (the default wait) on PostgreSQL.
func newBenchEnvOn(b *testing.B, db store.Store, batchWait time.Duration) *benchEnv {
	b.Helper()
	c := startChecker(b, Config{Store: db, Logger: discard(), BatchWait: batchWait})
	e := &benchEnv{c: c, hit: mint(b, db, mintOpts{})}
	for range 200 {
		tok := mint(b, db, mintOpts{})
		e.pool = append(e.pool, tok)
		e.keys = append(e.keys, sha256.Sum256([]byte(tok)))
	}
	if d, _ := c.Check(context.Background(), bearer(e.hit)); !d.Allow {
		b.Fatal("hit token refused")
	}
	return e
}

// missToken returns a valid token that is not in the cache.
func (e *benchEnv) missToken() string {
	i := e.next % len(e.pool)
	e.next++
	e.c.cache.Invalidate(e.keys[i])
	return e.pool[i]
}

// BenchmarkMiss measures a check whose token is valid but not cached: one
// store read and a cache fill, on each real store as cmd/passgate
// configures it. parallel runs GOMAXPROCS callers (PostgreSQL batches
// their concurrent misses).
func BenchmarkMiss(b *testing.B) {
	for _, tc := range []struct {
		name      string
		open      func(b *testing.B) store.Store
		batchWait time.Duration
	}{
		{"sqlite", func(b *testing.B) store.Store { return openSQLite(b) }, -1},
		{"postgres", openBenchPostgres, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newBenchEnvOn(b, tc.open(b), tc.batchWait)
			ctx := context.Background()
			b.Run("serial", func(b *testing.B) { benchMisses(b, e) })
			b.Run("parallel", func(b *testing.B) {
				var next atomic.Int64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(next.Add(1)) % len(e.pool)
						e.c.cache.Invalidate(e.keys[i])
						if d, _ := e.c.Check(ctx, bearer(e.pool[i])); !d.Allow {
							b.Error("denied")
							return
						}
					}
				})
			})
		})
	}
}

// benchMisses checks one cache miss after another.
func benchMisses(b *testing.B, e *benchEnv) {
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := e.c.Check(context.Background(), bearer(e.missToken())); !d.Allow {
			b.Fatal("denied")
		}
	}
}

func envoyReq(tok string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Scheme: "https", Host: "mcp.example.com", Path: "/mcp",
			Headers: map[string]string{
				":authority": "mcp.example.com", ":method": "POST", ":path": "/mcp", ":scheme": "https",
				"authorization": "Bearer " + tok, "content-type": "application/json", "accept": "application/json, text/event-stream",
				"mcp-protocol-version": "2025-06-18", "x-request-id": "5f2c0c5e-8b1a-4a57-9d4e-3c7f0a1b2c3d",
			}}}}}
}

func nginxReq(tok string) *http.Request {
	r := httptest.NewRequest("GET", CheckPathNginx, nil)
	r.Header.Set("X-Original-URI", "/mcp")
	r.Header.Set("X-Original-Method", "POST")
	r.Header.Set("X-Forwarded-Host", "mcp.example.com")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	return r
}

// nopWriter is a ResponseWriter that keeps nothing but a reused header map,
// so handler benchmarks measure the handler.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             { clear(w.h) }

func BenchmarkCheck(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	b.Run("noop", func(b *testing.B) {
		r := bearer(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			noopCheck(ctx, r)
		}
	})
	b.Run("hit", func(b *testing.B) {
		r := bearer(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := e.c.Check(ctx, r); !d.Allow {
				b.Fatal("denied")
			}
		}
	})
	b.Run("hit_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := bearer(e.hit)
			for pb.Next() {
				if d, _ := e.c.Check(ctx, r); !d.Allow {
					b.Error("denied")
					return
				}
			}
		})
	})
	b.Run("miss", func(b *testing.B) { benchMisses(b, e) })
	b.Run("invalid", func(b *testing.B) {
		r := bearer(token.New(token.PrefixAccess))
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := e.c.Check(ctx, r); d.Allow {
				b.Fatal("allowed")
			}
		}
	})
}

// BenchmarkCheckTracing measures what tracing costs the cache-hit path:
// uninstrumented is the check without its span (Check's body), off is
// Check without a TracerProvider (what passgate runs unless --tracing),
// on is Check with a sampling SDK provider that exports nowhere.
func BenchmarkCheckTracing(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	r := bearer(e.hit)
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	traced := startChecker(b, Config{Store: e.c.store, Logger: discard(), TracerProvider: tp})
	if d, _ := traced.Check(ctx, r); !d.Allow {
		b.Fatal("hit token refused")
	}
	for _, tc := range []struct {
		name  string
		check func(context.Context, Request) (Decision, error)
	}{
		{"hit/uninstrumented", e.c.check},
		{"hit/off", e.c.Check},
		{"hit/on", traced.Check},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, _ := tc.check(ctx, r); !d.Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}

func BenchmarkGRPC(b *testing.B) {
	e := newBenchEnv(b)
	ctx := context.Background()
	pg := grpcServer{c: e.c}
	b.Run("inproc/noop", func(b *testing.B) {
		req := envoyReq(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			noopGRPC{}.Check(ctx, req)
		}
	})
	b.Run("inproc/hit", func(b *testing.B) {
		req := envoyReq(e.hit)
		b.ReportAllocs()
		for b.Loop() {
			if resp, _ := pg.Check(ctx, req); resp.GetOkResponse() == nil {
				b.Fatal("denied")
			}
		}
	})
	b.Run("inproc/miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if resp, _ := pg.Check(ctx, envoyReq(e.missToken())); resp.GetOkResponse() == nil {
				b.Fatal("denied")
			}
		}
	})
	// Over loopback with a real client, as Envoy calls it.
	noopSrv := func() *grpc.Server {
		s := grpc.NewServer()
		authv3.RegisterAuthorizationServer(s, noopGRPC{})
		return s
	}
	pgSrv := func() *grpc.Server { return NewGRPCServer(e.c, nil) }
	for _, tc := range []struct {
		name string
		srv  func() *grpc.Server
		tok  func() string
	}{
		{"loopback/noop", noopSrv, func() string { return e.hit }},
		{"loopback/hit", pgSrv, func() string { return e.hit }},
		{"loopback/miss", pgSrv, e.missToken},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := dialGRPC(b, tc.srv())
			b.ReportAllocs()
			for b.Loop() {
				if resp, err := client.Check(ctx, envoyReq(tc.tok())); err != nil || resp.GetOkResponse() == nil {
					b.Fatal("denied", err)
				}
			}
		})
	}
}

func BenchmarkHTTP(b *testing.B) {
	e := newBenchEnv(b)
	h := e.c.HTTPHandler(nil)
	b.Run("inproc/noop", func(b *testing.B) {
		r, w := nginxReq(e.hit), &nopWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			noopHTTP.ServeHTTP(w, r)
		}
	})
	b.Run("inproc/hit", func(b *testing.B) {
		r, w := nginxReq(e.hit), &nopWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, r)
		}
	})
	b.Run("inproc/miss", func(b *testing.B) {
		w := &nopWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, nginxReq(e.missToken()))
		}
	})
	for _, tc := range []struct {
		name string
		h    http.Handler
		tok  func() string
	}{
		{"loopback/noop", noopHTTP, func() string { return e.hit }},
		{"loopback/hit", h, func() string { return e.hit }},
		{"loopback/miss", h, e.missToken},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			client := srv.Client()
			b.ReportAllocs()
			for b.Loop() {
				r := nginxReq(tc.tok())
				r.RequestURI = ""
				r.URL.Scheme, r.URL.Host = "http", srv.Listener.Addr().String()
				resp, err := client.Do(r)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal("denied", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkParseBearer(b *testing.B) {
	h := "Bearer " + token.New(token.PrefixAccess)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := parseBearer(h); !ok {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkHash(b *testing.B) {
	tok := token.New(token.PrefixAccess)
	b.Run("hashSecret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = hashSecret(tok)
		}
	})
	b.Run("HashInto", func(b *testing.B) {
		var dst [64]byte
		b.ReportAllocs()
		for b.Loop() {
			token.HashInto(&dst, tok)
		}
	})
}

func BenchmarkDeny(b *testing.B) {
	e := newBenchEnv(b)
	r := Request{Method: "POST", Host: "mcp.example.com", Path: "/mcp", Headers: map[string]string{"origin": "https://x"}}
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := e.c.Check(context.Background(), r); d.Allow {
			b.Fatal("allowed")
		}
	}
}
