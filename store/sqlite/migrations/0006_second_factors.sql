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
