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

-- Passkeys (WebAuthn credentials). record is the relying-party library's
-- credential record (JSON); the columns beside it are what passgate
-- reads, lists and updates itself.
CREATE TABLE passkeys (
	id              bytea PRIMARY KEY,
	username        text NOT NULL,
	name            text NOT NULL,
	record          bytea NOT NULL,
	sign_count      bigint NOT NULL DEFAULT 0,
	backup_eligible boolean NOT NULL DEFAULT false,
	backup_state    boolean NOT NULL DEFAULT false,
	created_at      timestamptz,
	last_used_at    timestamptz
);
CREATE INDEX passkeys_username ON passkeys (username);

-- One-time values already spent (WebAuthn challenges), until they expire.
CREATE TABLE spent_nonces (
	hash       text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);
CREATE INDEX spent_nonces_expires ON spent_nonces (expires_at);
