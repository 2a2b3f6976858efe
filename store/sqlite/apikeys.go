package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/passgate/passgate/store"
)

// ---- API keys ----

const apiKeyCols = `name, hash, resources, scope, created_at, revoked_at`

func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey, audit *store.AuditEvent) error {
	rs, err := json.Marshal(nonNil(k.Resources))
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			k.Name, k.Hash, string(rs), k.Scope, nts(k.CreatedAt), nts(k.RevokedAt)); err != nil {
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
	var rs string
	if err := r.Scan(&k.Name, &k.Hash, &rs, &k.Scope, tm(&k.CreatedAt), tm(&k.RevokedAt)); err != nil {
		return store.APIKey{}, err
	}
	if err := json.Unmarshal([]byte(rs), &k.Resources); err != nil {
		return store.APIKey{}, fmt.Errorf("api key %s resources: %w", k.Name, err)
	}
	if len(k.Resources) == 0 {
		k.Resources = nil
	}
	return k, nil
}

func (db *DB) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", mapErr(err))
	}
	out, err := collect(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", mapErr(err))
	}
	return out, nil
}

// LookupAPIKey reads by the hash's unique index through a prepared
// statement, as LookupToken does.
func (db *DB) LookupAPIKey(ctx context.Context, hash string) (store.APIKey, error) {
	stmt, err := db.prepared(ctx, &db.lookupAPIKey, `SELECT `+apiKeyCols+` FROM api_keys WHERE hash = ?`)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("lookup api key: %w", mapErr(err))
	}
	k, err := scanAPIKey(stmt.QueryRowContext(ctx, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("lookup api key: %w", notFound(err))
	}
	return k, nil
}

// RevokeAPIKey records the key's hash as an invalidation for the other
// processes on the file and publishes it in process after the commit, like
// every token revocation.
func (db *DB) RevokeAPIKey(ctx context.Context, name string, now time.Time, audit *store.AuditEvent) error {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		hashes, err = queryStrings(ctx, tx, `UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING hash`, ts(now), name)
		if err != nil {
			return err
		}
		if len(hashes) == 0 {
			var n string
			err := tx.QueryRowContext(ctx, `SELECT name FROM api_keys WHERE name = ?`, name).Scan(&n)
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrConflict
		}
		return db.finishRevocation(ctx, tx, hashes, now, audit)
	})
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return nil
}
