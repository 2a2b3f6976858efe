-- invalidations carries revocations to other processes on the same file
-- (the CLI revoking while `passgate serve` runs): every revoking
-- transaction appends the hashes it revoked, and Subscribe polls for rows
-- written by other origins. DeleteExpired trims rows older than an hour.
CREATE TABLE invalidations (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	origin     TEXT NOT NULL, -- random per *DB, to skip one's own rows
	hashes     TEXT NOT NULL, -- comma-separated token hashes
	created_at TEXT NOT NULL
);
CREATE INDEX invalidations_created ON invalidations (created_at);
