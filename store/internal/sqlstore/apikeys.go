package sqlstore

import (
	"context"
	"time"

	"github.com/passgate/passgate/store"
)

// ---- API keys ----

const apiKeyCols = `name, hash, resources, scope, created_at, revoked_at`

func (db *Store) CreateAPIKey(ctx context.Context, k store.APIKey, audit *store.AuditEvent) error {
	return db.write(ctx, "create api key", audit, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			k.Name, k.Hash, db.strings(k.Resources), k.Scope, db.nullTime(k.CreatedAt), db.nullTime(k.RevokedAt))
		return err
	})
}

func (db *Store) scanAPIKey(r scanner) (store.APIKey, error) {
	var k store.APIKey
	if err := r.Scan(&k.Name, &k.Hash, db.scanStrings(&k.Resources), &k.Scope, db.scanTime(&k.CreatedAt), db.scanTime(&k.RevokedAt)); err != nil {
		return store.APIKey{}, err
	}
	if len(k.Resources) == 0 {
		k.Resources = nil
	}
	return k, nil
}

func (db *Store) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	return readAll(ctx, db, "list api keys", db.scanAPIKey, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY name`)
}

// LookupAPIKey reads by the hash's unique index.
func (db *Store) LookupAPIKey(ctx context.Context, hash string) (store.APIKey, error) {
	return readOne(ctx, db, "lookup api key", db.scanAPIKey, `SELECT `+apiKeyCols+` FROM api_keys WHERE hash = $1`, hash)
}

// RevokeAPIKey invalidates the key's hash like every token revocation. The
// conditional UPDATE makes one of concurrent revocations win.
func (db *Store) RevokeAPIKey(ctx context.Context, name string, now time.Time, audit *store.AuditEvent) error {
	_, err := db.revoke(ctx, "revoke api key", now, audit, func(tx Querier) ([]string, error) {
		hashes, err := queryStrings(ctx, tx, `UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING hash`, db.time(now), name)
		if err == nil && len(hashes) == 0 {
			err = conflictUnlessMissing(ctx, tx, `SELECT name FROM api_keys WHERE name = $1`, name)
		}
		return hashes, err
	})
	return err
}
