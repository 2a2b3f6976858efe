-- Times are TEXT in one fixed-width UTC layout, 2006-01-02T15:04:05.000000Z,
-- so they sort and compare as strings, read well in `sqlite3` and round-trip
-- exactly at microsecond precision. A zero time.Time is NULL.
--
-- There are no foreign keys between these tables on purpose: a client_id
-- may be a Client ID Metadata Document URL that is not in clients, and the
-- store deletes or revokes dependent rows explicitly in the transaction that
-- removes a user or client, so it can report the revoked token hashes.

CREATE TABLE users (
	username      TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	created_at    TEXT,
	updated_at    TEXT
) WITHOUT ROWID;

CREATE TABLE clients (
	id                         TEXT PRIMARY KEY,
	secret_hash                TEXT NOT NULL DEFAULT '',
	name                       TEXT NOT NULL DEFAULT '',
	redirect_uris              TEXT NOT NULL DEFAULT '[]', -- JSON array
	token_endpoint_auth_method TEXT NOT NULL DEFAULT '',
	grant_types                TEXT NOT NULL DEFAULT '[]', -- JSON array
	scope                      TEXT NOT NULL DEFAULT '',
	source                     TEXT NOT NULL,
	client_uri                 TEXT NOT NULL DEFAULT '',
	logo_uri                   TEXT NOT NULL DEFAULT '',
	created_at                 TEXT,
	last_used_at               TEXT
) WITHOUT ROWID;
CREATE INDEX clients_stale ON clients (source, created_at) WHERE last_used_at IS NULL;
CREATE INDEX clients_created ON clients (created_at, id);

CREATE TABLE sessions (
	id_hash      TEXT PRIMARY KEY,
	username     TEXT NOT NULL,
	csrf_token   TEXT NOT NULL,
	ip           TEXT NOT NULL DEFAULT '',
	user_agent   TEXT NOT NULL DEFAULT '',
	created_at   TEXT,
	expires_at   TEXT NOT NULL,
	last_seen_at TEXT
) WITHOUT ROWID;
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE auth_codes (
	code_hash             TEXT PRIMARY KEY,
	client_id             TEXT NOT NULL,
	username              TEXT NOT NULL,
	redirect_uri          TEXT NOT NULL,
	code_challenge        TEXT NOT NULL DEFAULT '',
	code_challenge_method TEXT NOT NULL DEFAULT '',
	scope                 TEXT NOT NULL DEFAULT '',
	resource              TEXT NOT NULL DEFAULT '',
	family_id             TEXT NOT NULL,
	created_at            TEXT,
	expires_at            TEXT NOT NULL,
	used_at               TEXT
) WITHOUT ROWID;
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX auth_codes_username ON auth_codes (username);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- tokens is read on every proxy check that misses the cache: the lookup is
-- by primary key.
CREATE TABLE tokens (
	hash              TEXT PRIMARY KEY,
	kind              TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
	family_id         TEXT NOT NULL,
	client_id         TEXT NOT NULL,
	username          TEXT NOT NULL,
	scope             TEXT NOT NULL DEFAULT '',
	resource          TEXT NOT NULL DEFAULT '',
	family_expires_at TEXT,
	created_at        TEXT,
	expires_at        TEXT NOT NULL,
	revoked_at        TEXT,
	rotated_at        TEXT,
	grace_response    BLOB,
	last_used_at      TEXT
) WITHOUT ROWID;
CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_user_client ON tokens (username, client_id);
CREATE INDEX tokens_client ON tokens (client_id);
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE consents (
	username   TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	scope      TEXT NOT NULL DEFAULT '',
	created_at TEXT,
	updated_at TEXT,
	PRIMARY KEY (username, client_id)
) WITHOUT ROWID;
CREATE INDEX consents_client ON consents (client_id);

-- expires_at is when the row stops mattering: the later of the end of the
-- counting window and the end of the lock.
CREATE TABLE login_failures (
	username     TEXT PRIMARY KEY,
	count        INTEGER NOT NULL,
	first_at     TEXT NOT NULL,
	locked_until TEXT,
	expires_at   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX login_failures_expires ON login_failures (expires_at);

CREATE TABLE auth_logs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	event      TEXT NOT NULL,
	success    INTEGER NOT NULL, -- 0 or 1
	ip         TEXT NOT NULL DEFAULT '',
	user_agent TEXT NOT NULL DEFAULT '',
	client_id  TEXT NOT NULL DEFAULT '',
	username   TEXT NOT NULL DEFAULT '',
	error      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL
);
CREATE INDEX auth_logs_created ON auth_logs (created_at);
CREATE INDEX auth_logs_event ON auth_logs (event, created_at);
CREATE INDEX auth_logs_username ON auth_logs (username, created_at);
CREATE INDEX auth_logs_client ON auth_logs (client_id, created_at);
