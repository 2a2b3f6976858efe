package extauthz

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// TestConcurrentRevocation hammers the check from several goroutines while
// tokens are revoked; once the revocations are committed, every revoked
// token is refused and every other one still allowed.
func TestConcurrentRevocation(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db, CacheSize: 4 * tokencache.Shards}) // small: evictions too
	ctx := context.Background()
	var toks []string
	for range 16 {
		toks = append(toks, mint(t, db, mintOpts{}))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Check(ctx, bearer(toks[i%len(toks)])); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for _, tok := range toks[:8] {
		if _, err := db.RevokeToken(ctx, token.Hash(tok), time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the last notifications land; checks keep running
	close(stop)
	wg.Wait()
	for i, tok := range toks {
		d, err := c.Check(ctx, bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		if want := i >= 8; d.Allow != want {
			t.Errorf("token %d: allowed %v, want %v (%v)", i, d.Allow, want, d.Reason)
		}
	}
}

// TestRevocationReachesCache: revoking through the store (SQLite, in
// process) evicts the cached token at once.
func TestRevocationReachesCache(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db})
	ctx := context.Background()
	tok := mint(t, db, mintOpts{})
	warmCache(t, c, tok)
	if _, err := db.RevokeToken(ctx, token.Hash(tok), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, c, tok)
	// All drops everything.
	tok2 := mint(t, db, mintOpts{})
	c.Check(ctx, bearer(tok2))
	if n := c.cache.Len(); n != 1 {
		t.Fatalf("cache has %d entries, want 1", n)
	}
	c.invalidate(store.Invalidation{All: true})
	if n := c.cache.Len(); n != 0 {
		t.Errorf("after All: %d entries", n)
	}
}
