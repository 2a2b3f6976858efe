package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/store"
)

// cleanup deletes expired rows (and audit rows past AuditRetention) and
// dynamic clients unused for StaleClientAge, auditing each. Failures are
// logged: the next run tries again.
func cleanup(ctx context.Context, st store.Store, c *Config, rec *audit.Recorder, now time.Time, logger *slog.Logger) {
	var auditBefore time.Time
	if c.AuditRetention > 0 {
		auditBefore = now.Add(-c.AuditRetention)
	}
	n, err := st.DeleteExpired(ctx, now, auditBefore)
	if err != nil {
		logger.Warn("cleanup: delete expired rows", "err", err)
	} else if n > 0 {
		logger.Info("cleanup: deleted expired rows", "count", n)
	}
	if c.StaleClientAge > 0 {
		ids, err := st.DeleteStaleClients(ctx, now.Add(-c.StaleClientAge))
		if err != nil {
			logger.Warn("cleanup: delete stale clients", "err", err)
		}
		for _, id := range ids {
			if err := rec.Record(ctx, store.AuditEvent{Event: store.EventClientDeleted, Success: true, ClientID: id, Error: "stale"}); err != nil {
				logger.Warn("cleanup: audit", "err", err)
			}
		}
	}
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
