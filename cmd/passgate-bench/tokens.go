package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	mrand "math/rand/v2"

	"github.com/passgate/passgate/internal/token"
)

// tokenSet is the run's access tokens: token i is derived from a key of
// the run and i, so a store of 10M tokens is seeded, and its tokens picked
// for checks, without the harness keeping 10M strings (1.5 GB) in memory.
type tokenSet struct {
	key [32]byte
}

func newTokenSet() tokenSet {
	var s tokenSet
	_, _ = rand.Read(s.key[:])
	return s
}

// at returns token i: the access prefix and 32 bytes, SHA-256 of the key
// and i, in the form token.New mints.
func (s tokenSet) at(i int) string {
	var buf [len(s.key) + 8]byte
	copy(buf[:], s.key[:])
	binary.BigEndian.PutUint64(buf[len(s.key):], uint64(i))
	sum := sha256.Sum256(buf[:])
	return token.PrefixAccess + base64.RawURLEncoding.EncodeToString(sum[:])
}

// first returns tokens 0 to n-1.
func (s tokenSet) first(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s.at(i)
	}
	return out
}

// sample returns k distinct random indexes in [lo, hi), by Floyd's
// algorithm: memory for k, not for the range.
func sample(lo, hi, k int) []int {
	n := hi - lo
	k = min(k, n)
	seen := make(map[int]bool, k)
	out := make([]int, 0, k)
	for j := n - k; j < n; j++ {
		v := mrand.IntN(j + 1)
		if seen[v] {
			v = j
		}
		seen[v] = true
		out = append(out, lo+v)
	}
	mrand.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}
