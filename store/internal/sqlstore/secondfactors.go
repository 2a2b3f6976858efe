package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/passgate/passgate/store"
)

// ---- second factors ----

func (db *Store) EnrollTOTP(ctx context.Context, t store.TOTP, recoveryHashes []string, now time.Time, audit *store.AuditEvent) error {
	return db.write(ctx, "enroll totp", audit, func(tx Querier) error {
		if err := db.lockUserRow(ctx, tx, "users", t.Username); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM totp_secrets WHERE username = $1`, t.Username); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO totp_secrets (username, secret, last_step, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5)`,
			t.Username, t.Secret, t.LastStep, db.nullTime(t.CreatedAt), db.nullTime(t.LastUsedAt)); err != nil {
			return err
		}
		return db.replaceCodes(ctx, tx, t.Username, recoveryHashes, now)
	})
}

func (db *Store) replaceCodes(ctx context.Context, tx Querier, username string, hashes []string, now time.Time) error {
	if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE username = $1`, username); err != nil {
		return err
	}
	for _, h := range hashes {
		if _, err := tx.Exec(ctx, `INSERT INTO recovery_codes (hash, username, created_at) VALUES ($1, $2, $3)`, h, username, db.nullTime(now)); err != nil {
			return err
		}
	}
	return nil
}

func (db *Store) GetTOTP(ctx context.Context, username string) (store.TOTP, error) {
	var t store.TOTP
	err := db.c.Read.QueryRow(ctx, `SELECT username, secret, last_step, created_at, last_used_at FROM totp_secrets WHERE username = $1`, username).
		Scan(&t.Username, &t.Secret, &t.LastStep, db.scanTime(&t.CreatedAt), db.scanTime(&t.LastUsedAt))
	if err != nil {
		return store.TOTP{}, fmt.Errorf("get totp: %w", db.notFound(err))
	}
	return t, nil
}

// UseTOTPStep is one conditional UPDATE, so the replay check holds across
// replicas without a read first.
func (db *Store) UseTOTPStep(ctx context.Context, username string, step int64, now time.Time) error {
	return db.write(ctx, "use totp step", nil, func(tx Querier) error {
		n, err := execN(ctx, tx, `UPDATE totp_secrets SET last_step = $1, last_used_at = $2 WHERE username = $3 AND last_step < $1`, step, db.time(now), username)
		if err != nil || n == 1 {
			return err
		}
		return conflictUnlessMissing(ctx, tx, `SELECT username FROM totp_secrets WHERE username = $1`, username)
	})
}

func (db *Store) DeleteTOTP(ctx context.Context, username string, now time.Time, audit *store.AuditEvent) error {
	return db.write(ctx, "delete totp", audit, func(tx Querier) error {
		if err := execFound(ctx, tx, `DELETE FROM totp_secrets WHERE username = $1`, username); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE username = $1`, username)
		return err
	})
}

func (db *Store) ReplaceRecoveryCodes(ctx context.Context, username string, hashes []string, now time.Time, audit *store.AuditEvent) error {
	return db.write(ctx, "replace recovery codes", audit, func(tx Querier) error {
		if err := db.lockUserRow(ctx, tx, "totp_secrets", username); err != nil {
			return err
		}
		return db.replaceCodes(ctx, tx, username, hashes, now)
	})
}

func (db *Store) UseRecoveryCode(ctx context.Context, username, hash string, now time.Time, audit *store.AuditEvent) error {
	return db.write(ctx, "use recovery code", audit, func(tx Querier) error {
		return execFound(ctx, tx, `UPDATE recovery_codes SET used_at = $1 WHERE hash = $2 AND username = $3 AND used_at IS NULL`, db.time(now), hash, username)
	})
}

func (db *Store) CountRecoveryCodes(ctx context.Context, username string) (int, error) {
	var n int
	if err := db.c.Read.QueryRow(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE username = $1 AND used_at IS NULL`, username).Scan(&n); err != nil {
		return 0, fmt.Errorf("count recovery codes: %w", db.mapErr(err))
	}
	return n, nil
}

// ResetSecondFactors ends everything the user's sign-ins produced, as
// SetPassword does: whoever enrolled the removed factor is out too.
func (db *Store) ResetSecondFactors(ctx context.Context, username string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, "reset second factors", now, audit, func(tx Querier) ([]string, error) {
		if err := db.lockUserRow(ctx, tx, "users", username); err != nil {
			return nil, err
		}
		for _, q := range []string{
			`DELETE FROM totp_secrets WHERE username = $1`,
			`DELETE FROM recovery_codes WHERE username = $1`,
			`DELETE FROM passkeys WHERE username = $1`,
		} {
			if _, err := tx.Exec(ctx, q, username); err != nil {
				return nil, err
			}
		}
		return db.endSignIns(ctx, tx, username, now)
	})
}

// ---- passkeys ----

const passkeyCols = `id, username, name, record, sign_count, backup_eligible, backup_state, created_at, last_used_at`

func (db *Store) CreatePasskey(ctx context.Context, p store.Passkey, audit *store.AuditEvent) error {
	return db.write(ctx, "create passkey", audit, func(tx Querier) error {
		if err := db.lockUserRow(ctx, tx, "users", p.Username); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO passkeys (`+passkeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			p.ID, p.Username, p.Name, p.Record, int64(p.SignCount), p.BackupEligible, p.BackupState, db.nullTime(p.CreatedAt), db.nullTime(p.LastUsedAt))
		return err
	})
}

func (db *Store) scanPasskey(r scanner) (store.Passkey, error) {
	var p store.Passkey
	var count int64
	if err := r.Scan(&p.ID, &p.Username, &p.Name, &p.Record, &count, &p.BackupEligible, &p.BackupState, db.scanTime(&p.CreatedAt), db.scanTime(&p.LastUsedAt)); err != nil {
		return store.Passkey{}, err
	}
	p.SignCount = uint32(count)
	return p, nil
}

func (db *Store) ListPasskeys(ctx context.Context, username string) ([]store.Passkey, error) {
	return readAll(ctx, db, "list passkeys", db.scanPasskey, `SELECT `+passkeyCols+` FROM passkeys WHERE username = $1 ORDER BY created_at, id`, username)
}

func (db *Store) GetPasskey(ctx context.Context, id []byte) (store.Passkey, error) {
	return readOne(ctx, db, "get passkey", db.scanPasskey, `SELECT `+passkeyCols+` FROM passkeys WHERE id = $1`, id)
}

// UsePasskey is one conditional UPDATE, so a counter that did not advance
// is refused across replicas without a read first.
func (db *Store) UsePasskey(ctx context.Context, id []byte, signCount uint32, backupState bool, record []byte, now time.Time) error {
	return db.write(ctx, "use passkey", nil, func(tx Querier) error {
		n, err := execN(ctx, tx, `UPDATE passkeys SET sign_count = $1, backup_state = $2, record = $3, last_used_at = $4
			WHERE id = $5 AND (sign_count < $1 OR (sign_count = 0 AND $1 = 0))`,
			int64(signCount), backupState, record, db.time(now), id)
		if err != nil || n == 1 {
			return err
		}
		return conflictUnlessMissing(ctx, tx, `SELECT username FROM passkeys WHERE id = $1`, id)
	})
}

func (db *Store) RenamePasskey(ctx context.Context, username string, id []byte, name string) error {
	return db.changeRow(ctx, "rename passkey", `UPDATE passkeys SET name = $1 WHERE id = $2 AND username = $3`, name, id, username)
}

func (db *Store) DeletePasskey(ctx context.Context, username string, id []byte, audit *store.AuditEvent) error {
	return db.write(ctx, "delete passkey", audit, func(tx Querier) error {
		return execFound(ctx, tx, `DELETE FROM passkeys WHERE id = $1 AND username = $2`, id, username)
	})
}

// SpendNonce first forgets an expired spending of the same value, so a
// value may come back after its window (it never does for random
// challenges; the DELETE keeps the contract exact).
func (db *Store) SpendNonce(ctx context.Context, hash string, now, expiresAt time.Time) error {
	return db.write(ctx, "spend nonce", nil, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `DELETE FROM spent_nonces WHERE hash = $1 AND expires_at <= $2`, hash, db.time(now)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO spent_nonces (hash, expires_at) VALUES ($1, $2)`, hash, db.time(expiresAt))
		return err
	})
}
