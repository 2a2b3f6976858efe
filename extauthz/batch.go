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
	idle     int // senders waiting on work
	work     chan []*tokenAsk
	timer    *time.Timer
	armed    bool // the timer is running for the queue's oldest ask
}

// senderIdle is how long a sender goroutine waits for the next batch
// before it exits (see sender).
const senderIdle = time.Second

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
	b := &tokenBatcher{st: st, timeout: timeout, wait: wait, maxBatch: maxBatch, work: make(chan []*tokenAsk, batchSlots)}
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
		batch := b.take()
		if b.idle > 0 {
			// A parked sender takes it; b.work holds batchSlots, so this
			// never blocks (see sender).
			b.idle--
			b.work <- batch
		} else {
			go b.sender(batch)
		}
	}
}

// take removes the next batch from the queue and counts it in flight.
// b.mu must be held.
func (b *tokenBatcher) take() []*tokenAsk {
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
	return batch
}

// expired is the timer's: the oldest queued ask has waited b.wait.
func (b *tokenBatcher) expired() {
	b.mu.Lock()
	b.armed = false
	b.dispatch(true)
	b.mu.Unlock()
}

// sender sends batch, then whatever queued meanwhile, then parks for up
// to senderIdle waiting for dispatch to hand it the next batch. Senders
// are kept between batches because a fresh goroutine grows its stack anew
// through the database driver on every read.
//
// Every sender is either sending (its batch counted in b.inflight) or
// parked; a parked sender is counted in b.idle until dispatch hands it a
// batch through b.work. So parked senders = b.idle + batches buffered in
// b.work, there are at most batchSlots senders, and b.work (of capacity
// batchSlots) never blocks dispatch.
func (b *tokenBatcher) sender(batch []*tokenAsk) {
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		b.send(batch)
		b.mu.Lock()
		b.inflight--
		if len(b.queue) > 0 {
			// These waited for this read: send them at once.
			batch = b.take()
			b.dispatch(true) // the other slots, if the queue holds more
			b.mu.Unlock()
			continue
		}
		b.idle++
		b.mu.Unlock()
		idle.Reset(senderIdle)
		select {
		case batch = <-b.work:
			continue
		case <-idle.C:
		}
		b.mu.Lock()
		if b.idle == 0 {
			// dispatch counted this sender out: its batch is buffered.
			b.mu.Unlock()
			batch = <-b.work
			continue
		}
		b.idle--
		b.mu.Unlock()
		return
	}
}

// send reads batch from the store and answers every ask in it. The read
// gets its own timeout (its callers have theirs) and the first ask's
// context for tracing: a batch of one is exactly the LookupToken a miss
// made before batching.
func (b *tokenBatcher) send(batch []*tokenAsk) {
	ctx, cancel := context.WithTimeout(batch[0].ctx, b.timeout)
	defer cancel()
	if len(batch) == 1 {
		a := batch[0]
		a.tok, a.err = b.st.LookupToken(ctx, a.hash, a.now)
		close(a.done)
		return
	}
	// The earliest clock of the batch: a token alive then but expired at
	// a later caller's now is refused by that caller (askToken compares
	// the expiry with its own now).
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
