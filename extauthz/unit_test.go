package extauthz

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

func TestParseBearer(t *testing.T) {
	tok := token.New(token.PrefixAccess)
	tests := []struct {
		name, header     string
		tok              string
		present, wellFmt bool
	}{
		{"empty", "", "", false, false},
		{"bearer", "Bearer " + tok, tok, true, true},
		{"lowercase scheme", "bearer " + tok, tok, true, true},
		{"mixed case scheme", "BeArEr " + tok, tok, true, true},
		{"several spaces", "Bearer   " + tok, tok, true, true},
		{"tab", "Bearer\t" + tok, tok, true, true},
		{"trailing space", "Bearer " + tok + " ", tok, true, true},
		{"token68 padding", "Bearer abc==", "abc==", true, true},
		{"basic", "Basic dXNlcjpwYXNz", "", false, false},
		{"scheme prefix of another", "Bearerx " + tok, "", false, false},
		{"scheme only", "Bearer", "", true, false},
		{"scheme and spaces", "Bearer   ", "", true, false},
		{"two tokens", "Bearer a b", "", true, false},
		{"two headers joined", "Bearer " + tok + ",Bearer " + tok, "", true, false},
		{"padding inside", "Bearer ab=c", "", true, false},
		{"only padding", "Bearer ==", "", true, false},
		{"quote", `Bearer "abc"`, "", true, false},
		{"non-ASCII", "Bearer pga_é", "", true, false},
		{"too long", "Bearer " + strings.Repeat("a", maxTokenLen+1), "", true, false},
		{"auth-param form", `Bearer token="abc"`, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, present, ok := parseBearer(tt.header)
			if tok != tt.tok || present != tt.present || ok != tt.wellFmt {
				t.Errorf("parseBearer(%q) = %q, %v, %v; want %q, %v, %v", tt.header, tok, present, ok, tt.tok, tt.present, tt.wellFmt)
			}
		})
	}
}

func TestNewCheckerValidates(t *testing.T) {
	db := openSQLite(t)
	_, err := NewChecker(Config{
		Scopes:         []string{"bad\"scope"},
		UserHeader:     "X Bad",
		RequiredScopes: []ScopeRule{{Match: "ftp://x/y", Scopes: []string{"a"}}, {Match: "/admin"}, {Match: "/a/../admin", Scopes: []string{"a"}}},
		Metrics:        prometheus.NewRegistry(),
	})
	if err == nil {
		t.Fatal("NewChecker accepted a bad config")
	}
	for _, want := range []string{"no protected resources", "no store", `scope "bad\"scope"`, `identity header "X Bad"`, "ftp://x/y", `scope rule "/admin": no scopes`, `scope rule "/a/../admin": path is not canonical`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := NewChecker(Config{Resources: mustResources(t, mcpURL), Store: db}); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

func TestEnvoyRequest(t *testing.T) {
	for _, fx := range []string{"envoy_post_mcp.json", "envoy_header_map.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", fx))
		if err != nil {
			t.Fatal(err)
		}
		raw = fill(raw, "pga_x")
		req := new(authv3.CheckRequest)
		if err := protojson.Unmarshal(raw, req); err != nil {
			t.Fatal(err)
		}
		r := envoyRequest(req)
		got := []string{r.Method, r.Scheme, r.Host, r.Path, r.SourceAddress, r.Headers["authorization"], r.Headers["origin"]}
		want := []string{"POST", "https", "mcp.example.com", "/mcp", "203.0.113.7", "Bearer pga_x", "https://inspector.example"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", fx, diff)
		}
	}
	// Nil-safe: an empty request (no path) is refused, not a panic.
	c, err := NewChecker(Config{Resources: mustResources(t, mcpURL), Store: openSQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := grpcServer{c: c}.Check(context.Background(), &authv3.CheckRequest{})
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
		t.Errorf("empty CheckRequest: %v, %v", resp, err)
	}
	if _, err := (grpcServer{c: c}).Check(context.Background(), nil); err != nil {
		t.Errorf("nil CheckRequest: %v", err)
	}
}

// TestCacheExpiry: a cached token is never served past its expiry.
func TestCacheExpiry(t *testing.T) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	now := time.Now()
	clock := func() time.Time { return now }
	c := startChecker(t, Config{Store: fs, Now: clock})
	tok := mint(t, db, mintOpts{ttl: time.Minute})
	ctx := context.Background()
	if d, err := c.Check(ctx, bearer(tok)); err != nil || !d.Allow {
		t.Fatalf("fresh token: %+v %v", d, err)
	}
	fs.down.Store(true) // from here on only the cache can answer
	if d, err := c.Check(ctx, bearer(tok)); err != nil || !d.Allow {
		t.Fatalf("cached token: %+v %v", d, err)
	}
	now = now.Add(time.Minute + time.Second)
	d, err := c.Check(ctx, bearer(tok))
	if err != nil || d.Allow || d.Reason != ReasonExpired || d.Status != 401 {
		t.Errorf("expired cached token: %+v %v", d, err)
	}
}

// TestRevocationReachesCache: revoking through the store (SQLite, in
// process) evicts the cached token at once.
func TestRevocationReachesCache(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db})
	ctx := context.Background()
	tok := mint(t, db, mintOpts{})
	for range 2 {
		if d, err := c.Check(ctx, bearer(tok)); err != nil || !d.Allow {
			t.Fatalf("before revocation: %+v %v", d, err)
		}
	}
	if got := testutil.ToFloat64(c.metrics.hits); got != 1 {
		t.Errorf("cache hits = %v, want 1", got)
	}
	if _, err := db.RevokeToken(ctx, token.Hash(tok), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		d, err := c.Check(ctx, bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allow {
			if d.Reason != ReasonRevoked {
				t.Errorf("reason %v, want revoked", d.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked token still allowed after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// All drops everything.
	tok2 := mint(t, db, mintOpts{})
	c.Check(ctx, bearer(tok2))
	if n := c.cache.len(); n != 1 {
		t.Fatalf("cache has %d entries, want 1", n)
	}
	c.invalidate(store.Invalidation{All: true})
	if n := c.cache.len(); n != 0 {
		t.Errorf("after All: %d entries", n)
	}
}

// TestCacheRace: an invalidation that lands while a lookup is in flight
// keeps the lookup's answer out of the cache.
func TestCacheRace(t *testing.T) {
	c := newCache(100, mustMetrics(t))
	c.arm()
	var key [32]byte
	key[0] = 7
	gen := c.generation(key)
	c.invalidate(key) // revocation notified between the store read and put
	c.put(key, cacheEntry{expires: time.Now().Add(time.Hour).UnixNano()}, gen)
	if _, ok := c.get(key); ok {
		t.Error("stale lookup result was cached after an invalidation")
	}
	c.put(key, cacheEntry{}, c.generation(key))
	if _, ok := c.get(key); !ok {
		t.Error("fresh result not cached")
	}
	c.disarm()
	if _, ok := c.get(key); ok {
		t.Error("disarmed cache served an entry")
	}
}

func mustMetrics(t *testing.T) *metrics { return mustMetricsB(t) }

func mustMetricsB(t testing.TB) *metrics {
	m, err := newMetrics(prometheus.NewRegistry(), false)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCacheBounded(t *testing.T) {
	m := mustMetrics(t)
	c := newCache(cacheShards*2, m)
	c.arm()
	for i := range 10_000 {
		var key [32]byte
		key[0], key[1], key[2], key[3] = byte(i), byte(i>>8), byte(i>>16), 1 // never the zero key
		c.put(key, cacheEntry{}, c.generation(key))
	}
	if n := c.len(); n > cacheShards*2 {
		t.Errorf("cache holds %d entries, cap %d", n, cacheShards*2)
	}
	if ev := testutil.ToFloat64(m.evictions); ev != 10_000-float64(c.len()) {
		t.Errorf("evictions = %v, want %v", ev, 10_000-c.len())
	}
	disabled := newCache(-1, m)
	disabled.arm()
	disabled.put([32]byte{}, cacheEntry{}, 0)
	if disabled.len() != 0 {
		t.Error("disabled cache stored an entry")
	}
}

// TestStuckStore: a store that hangs costs at most StoreTimeout, then the
// check fails closed; cached tokens are unaffected.
func TestStuckStore(t *testing.T) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	c := startChecker(t, Config{Store: fs, StoreTimeout: 50 * time.Millisecond})
	client := startGRPC(t, c)
	ctx := context.Background()
	cached := mint(t, db, mintOpts{})
	if d, _ := c.Check(ctx, bearer(cached)); !d.Allow {
		t.Fatal("warming failed")
	}
	fs.stuck.Store(true)
	uncached := mint(t, db, mintOpts{})

	start := time.Now()
	d, err := c.Check(ctx, bearer(uncached))
	if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, store.ErrUnavailable) || d.Allow || d.Status != 503 {
		t.Errorf("stuck store: %+v, %v", d, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("check took %v with a 50ms budget", el)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "mcp.example.com", Path: "/mcp",
			Headers: map[string]string{"authorization": "Bearer " + uncached}}}}}
	if _, err := client.Check(ctx, req); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC with stuck store: %v, want Unavailable", err)
	}
	if d, err := c.Check(ctx, bearer(cached)); err != nil || !d.Allow {
		t.Errorf("cached token with stuck store: %+v %v", d, err)
	}
	if got := testutil.ToFloat64(c.metrics.storeErrors); got != 2 {
		t.Errorf("store errors = %v, want 2", got)
	}
}

// TestOptions covers the switches that change what reaches the upstream.
func TestOptions(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{
		Store: db, KeepAuthorization: true, AllowUnknownResources: true,
		UserHeader: "x-user", ClientIDHeader: "X-Client", ScopeHeader: "X-Scopes",
	})
	ctx := context.Background()
	tok := mint(t, db, mintOpts{})
	d, err := c.Check(ctx, bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{Allow: true, Status: 200, Reason: ReasonToken,
		Headers: []Header{{"X-User", testUser}, {"X-Client", testCli}, {"X-Scopes", "mcp"}}}
	if diff := cmp.Diff(d, want, cmp.AllowUnexported(Decision{})); diff != "" {
		t.Errorf("KeepAuthorization (-got +want):\n%s", diff)
	}
	r := bearer(tok)
	r.Host = "elsewhere.example.org"
	d, _ = c.Check(ctx, r)
	want = Decision{Allow: true, Status: 200, Reason: ReasonUnprotected,
		Headers:       []Header{{"X-User", ""}, {"X-Client", ""}, {"X-Scopes", ""}},
		RemoveHeaders: []string{"x-user", "x-client", "x-scopes"}}
	if diff := cmp.Diff(d, want, cmpopts.IgnoreUnexported(Decision{})); diff != "" {
		t.Errorf("unknown resource allowed (-got +want):\n%s", diff)
	}
	// Preflight is off by default.
	pre := Request{Method: "OPTIONS", Host: "mcp.example.com", Path: "/mcp",
		Headers: map[string]string{"origin": "https://x.example", "access-control-request-method": "POST"}}
	if d, _ := c.Check(ctx, pre); d.Allow {
		t.Errorf("preflight allowed without AllowPreflight: %+v", d)
	}
}

// TestNoSecretsInLogs: store failures are logged without the token.
func TestNoSecretsInLogs(t *testing.T) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	var buf bytes.Buffer
	c := startChecker(t, Config{Store: fs, APIKey: testKey, Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok := mint(t, db, mintOpts{})
	fs.down.Store(true)
	c.Check(context.Background(), bearer(tok))
	c.Check(context.Background(), bearer(testKey))
	if !strings.Contains(buf.String(), "token lookup failed") {
		t.Errorf("store failure not logged: %s", buf.String())
	}
	for _, secret := range []string{tok, token.Hash(tok), testKey} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log contains a secret: %s", buf.String())
		}
	}
}

// TestGRPCHealth: SetServing drives grpc.health.v1, and reflection is
// registered.
func TestGRPCHealth(t *testing.T) {
	c, err := NewChecker(Config{Resources: mustResources(t, mcpURL), Store: openSQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	s := NewGRPCServer(c, hs)
	go s.Serve(lis)
	defer s.Stop()
	SetServing(hs, true)
	if _, ok := s.GetServiceInfo()["grpc.reflection.v1.ServerReflection"]; !ok {
		t.Error("reflection not registered")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: AuthorizationService})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	if got := check(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", got)
	}
	SetServing(hs, false)
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SetServing(false) = %v", got)
	}
}
