package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/passgate/passgate/store"
)

// Run keeps the cache consistent with the store: it consumes
// store.Subscribe, dropping revoked tokens (or everything), until ctx is
// done. The cache is only filled while a subscription is live.
func (c *Checker) Run(ctx context.Context) error {
	for {
		err := c.store.Subscribe(ctx, c.invalidate)
		// Whatever happened, we may miss invalidations until the next
		// subscription delivers its initial All.
		c.cache.Disarm()
		if ctx.Err() != nil {
			return nil
		}
		c.logger.WarnContext(ctx, "token invalidation subscription ended; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (c *Checker) invalidate(inv store.Invalidation) {
	if inv.All {
		c.cache.Clear()
		c.metrics.invalidations.WithLabelValues("all").Inc()
	}
	for _, h := range inv.TokenHashes {
		var key [sha256.Size]byte
		if n, err := hex.Decode(key[:], []byte(h)); err != nil || n != len(key) {
			// Not a hash we could have cached; drop everything to be safe.
			c.cache.Clear()
			continue
		}
		c.cache.Invalidate(key)
	}
	if len(inv.TokenHashes) > 0 {
		c.metrics.invalidations.WithLabelValues("token").Add(float64(len(inv.TokenHashes)))
	}
	// The first callback of a subscription (an All, by the store contract)
	// proves it is live: from now on revocations reach us.
	c.cache.Arm()
}
