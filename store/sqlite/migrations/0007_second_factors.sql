-- Second factors: a sealed TOTP secret per user (sealed by passgate with
-- a key outside the database), the hashes of their single-use recovery
-- codes, and the sessions still owed a second factor.
ALTER TABLE sessions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0; -- 0 or 1

CREATE TABLE totp_secrets (
	username     TEXT PRIMARY KEY,
	secret       BLOB NOT NULL,
	last_step    INTEGER NOT NULL DEFAULT 0,
	created_at   TEXT,
	last_used_at TEXT
) WITHOUT ROWID;

CREATE TABLE recovery_codes (
	hash       TEXT PRIMARY KEY,
	username   TEXT NOT NULL,
	created_at TEXT,
	used_at    TEXT
) WITHOUT ROWID;
CREATE INDEX recovery_codes_username ON recovery_codes (username);

-- Passkeys (WebAuthn credentials). record is the relying-party library's
-- credential record (JSON); the columns beside it are what passgate
-- reads, lists and updates itself.
CREATE TABLE passkeys (
	id              BLOB PRIMARY KEY,
	username        TEXT NOT NULL,
	name            TEXT NOT NULL,
	record          BLOB NOT NULL,
	sign_count      INTEGER NOT NULL DEFAULT 0,
	backup_eligible INTEGER NOT NULL DEFAULT 0, -- 0 or 1
	backup_state    INTEGER NOT NULL DEFAULT 0, -- 0 or 1
	created_at      TEXT,
	last_used_at    TEXT
) WITHOUT ROWID;
CREATE INDEX passkeys_username ON passkeys (username);

-- One-time values already spent (WebAuthn challenges), until they expire.
CREATE TABLE spent_nonces (
	hash       TEXT PRIMARY KEY,
	expires_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX spent_nonces_expires ON spent_nonces (expires_at);
