// Package tokencache remembers verified credentials for the check path: a
// sharded, size-capped hash table keyed by the SHA-256 of a credential,
// whose entries name interned identities. It knows nothing about what makes
// a credential valid: the caller decides, puts what it decided (an entry's
// Tag is the caller's, opaque here) and judges expiry on the way out.
//
// Why it is not a Go map, measured with 1M tokens (docs/benchmarks.md): a
// map of this key and value held 137 B per entry, much of it empty slots
// after growth, and the garbage collector lets the heap grow to twice what
// is live (GOGC=100), so a big cache on the heap costs about twice its size
// in RSS as soon as the check path makes garbage; a table on the heap
// allocated at its full capacity took a process with 100k cached tokens to
// 248 MB. Off the heap a slot is 48 bytes and the collector neither counts
// nor scans the table.
package tokencache

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// Shards is the number of shards, which spread lock contention; a power of
// two. A cache of size n holds at most n rounded up to a multiple of
// Shards.
const Shards = 64

// Entry is what the cache holds for a key.
type Entry struct {
	ID Identity
	// Expires is in unix nanoseconds. The cache keeps it but never reads
	// it: the caller refuses an expired entry (and may Invalidate it).
	Expires int64
	// Tag is the caller's, kept with the entry and opaque to the cache
	// (the check keeps why a credential was allowed or refused).
	Tag uint8
}

// Identity is what a verified credential says about its bearer. Entries
// with equal identities share one copy; the zero Identity costs nothing.
type Identity struct {
	User, Client, Scope, Resource string
	// Groups are the user's access-policy groups, comma-separated.
	Groups string
}

// Cache is a sharded hash table of entries with a size cap; when a shard
// is full an arbitrary entry is evicted. A Cache is armed (Arm) only while
// its owner is sure to hear of every invalidation; disarmed, it neither
// stores nor serves. It is safe for concurrent use.
//
// Each shard is an open-addressing table (linear probing, backward-shift
// deletion), at most 80% occupied, in memory mapped outside the Go heap
// (see allocSlots). It starts at one page and doubles as it fills, up to
// what the size cap needs; a table it outgrew is unmapped at once.
//
// Slots hold no Go pointers, so the identity of an entry is an index into
// the cache's identities, reference counted: users, clients, scopes and
// resources repeat across many tokens and are kept once.
//
// Keys are the full 32-byte SHA-256 of the token. Keying by a 16-byte
// prefix would save 16 B per slot, but a hit would then vouch for any token
// sharing that prefix; with 2^128 work to forge one that is no practical
// risk, yet the bytes would have to be kept to make it impossible, so they
// are. The all-zero key marks an empty slot; a token hashing to it (never,
// in practice) is simply not cached.
type Cache struct {
	// shards is its own allocation so that the cleanup that unmaps the
	// tables can hold it without keeping the cache alive. Methods that
	// touch a table end with runtime.KeepAlive(c).
	shards   *[Shards]shard
	perShard int // size cap per shard; 0 stores nothing
	maxSlots int // table size the cap needs at 80%
	ids      identities
	armed    atomic.Bool
	onEvict  func()
}

// slot is one table entry: 48 bytes, no pointers.
type slot struct {
	key     [sha256.Size]byte
	expires int64
	id      uint32 // index+1 in identities; 0 for none
	tag     uint8
	_       [3]byte
}

type shard struct {
	mu    sync.RWMutex
	slots []slot // off-heap; nil when the cache is disabled
	n     int    // occupied slots
	// gen changes (under mu) on every invalidation touching the shard, so
	// a lookup that started before it does not cache its result.
	gen atomic.Uint64
	// 64 bytes in all: one cache line per shard.
}

// minSlots fills one 4 KiB page.
const minSlots = 4096 / 48

// New returns a disarmed cache holding at most size entries (rounded up to
// a multiple of Shards); a size of 0 or less stores nothing. onEvict, when
// not nil, is called (under a shard's lock: it must not call back into the
// cache) each time an entry makes room for another.
func New(size int, onEvict func()) *Cache {
	c := &Cache{onEvict: onEvict, shards: new([Shards]shard)}
	if size <= 0 {
		return c // disabled: perShard 0 stores nothing
	}
	c.perShard = (size + Shards - 1) / Shards
	// 80% at most: linear probing stays short (about 3 probes for a hit,
	// 13 for a miss, which then pays a store round trip anyway), and at
	// least one slot is always empty, which ends every probe.
	c.maxSlots = c.perShard + c.perShard/4 + 1
	for i := range c.shards {
		c.shards[i].slots = allocSlots(min(minSlots, c.maxSlots))
	}
	c.ids.init(Shards * c.perShard)
	runtime.AddCleanup(c, func(shards *[Shards]shard) {
		for i := range shards {
			freeSlots(shards[i].slots)
		}
	}, c.shards)
	return c
}

func (c *Cache) shard(key [sha256.Size]byte) *shard {
	return &c.shards[key[0]%Shards]
}

// home is key's first probe position. Bytes 8..15 are independent of the
// shard (byte 0); SHA-256 output is uniform, so a multiply spreads them
// over any table size without a power-of-two mask.
func home(key *[sha256.Size]byte, n int) int {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(key[8:16]), uint64(n))
	return int(hi)
}

// find returns the slot holding key, or the empty slot ending its probe
// and false. The caller holds mu and key is not zero.
func (s *shard) find(key *[sha256.Size]byte) (int, bool) {
	i := home(key, len(s.slots))
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

// grow moves the entries to a table of n slots and unmaps the old one.
// The caller holds mu.
func (s *shard) grow(n int) {
	old := s.slots
	s.slots = allocSlots(n)
	for j := range old {
		if old[j].key != ([sha256.Size]byte{}) {
			i, _ := s.find(&old[j].key)
			s.slots[i] = old[j]
		}
	}
	freeSlots(old)
}

// deleteAt empties slot i, releasing its identity, and shifts later entries
// of its probe run back, so that no probe ever stops early at the hole. The
// caller holds mu.
func (c *Cache) deleteAt(s *shard, i int) {
	c.ids.release(s.slots[i].id)
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
		h := home(&s.slots[j].key, n)
		if i <= j && i < h && h <= j || i > j && (h > i || h <= j) {
			continue
		}
		s.slots[i] = s.slots[j]
		i = j
	}
	s.slots[i] = slot{}
	s.n--
}

// Get returns the entry for key, if the cache is armed and holds one,
// whether or not it has expired. It does not allocate.
func (c *Cache) Get(key [sha256.Size]byte) (Entry, bool) {
	if !c.armed.Load() || c.perShard == 0 || key == ([sha256.Size]byte{}) {
		return Entry{}, false
	}
	s := c.shard(key)
	s.mu.RLock()
	i, ok := s.find(&key)
	var e Entry
	if ok {
		sl := &s.slots[i]
		e = Entry{ID: c.ids.get(sl.id), Expires: sl.expires, Tag: sl.tag}
	}
	s.mu.RUnlock()
	runtime.KeepAlive(c)
	return e, ok
}

// Generation returns the invalidation generation of key's shard. Read it
// before asking the source of truth about key and pass it to Put, so that
// an invalidation racing with the question keeps a maybe stale answer out.
func (c *Cache) Generation(key [sha256.Size]byte) uint64 {
	return c.shard(key).gen.Load()
}

// Put stores e for key, replacing any entry, unless the cache is disarmed
// or key's shard was invalidated (Invalidate, Clear) since gen was read
// from Generation. The all-zero key is never stored.
func (c *Cache) Put(key [sha256.Size]byte, e Entry, gen uint64) {
	if c.perShard == 0 || !c.armed.Load() || key == ([sha256.Size]byte{}) {
		return
	}
	defer runtime.KeepAlive(c)
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != gen {
		return
	}
	i, ok := s.find(&key)
	switch {
	case ok:
		c.ids.release(s.slots[i].id)
		s.n--
	case s.n >= c.perShard:
		// Evict the first entry at or after a position picked by the new
		// key's other bytes: arbitrary, like a map's iteration order.
		j, _ := bits.Mul64(binary.LittleEndian.Uint64(key[16:24]), uint64(len(s.slots)))
		for v := int(j); ; {
			if s.slots[v].key != ([sha256.Size]byte{}) {
				c.deleteAt(s, v)
				if c.onEvict != nil {
					c.onEvict()
				}
				break
			}
			if v++; v == len(s.slots) {
				v = 0
			}
		}
		i, _ = s.find(&key) // the hole may have moved the probe's end
	case (s.n+1)*5 > len(s.slots)*4 && len(s.slots) < c.maxSlots:
		s.grow(min(2*len(s.slots), c.maxSlots))
		i, _ = s.find(&key)
	}
	s.slots[i] = slot{key: key, expires: e.Expires, id: c.ids.acquire(e.ID), tag: e.Tag}
	s.n++
}

// Invalidate removes key's entry and makes every Put with a generation
// read before it a no-op for key's shard.
func (c *Cache) Invalidate(key [sha256.Size]byte) {
	s := c.shard(key)
	s.mu.Lock()
	if s.slots != nil && key != ([sha256.Size]byte{}) {
		if i, ok := s.find(&key); ok {
			c.deleteAt(s, i)
		}
	}
	s.gen.Add(1)
	s.mu.Unlock()
	runtime.KeepAlive(c)
}

// Clear removes every entry and, like Invalidate, voids every generation
// read before it.
func (c *Cache) Clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		// An empty shard is left alone: zeroing it would make the kernel
		// back every page of a table nothing was ever stored in.
		if s.n > 0 {
			for j := range s.slots {
				c.ids.release(s.slots[j].id)
			}
			clearSlots(s.slots)
			s.n = 0
		}
		s.gen.Add(1)
		s.mu.Unlock()
	}
	runtime.KeepAlive(c)
}

// Arm starts caching; Disarm stops and forgets everything, for when
// invalidations may be missed.
func (c *Cache) Arm() { c.armed.Store(true) }

// Disarm stops caching and clears the cache.
func (c *Cache) Disarm() {
	c.armed.Store(false)
	c.Clear()
}

// Armed reports whether the cache stores and serves entries.
func (c *Cache) Armed() bool { return c.armed.Load() }

// Len returns the number of entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.n
		s.mu.RUnlock()
	}
	return n
}

// identities interns the identities of entries, reference counted
// by the slots that name them. Lock order: a shard's mu, then identities.mu.
//
// get runs without identities.mu: an index read from a slot under the
// shard's lock names an identity written before that slot was (acquire
// happens under the same shard lock), and it cannot be released and
// reused until the slot is removed under the shard's write lock, after
// every reader of the slot is done.
type identities struct {
	mu     sync.Mutex
	index  map[Identity]uint32 // identity -> index
	chunks []*identityChunk    // allocated once with room for every slot
	refs   []uint32            // per index
	free   []uint32            // released indexes
}

const identityChunkSize = 1024

type identityChunk [identityChunkSize]Identity

func (ids *identities) init(maxEntries int) {
	ids.index = make(map[Identity]uint32)
	ids.chunks = make([]*identityChunk, (maxEntries+identityChunkSize-1)/identityChunkSize)
}

// acquire returns id's index+1, taking a reference. The caller holds a
// shard's mu.
func (ids *identities) acquire(id Identity) uint32 {
	if id == (Identity{}) {
		return 0 // entries may carry no identity
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if i, ok := ids.index[id]; ok {
		ids.refs[i]++
		return i + 1
	}
	var i uint32
	if n := len(ids.free); n > 0 {
		i, ids.free = ids.free[n-1], ids.free[:n-1]
	} else {
		i = uint32(len(ids.refs))
		ids.refs = append(ids.refs, 0)
	}
	ch := ids.chunks[i/identityChunkSize]
	if ch == nil {
		ch = new(identityChunk)
		ids.chunks[i/identityChunkSize] = ch
	}
	ch[i%identityChunkSize] = id
	ids.refs[i] = 1
	ids.index[id] = i
	return i + 1
}

// release drops a reference taken by acquire. The caller holds a shard's
// mu.
func (ids *identities) release(ref uint32) {
	if ref == 0 {
		return
	}
	i := ref - 1
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.refs[i]--; ids.refs[i] == 0 {
		ch := ids.chunks[i/identityChunkSize]
		delete(ids.index, ch[i%identityChunkSize])
		ch[i%identityChunkSize] = Identity{}
		ids.free = append(ids.free, i)
	}
}

// get returns the identity of ref. The caller holds the read lock of the
// shard whose slot holds ref.
func (ids *identities) get(ref uint32) Identity {
	if ref == 0 {
		return Identity{}
	}
	i := ref - 1
	return ids.chunks[i/identityChunkSize][i%identityChunkSize]
}

// len is the number of distinct identities held.
func (ids *identities) len() int {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return len(ids.index)
}
