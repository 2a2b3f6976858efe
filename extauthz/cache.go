package extauthz

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"unique"

	"github.com/passgate/passgate/store"
)

// cacheShards spreads lock contention; a power of two.
const cacheShards = 64

// cacheEntry is a verified access token, or in the negative cache a refused
// one. The identity is interned: users, clients, scopes and resources repeat
// across many tokens, and a cache of a million tokens must stay small
// (24 bytes of value here). The key is the raw SHA-256 (32 bytes, not the
// 64-byte hex the store uses) for the same reason.
type cacheEntry struct {
	id      unique.Handle[identity]
	expires int64 // unix nanoseconds
	// deny is ReasonToken for a verified token; in the negative cache, why
	// the token was refused.
	deny Reason
}

// identity is what a verified token says about its bearer.
type identity struct {
	user, client, scope, resource string
}

func newEntry(t store.Token) cacheEntry {
	return cacheEntry{
		id:      unique.Make(identity{user: t.Username, client: t.ClientID, scope: t.Scope, resource: t.Resource}),
		expires: t.ExpiresAt.UnixNano(),
	}
}

// cache is a sharded map of verified tokens with a size cap; when a shard
// is full an arbitrary entry (Go's randomised map iteration) is evicted.
// Entries past expiry are never served (Checker.lookup checks). A cache is
// armed only while an invalidation subscription is live; disarmed, it
// neither stores nor serves.
type cache struct {
	shards   [cacheShards]shard
	perShard int
	armed    atomic.Bool
	metrics  *metrics
}

type shard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]cacheEntry
	// gen changes (under mu) on every invalidation touching the shard, so
	// a lookup that started before it does not cache its result.
	gen atomic.Uint64
	_   [24]byte // pad to 64 bytes: shards on separate cache lines
}

func newCache(size int, m *metrics) *cache {
	c := &cache{metrics: m}
	if size < 0 {
		return c // disabled: perShard 0 stores nothing
	}
	c.perShard = (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]cacheEntry)
	}
	return c
}

func (c *cache) shard(key [sha256.Size]byte) *shard {
	return &c.shards[key[0]%cacheShards]
}

func (c *cache) get(key [sha256.Size]byte) (cacheEntry, bool) {
	if !c.armed.Load() {
		return cacheEntry{}, false
	}
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	return e, ok
}

func (c *cache) generation(key [sha256.Size]byte) uint64 {
	return c.shard(key).gen.Load()
}

// put stores e unless the shard was invalidated since gen was read.
func (c *cache) put(key [sha256.Size]byte, e cacheEntry, gen uint64) {
	if c.perShard == 0 || !c.armed.Load() {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != gen {
		return
	}
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		for k := range s.m {
			delete(s.m, k)
			c.metrics.evictions.Inc()
			break
		}
	}
	s.m[key] = e
}

func (c *cache) invalidate(key [sha256.Size]byte) {
	s := c.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.gen.Add(1)
	s.mu.Unlock()
}

func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.gen.Add(1)
		s.mu.Unlock()
	}
}

// arm starts caching; disarm stops and forgets everything, for when
// invalidations may be missed.
func (c *cache) arm() { c.armed.Store(true) }

func (c *cache) disarm() {
	c.armed.Store(false)
	c.clear()
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
