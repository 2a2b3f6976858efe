package storetest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
)

// Bench runs the store benchmarks every backend shares: the proxy check's
// cache miss (LookupToken, from parallel goroutines), the full token read
// (GetToken), and the two write transactions of the token endpoint
// (RedeemCode, RotateRefresh). newStore, as Run's, returns an open store
// on a fresh, empty, not yet migrated database and closes it at
// b.Cleanup; Bench migrates it. Compare backends, and commits, with -benchmem: on
// LookupToken the allocations matter as much as the time.
func Bench(b *testing.B, newStore func(b *testing.B) store.Store) {
	newStore = migrated(newStore)
	reads := []struct {
		name string
		read func(ctx context.Context, s store.Store, hash string, now time.Time) error
	}{
		{"LookupToken", func(ctx context.Context, s store.Store, hash string, now time.Time) error {
			_, err := s.LookupToken(ctx, hash, now)
			return err
		}},
		{"GetToken", func(ctx context.Context, s store.Store, hash string, now time.Time) error {
			_, err := s.GetToken(ctx, hash, now)
			return err
		}},
	}
	for _, r := range reads {
		b.Run(r.name, func(b *testing.B) {
			s := newStore(b)
			g := issueBench(b, s, r.name)
			ctx, now := b.Context(), at(time.Minute)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := r.read(ctx, s, g.Access.Hash, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("RedeemCode", func(b *testing.B) {
		s := newStore(b)
		ctx := b.Context()
		must(b, "CreateClient", s.CreateClient(ctx, newClient("client", base)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			label := "redeem " + strconv.Itoa(i)
			c := newCode(label, "client", "alice")
			must(b, "CreateAuthCode", s.CreateAuthCode(ctx, c, nil))
			g := newGrant(label, c.FamilyID, "client", "alice")
			b.StartTimer()
			must(b, "RedeemCode", s.RedeemCode(ctx, c.CodeHash, at(time.Second), g))
		}
	})
	b.Run("RotateRefresh", func(b *testing.B) {
		s := newStore(b)
		ctx := b.Context()
		g := issueBench(b, s, "rotate")
		old := g.Refresh
		grace := []byte(`{"access_token":"a","refresh_token":"r"}`)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			label := "rotate " + strconv.Itoa(i)
			access := newToken("access "+label, store.KindAccess, old.FamilyID, old.ClientID, old.Username)
			refresh := newToken("refresh "+label, store.KindRefresh, old.FamilyID, old.ClientID, old.Username)
			audit := store.AuditEvent{Event: store.EventTokenRefresh, Success: true, ClientID: old.ClientID, Username: old.Username, CreatedAt: base}
			b.StartTimer()
			must(b, "RotateRefresh", s.RotateRefresh(ctx, old.Hash, at(time.Minute), grace, access, refresh, audit))
			old = refresh
		}
	})
}

// issueBench stores a client and a token family (access+refresh) for
// alice through a code redemption.
func issueBench(b *testing.B, s store.Store, label string) store.CodeGrant {
	b.Helper()
	ctx := b.Context()
	must(b, "CreateClient", s.CreateClient(ctx, newClient("client", base)))
	c := newCode(label, "client", "alice")
	must(b, "CreateAuthCode", s.CreateAuthCode(ctx, c, nil))
	g := newGrant(label, c.FamilyID, "client", "alice")
	must(b, "RedeemCode", s.RedeemCode(ctx, c.CodeHash, at(time.Second), g))
	return g
}

func migrated(newStore func(b *testing.B) store.Store) func(b *testing.B) store.Store {
	return func(b *testing.B) store.Store {
		s := newStore(b)
		if _, err := s.Migrate(b.Context()); err != nil {
			b.Fatalf("Migrate: %v", err)
		}
		return s
	}
}
