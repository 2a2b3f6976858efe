package extauthz

import (
	"context"
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

// A tokenBatcher reads access tokens for cache misses (flights) on a few
// sender goroutines kept between reads, and completes each flight with its
// answer. With batching, concurrent misses are coalesced into
// store.LookupTokens reads, so that a store behind a network round trip
// (PostgreSQL) pays one round trip for many misses. The flights in fetch
// still make concurrent misses of one token a single ask.
//
// A miss is sent at once when no read is in flight (a lone miss waits for
// nothing). Otherwise it joins the queue, which is sent when it holds
// maxBatch hashes, when the oldest has waited wait, or when a read in
// flight returns, whichever comes first, with at most batchSlots reads in
// flight. Without batching every miss is its own LookupToken, sent at once
// while fewer than unbatchedSlots are in flight. Each caller still waits
// at most until its own context or its flight's store timeout ends, and
// then fails closed as before.
type tokenBatcher struct {
	st       store.Store
	timeout  time.Duration
	wait     time.Duration // < 0: no batching, every miss is its own LookupToken
	maxBatch int
	slots    int // reads in flight at most

	mu       sync.Mutex
	queue    []*flight
	inflight int
	idle     int // senders waiting on work
	work     chan []*flight
	timer    *time.Timer
	armed    bool // the timer is running for the queue's oldest ask
}

// unbatchedSlots bounds the reads in flight without batching: more than
// SQLite's readers (store/sqlite: at least four), so that the store, not
// the batcher, is what queues.
const unbatchedSlots = 16

// senderIdle is how long a sender goroutine waits for the next batch
// before it exits (see sender).
const senderIdle = time.Second

func newTokenBatcher(st store.Store, timeout, wait time.Duration, maxBatch int) *tokenBatcher {
	b := &tokenBatcher{st: st, timeout: timeout, wait: wait, maxBatch: maxBatch, slots: batchSlots}
	if wait < 0 {
		b.maxBatch, b.slots = 1, unbatchedSlots
	} else {
		b.timer = time.AfterFunc(time.Hour, b.expired)
		b.timer.Stop()
	}
	b.work = make(chan []*flight, b.slots)
	return b
}

// submit queues f's read; a sender completes f when the answer arrives.
// f.ctx bounds the read.
func (b *tokenBatcher) submit(f *flight) {
	b.mu.Lock()
	b.queue = append(b.queue, f)
	b.dispatch(false)
	b.mu.Unlock()
}

// dispatch sends what the queue holds while slots are free; now says the
// queue has waited long enough (the timer fired or a read returned).
// b.mu must be held.
func (b *tokenBatcher) dispatch(now bool) {
	for len(b.queue) > 0 && b.inflight < b.slots {
		if b.wait >= 0 && b.inflight > 0 && !now && len(b.queue) < b.maxBatch {
			if !b.armed {
				b.armed = true
				b.timer.Reset(b.wait)
			}
			return
		}
		batch := b.take()
		if b.idle > 0 {
			// A parked sender takes it; b.work holds b.slots, so this
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
func (b *tokenBatcher) take() []*flight {
	n := min(len(b.queue), b.maxBatch)
	batch := make([]*flight, n)
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
// b.work, there are at most b.slots senders, and b.work (of capacity
// b.slots) never blocks dispatch.
func (b *tokenBatcher) sender(batch []*flight) {
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

// send reads batch from the store and completes every flight in it. A
// batch of one is exactly the LookupToken a miss made before batching,
// under its flight's context; a larger one gets its own timeout (its
// callers have theirs) and the first flight's context for tracing.
func (b *tokenBatcher) send(batch []*flight) {
	// Flights that failed closed while queued (see fetch) need no read.
	live := batch[:0]
	for _, f := range batch {
		if !f.finished.Load() {
			live = append(live, f)
		}
	}
	batch = live
	switch len(batch) {
	case 0:
		return
	case 1:
		f := batch[0]
		tok, err := b.st.LookupToken(f.ctx, f.hash, f.now)
		f.complete(f.c.tokenAnswer(tok, err, f.now))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), b.timeout)
	defer cancel()
	// The earliest clock of the batch: a token alive then but expired at
	// a later caller's now is refused by that caller (tokenAnswer compares
	// the expiry with its own now).
	now := batch[0].now
	hashes := make([]string, len(batch))
	for i, f := range batch {
		hashes[i] = f.hash
		if f.now.Before(now) {
			now = f.now
		}
	}
	toks, err := b.st.LookupTokens(ctx, hashes, now)
	found := make(map[string]*store.Token, len(toks))
	for i := range toks {
		found[toks[i].Hash] = &toks[i]
	}
	for _, f := range batch {
		switch t := found[f.hash]; {
		case err != nil:
			f.complete(f.c.tokenAnswer(store.Token{}, err, f.now))
		case t == nil:
			f.complete(f.c.tokenAnswer(store.Token{}, store.ErrNotFound, f.now))
		default:
			f.complete(f.c.tokenAnswer(*t, nil, f.now))
		}
	}
}
