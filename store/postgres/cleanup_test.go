package postgres

import (
	"testing"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/internal/sqlstore"
	"github.com/passgate/passgate/store/postgres/pgtest"
	"github.com/passgate/passgate/store/storetest"
)

// TestDeleteExpiredBatches runs the suite's many-batch cleanup cases with
// batches of 5 rows, one fresh schema per case.
func TestDeleteExpiredBatches(t *testing.T) {
	const batch = 5
	dbURL := pgtest.NewDatabase(t)
	storetest.DeleteBatches(t, func(t *testing.T) store.Store {
		db := openDB(t, pgtest.NewSchema(t, dbURL))
		sqlstore.SetDeleteBatch(db.Store, batch)
		return db
	}, batch)
}
