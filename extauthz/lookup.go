package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/store"
)

// negativeTTL bounds how long a refused credential is remembered.
const negativeTTL = time.Minute

// An askFunc asks c's store about the credential whose hex SHA-256 is hash.
// It returns the entry to cache and the Reason that allows it (ReasonToken,
// ReasonAPIKey), or the Reason it is refused, or the store's error, with
// ReasonStoreUnavailable. Not being found is a refusal, not an error.
type askFunc func(ctx context.Context, c *Checker, hash string, now time.Time) (tokencache.Entry, Reason, error)

// lookup returns the cached entry for key and the Reason that allows or
// refuses it, asking the store with ask on a miss. Tokens (askToken) and
// named API keys (askAPIKey) share both caches: their secrets' prefixes
// differ, so one hash is only ever asked about one way, and Run's
// invalidations drop both alike. Entries are tagged with their Reason.
func (c *Checker) lookup(ctx context.Context, key [sha256.Size]byte, now time.Time, ask askFunc) (tokencache.Entry, Reason, error) {
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
	return c.fetch(ctx, key, now, ask)
}

// fetch asks the store about key, once for all concurrent callers, and
// caches the answer: an allowed credential until it expires or is
// invalidated, a refused one for negativeTTL. It is separate from lookup
// because the closure's captured variables move to the heap: the hit path
// must not pay for that.
func (c *Checker) fetch(ctx context.Context, key [sha256.Size]byte, now time.Time, ask askFunc) (tokencache.Entry, Reason, error) {
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], key[:])
	hash := string(hx[:])
	type result struct {
		e      tokencache.Entry
		reason Reason
	}
	ch := c.sf.DoChan(hash, func() (any, error) {
		// The generation is read before the store so that an invalidation
		// racing with this lookup keeps its (maybe stale) answer out of the
		// cache. The lookup is detached from the first caller's context so
		// one impatient caller does not fail the others sharing it.
		gen := c.cache.Generation(key)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.storeTimeout)
		defer cancel()
		e, reason, err := ask(sctx, c, hash, now)
		if err != nil {
			c.metrics.storeErrors.Inc()
			return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		if !reason.allows() {
			c.neg.Put(key, tokencache.Entry{Tag: uint8(reason), Expires: now.Add(negativeTTL).UnixNano()}, c.neg.Generation(key))
			return result{reason: reason}, nil
		}
		e.Tag = uint8(reason)
		c.cache.Put(key, e, gen)
		return result{e: e, reason: reason}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return tokencache.Entry{}, ReasonStoreUnavailable, res.Err
		}
		r := res.Val.(result)
		return r.e, r.reason, nil
	case <-ctx.Done():
		return tokencache.Entry{}, ReasonStoreUnavailable, fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	}
}

// askToken is the askFunc of access tokens: ReasonToken for a live access
// token, with its identity and expiry. Its store read is batched with
// concurrent misses (tokenBatcher).
func askToken(ctx context.Context, c *Checker, hash string, now time.Time) (tokencache.Entry, Reason, error) {
	t, err := c.tokens.lookup(ctx, hash, now)
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
	// The audience is compared with the resource's canonical URL; tokens
	// issued before identifiers were canonicalized carry the URL as it was
	// configured. Canonicalized here, once per cache fill.
	return tokencache.Entry{
		ID:      tokencache.Identity{User: t.Username, Client: t.ClientID, Scope: t.Scope, Resource: resource.Audience(t.Resource), Groups: strings.Join(t.Groups, ",")},
		Expires: t.ExpiresAt.UnixNano(),
	}, ReasonToken, nil
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
