package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/passgate/passgate/store"
)

// The methods below implement store.Store, whose doc comments state their
// contracts; comments here add only what is specific to this backend.

// ---- users ----

func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.exec(ctx, `INSERT INTO users (username, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?)`,
		u.Username, u.PasswordHash, nts(u.CreatedAt), nts(u.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

const userCols = `username, password_hash, created_at, updated_at`

func scanUser(r scanner) (store.User, error) {
	var u store.User
	err := r.Scan(&u.Username, &u.PasswordHash, tm(&u.CreatedAt), tm(&u.UpdatedAt))
	return u, err
}

func (db *DB) GetUser(ctx context.Context, username string) (store.User, error) {
	u, err := scanUser(db.reader.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE username = ?`, username))
	if err != nil {
		return store.User{}, fmt.Errorf("get user: %w", notFound(err))
	}
	return u, nil
}

func (db *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", mapErr(err))
	}
	out, err := collect(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", mapErr(err))
	}
	return out, nil
}

// SetPassword replaces the hash, deletes the user's sessions and revokes
// their tokens in one transaction; the revoked hashes are published.
func (db *DB) SetPassword(ctx context.Context, username, hash string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?`, hash, nts(now), username)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE username = ?`, username); err != nil {
			return err
		}
		hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL RETURNING hash`, ts(now), username)
		if err != nil {
			return err
		}
		return db.finishRevocation(ctx, tx, hashes, now, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("set password: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return hashes, nil
}

// DeleteUser deletes the user's row, sessions, consents, lockout state,
// unredeemed codes and tokens; the deleted token hashes are published.
func (db *DB) DeleteUser(ctx context.Context, username string, now time.Time) error {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM users WHERE username = ?`, username)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		for _, q := range []string{
			`DELETE FROM sessions WHERE username = ?`,
			`DELETE FROM consents WHERE username = ?`,
			`DELETE FROM login_failures WHERE username = ?`,
			`DELETE FROM auth_codes WHERE username = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, username); err != nil {
				return err
			}
		}
		// Every deleted token counts as revoked for the caches, even
		// one revoked earlier: dropping it again is harmless.
		hashes, err = queryStrings(ctx, tx, `DELETE FROM tokens WHERE username = ? RETURNING hash`, username)
		if err != nil {
			return err
		}
		return db.recordInvalidation(ctx, tx, hashes, now)
	})
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return nil
}

// ---- clients ----

const clientCols = `id, secret_hash, name, redirect_uris, token_endpoint_auth_method, grant_types, scope, source, client_uri, logo_uri, created_at, last_used_at`

func (db *DB) CreateClient(ctx context.Context, c store.Client) error {
	ru, err := json.Marshal(nonNil(c.RedirectURIs))
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	gt, err := json.Marshal(nonNil(c.GrantTypes))
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	_, err = db.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.SecretHash, c.Name, string(ru), c.TokenEndpointAuthMethod, string(gt), c.Scope, c.Source,
		c.ClientURI, c.LogoURI, nts(c.CreatedAt), nts(c.LastUsedAt))
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type scanner interface{ Scan(...any) error }

func scanClient(r scanner) (store.Client, error) {
	var c store.Client
	var ru, gt string
	if err := r.Scan(&c.ID, &c.SecretHash, &c.Name, &ru, &c.TokenEndpointAuthMethod, &gt, &c.Scope, &c.Source,
		&c.ClientURI, &c.LogoURI, tm(&c.CreatedAt), tm(&c.LastUsedAt)); err != nil {
		return store.Client{}, err
	}
	if err := json.Unmarshal([]byte(ru), &c.RedirectURIs); err != nil {
		return store.Client{}, fmt.Errorf("client %s redirect_uris: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(gt), &c.GrantTypes); err != nil {
		return store.Client{}, fmt.Errorf("client %s grant_types: %w", c.ID, err)
	}
	if len(c.RedirectURIs) == 0 {
		c.RedirectURIs = nil
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = nil
	}
	return c, nil
}

func (db *DB) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(db.reader.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
	if err != nil {
		return store.Client{}, fmt.Errorf("get client: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", mapErr(err))
	}
	out, err := collect(rows, scanClient)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", mapErr(err))
	}
	return out, nil
}

// DeleteClient deletes the client, its codes and consents, and revokes
// (keeps, marked revoked) its tokens.
func (db *DB) DeleteClient(ctx context.Context, id string, now time.Time) error {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE client_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE client_id = ?`, id); err != nil {
			return err
		}
		hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL RETURNING hash`, ts(now), id)
		if err != nil {
			return err
		}
		return db.recordInvalidation(ctx, tx, hashes, now)
	})
	if err != nil {
		return fmt.Errorf("delete client: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return nil
}

func (db *DB) DeleteStaleClients(ctx context.Context, olderThan time.Time) ([]string, error) {
	var ids []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		ids, err = queryStrings(ctx, tx, `DELETE FROM clients
			WHERE source = ? AND last_used_at IS NULL AND created_at < ? RETURNING id`,
			store.ClientDynamic, ts(olderThan))
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE client_id = ?`, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE client_id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete stale clients: %w", err)
	}
	return ids, nil
}

// ---- sessions ----

const sessionCols = `id_hash, username, csrf_token, ip, user_agent, created_at, expires_at, last_seen_at`

func scanSession(r scanner) (store.Session, error) {
	var s store.Session
	err := r.Scan(&s.IDHash, &s.Username, &s.CSRFToken, &s.IP, &s.UserAgent, tm(&s.CreatedAt), tm(&s.ExpiresAt), tm(&s.LastSeenAt))
	return s, err
}

func (db *DB) CreateSession(ctx context.Context, s store.Session) error {
	_, err := db.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		s.IDHash, s.Username, s.CSRFToken, s.IP, s.UserAgent, nts(s.CreatedAt), ts(s.ExpiresAt), nts(s.LastSeenAt))
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (db *DB) GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error) {
	s, err := scanSession(db.reader.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id_hash = ? AND expires_at > ?`, idHash, ts(now)))
	if err != nil {
		return store.Session{}, fmt.Errorf("get session: %w", notFound(err))
	}
	return s, nil
}

func (db *DB) TouchSession(ctx context.Context, idHash string, now time.Time) error {
	n, err := db.exec(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?`, nts(now), idHash)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch session: %w", store.ErrNotFound)
	}
	return nil
}

func (db *DB) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := db.exec(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (db *DB) ListSessions(ctx context.Context, username string, now time.Time) ([]store.Session, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE expires_at > ?`
	args := []any{ts(now)}
	if username != "" {
		q += ` AND username = ?`
		args = append(args, username)
	}
	rows, err := db.reader.QueryContext(ctx, q+` ORDER BY created_at DESC, id_hash`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", mapErr(err))
	}
	out, err := collect(rows, scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", mapErr(err))
	}
	return out, nil
}

func (db *DB) DeleteUserSessions(ctx context.Context, username string) (int, error) {
	n, err := db.exec(ctx, `DELETE FROM sessions WHERE username = ?`, username)
	if err != nil {
		return 0, fmt.Errorf("delete user sessions: %w", err)
	}
	return int(n), nil
}

// ---- codes ----

const codeCols = `code_hash, client_id, username, redirect_uri, code_challenge, code_challenge_method, scope, resource, family_id, created_at, expires_at, used_at`

func (db *DB) CreateAuthCode(ctx context.Context, c store.AuthCode, audit *store.AuditEvent) error {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO auth_codes (`+codeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.CodeHash, c.ClientID, c.Username, c.RedirectURI, c.CodeChallenge, c.CodeChallengeMethod, c.Scope, c.Resource,
			c.FamilyID, nts(c.CreatedAt), ts(c.ExpiresAt), nts(c.UsedAt)); err != nil {
			return err
		}
		if audit != nil {
			return insertAudit(ctx, tx, audit)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create auth code: %w", err)
	}
	return nil
}

func (db *DB) GetAuthCode(ctx context.Context, codeHash string, now time.Time) (store.AuthCode, error) {
	var c store.AuthCode
	err := db.reader.QueryRowContext(ctx, `SELECT `+codeCols+` FROM auth_codes WHERE code_hash = ? AND expires_at > ?`, codeHash, ts(now)).
		Scan(&c.CodeHash, &c.ClientID, &c.Username, &c.RedirectURI, &c.CodeChallenge, &c.CodeChallengeMethod, &c.Scope, &c.Resource,
			&c.FamilyID, tm(&c.CreatedAt), tm(&c.ExpiresAt), tm(&c.UsedAt))
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("get auth code: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) RedeemCode(ctx context.Context, codeHash string, now time.Time, g store.CodeGrant) error {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `UPDATE auth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?`,
			ts(now), codeHash, ts(now))
		if err != nil {
			return err
		}
		if n == 0 {
			var usedAt time.Time
			err := tx.QueryRowContext(ctx, `SELECT used_at FROM auth_codes WHERE code_hash = ? AND expires_at > ?`, codeHash, ts(now)).Scan(tm(&usedAt))
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return store.ErrConflict
		}
		if err := insertToken(ctx, tx, g.Access); err != nil {
			return err
		}
		if err := insertToken(ctx, tx, g.Refresh); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, &g.Audit); err != nil {
			return err
		}
		return touchClient(ctx, tx, g.Access.ClientID, now)
	})
	if err != nil {
		return fmt.Errorf("redeem code: %w", err)
	}
	return nil
}

// ---- tokens ----

const tokenCols = `hash, kind, family_id, client_id, username, scope, resource, family_expires_at, created_at, expires_at, revoked_at, rotated_at, grace_response, last_used_at`

func insertToken(ctx context.Context, tx *sql.Tx, t store.Token) error {
	var grace any
	if t.GraceResponse != nil {
		grace = t.GraceResponse
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource, nts(t.FamilyExpiresAt), nts(t.CreatedAt),
		ts(t.ExpiresAt), nts(t.RevokedAt), nts(t.RotatedAt), grace, nts(t.LastUsedAt))
	if err != nil {
		return fmt.Errorf("insert %s token: %w", t.Kind, err)
	}
	return nil
}

func touchClient(ctx context.Context, tx *sql.Tx, clientID string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE clients SET last_used_at = ? WHERE id = ?`, ts(now), clientID); err != nil {
		return fmt.Errorf("touch client: %w", err)
	}
	return nil
}

func (db *DB) GetToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	var t store.Token
	stmt, err := db.prepared(ctx, &db.getToken, `SELECT `+tokenCols+` FROM tokens WHERE hash = ? AND expires_at > ?`)
	if err != nil {
		return store.Token{}, fmt.Errorf("get token: %w", mapErr(err))
	}
	err = stmt.QueryRowContext(ctx, hash, ts(now)).
		Scan(&t.Hash, &t.Kind, &t.FamilyID, &t.ClientID, &t.Username, &t.Scope, &t.Resource, tm(&t.FamilyExpiresAt), tm(&t.CreatedAt),
			tm(&t.ExpiresAt), tm(&t.RevokedAt), tm(&t.RotatedAt), &t.GraceResponse, tm(&t.LastUsedAt))
	if err != nil {
		return store.Token{}, fmt.Errorf("get token: %w", notFound(err))
	}
	return t, nil
}

// lookupTokenQuery selects only what a proxy check needs: no blob, no
// bookkeeping columns, fewer values to convert and copy on every miss.
const lookupTokenQuery = `SELECT kind, client_id, username, scope, resource, expires_at, revoked_at FROM tokens WHERE hash = ? AND expires_at > ?`

func (db *DB) LookupToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	stmt, err := db.prepared(ctx, &db.lookupToken, lookupTokenQuery)
	if err != nil {
		return store.Token{}, fmt.Errorf("lookup token: %w", mapErr(err))
	}
	t := store.Token{Hash: hash}
	// Times scan into strings and are parsed here rather than through a
	// Scanner value, which would be boxed (allocated) per column.
	var expires string
	var revoked sql.NullString
	err = stmt.QueryRowContext(ctx, hash, ts(now)).
		Scan(&t.Kind, &t.ClientID, &t.Username, &t.Scope, &t.Resource, &expires, &revoked)
	if err != nil {
		return store.Token{}, fmt.Errorf("lookup token: %w", notFound(err))
	}
	if err := tm(&t.ExpiresAt).parse(expires); err != nil {
		return store.Token{}, fmt.Errorf("lookup token: %w", err)
	}
	if revoked.Valid {
		if err := tm(&t.RevokedAt).parse(revoked.String); err != nil {
			return store.Token{}, fmt.Errorf("lookup token: %w", err)
		}
	}
	return t, nil
}

// prepared returns the statement in p, preparing query on the reader pool
// the first time (once the table exists). The proxy checks look tokens up
// on every cache miss; a prepared statement skips parsing and planning.
func (db *DB) prepared(ctx context.Context, p *atomic.Pointer[sql.Stmt], query string) (*sql.Stmt, error) {
	if stmt := p.Load(); stmt != nil {
		return stmt, nil
	}
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if stmt := p.Load(); stmt != nil {
		return stmt, nil
	}
	stmt, err := db.reader.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	p.Store(stmt)
	return stmt, nil
}

func (db *DB) RotateRefresh(ctx context.Context, oldHash string, now time.Time, graceResponse []byte, access, refresh store.Token, audit store.AuditEvent) error {
	if graceResponse == nil {
		graceResponse = []byte{}
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `UPDATE tokens SET rotated_at = ?, grace_response = ?, last_used_at = ?
			WHERE hash = ? AND kind = 'refresh' AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > ?`,
			ts(now), graceResponse, ts(now), oldHash, ts(now))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrConflict
		}
		if err := insertToken(ctx, tx, access); err != nil {
			return err
		}
		if err := insertToken(ctx, tx, refresh); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, &audit); err != nil {
			return err
		}
		return touchClient(ctx, tx, refresh.ClientID, now)
	})
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	return nil
}

func (db *DB) RevokeToken(ctx context.Context, hash string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var kind, family string
		err := tx.QueryRowContext(ctx, `SELECT kind, family_id FROM tokens WHERE hash = ?`, hash).Scan(&kind, &family)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err = nil // unknown tokens are not an error (RFC 7009)
		case err != nil:
			return err
		case kind == store.KindRefresh:
			hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL RETURNING hash`, ts(now), family)
		default:
			hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE hash = ? AND revoked_at IS NULL RETURNING hash`, ts(now), hash)
		}
		if err != nil {
			return err
		}
		return db.finishRevocation(ctx, tx, hashes, now, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return hashes, nil
}

func (db *DB) RevokeFamily(ctx context.Context, familyID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revokeWhere(ctx, "revoke family", `family_id = ?`, []any{familyID}, now, audit)
}

func (db *DB) RevokeUserTokens(ctx context.Context, username, clientID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	if clientID == "" {
		return db.revokeWhere(ctx, "revoke user tokens", `username = ?`, []any{username}, now, audit)
	}
	return db.revokeWhere(ctx, "revoke user tokens", `username = ? AND client_id = ?`, []any{username, clientID}, now, audit)
}

func (db *DB) revokeWhere(ctx context.Context, op, where string, args []any, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE `+where+` AND revoked_at IS NULL RETURNING hash`,
			append([]any{ts(now)}, args...)...)
		if err != nil {
			return err
		}
		return db.finishRevocation(ctx, tx, hashes, now, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return hashes, nil
}

// finishRevocation ends a revoking transaction: it records the
// invalidation of the revoked hashes and writes the audit row, if any.
// The caller publishes the invalidation after the commit.
func (db *DB) finishRevocation(ctx context.Context, tx *sql.Tx, hashes []string, now time.Time, audit *store.AuditEvent) error {
	if err := db.recordInvalidation(ctx, tx, hashes, now); err != nil {
		return err
	}
	if audit != nil {
		return insertAudit(ctx, tx, audit)
	}
	return nil
}

// TouchToken sets LastUsedAt; ErrNotFound for an unknown token.
func (db *DB) TouchToken(ctx context.Context, hash string, now time.Time) error {
	n, err := db.exec(ctx, `UPDATE tokens SET last_used_at = ? WHERE hash = ?`, ts(now), hash)
	if err != nil {
		return fmt.Errorf("touch token: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch token: %w", store.ErrNotFound)
	}
	return nil
}

// ---- consents ----

// PutConsent keeps the CreatedAt of an existing consent of the same
// client and resource and replaces scope and UpdatedAt.
func (db *DB) PutConsent(ctx context.Context, c store.Consent, audit *store.AuditEvent) error {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO consents (username, client_id, resource, scope, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (username, client_id, resource) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at`,
			c.Username, c.ClientID, c.Resource, c.Scope, nts(c.CreatedAt), nts(c.UpdatedAt)); err != nil {
			return err
		}
		if audit != nil {
			return insertAudit(ctx, tx, audit)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put consent: %w", err)
	}
	return nil
}

const consentCols = `username, client_id, resource, scope, created_at, updated_at`

func scanConsent(r scanner) (store.Consent, error) {
	var c store.Consent
	err := r.Scan(&c.Username, &c.ClientID, &c.Resource, &c.Scope, tm(&c.CreatedAt), tm(&c.UpdatedAt))
	return c, err
}

func (db *DB) GetConsent(ctx context.Context, username, clientID, resource string) (store.Consent, error) {
	c, err := scanConsent(db.reader.QueryRowContext(ctx, `SELECT `+consentCols+` FROM consents WHERE username = ? AND client_id = ? AND resource = ?`,
		username, clientID, resource))
	if err != nil {
		return store.Consent{}, fmt.Errorf("get consent: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) ListConsents(ctx context.Context, username string) ([]store.Consent, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+consentCols+` FROM consents
		WHERE username = ? ORDER BY updated_at DESC, created_at DESC, client_id, resource`, username)
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", mapErr(err))
	}
	out, err := collect(rows, scanConsent)
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", mapErr(err))
	}
	return out, nil
}

// DeleteConsent removes the user's consents for the client (every
// resource) and unredeemed codes for it, and revokes the user's tokens for
// it.
func (db *DB) DeleteConsent(ctx context.Context, username, clientID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx *sql.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM consents WHERE username = ? AND client_id = ?`, username, clientID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		// Pending codes go too, so an authorization in flight cannot
		// mint tokens after the user revoked the client.
		if _, err := tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE username = ? AND client_id = ? AND used_at IS NULL`, username, clientID); err != nil {
			return err
		}
		hashes, err = queryStrings(ctx, tx, `UPDATE tokens SET revoked_at = ? WHERE username = ? AND client_id = ? AND revoked_at IS NULL RETURNING hash`,
			ts(now), username, clientID)
		if err != nil {
			return err
		}
		return db.finishRevocation(ctx, tx, hashes, now, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("delete consent: %w", err)
	}
	db.hub.publish(store.Invalidation{TokenHashes: hashes})
	return hashes, nil
}

// ---- login failures ----

// ReserveLoginAttempt reads and writes the state in one BEGIN IMMEDIATE
// transaction: the write lock is taken before the read, so concurrent
// reservations (in this process or another on the file) queue and see
// each other's counts.
func (db *DB) ReserveLoginAttempt(ctx context.Context, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) (store.LoginFailures, bool, error) {
	var (
		out store.LoginFailures
		ok  bool
	)
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var cur store.LoginFailures
		err := tx.QueryRowContext(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = ?`, username).
			Scan(&cur.Username, &cur.Count, tm(&cur.FirstAt), tm(&cur.LockedUntil))
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out, ok = store.ReserveLoginAttempt(cur, username, now, window, threshold, lockFor)
		if !ok {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO login_failures (username, count, first_at, locked_until, expires_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (username) DO UPDATE SET count = excluded.count, first_at = excluded.first_at,
				locked_until = excluded.locked_until, expires_at = excluded.expires_at`,
			username, out.Count, ts(out.FirstAt), nts(out.LockedUntil), ts(out.ExpiresAt(window)))
		return err
	})
	if err != nil {
		return store.LoginFailures{}, false, fmt.Errorf("reserve login attempt: %w", err)
	}
	return out, ok, nil
}

func (db *DB) GetLoginFailures(ctx context.Context, username string) (store.LoginFailures, error) {
	var f store.LoginFailures
	err := db.reader.QueryRowContext(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = ?`, username).
		Scan(&f.Username, &f.Count, tm(&f.FirstAt), tm(&f.LockedUntil))
	if errors.Is(err, sql.ErrNoRows) {
		return store.LoginFailures{}, nil
	}
	if err != nil {
		return store.LoginFailures{}, fmt.Errorf("get login failures: %w", mapErr(err))
	}
	return f, nil
}

func (db *DB) ResetLoginFailures(ctx context.Context, username string) error {
	if _, err := db.exec(ctx, `DELETE FROM login_failures WHERE username = ?`, username); err != nil {
		return fmt.Errorf("reset login failures: %w", err)
	}
	return nil
}

// ---- settings ----

func (db *DB) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("get setting: %w", notFound(err))
	}
	return v, nil
}

func (db *DB) PutSetting(ctx context.Context, key, value string, now time.Time) error {
	_, err := db.exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, value, ts(now))
	if err != nil {
		return fmt.Errorf("put setting: %w", err)
	}
	return nil
}

// ---- audit ----

func insertAudit(ctx context.Context, tx *sql.Tx, e *store.AuditEvent) error {
	if e.CreatedAt.IsZero() {
		// The recorder stamps events; this only keeps a forgetful caller's
		// row in order rather than at year 1.
		e.CreatedAt = time.Now()
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO auth_logs (event, success, ip, user_agent, client_id, username, error, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.Event, e.Success, e.IP, e.UserAgent, e.ClientID, e.Username, e.Error, ts(e.CreatedAt)).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("insert audit row: %w", err)
	}
	return nil
}

// RecordAudit appends e; a zero CreatedAt is replaced by the current time.
func (db *DB) RecordAudit(ctx context.Context, e store.AuditEvent) error {
	err := db.tx(ctx, func(tx *sql.Tx) error { return insertAudit(ctx, tx, &e) })
	if err != nil {
		return fmt.Errorf("record audit: %w", err)
	}
	return nil
}

func scanAuditEvent(r scanner) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := r.Scan(&e.ID, &e.Event, &e.Success, &e.IP, &e.UserAgent, &e.ClientID, &e.Username, &e.Error, tm(&e.CreatedAt))
	return e, err
}

func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, ts(f.Since))
	}
	if f.Event != "" {
		where, args = append(where, "event = ?"), append(args, f.Event)
	}
	if f.Username != "" {
		where, args = append(where, "username = ?"), append(args, f.Username)
	}
	if f.ClientID != "" {
		where, args = append(where, "client_id = ?"), append(args, f.ClientID)
	}
	if f.FailedOnly {
		where = append(where, "success = 0")
	}
	q := `SELECT id, event, success, ip, user_agent, client_id, username, error, created_at FROM auth_logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", mapErr(err))
	}
	out, err := collect(rows, scanAuditEvent)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", mapErr(err))
	}
	return out, nil
}

// ---- cleanup ----

func (db *DB) DeleteExpired(ctx context.Context, now, auditBefore time.Time) (int64, error) {
	var total int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM sessions WHERE expires_at <= ?`,
			`DELETE FROM auth_codes WHERE expires_at <= ?`,
			`DELETE FROM tokens WHERE expires_at <= ?`,
			`DELETE FROM login_failures WHERE expires_at <= ?`,
		} {
			n, err := execN(ctx, tx, q, ts(now))
			if err != nil {
				return err
			}
			total += n
		}
		// Invalidation rows only bridge processes for a moment; they are
		// bookkeeping, not counted.
		if _, err := tx.ExecContext(ctx, `DELETE FROM invalidations WHERE created_at < ?`, ts(now.Add(-invalidationRetention))); err != nil {
			return err
		}
		if !auditBefore.IsZero() {
			n, err := execN(ctx, tx, `DELETE FROM auth_logs WHERE created_at < ?`, ts(auditBefore))
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired: %w", err)
	}
	return total, nil
}

// ---- helpers ----

func execN(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

func scanString(r scanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

// collect scans every row of rows with scan and closes rows. It returns
// errors as they come; callers map and wrap them.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// notFound maps sql.ErrNoRows to store.ErrNotFound and other errors with
// mapErr.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return mapErr(err)
}
