package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/passgate/passgate/store"
)

// ---- API keys ----

const apiKeyCols = `name, hash, resources, scope, created_at, revoked_at`

func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey, audit *store.AuditEvent) error {
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			k.Name, k.Hash, nonNil(k.Resources), k.Scope, ntv(k.CreatedAt), ntv(k.RevokedAt)); err != nil {
			return err
		}
		if audit != nil {
			return insertAudit(ctx, tx, audit)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

func scanAPIKey(r scanner) (store.APIKey, error) {
	var k store.APIKey
	if err := r.Scan(&k.Name, &k.Hash, &k.Resources, &k.Scope, tm(&k.CreatedAt), tm(&k.RevokedAt)); err != nil {
		return store.APIKey{}, err
	}
	if len(k.Resources) == 0 {
		k.Resources = nil
	}
	return k, nil
}

func (db *DB) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", mapErr(err))
	}
	out, err := collect(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", mapErr(err))
	}
	return out, nil
}

// LookupAPIKey reads by the hash's unique index; pgx caches the prepared
// statement per connection, as for LookupToken.
func (db *DB) LookupAPIKey(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := scanAPIKey(db.pool.QueryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE hash = $1`, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("lookup api key: %w", notFound(err))
	}
	return k, nil
}

// RevokeAPIKey notifies the key's hash on the invalidation channel inside
// the revoking transaction, like every token revocation: every replica's
// cache hears it if and only if the revocation commits. The conditional
// UPDATE's row lock makes one of concurrent revocations win.
func (db *DB) RevokeAPIKey(ctx context.Context, name string, now time.Time, audit *store.AuditEvent) error {
	err := db.tx(ctx, func(tx pgx.Tx) error {
		hashes, err := queryStrings(ctx, tx, `UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING hash`, tv(now), name)
		if err != nil {
			return err
		}
		if len(hashes) == 0 {
			var n string
			err := tx.QueryRow(ctx, `SELECT name FROM api_keys WHERE name = $1`, name).Scan(&n)
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrConflict
		}
		return finishRevocation(ctx, tx, hashes, audit)
	})
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	return nil
}
