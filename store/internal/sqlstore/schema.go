package sqlstore

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/passgate/passgate/store"
)

// SchemaVersion reads, through read alone, how many of the migrations in
// dir of migrations the database carries (have; 0 when it has none, not
// even schema_migrations) and how many there are (want). It writes
// nothing, so it works on a read-only connection: `passgate config check`
// uses it.
func SchemaVersion(ctx context.Context, read Querier, d Dialect, migrations fs.FS, dir string) (have, want int, err error) {
	ms, err := store.LoadMigrations(migrations, dir)
	if err != nil {
		return 0, 0, err
	}
	err = read.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have)
	if err != nil {
		if d.UndefinedTable(err) {
			return 0, len(ms), nil
		}
		return 0, len(ms), d.MapErr(fmt.Errorf("read schema version: %w", err))
	}
	return have, len(ms), nil
}
