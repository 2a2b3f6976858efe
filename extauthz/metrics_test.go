package extauthz

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/passgate/passgate/internal/resource"
	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricFamilies: the check metrics exist with their fixed labels,
// before any traffic (dashboards see zeros, not gaps).
func TestMetricFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: openSQLite(t), Metrics: reg}); err != nil {
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
	if _, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: openSQLite(t), Metrics: reg}); err == nil {
		t.Error("second Checker registered the same metrics")
	}
}
