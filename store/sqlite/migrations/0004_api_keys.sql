-- api_keys holds the named API keys of `passgate apikey add`: long-lived
-- bearer credentials for scripts, bound to resources and scopes. Only the
-- SHA-256 of a key is kept; the checks look it up by hash on a cache miss
-- (the UNIQUE index). Revoked keys stay, marked, so a name is never reused
-- and the checks can tell "revoked" from "unknown".
CREATE TABLE api_keys (
	name       TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	resources  TEXT NOT NULL DEFAULT '[]', -- JSON array of resource URLs
	scope      TEXT NOT NULL DEFAULT '',
	created_at TEXT,
	revoked_at TEXT
) WITHOUT ROWID;
