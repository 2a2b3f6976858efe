package extauthz

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// countingStore counts the check's token reads and can hold the first
// single read until released, so that a test can queue misses behind it.
type countingStore struct {
	store.Store
	single, batches atomic.Int32
	batchSizes      chan int
	hold            chan struct{} // the first LookupToken waits for it to close
	held            chan struct{} // closed when the first LookupToken is waiting
	once            sync.Once
}

func (s *countingStore) LookupToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	if s.single.Add(1) == 1 && s.hold != nil {
		s.once.Do(func() { close(s.held) })
		<-s.hold
	}
	return s.Store.LookupToken(ctx, hash, now)
}

func (s *countingStore) LookupTokens(ctx context.Context, hashes []string, now time.Time) ([]store.Token, error) {
	s.batches.Add(1)
	s.batchSizes <- len(hashes)
	return s.Store.LookupTokens(ctx, hashes, now)
}

// queued is how many misses wait in c's batcher queue.
func queued(c *Checker) int {
	c.tokens.mu.Lock()
	defer c.tokens.mu.Unlock()
	return len(c.tokens.queue)
}

// TestBatchedMisses: concurrent cache misses queued behind a read in
// flight go to the store in one LookupTokens, and every one gets its own
// answer (live, revoked, unknown, expired), then is cached.
func TestBatchedMisses(t *testing.T) {
	db := openSQLite(t)
	cs := &countingStore{Store: db, batchSizes: make(chan int, 16), hold: make(chan struct{}), held: make(chan struct{})}
	// A wait far beyond the test: the queue goes out when the read in
	// flight returns, not by the timer.
	c := startChecker(t, Config{Store: cs, BatchWait: time.Hour})
	ctx := t.Context()

	first := mint(t, db, mintOpts{})
	live := []string{mint(t, db, mintOpts{}), mint(t, db, mintOpts{}), mint(t, db, mintOpts{}), mint(t, db, mintOpts{}), mint(t, db, mintOpts{})}
	revoked := mint(t, db, mintOpts{})
	if _, err := db.RevokeToken(ctx, token.Hash(revoked), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	expired := mint(t, db, mintOpts{ttl: -time.Minute})
	unknown := token.New(token.PrefixAccess)

	firstDone := make(chan Decision, 1)
	go func() {
		d, _ := c.Check(ctx, bearer(first))
		firstDone <- d
	}()
	<-cs.held

	type want struct {
		tok    string
		allow  bool
		reason Reason
	}
	cases := []want{{revoked, false, ReasonRevoked}, {unknown, false, ReasonUnknownToken}}
	for _, tok := range live {
		cases = append(cases, want{tok, true, ReasonToken})
	}
	// An expired token is not found by the store: unknown, as LookupToken
	// answers it.
	cases = append(cases, want{expired, false, ReasonUnknownToken})
	got := make([]Decision, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, w := range cases {
		wg.Go(func() { got[i], errs[i] = c.Check(ctx, bearer(w.tok)) })
	}
	for deadline := time.Now().Add(5 * time.Second); queued(c) < len(cases); {
		if time.Now().After(deadline) {
			t.Fatalf("%d misses queued, want %d", queued(c), len(cases))
		}
		time.Sleep(time.Millisecond)
	}
	close(cs.hold)
	wg.Wait()
	if d := <-firstDone; !d.Allow {
		t.Errorf("first miss: %+v", d)
	}
	for i, w := range cases {
		if errs[i] != nil || got[i].Allow != w.allow || got[i].Reason != w.reason {
			t.Errorf("case %d: %+v %v; want allow=%v reason %s", i, got[i], errs[i], w.allow, w.reason)
		}
	}
	if n, b := cs.single.Load(), cs.batches.Load(); n != 1 || b != 1 {
		t.Fatalf("store reads: %d single, %d batched; want 1 and 1", n, b)
	}
	if size := <-cs.batchSizes; size != len(cases) {
		t.Errorf("batch of %d hashes, want %d", size, len(cases))
	}
	// Answers were cached: no further reads.
	for _, tok := range append(live, revoked, unknown) {
		if _, err := c.Check(ctx, bearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := cs.single.Load(), cs.batches.Load(); n != 1 || b != 1 {
		t.Errorf("after the batch: %d single, %d batched reads; want none more", n, b)
	}
}

// TestBatchFailsClosed: misses queued behind a read of a stuck store, and
// misses batched into a failing read, fail closed within StoreTimeout, each
// as store unavailable; a cached token still passes.
func TestBatchFailsClosed(t *testing.T) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	c := startChecker(t, Config{Store: fs, StoreTimeout: 50 * time.Millisecond})
	ctx := t.Context()
	cached := mint(t, db, mintOpts{})
	if d, err := c.Check(ctx, bearer(cached)); err != nil || !d.Allow {
		t.Fatalf("warming: %+v %v", d, err)
	}
	for _, fault := range []*atomic.Bool{&fs.stuck, &fs.down} {
		fault.Store(true)
		start := time.Now()
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 12 {
			tok := mint(t, db, mintOpts{})
			wg.Go(func() {
				d, err := c.Check(ctx, bearer(tok))
				if errors.Is(err, ErrStoreUnavailable) && errors.Is(err, store.ErrUnavailable) && !d.Allow && d.Status == 503 {
					failed.Add(1)
				} else {
					t.Errorf("miss with a failing store: %+v %v", d, err)
				}
			})
		}
		wg.Wait()
		if el := time.Since(start); el > time.Second {
			t.Errorf("12 misses took %v with a 50ms budget", el)
		}
		if failed.Load() != 12 {
			t.Errorf("%d of 12 misses failed closed", failed.Load())
		}
		if d, err := c.Check(ctx, bearer(cached)); err != nil || !d.Allow {
			t.Errorf("cached token with a failing store: %+v %v", d, err)
		}
		fault.Store(false)
	}
}
