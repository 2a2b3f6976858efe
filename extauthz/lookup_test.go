package extauthz

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

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

// TestMissesShareOneRead: concurrent misses of one token share one store
// read (with batching and without), and a caller that gives up while the
// read is in the air fails closed alone: the others get the answer.
func TestMissesShareOneRead(t *testing.T) {
	for _, tt := range []struct {
		name      string
		batchWait time.Duration
	}{
		{"unbatched", -1},
		{"batched", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := openSQLite(t)
			cs := &countingStore{Store: db, batchSizes: make(chan int, 16), hold: make(chan struct{}), held: make(chan struct{})}
			c := startChecker(t, Config{Store: cs, BatchWait: tt.batchWait})
			tok := mint(t, db, mintOpts{})

			impatient, cancel := context.WithCancel(t.Context())
			gaveUp := make(chan error, 1)
			go func() {
				_, err := c.Check(impatient, bearer(tok))
				gaveUp <- err
			}()
			<-cs.held
			cancel()
			if err := <-gaveUp; !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.Canceled) {
				t.Errorf("impatient caller: %v, want ErrStoreUnavailable wrapping context.Canceled", err)
			}
			const n = 5
			got := make(chan Decision, n)
			for range n {
				go func() {
					d, _ := c.Check(t.Context(), bearer(tok))
					got <- d
				}()
			}
			time.Sleep(20 * time.Millisecond) // let them join the read in the air
			close(cs.hold)
			for range n {
				if d := <-got; !d.Allow {
					t.Errorf("sharing caller: %+v", d)
				}
			}
			if reads := cs.single.Load() + cs.batches.Load(); reads != 1 {
				t.Errorf("%d store reads for one token, want 1", reads)
			}
		})
	}
}
