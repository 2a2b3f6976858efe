package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

// growthResult is passgate on a store holding n live tokens.
type growthResult struct {
	backend string
	tokens  int
	seed    time.Duration // seeding the store (not passgate's cost)
	size    int64         // bytes on disk (SQLite files, or pg_database_size)
	startup time.Duration // exec to /readyz answering 200
	miss    phase         // paced gRPC cache misses over random tokens
	mem     memStatus     // after the misses
}

// cleanupResult is DeleteExpired on a store of n expired tokens.
type cleanupResult struct {
	backend string
	tokens  int
	deleted int64
	took    time.Duration
}

// growthRate is the paced rate of the growth table's misses: far below
// what the machine sustains, so that the latency is the store's, not a
// queue's.
const growthRate = 500

// measureGrowth seeds a fresh store for each of GrowthTokens and measures
// passgate's start-up, check miss latency, memory and the store's size.
func (b *benchRun) measureGrowth(ctx context.Context, backend string) error {
	for _, n := range b.cfg.GrowthTokens {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := b.growthStep(ctx, backend, n); err != nil {
			return fmt.Errorf("growth at %d tokens: %w", n, err)
		}
	}
	if n := b.cfg.CleanupTokens; n > 0 {
		r, err := b.measureCleanup(ctx, backend, n)
		if err != nil {
			return fmt.Errorf("cleanup of %d tokens: %w", n, err)
		}
		b.res.cleanups = append(b.res.cleanups, r)
	}
	return nil
}

// freshStore seeds a new store of the backend with the run's first n
// tokens (expired or live) and returns passgate's arguments for it, a function reporting its
// size on disk, and one removing it.
func (b *benchRun) freshStore(ctx context.Context, backend string, n int, expired bool) (args []string, size func() int64, drop func(), err error) {
	switch backend {
	case "sqlite":
		dir, err := os.MkdirTemp(b.dir, "growth-")
		if err != nil {
			return nil, nil, nil, err
		}
		if err := seedSQLite(ctx, filepath.Join(dir, "passgate.db"), b.set, n, b.resURL, expired); err != nil {
			os.RemoveAll(dir)
			return nil, nil, nil, err
		}
		size := func() int64 {
			var total int64
			for _, f := range []string{"passgate.db", "passgate.db-wal", "passgate.db-shm"} {
				if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
					total += st.Size()
				}
			}
			return total
		}
		return []string{"--data-dir", dir}, size, func() { os.RemoveAll(dir) }, nil
	default:
		dbURL, drop, err := createPostgresDB(ctx, b.cfg.PostgresURL)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := seedPostgres(ctx, dbURL, b.set, n, b.resURL, expired); err != nil {
			drop()
			return nil, nil, nil, err
		}
		size := func() int64 {
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				return 0
			}
			defer conn.Close(context.Background())
			var n int64
			_ = conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
			return n
		}
		return []string{"--database", dbURL}, size, drop, nil
	}
}

func (b *benchRun) growthStep(ctx context.Context, backend string, n int) error {
	cfg := b.cfg
	t0 := time.Now()
	args, size, drop, err := b.freshStore(ctx, backend, n, false)
	if err != nil {
		return err
	}
	defer drop()
	r := growthResult{backend: backend, tokens: n, seed: time.Since(t0), size: size()}
	port, err := freePort()
	if err != nil {
		return err
	}
	p, pc, err := b.startCached(ctx, passgateOpts{httpPort: port, backendArgs: args, cacheSize: 64 * 1024}, "", false)
	if err != nil {
		return err
	}
	defer p.stop()
	defer pc.close()
	r.startup = p.startup
	// Random tokens of the whole store, each once: every check a miss
	// that lands on a random page of the index, as real first uses do.
	// Token 0, the awaitCache probe, is cached: not among them.
	idx := sample(1, n, int(growthRate*cfg.Duration.Seconds())+growthRate)
	pick := make([]string, len(idx))
	for i, j := range idx {
		pick[i] = b.set.at(j)
	}
	rw, err := newRawWorkers(pc, 8)
	if err != nil {
		return err
	}
	src := poolTokens{pool: pick, i: new(atomic.Int64)}
	b.res.sampleLoad()
	r.miss = runPaced(ctx, 8, cfg.Duration, growthRate, func(ctx context.Context, w int) error {
		tok, err := src.next(w)
		if err != nil {
			return err
		}
		return rw.check(ctx, pc, w, tok, wantAllow)
	})
	if r.miss.errs > 0 {
		b.note(fmt.Sprintf("growth, %s, %d tokens: %d misses failed (%v)", backend, n, r.miss.errs, r.miss.firstErr))
	}
	if r.mem, err = readMem(p.pid()); err != nil {
		return err
	}
	r.size = max(r.size, size())
	b.res.growth = append(b.res.growth, r)
	b.logf("%-8s growth %8d tokens: seeded in %s, %s on disk, start-up %s, miss %s, RSS %.1f MB", backend, n,
		r.seed.Round(time.Millisecond), fmtBytes(r.size), r.startup.Round(time.Millisecond), r.miss, float64(r.mem.rss)/1e6)
	return nil
}

// measureCleanup times store.DeleteExpired on a fresh store holding n
// expired tokens (and nothing else to delete).
func (b *benchRun) measureCleanup(ctx context.Context, backend string, n int) (cleanupResult, error) {
	r := cleanupResult{backend: backend, tokens: n}
	args, _, drop, err := b.freshStore(ctx, backend, n, true)
	if err != nil {
		return r, err
	}
	defer drop()
	var st store.Store
	switch backend {
	case "sqlite":
		st, err = sqlite.Open(ctx, filepath.Join(args[1], "passgate.db"), nil)
	default:
		st, err = postgres.Open(ctx, args[1], nil)
	}
	if err != nil {
		return r, err
	}
	defer st.Close()
	b.res.sampleLoad()
	t0 := time.Now()
	r.deleted, err = st.DeleteExpired(ctx, time.Now(), time.Time{})
	r.took = time.Since(t0)
	if err != nil {
		return r, err
	}
	b.logf("%-8s cleanup of %d expired tokens: %d rows in %s", backend, n, r.deleted, r.took.Round(time.Millisecond))
	return r, nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 2, 64) + " GB"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB"
	default:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 0, 64) + " kB"
	}
}
