-- Times are timestamptz (microsecond precision, an absolute instant); the
-- store converts them to UTC on the way out. A zero time.Time is NULL where
-- the column allows it.
--
-- There are no foreign keys between these tables on purpose: a client_id
-- may be a Client ID Metadata Document URL that is not in clients, and the
-- store deletes or revokes dependent rows explicitly in the transaction that
-- removes a user or client, so it can report and notify the revoked hashes.

CREATE TABLE users (
	username      text PRIMARY KEY,
	password_hash text NOT NULL,
	created_at    timestamptz,
	updated_at    timestamptz
);

CREATE TABLE clients (
	id                         text PRIMARY KEY,
	secret_hash                text NOT NULL DEFAULT '',
	name                       text NOT NULL DEFAULT '',
	redirect_uris              text[] NOT NULL DEFAULT '{}',
	token_endpoint_auth_method text NOT NULL DEFAULT '',
	grant_types                text[] NOT NULL DEFAULT '{}',
	scope                      text NOT NULL DEFAULT '',
	source                     text NOT NULL,
	client_uri                 text NOT NULL DEFAULT '',
	logo_uri                   text NOT NULL DEFAULT '',
	created_at                 timestamptz,
	last_used_at               timestamptz
);
CREATE INDEX clients_stale ON clients (source, created_at) WHERE last_used_at IS NULL;
CREATE INDEX clients_created ON clients (created_at, id);

CREATE TABLE sessions (
	id_hash      text PRIMARY KEY,
	username     text NOT NULL,
	csrf_token   text NOT NULL,
	ip           text NOT NULL DEFAULT '',
	user_agent   text NOT NULL DEFAULT '',
	created_at   timestamptz,
	expires_at   timestamptz NOT NULL,
	last_seen_at timestamptz
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE auth_codes (
	code_hash             text PRIMARY KEY,
	client_id             text NOT NULL,
	username              text NOT NULL,
	redirect_uri          text NOT NULL,
	code_challenge        text NOT NULL DEFAULT '',
	code_challenge_method text NOT NULL DEFAULT '',
	scope                 text NOT NULL DEFAULT '',
	resource              text NOT NULL DEFAULT '',
	family_id             text NOT NULL,
	created_at            timestamptz,
	expires_at            timestamptz NOT NULL,
	used_at               timestamptz
);
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX auth_codes_username ON auth_codes (username);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- tokens is read on every proxy check that misses the cache: the lookup is
-- by primary key.
CREATE TABLE tokens (
	hash              text PRIMARY KEY,
	kind              text NOT NULL CHECK (kind IN ('access', 'refresh')),
	family_id         text NOT NULL,
	client_id         text NOT NULL,
	username          text NOT NULL,
	scope             text NOT NULL DEFAULT '',
	resource          text NOT NULL DEFAULT '',
	family_expires_at timestamptz,
	created_at        timestamptz,
	expires_at        timestamptz NOT NULL,
	revoked_at        timestamptz,
	rotated_at        timestamptz,
	grace_response    bytea,
	last_used_at      timestamptz
);
CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_user_client ON tokens (username, client_id);
CREATE INDEX tokens_client ON tokens (client_id);
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE consents (
	username   text NOT NULL,
	client_id  text NOT NULL,
	scope      text NOT NULL DEFAULT '',
	created_at timestamptz,
	updated_at timestamptz,
	PRIMARY KEY (username, client_id)
);
CREATE INDEX consents_client ON consents (client_id);

-- expires_at is when the row stops mattering: the later of the end of the
-- counting window and the end of the lock.
CREATE TABLE login_failures (
	username     text PRIMARY KEY,
	count        integer NOT NULL,
	first_at     timestamptz NOT NULL,
	locked_until timestamptz,
	expires_at   timestamptz NOT NULL
);
CREATE INDEX login_failures_expires ON login_failures (expires_at);

CREATE TABLE auth_logs (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event      text NOT NULL,
	success    boolean NOT NULL,
	ip         text NOT NULL DEFAULT '',
	user_agent text NOT NULL DEFAULT '',
	client_id  text NOT NULL DEFAULT '',
	username   text NOT NULL DEFAULT '',
	error      text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL
);
CREATE INDEX auth_logs_created ON auth_logs (created_at);
CREATE INDEX auth_logs_event ON auth_logs (event, created_at);
CREATE INDEX auth_logs_username ON auth_logs (username, created_at);
CREATE INDEX auth_logs_client ON auth_logs (client_id, created_at);
