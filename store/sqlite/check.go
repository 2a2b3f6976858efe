package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/passgate/passgate/store/internal/sqlstore"
)

// SchemaVersion opens the database at path read-only (mode=ro and
// query_only: it neither creates the file nor switches its journal mode)
// and returns the migrations it carries and the migrations this binary
// has (see sqlstore.SchemaVersion). A missing file is an error.
func SchemaVersion(ctx context.Context, path string) (have, want int, err error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(int(busyTimeout/time.Millisecond))+")")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String())
	if err != nil {
		return 0, 0, fmt.Errorf("open sqlite %s read-only: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		return 0, 0, mapErr(fmt.Errorf("open sqlite %s read-only: %w", path, err))
	}
	return sqlstore.SchemaVersion(ctx, querier[*sql.DB]{db}, dialect, migrationFS, "migrations")
}
