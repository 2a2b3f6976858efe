package sqlite

import (
	"context"
	"sync"

	"github.com/passgate/passgate/store"
)

// maxPending bounds the invalidations queued for one slow subscriber; past
// it the queue collapses into a single All, which is always correct.
const maxPending = 1024

// hub fans invalidations out to the Subscribe calls of this process. Publish
// never blocks: every subscriber has its own queue.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed chan struct{}
	once   sync.Once
}

type subscriber struct {
	mu      sync.Mutex
	pending []store.Invalidation
	wake    chan struct{} // buffered(1)
}

func newHub() *hub {
	return &hub{subs: make(map[*subscriber]struct{}), closed: make(chan struct{})}
}

func (h *hub) close() { h.once.Do(func() { close(h.closed) }) }

// publish queues inv for every subscriber. Call it only after the
// transaction that caused inv committed.
func (h *hub) publish(inv store.Invalidation) {
	if !inv.All && len(inv.TokenHashes) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		if len(s.pending) >= maxPending {
			s.pending = append(s.pending[:0], store.Invalidation{All: true})
		} else {
			s.pending = append(s.pending, inv)
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Subscribe calls fn with All first, then with every invalidation committed
// through this *DB, in commit order, until ctx is done or the DB is closed.
// It returns nil when ctx is done. Other processes' revocations on the same
// file are not seen.
func (db *DB) Subscribe(ctx context.Context, fn func(store.Invalidation)) error {
	h := db.hub
	s := &subscriber{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}()
	fn(store.Invalidation{All: true})
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.closed:
			return nil
		case <-s.wake:
		}
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, inv := range batch {
			if ctx.Err() != nil {
				return nil
			}
			fn(inv)
		}
	}
}
