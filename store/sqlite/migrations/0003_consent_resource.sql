-- Consents are kept per resource (RFC 8707): approving a client for one
-- MCP server must not let it get tokens for another. SQLite cannot change
-- a primary key, so the table is rebuilt. Rows recorded before keep
-- resource '' which matches no request: the user is asked again, but the
-- client stays on the connected-apps page (its tokens may still be live)
-- until it is revoked there.
CREATE TABLE consents_new (
	username   TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	resource   TEXT NOT NULL DEFAULT '',
	scope      TEXT NOT NULL DEFAULT '',
	created_at TEXT,
	updated_at TEXT,
	PRIMARY KEY (username, client_id, resource)
) WITHOUT ROWID;
INSERT INTO consents_new (username, client_id, resource, scope, created_at, updated_at)
	SELECT username, client_id, '', scope, created_at, updated_at FROM consents;
DROP TABLE consents;
ALTER TABLE consents_new RENAME TO consents;
CREATE INDEX consents_client ON consents (client_id);
