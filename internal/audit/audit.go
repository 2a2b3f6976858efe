// Package audit is passgate's one audit recorder: every security event
// becomes a row in the store's auth_logs table and an increment of
// passgate_auth_events_total{event,result}, through the same code, so the
// SQL view and the Prometheus view can never disagree.
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/store"
)

// Events lists every event name passgate records; metrics are pre-created
// for each so dashboards see zeros rather than gaps.
var Events = []string{
	store.EventLoginSuccess, store.EventLoginFailure, store.EventTokenExchange,
	store.EventTokenFailure, store.EventAuthorizeRequest, store.EventClientRegistration,
	store.EventConsentGranted, store.EventConsentDenied, store.EventLogout,
	store.EventTokenRefresh, store.EventRefreshReuseDetected, store.EventTokenRevoked,
	store.EventAccountLocked, store.EventRateLimited, store.EventClientDeleted,
	store.EventAPIKeyCreated, store.EventAPIKeyRevoked,
	store.EventPasswordChanged,
	store.EventGroupsChanged, store.EventAccessDenied,
	store.EventMFAEnrolled, store.EventMFARemoved, store.EventMFASuccess,
	store.EventMFAFailure, store.EventRecoveryCodeUsed, store.EventRecoveryCodesReset,
	store.EventMFAReset, store.EventPasskeyAdded, store.EventPasskeyRemoved,
	store.EventPasskeyLogin,
}

// Recorder writes audit rows and counts them. It is safe for concurrent use.
type Recorder struct {
	store  store.Store
	now    func() time.Time
	events *prometheus.CounterVec
}

// New returns a Recorder writing to st and registering its metric with reg.
func New(st store.Store, reg prometheus.Registerer, now func() time.Time) (*Recorder, error) {
	if now == nil {
		now = time.Now
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passgate_auth_events_total",
		Help: "Security events recorded in the auth_logs audit table, by event and result (success or failure).",
	}, []string{"event", "result"})
	if err := reg.Register(events); err != nil {
		return nil, fmt.Errorf("audit: register metric: %w", err)
	}
	for _, e := range Events {
		events.WithLabelValues(e, "success")
		events.WithLabelValues(e, "failure")
	}
	return &Recorder{store: st, now: now, events: events}, nil
}

// Stamp fills CreatedAt when it is zero and returns e, for callers that pass
// the event to a store method that writes it inside its own transaction.
func (r *Recorder) Stamp(e store.AuditEvent) store.AuditEvent {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = r.now()
	}
	return e
}

// Record writes e as a row and, once it is written, counts it.
func (r *Recorder) Record(ctx context.Context, e store.AuditEvent) error {
	e = r.Stamp(e)
	if err := r.store.RecordAudit(ctx, e); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Event, err)
	}
	r.Committed(e)
	return nil
}

// Committed counts an event whose row a store method has already written in
// the same transaction as the state change it describes (a code issued, a
// token rotated). Call it only after that transaction committed.
func (r *Recorder) Committed(e store.AuditEvent) {
	result := "failure"
	if e.Success {
		result = "success"
	}
	r.events.WithLabelValues(e.Event, result).Inc()
}
