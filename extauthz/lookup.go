package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/store"
)

// negativeTTL bounds how long a refused credential is remembered.
const negativeTTL = time.Minute

// A secretKind is the kind of secret a lookup asks the store about.
type secretKind uint8

const (
	// accessToken is read with store.LookupToken(s), batched (c.tokens).
	accessToken secretKind = iota
	// namedAPIKey is read with store.LookupAPIKey (askAPIKey).
	namedAPIKey
)

// lookup returns the cached entry for key and the Reason that allows or
// refuses it, asking the store about a credential of kind on a miss.
// Tokens and named API keys share both caches: their
// secrets' prefixes differ, so one hash is only ever asked about one way,
// and Run's invalidations drop both alike. Entries are tagged with their
// Reason.
func (c *Checker) lookup(ctx context.Context, key [sha256.Size]byte, now time.Time, kind secretKind) (tokencache.Entry, Reason, error) {
	if e, found := c.cache.Get(key); found {
		if now.UnixNano() >= e.Expires {
			c.cache.Invalidate(key)
			return tokencache.Entry{}, ReasonExpired, nil
		}
		c.metrics.hits.Inc()
		if c.tracer != nil {
			traceCache(ctx, cacheHit)
		}
		return e, Reason(e.Tag), nil
	}
	if e, found := c.neg.Get(key); found && now.UnixNano() < e.Expires {
		c.metrics.hits.Inc()
		if c.tracer != nil {
			traceCache(ctx, cacheHit)
		}
		return tokencache.Entry{}, Reason(e.Tag), nil
	}
	c.metrics.misses.Inc()
	if c.tracer != nil {
		traceCache(ctx, cacheStore)
	}
	return c.fetch(ctx, key, now, kind)
}

// A flight is one store ask about one key, shared by every check that
// misses on the key while it is in the air (singleflight per key). It has
// no goroutine of its own: an access token's read is queued with c.tokens,
// whose sender (a goroutine kept between reads) reads the store and
// completes the flight, filling the cache. A goroutine per miss, as
// golang.org/x/sync/singleflight's DoChan starts, cost a hand-off more and
// grew a fresh stack through the database driver on every miss.
type flight struct {
	c    *Checker
	key  [sha256.Size]byte
	hash string // hex, as the store keys it
	now  time.Time
	// gen is the cache's generation before the read, so that an
	// invalidation racing with the read keeps its (maybe stale) answer out
	// of the cache.
	gen uint64
	// ctx is the first caller's, detached from its cancellation so that
	// one impatient caller does not fail the others sharing the flight,
	// and bounded by the store timeout: the read's deadline and trace
	// parent.
	ctx    context.Context
	cancel context.CancelFunc

	finished atomic.Bool   // complete has begun: later calls do nothing
	done     chan struct{} // closed when e, reason and err are final
	e        tokencache.Entry
	reason   Reason
	err      error
}

// fetch asks the store about key, once for all concurrent callers (a
// flight), and waits for the answer or for ctx to end. It is separate from
// lookup so that the hit path does not pay for the flight's setup.
func (c *Checker) fetch(ctx context.Context, key [sha256.Size]byte, now time.Time, kind secretKind) (tokencache.Entry, Reason, error) {
	// The flight is built before it is published: joining one in the air
	// is rare (misses are mostly of distinct tokens), so its setup is
	// wasted only then.
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], key[:])
	f := &flight{c: c, key: key, hash: string(hx[:]), now: now, gen: c.cache.Generation(key), done: make(chan struct{})}
	f.ctx, f.cancel = context.WithTimeout(context.WithoutCancel(ctx), c.storeTimeout)
	c.flightMu.Lock()
	if g, ok := c.flights[key]; ok {
		c.flightMu.Unlock()
		f.cancel()
		f = g
	} else {
		c.flights[key] = f
		c.flightMu.Unlock()
		switch kind {
		case accessToken:
			c.tokens.submit(f)
		case namedAPIKey:
			// Rare: keys are few and stay cached.
			go func() { f.complete(askAPIKey(f.ctx, c, f.hash)) }()
		}
	}
	select {
	case <-f.done:
	case <-f.ctx.Done():
		// The store ignored its deadline (or the read is still queued):
		// the flight fails closed now, for every caller sharing it.
		f.complete(tokencache.Entry{}, ReasonStoreUnavailable, fmt.Errorf("lookup: %w: %w", store.ErrUnavailable, f.ctx.Err()))
		<-f.done
	case <-ctx.Done():
		// The flight goes on for the other callers sharing it.
		return tokencache.Entry{}, ReasonStoreUnavailable, fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	}
	return f.e, f.reason, f.err
}

// complete gives f its answer and caches it. The answer is the entry and
// the Reason that allows it (ReasonToken, ReasonAPIKey), or the Reason it
// is refused, or the store's error; not being found is a refusal, not an
// error. An allowed credential is cached until it expires or is
// invalidated, a refused one for negativeTTL. Only the first call counts:
// the read and a caller whose wait outlived f.ctx may race to complete f.
func (f *flight) complete(e tokencache.Entry, reason Reason, err error) {
	if !f.finished.CompareAndSwap(false, true) {
		return
	}
	c := f.c
	switch {
	case err != nil:
		c.metrics.storeErrors.Inc()
		f.reason, f.err = ReasonStoreUnavailable, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	case !reason.allows():
		c.neg.Put(f.key, tokencache.Entry{Tag: uint8(reason), Expires: f.now.Add(negativeTTL).UnixNano()}, c.neg.Generation(f.key))
		f.reason = reason
	default:
		e.Tag = uint8(reason)
		c.cache.Put(f.key, e, f.gen)
		f.e, f.reason = e, reason
	}
	c.flightMu.Lock()
	delete(c.flights, f.key)
	c.flightMu.Unlock()
	close(f.done)
	f.cancel()
}

// tokenAnswer is what a store read (LookupToken, or its share of
// LookupTokens) means for the access token hashed there, as complete
// takes it: ReasonToken for a live access token, with its identity and
// expiry, at now.
func (c *Checker) tokenAnswer(t store.Token, err error, now time.Time) (tokencache.Entry, Reason, error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tokencache.Entry{}, ReasonUnknownToken, nil
	case err != nil:
		return tokencache.Entry{}, ReasonStoreUnavailable, fmt.Errorf("lookup token: %w", err)
	case t.Kind != store.KindAccess:
		return tokencache.Entry{}, ReasonWrongKind, nil
	case !t.RevokedAt.IsZero():
		return tokencache.Entry{}, ReasonRevoked, nil
	case !t.ExpiresAt.After(now):
		return tokencache.Entry{}, ReasonExpired, nil
	}
	return tokencache.Entry{
		ID:      tokencache.Identity{User: t.Username, Client: t.ClientID, Scope: t.Scope, Resource: c.audience(t.Resource), Groups: strings.Join(t.Groups, ",")},
		Expires: t.ExpiresAt.UnixNano(),
	}, ReasonToken, nil
}

// audience is resource.Audience(stored): the audience is compared with the
// resource's canonical URL, and tokens issued before identifiers were
// canonicalized carry the URL as it was configured. Tokens issued now
// carry a configured resource's URL, already canonical, so that is
// matched first: parsing the URL cost three allocations per cache fill.
func (c *Checker) audience(stored string) string {
	for i := range c.resources {
		if c.resources[i].URL == stored {
			return c.resources[i].URL
		}
	}
	return resource.Audience(stored)
}

// hashSecret is sha256.Sum256([]byte(secret)) without the heap copy Go
// makes for conversions longer than 32 bytes.
func hashSecret(secret string) [sha256.Size]byte {
	var buf [128]byte
	if len(secret) <= len(buf) {
		return sha256.Sum256(append(buf[:0], secret...))
	}
	return sha256.Sum256([]byte(secret))
}
