-- api_keys holds the named API keys of `passgate apikey add`: long-lived
-- bearer credentials for scripts, bound to resources and scopes. Only the
-- SHA-256 of a key is kept; the checks look it up by hash on a cache miss
-- (the UNIQUE index). Revoked keys stay, marked, so a name is never reused
-- and the checks can tell "revoked" from "unknown".
CREATE TABLE api_keys (
	name       text PRIMARY KEY,
	hash       text NOT NULL UNIQUE,
	resources  text[] NOT NULL DEFAULT '{}',
	scope      text NOT NULL DEFAULT '',
	created_at timestamptz,
	revoked_at timestamptz
);
