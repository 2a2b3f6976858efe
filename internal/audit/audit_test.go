package audit

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

func newRecorder(t *testing.T) (*Recorder, store.Store, *prometheus.Registry) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "passgate.db"), nil)
	st = storetest.Migrated(t, st, err)
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r, err := New(st, reg, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return r, st, reg
}

func count(r *Recorder, event, result string) float64 {
	return testutil.ToFloat64(r.events.WithLabelValues(event, result))
}

func TestRecordWritesRowAndCounts(t *testing.T) {
	r, st, _ := newRecorder(t)
	ctx := context.Background()
	if err := r.Record(ctx, store.AuditEvent{Event: store.EventLoginFailure, IP: "192.0.2.1", Username: "alice", Error: "invalid_credentials"}); err != nil {
		t.Fatal(err)
	}
	rows, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Event != store.EventLoginFailure || rows[0].Success || rows[0].CreatedAt.IsZero() {
		t.Fatalf("rows = %+v, want one stamped login_failure", rows)
	}
	if got := count(r, store.EventLoginFailure, "failure"); got != 1 {
		t.Errorf("login_failure/failure = %v, want 1", got)
	}
	if got := count(r, store.EventLoginFailure, "success"); got != 0 {
		t.Errorf("login_failure/success = %v, want 0", got)
	}
}

// A row that could not be written is not counted: the metric mirrors the
// table.
func TestFailedWriteIsNotCounted(t *testing.T) {
	r, st, _ := newRecorder(t)
	st.Close()
	err := r.Record(context.Background(), store.AuditEvent{Event: store.EventLoginSuccess, Success: true})
	if err == nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Record on a closed store = %v, want ErrUnavailable", err)
	}
	if got := count(r, store.EventLoginSuccess, "success"); got != 0 {
		t.Errorf("a failed write was counted: %v", got)
	}
}

func TestEveryEventPrecreated(t *testing.T) {
	_, _, reg := newRecorder(t)
	n, err := testutil.GatherAndCount(reg, "passgate_auth_events_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*len(Events) {
		t.Errorf("%d series, want %d (every event, success and failure)", n, 2*len(Events))
	}
}

func TestStampKeepsGivenTime(t *testing.T) {
	r, _, _ := newRecorder(t)
	given := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := r.Stamp(store.AuditEvent{CreatedAt: given}).CreatedAt; !got.Equal(given) {
		t.Errorf("Stamp replaced a given time: %v", got)
	}
	if got := r.Stamp(store.AuditEvent{}).CreatedAt; got.IsZero() {
		t.Error("Stamp left a zero time")
	}
}
