package sqlite

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/internal/sqlstore"
)

// pollInterval is how often Subscribe looks for revocations written by
// other processes on the same file; it keeps their delivery well within a
// second.
const pollInterval = 200 * time.Millisecond

// invalidationRetention is how long invalidation rows are kept for other
// processes to pick up.
const invalidationRetention = time.Hour

// recordInvalidation appends hashes to the invalidations table in tx, for
// the other processes sharing the file.
func (db *DB) recordInvalidation(ctx context.Context, tx sqlstore.Querier, hashes []string, now time.Time) error {
	if len(hashes) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO invalidations (origin, hashes, created_at) VALUES ($1, $2, $3)`,
		db.origin, strings.Join(hashes, ","), ts(now))
	if err != nil {
		return fmt.Errorf("record invalidation: %w", err)
	}
	return nil
}

// deleteOldInvalidations deletes invalidation rows past their retention.
// They only bridge processes for a moment; they are bookkeeping, not
// counted by DeleteExpired.
func deleteOldInvalidations(ctx context.Context, tx sqlstore.Querier, now time.Time) error {
	_, err := tx.Exec(ctx, `DELETE FROM invalidations WHERE created_at < $1`, ts(now.Add(-invalidationRetention)))
	return err
}

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
// through this *DB (delivered in process right after commit) or by another
// process on the same file (picked up by polling the invalidations table
// every pollInterval), until ctx is done or the DB is closed; then it
// returns nil. Revocations commute, so the relative order of concurrent
// ones is immaterial.
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
	// Rows from before the All are covered by it.
	last, lastOK := db.lastInvalidation(ctx)
	fn(store.Invalidation{All: true})
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.closed:
			return nil
		case <-tick.C:
			if !lastOK {
				// Not migrated yet when we started: every row is new.
				last, lastOK = 0, true
			}
			last = db.pollInvalidations(ctx, last, fn)
			continue
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

// lastInvalidation returns the newest invalidation row's ID; ok is false
// when the table cannot be read (not migrated yet, or closed).
func (db *DB) lastInvalidation(ctx context.Context) (id int64, ok bool) {
	err := db.reader.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM invalidations`).Scan(&id)
	return id, err == nil
}

// pollInvalidations delivers other origins' invalidation rows after last
// and returns the new high-water mark. Errors are logged and retried at the
// next tick; after an error the caches get an All, since rows may be gone
// by the time the poll succeeds again.
func (db *DB) pollInvalidations(ctx context.Context, last int64, fn func(store.Invalidation)) int64 {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, origin, hashes FROM invalidations WHERE id > ? ORDER BY id`, last)
	if err != nil {
		if ctx.Err() == nil && !strings.Contains(err.Error(), "no such table") {
			db.logger.WarnContext(ctx, "poll invalidations", "err", err)
		}
		return last
	}
	defer rows.Close()
	next := last
	var invs []store.Invalidation
	for rows.Next() {
		var id int64
		var origin, hashes string
		if err := rows.Scan(&id, &origin, &hashes); err != nil {
			db.logger.WarnContext(ctx, "poll invalidations", "err", err)
			return last
		}
		next = id
		if origin != db.origin && hashes != "" {
			invs = append(invs, store.Invalidation{TokenHashes: strings.Split(hashes, ",")})
		}
	}
	if err := rows.Err(); err != nil {
		db.logger.WarnContext(ctx, "poll invalidations", "err", err)
		return last
	}
	for _, inv := range invs {
		fn(inv)
	}
	return next
}
