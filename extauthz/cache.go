package extauthz

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
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

// cache is a sharded hash table of verified tokens with a size cap; when a
// shard is full an arbitrary entry is evicted. Entries past expiry are
// never served (Checker.lookup checks). A cache is armed only while an
// invalidation subscription is live; disarmed, it neither stores nor
// serves.
//
// Each shard is an open-addressing table (linear probing, backward-shift
// deletion) allocated once at its full capacity, at most 80% occupied.
// Against a Go map this halves the heap a million tokens take (a map of
// this key and value measured 134 B per entry, most of it empty slots
// after growth; here it is at most 70 B) and never reallocates, so filling
// the cache leaves no old tables behind for the GC. The slots start as
// zero pages the kernel has not yet backed, so a cache that is never full
// does not cost its capacity in RSS.
//
// Keys are the full 32-byte SHA-256 of the token. Keying by a 16-byte
// prefix would save 16 B per slot, but a hit would then vouch for any token
// sharing that prefix; with 2^128 work to forge one that is no practical
// risk, yet the bytes would have to be kept to make it impossible, so they
// are. The all-zero key marks an empty slot; a token hashing to it (never,
// in practice) is simply not cached.
type cache struct {
	shards   [cacheShards]shard
	perShard int
	armed    atomic.Bool
	metrics  *metrics
}

type slot struct {
	key [sha256.Size]byte
	e   cacheEntry
}

type shard struct {
	mu    sync.RWMutex
	slots []slot // capacity fixed; nil when the cache is disabled
	n     int    // occupied slots
	// gen changes (under mu) on every invalidation touching the shard, so
	// a lookup that started before it does not cache its result.
	gen atomic.Uint64
	// 64 bytes in all: one cache line per shard.
}

func newCache(size int, m *metrics) *cache {
	c := &cache{metrics: m}
	if size < 0 {
		return c // disabled: perShard 0 stores nothing
	}
	c.perShard = (size + cacheShards - 1) / cacheShards
	// 80% at most: linear probing stays short (about 3 probes for a hit,
	// 13 for a miss, which then pays a store round trip anyway), and at
	// least one slot is always empty, which ends every probe.
	capacity := c.perShard + c.perShard/4 + 1
	for i := range c.shards {
		c.shards[i].slots = make([]slot, capacity)
	}
	return c
}

func (c *cache) shard(key [sha256.Size]byte) *shard {
	return &c.shards[key[0]%cacheShards]
}

// home is key's first probe position. Bytes 8..15 are independent of the
// shard (byte 0); SHA-256 output is uniform, so a multiply spreads them
// over any table size without a power-of-two mask.
func (s *shard) home(key *[sha256.Size]byte) int {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(key[8:16]), uint64(len(s.slots)))
	return int(hi)
}

// find returns the slot holding key, or the empty slot ending its probe
// and false. The caller holds mu and key is not zero.
func (s *shard) find(key *[sha256.Size]byte) (int, bool) {
	i := s.home(key)
	for {
		k := &s.slots[i].key
		if *k == *key {
			return i, true
		}
		if *k == ([sha256.Size]byte{}) {
			return i, false
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
}

// deleteAt empties slot i and shifts later entries of its probe run back,
// so that no probe ever stops early at the hole. The caller holds mu.
func (s *shard) deleteAt(i int) {
	n := len(s.slots)
	j := i
	for {
		if j++; j == n {
			j = 0
		}
		if s.slots[j].key == ([sha256.Size]byte{}) {
			break
		}
		// The entry at j may move to the hole at i unless its home lies
		// cyclically in (i, j].
		h := s.home(&s.slots[j].key)
		if i <= j && i < h && h <= j || i > j && (h > i || h <= j) {
			continue
		}
		s.slots[i] = s.slots[j]
		i = j
	}
	s.slots[i] = slot{}
	s.n--
}

func (c *cache) get(key [sha256.Size]byte) (cacheEntry, bool) {
	if !c.armed.Load() || c.perShard == 0 || key == ([sha256.Size]byte{}) {
		return cacheEntry{}, false
	}
	s := c.shard(key)
	s.mu.RLock()
	i, ok := s.find(&key)
	e := s.slots[i].e
	s.mu.RUnlock()
	if !ok {
		return cacheEntry{}, false
	}
	return e, true
}

func (c *cache) generation(key [sha256.Size]byte) uint64 {
	return c.shard(key).gen.Load()
}

// put stores e unless the shard was invalidated since gen was read.
func (c *cache) put(key [sha256.Size]byte, e cacheEntry, gen uint64) {
	if c.perShard == 0 || !c.armed.Load() || key == ([sha256.Size]byte{}) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != gen {
		return
	}
	i, ok := s.find(&key)
	if ok {
		s.slots[i].e = e
		return
	}
	if s.n >= c.perShard {
		// Evict the first entry at or after a position picked by the new
		// key's other bytes: arbitrary, like a map's iteration order.
		j, _ := bits.Mul64(binary.LittleEndian.Uint64(key[16:24]), uint64(len(s.slots)))
		for v := int(j); ; {
			if s.slots[v].key != ([sha256.Size]byte{}) {
				s.deleteAt(v)
				c.metrics.evictions.Inc()
				break
			}
			if v++; v == len(s.slots) {
				v = 0
			}
		}
		i, _ = s.find(&key) // the hole may have moved the probe's end
	}
	s.slots[i] = slot{key: key, e: e}
	s.n++
}

func (c *cache) invalidate(key [sha256.Size]byte) {
	s := c.shard(key)
	s.mu.Lock()
	if s.slots != nil && key != ([sha256.Size]byte{}) {
		if i, ok := s.find(&key); ok {
			s.deleteAt(i)
		}
	}
	s.gen.Add(1)
	s.mu.Unlock()
}

func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		// An empty shard is left alone: zeroing it would make the kernel
		// back every page of a table nothing was ever stored in.
		if s.n > 0 {
			clear(s.slots)
			s.n = 0
		}
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
		n += s.n
		s.mu.RUnlock()
	}
	return n
}
