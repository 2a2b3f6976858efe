-- Consents are kept per resource (RFC 8707): approving a client for one
-- MCP server must not let it get tokens for another. Rows recorded before
-- keep resource '' which matches no request: the user is asked again, but
-- the client stays on the connected-apps page (its tokens may still be
-- live) until it is revoked there.
ALTER TABLE consents ADD COLUMN resource text NOT NULL DEFAULT '';
ALTER TABLE consents DROP CONSTRAINT consents_pkey;
ALTER TABLE consents ADD PRIMARY KEY (username, client_id, resource);
