package extauthz

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestCacheTableModel drives one shard through puts, invalidations and
// evictions, and compares every answer with a map: a small table with
// colliding keys (few distinct home slots, so runs wrap around the end of
// the table), and a larger one that grows from one page to its cap.
func TestCacheTableModel(t *testing.T) {
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
		c := newCache(cacheShards*perShard, mustMetrics(t))
		c.arm()
		type val struct {
			expires int64
			id      identity
		}
		model := map[[sha256.Size]byte]val{}
		idents := []identity{{}, {"alice", "c1", "mcp", mcpURL}, {"bob", "c1", "mcp", mcpURL}, {"alice", "c2", "mcp admin", mcpURL}}
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
				c.put(k, cacheEntry{expires: v.expires, id: v.id}, c.generation(k))
				if !had && before >= c.perShard {
					// One arbitrary entry went: find which.
					for mk := range model {
						if _, ok := c.get(mk); !ok {
							delete(model, mk)
						}
					}
				}
				model[k] = v
			case 2:
				c.invalidate(k)
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
			distinct := map[identity]bool{}
			for _, v := range model {
				if v.id != (identity{}) {
					distinct[v.id] = true
				}
			}
			if n := c.ids.len(); n != len(distinct) {
				t.Fatalf("seed %d step %d: %d identities held, %d in use", seed, step, n, len(distinct))
			}
			for _, mk := range keys {
				e, ok := c.get(mk)
				want, wantOK := model[mk]
				if ok != wantOK || ok && (e.expires != want.expires || e.id != want.id) {
					t.Fatalf("seed %d step %d: get = %+v, %v; want %+v, %v", seed, step, e, ok, want, wantOK)
				}
			}
		}
		if maxSlots != wantSlots {
			t.Errorf("table reached %d slots, want %d", maxSlots, wantSlots)
		}
	}
}

// TestCacheClear: clearing forgets every entry and identity, and the
// emptied table takes new entries.
func TestCacheClear(t *testing.T) {
	c := newCache(10_000, mustMetrics(t))
	c.arm()
	for i := range 5000 {
		key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		c.put(key, cacheEntry{expires: 1, id: identity{user: fmt.Sprint("u", i%7)}}, c.generation(key))
	}
	if c.len() < 4000 || c.ids.len() != 7 {
		t.Fatalf("filled: %d entries, %d identities", c.len(), c.ids.len())
	}
	c.clear()
	if c.len() != 0 || c.ids.len() != 0 {
		t.Fatalf("cleared: %d entries, %d identities", c.len(), c.ids.len())
	}
	for i := range 5000 {
		key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		if _, ok := c.get(key); ok {
			t.Fatalf("entry %d survived clear", i)
		}
	}
	key := sha256.Sum256([]byte("again"))
	c.put(key, cacheEntry{expires: 2, id: identity{user: "carol"}}, c.generation(key))
	if e, ok := c.get(key); !ok || e.id.user != "carol" {
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

// TestCacheZeroKey: the all-zero key marks empty slots, so it is never
// stored or found.
func TestCacheZeroKey(t *testing.T) {
	c := newCache(100, mustMetrics(t))
	c.arm()
	var zero [sha256.Size]byte
	c.put(zero, cacheEntry{expires: 1}, c.generation(zero))
	if _, ok := c.get(zero); ok || c.len() != 0 {
		t.Error("zero key stored")
	}
	c.invalidate(zero)
}
