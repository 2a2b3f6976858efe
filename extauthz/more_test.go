package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sort"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/store"
)

// TestNeverFromQuery: a token in the query string is ignored (RFC 6750
// section 2.3 is not supported, and MCP forbids it).
func TestNeverFromQuery(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db})
	tok := mint(t, db, mintOpts{})
	for _, p := range []string{"/mcp?access_token=" + tok, "/mcp?authorization=Bearer%20" + tok} {
		d, err := c.Check(context.Background(), Request{Method: "GET", Host: "mcp.example.com", Path: p})
		if err != nil || d.Allow || d.Reason != ReasonNoToken {
			t.Errorf("%s: %+v, %v", p, d, err)
		}
	}
}

// TestMetricFamilies: the check metrics exist with their fixed labels,
// before any traffic (dashboards see zeros, not gaps).
func TestMetricFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewChecker(Config{Resources: mustResources(t, mcpURL), Store: openSQLite(t), Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	reasons := map[string]bool{}
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", mf.GetName())
		}
		if mf.GetName() != "passgate_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					reasons[l.GetValue()] = true
				}
			}
		}
	}
	sort.Strings(names)
	want := []string{
		"passgate_check_cache_entries", "passgate_check_cache_evictions_total", "passgate_check_cache_hits_total",
		"passgate_check_cache_invalidations_total", "passgate_check_cache_misses_total", "passgate_check_duration_seconds",
		"passgate_check_store_errors_total", "passgate_checks_total",
	}
	if diff := cmp.Diff(names, want); diff != "" {
		t.Errorf("metric families (-got +want):\n%s", diff)
	}
	if len(reasons) != int(numReasons)-1 { // unprotected only with AllowUnknownResources
		t.Errorf("reasons pre-created: %v", reasons)
	}
	// A second Checker on the same registry is a configuration error, not
	// a panic.
	if _, err := NewChecker(Config{Resources: mustResources(t, mcpURL), Store: openSQLite(t), Metrics: reg}); err == nil {
		t.Error("second Checker registered the same metrics")
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
		c := newCache(n+n/5+cacheShards*cacheShards, mustMetricsB(b))
		c.arm()
		for i := range n {
			key := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
			t := store.Token{Username: fmt.Sprint("user-", i%10_000), ClientID: fmt.Sprint("client-", i%100), Scope: "mcp", Resource: mcpURL}
			c.put(key, newEntry(t), c.generation(key))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		entries := float64(c.len())
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
