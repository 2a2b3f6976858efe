-- settings holds what passgate remembers about itself across restarts,
-- such as a digest of the OAUTH_PASSWORD_HASH it last applied (so a
-- restart never reverts a password changed since).
CREATE TABLE settings (
	key        text PRIMARY KEY,
	value      text NOT NULL,
	updated_at timestamptz NOT NULL
);
