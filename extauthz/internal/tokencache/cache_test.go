package tokencache

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

const testResource = "https://mcp.example.com/mcp"

// TestTableModel drives one shard through puts, invalidations and
// evictions, and compares every answer with a map: a small table with
// colliding keys (few distinct home slots, so runs wrap around the end of
// the table), and a larger one that grows from one page to its cap.
func TestTableModel(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 64 {
		t.Errorf("shard is %d bytes, want 64 (one cache line)", got)
	}
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint("small/", seed), func(t *testing.T) { testCacheModel(t, seed, 8, 24, 11, 5000) })
	}
	// 500 per shard: 85 slots at first, 626 at most.
	t.Run("growing", func(t *testing.T) { testCacheModel(t, 6, 500, 700, 626, 4000) })
}

func testCacheModel(t *testing.T, seed uint64, perShard, nkeys, wantSlots, steps int) {
	{
		rng := rand.New(rand.NewPCG(seed, 0))
		c := New(Shards*perShard, nil)
		c.Arm()
		type val struct {
			expires int64
			id      Identity
		}
		model := map[[sha256.Size]byte]val{}
		idents := []Identity{{}, {"alice", "c1", "mcp", testResource, ""}, {"bob", "c1", "mcp", testResource, "eng"}, {"alice", "c2", "mcp admin", testResource, "eng,ops"}}
		keys := make([][sha256.Size]byte, nkeys)
		for i := range keys {
			keys[i][0] = 0 // all in shard 0
			keys[i][1], keys[i][2] = byte(i+1), byte(i>>8)
			home := rng.Uint64()
			if wantSlots == 11 {
				// Homes at the last and first slots only: runs are long
				// and wrap around the end.
				home = ^uint64(0)/11*[]uint64{8, 9, 10, 0, 1}[rng.IntN(5)] + ^uint64(0)/22
			}
			binary.LittleEndian.PutUint64(keys[i][8:16], home)
			binary.LittleEndian.PutUint64(keys[i][16:24], rng.Uint64())
		}
		s := &c.shards[0]
		maxSlots := 0
		for step := range steps {
			k := keys[rng.IntN(len(keys))]
			switch rng.IntN(3) {
			case 0, 1:
				v := val{int64(step + 1), idents[rng.IntN(len(idents))]}
				_, had := model[k]
				before := s.n
				c.Put(k, Entry{Expires: v.expires, ID: v.id}, c.Generation(k))
				if !had && before >= c.perShard {
					// One arbitrary entry went: find which.
					for mk := range model {
						if _, ok := c.Get(mk); !ok {
							delete(model, mk)
						}
					}
				}
				model[k] = v
			case 2:
				c.Invalidate(k)
				delete(model, k)
			}
			maxSlots = max(maxSlots, len(s.slots))
			if s.n*5 > len(s.slots)*4 && len(s.slots) < wantSlots {
				t.Fatalf("step %d: %d entries in %d slots did not grow the table", step, s.n, len(s.slots))
			}
			if s.n != len(model) || s.n > c.perShard {
				t.Fatalf("seed %d step %d: %d entries, model %d, cap %d", seed, step, s.n, len(model), c.perShard)
			}
			if step%max(1, nkeys/24) != 0 {
				continue // the full comparison below is O(keys)
			}
			distinct := map[Identity]bool{}
			for _, v := range model {
				if v.id != (Identity{}) {
					distinct[v.id] = true
				}
			}
			if n := c.ids.len(); n != len(distinct) {
				t.Fatalf("seed %d step %d: %d identities held, %d in use", seed, step, n, len(distinct))
			}
			for _, mk := range keys {
				e, ok := c.Get(mk)
				want, wantOK := model[mk]
				if ok != wantOK || ok && (e.Expires != want.expires || e.ID != want.id) {
					t.Fatalf("seed %d step %d: get = %+v, %v; want %+v, %v", seed, step, e, ok, want, wantOK)
				}
			}
		}
		if maxSlots != wantSlots {
			t.Errorf("table reached %d slots, want %d", maxSlots, wantSlots)
		}
	}
}

// TestClear: clearing forgets every entry and identity, and the
// emptied table takes new entries.
func TestClear(t *testing.T) {
	c := New(10_000, nil)
	c.Arm()
	for i := range 5000 {
		key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		c.Put(key, Entry{Expires: 1, ID: Identity{User: fmt.Sprint("u", i%7)}}, c.Generation(key))
	}
	if c.Len() < 4000 || c.ids.len() != 7 {
		t.Fatalf("filled: %d entries, %d identities", c.Len(), c.ids.len())
	}
	c.Clear()
	if c.Len() != 0 || c.ids.len() != 0 {
		t.Fatalf("cleared: %d entries, %d identities", c.Len(), c.ids.len())
	}
	for i := range 5000 {
		key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		if _, ok := c.Get(key); ok {
			t.Fatalf("entry %d survived clear", i)
		}
	}
	key := sha256.Sum256([]byte("again"))
	c.Put(key, Entry{Expires: 2, ID: Identity{User: "carol"}}, c.Generation(key))
	if e, ok := c.Get(key); !ok || e.ID.User != "carol" {
		t.Errorf("after clear: get = %+v, %v", e, ok)
	}
}

// TestClearSlotsBounds: clearing slots that share pages with other heap
// data zeroes the slots and nothing else.
func TestClearSlotsBounds(t *testing.T) {
	for _, n := range []int{1, 85, 86, 1000, 5000} {
		all := make([]slot, n+200)
		for i := range all {
			all[i].expires = int64(i + 1)
		}
		for _, off := range []int{0, 1, 7, 100} {
			for i := range all {
				all[i].expires = int64(i + 1)
			}
			clearSlots(all[off : off+n])
			for i := range all {
				cleared := i >= off && i < off+n
				if (all[i].expires == 0) != cleared {
					t.Fatalf("n %d off %d: slot %d expires %d", n, off, i, all[i].expires)
				}
			}
		}
	}
}

// TestZeroKey: the all-zero key marks empty slots, so it is never
// stored or found.
func TestZeroKey(t *testing.T) {
	c := New(100, nil)
	c.Arm()
	var zero [sha256.Size]byte
	c.Put(zero, Entry{Expires: 1}, c.Generation(zero))
	if _, ok := c.Get(zero); ok || c.Len() != 0 {
		t.Error("zero key stored")
	}
	c.Invalidate(zero)
}

// TestEntryKept: Get returns what Put stored, tag and identity included,
// and a second Put replaces it.
func TestEntryKept(t *testing.T) {
	c := New(100, nil)
	c.Arm()
	key := sha256.Sum256([]byte("pga_entry"))
	for _, want := range []Entry{
		{ID: Identity{User: "alice", Client: "c1", Scope: "mcp", Resource: testResource}, Expires: 42, Tag: 255},
		{Expires: 7, Tag: 3},
	} {
		c.Put(key, want, c.Generation(key))
		if got, ok := c.Get(key); !ok || got != want {
			t.Errorf("Get = %+v, %v; want %+v", got, ok, want)
		}
	}
	if c.Len() != 1 || c.ids.len() != 0 {
		t.Errorf("%d entries, %d identities; want 1, 0", c.Len(), c.ids.len())
	}
}

// TestStaleLookupNotCached: an invalidation that lands while a lookup is
// in flight keeps the lookup's answer out of the cache.
func TestStaleLookupNotCached(t *testing.T) {
	c := New(100, nil)
	c.Arm()
	var key [32]byte
	key[0] = 7
	gen := c.Generation(key)
	c.Invalidate(key) // revocation notified between the store read and Put
	c.Put(key, Entry{Expires: time.Now().Add(time.Hour).UnixNano()}, gen)
	if _, ok := c.Get(key); ok {
		t.Error("stale lookup result was cached after an invalidation")
	}
	c.Put(key, Entry{}, c.Generation(key))
	if _, ok := c.Get(key); !ok {
		t.Error("fresh result not cached")
	}
	c.Disarm()
	if _, ok := c.Get(key); ok {
		t.Error("disarmed cache served an entry")
	}
}

// TestBounded: the cache never holds more than its size, and counts every
// eviction; a disabled cache stores nothing.
func TestBounded(t *testing.T) {
	var evictions atomic.Int64
	c := New(Shards*2, func() { evictions.Add(1) })
	c.Arm()
	for i := range 10_000 {
		var key [32]byte
		key[0], key[1], key[2], key[3] = byte(i), byte(i>>8), byte(i>>16), 1 // never the zero key
		c.Put(key, Entry{}, c.Generation(key))
	}
	if n := c.Len(); n > Shards*2 {
		t.Errorf("cache holds %d entries, cap %d", n, Shards*2)
	}
	if ev := evictions.Load(); ev != 10_000-int64(c.Len()) {
		t.Errorf("evictions = %v, want %v", ev, 10_000-c.Len())
	}
	for _, size := range []int{0, -1} {
		disabled := New(size, nil)
		disabled.Arm()
		key := [32]byte{1}
		disabled.Put(key, Entry{}, disabled.Generation(key))
		if _, ok := disabled.Get(key); ok || disabled.Len() != 0 {
			t.Errorf("cache of size %d stored an entry", size)
		}
	}
}

func BenchmarkCacheGet(b *testing.B) {
	c := New(1000, nil)
	c.Arm()
	key := sha256.Sum256([]byte("pga_benchmark"))
	c.Put(key, Entry{ID: Identity{User: "alice", Client: "c1", Scope: "mcp", Resource: testResource}}, c.Generation(key))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(key); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkCacheMemory reports what one cached token costs, for the issue 9
// target (RSS under 200 MB with 1M cached tokens): a cache sized as
// passgate-bench sizes it, filled with 1M tokens of 10,000 users and 100
// clients. heap-B/entry is the Go heap (identities and the cache's
// bookkeeping); table-B/entry is the off-heap table, all of whose pages a
// fill like this one touches.
func BenchmarkCacheMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := New(n+n/5+Shards*Shards, nil)
		c.Arm()
		expires := time.Now().Add(time.Hour).UnixNano()
		for i := range n {
			key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
			id := Identity{User: fmt.Sprint("user-", i%10_000), Client: fmt.Sprint("client-", i%100), Scope: "mcp", Resource: testResource}
			c.Put(key, Entry{ID: id, Expires: expires}, c.Generation(key))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		entries := float64(c.Len())
		table := 0
		for i := range c.shards {
			table += len(c.shards[i].slots) * int(unsafe.Sizeof(slot{}))
		}
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/entries, "heap-B/entry")
		b.ReportMetric(float64(table)/entries, "table-B/entry")
		b.ReportMetric(entries, "entries")
		runtime.KeepAlive(c)
	}
}
