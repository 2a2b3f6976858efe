-- Second factors: a sealed TOTP secret per user (sealed by passgate with
-- a key outside the database), the hashes of their single-use recovery
-- codes, and the sessions still owed a second factor.
ALTER TABLE sessions ADD COLUMN pending boolean NOT NULL DEFAULT false;

CREATE TABLE totp_secrets (
	username     text PRIMARY KEY,
	secret       bytea NOT NULL,
	last_step    bigint NOT NULL DEFAULT 0,
	created_at   timestamptz,
	last_used_at timestamptz
);

CREATE TABLE recovery_codes (
	hash       text PRIMARY KEY,
	username   text NOT NULL,
	created_at timestamptz,
	used_at    timestamptz
);
CREATE INDEX recovery_codes_username ON recovery_codes (username);
