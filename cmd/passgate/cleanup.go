package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/store"
)

// cleanupLoop deletes expired rows and stale dynamic clients periodically.
func cleanupLoop(ctx context.Context, st store.Store, c *Config, rec *audit.Recorder, logger *slog.Logger) {
	t := time.NewTicker(c.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
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
}
