package sqlite

import (
	"testing"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/internal/sqlstore"
	"github.com/passgate/passgate/store/storetest"
)

// TestDeleteExpiredBatches runs the suite's many-batch cleanup cases with
// batches of 5 rows; on SQLite's single writer they prove that a write
// gets its turn between batches.
func TestDeleteExpiredBatches(t *testing.T) {
	const batch = 5
	storetest.DeleteBatches(t, func(t *testing.T) store.Store {
		db := newTestDB(t)
		sqlstore.SetDeleteBatch(db.Store, batch)
		return db
	}, batch)
}
