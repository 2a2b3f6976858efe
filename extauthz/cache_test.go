package extauthz

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestCacheTableModel drives one small shard with colliding keys (few
// distinct home slots, so runs wrap around the end of the table) through
// puts, invalidations and evictions, and compares every answer with a map.
func TestCacheTableModel(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 64 {
		t.Errorf("shard is %d bytes, want 64 (one cache line)", got)
	}
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		rng := rand.New(rand.NewPCG(seed, 0))
		c := newCache(cacheShards*8, mustMetrics(t)) // 8 per shard, 11 slots
		c.arm()
		model := map[[sha256.Size]byte]int64{}
		keys := make([][sha256.Size]byte, 24)
		for i := range keys {
			keys[i][0] = 0 // all in shard 0
			keys[i][1] = byte(i + 1)
			// Homes at the last and first slots only: runs are long
			// and wrap around the end.
			home := []uint64{8, 9, 10, 0, 1}[rng.IntN(5)]
			binary.LittleEndian.PutUint64(keys[i][8:16], ^uint64(0)/11*home+^uint64(0)/22)
			binary.LittleEndian.PutUint64(keys[i][16:24], rng.Uint64())
		}
		s := &c.shards[0]
		if len(s.slots) != 11 {
			t.Fatalf("%d slots, want 11", len(s.slots))
		}
		for step := range 5000 {
			k := keys[rng.IntN(len(keys))]
			switch rng.IntN(3) {
			case 0, 1:
				v := int64(step + 1)
				_, had := model[k]
				before := s.n
				c.put(k, cacheEntry{expires: v}, c.generation(k))
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
			if s.n != len(model) || s.n > c.perShard {
				t.Fatalf("seed %d step %d: %d entries, model %d, cap %d", seed, step, s.n, len(model), c.perShard)
			}
			for _, mk := range keys {
				e, ok := c.get(mk)
				want, wantOK := model[mk]
				if ok != wantOK || ok && e.expires != want {
					t.Fatalf("seed %d step %d: get = %v, %v; want %v, %v", seed, step, e.expires, ok, want, wantOK)
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
