package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passgate/passgate/store/internal/sqlstore"
)

// SchemaVersion connects once to the database at url in a read-only
// session (default_transaction_read_only) and returns the migrations it
// carries and the migrations this binary has (see
// sqlstore.SchemaVersion). A server that does not answer yields an error
// wrapping store.ErrUnavailable.
func SchemaVersion(ctx context.Context, url string) (have, want int, err error) {
	// pgxpool's parser, so that pool parameters (pool_max_conns) in the
	// URL serve are taken out rather than sent to the server.
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The error may quote the URL, password included: don't wrap it.
		return 0, 0, errors.New("open postgres: invalid database URL")
	}
	cfg := pcfg.ConnConfig
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, 0, mapErr(fmt.Errorf("open postgres: %w", err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return sqlstore.SchemaVersion(ctx, querier[*pgx.Conn]{conn}, dialect, migrationFS, "migrations")
}
