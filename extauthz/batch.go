package extauthz

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/passgate/passgate/store"
)

// Defaults for Config.BatchWait and Config.MaxBatch.
const (
	// DefaultBatchWait is how long a cache miss may wait for others to
	// share its store read while another read is already in flight. A
	// PostgreSQL round trip on loopback costs a few hundred microseconds
	// of CPU between passgate and the server; a wait of this order lets
	// concurrent misses share one, and is invisible next to it.
	DefaultBatchWait = 100 * time.Microsecond
	// DefaultMaxBatch bounds the hashes of one store read.
	DefaultMaxBatch = 64
	// batchSlots bounds the batched reads in flight at once. More than
	// one, so that a single slow read does not hold every other miss
	// back until it returns; few, so that concurrent misses share reads
	// instead of each taking its own.
	batchSlots = 2
)

// A tokenBatcher coalesces concurrent cache misses for access tokens into
// store.LookupTokens reads, so that a store behind a network round trip
// (PostgreSQL) pays one round trip for many misses. The singleflight in
// fetch still makes concurrent misses of one token a single ask.
//
// A miss is sent at once when no read is in flight (a lone miss waits for
// nothing). Otherwise it joins the queue, which is sent when it holds
// maxBatch hashes, when the oldest has waited wait, or when a read in
// flight returns, whichever comes first, with at most batchSlots reads in
// flight. Each caller still waits at most until its own context ends (the
// check's StoreTimeout), and then fails closed as before.
type tokenBatcher struct {
	st       store.Store
	timeout  time.Duration
	wait     time.Duration // < 0: no batching, every miss is its own LookupToken
	maxBatch int

	mu       sync.Mutex
	queue    []*tokenAsk
	inflight int
	timer    *time.Timer
	armed    bool // the timer is running for the queue's oldest ask
}

// A tokenAsk is one miss waiting for its answer.
type tokenAsk struct {
	ctx  context.Context // the first caller's, detached, for the trace
	hash string
	now  time.Time
	done chan struct{} // closed when tok and err are set
	tok  store.Token
	err  error
}

func newTokenBatcher(st store.Store, timeout, wait time.Duration, maxBatch int) *tokenBatcher {
	b := &tokenBatcher{st: st, timeout: timeout, wait: wait, maxBatch: maxBatch}
	if wait >= 0 {
		b.timer = time.AfterFunc(time.Hour, b.expired)
		b.timer.Stop()
	}
	return b
}

// lookup answers as store.LookupToken would for hash at now, sharing the
// store read with concurrent callers. It returns when the answer arrives
// or ctx ends, whichever is first (the latter as store.ErrUnavailable).
func (b *tokenBatcher) lookup(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	if b.wait < 0 {
		return b.st.LookupToken(ctx, hash, now)
	}
	a := &tokenAsk{ctx: context.WithoutCancel(ctx), hash: hash, now: now, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, a)
	b.dispatch(false)
	b.mu.Unlock()
	select {
	case <-a.done:
		return a.tok, a.err
	case <-ctx.Done():
		// The read goes on for the other asks in it; this one's answer
		// is dropped.
		return store.Token{}, fmt.Errorf("lookup token: %w: %w", store.ErrUnavailable, ctx.Err())
	}
}

// dispatch sends what the queue holds while slots are free; now says the
// queue has waited long enough (the timer fired or a read returned).
// b.mu must be held.
func (b *tokenBatcher) dispatch(now bool) {
	for len(b.queue) > 0 && b.inflight < batchSlots {
		if b.inflight > 0 && !now && len(b.queue) < b.maxBatch {
			if !b.armed {
				b.armed = true
				b.timer.Reset(b.wait)
			}
			return
		}
		n := min(len(b.queue), b.maxBatch)
		batch := make([]*tokenAsk, n)
		copy(batch, b.queue)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		if b.armed {
			b.armed = false
			b.timer.Stop()
		}
		b.inflight++
		go b.send(batch)
	}
}

// expired is the timer's: the oldest queued ask has waited b.wait.
func (b *tokenBatcher) expired() {
	b.mu.Lock()
	b.armed = false
	b.dispatch(true)
	b.mu.Unlock()
}

// send reads batch from the store, answers every ask in it, and sends
// what queued meanwhile. The read gets its own timeout (its callers have
// theirs) and the first ask's context for tracing: a batch of one is
// exactly the LookupToken a miss made before batching.
func (b *tokenBatcher) send(batch []*tokenAsk) {
	ctx, cancel := context.WithTimeout(batch[0].ctx, b.timeout)
	if len(batch) == 1 {
		a := batch[0]
		a.tok, a.err = b.st.LookupToken(ctx, a.hash, a.now)
		close(a.done)
	} else {
		// The earliest clock of the batch: a token alive then but expired
		// at a later caller's now is refused by that caller (askToken
		// compares the expiry with its own now).
		now := batch[0].now
		hashes := make([]string, len(batch))
		for i, a := range batch {
			hashes[i] = a.hash
			if a.now.Before(now) {
				now = a.now
			}
		}
		toks, err := b.st.LookupTokens(ctx, hashes, now)
		found := make(map[string]*store.Token, len(toks))
		for i := range toks {
			found[toks[i].Hash] = &toks[i]
		}
		for _, a := range batch {
			switch t := found[a.hash]; {
			case err != nil:
				a.err = err
			case t == nil:
				a.err = fmt.Errorf("lookup token: %w", store.ErrNotFound)
			default:
				a.tok = *t
			}
			close(a.done)
		}
	}
	cancel()
	b.mu.Lock()
	b.inflight--
	b.dispatch(true)
	b.mu.Unlock()
}
