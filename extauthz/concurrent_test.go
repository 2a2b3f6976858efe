package extauthz

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/token"
)

// TestConcurrentRevocation hammers the check from several goroutines while
// tokens are revoked; once the revocations are committed, every revoked
// token is refused and every other one still allowed.
func TestConcurrentRevocation(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db, CacheSize: 4 * cacheShards}) // small: evictions too
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
