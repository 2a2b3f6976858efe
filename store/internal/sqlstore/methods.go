package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/passgate/passgate/store"
)

// The methods below implement store.Store, whose doc comments state their
// contracts; comments here add only what the SQL adds. Queries number
// their parameters ($1, $2, …): PostgreSQL requires it and SQLite binds
// $NNN by position, so one string serves both.

// ---- users ----

func (db *Store) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.exec(ctx, `INSERT INTO users (username, password_hash, created_at, updated_at, user_groups) VALUES ($1, $2, $3, $4, $5)`,
		u.Username, u.PasswordHash, db.nullTime(u.CreatedAt), db.nullTime(u.UpdatedAt), db.strings(store.NormalizeGroups(u.Groups)))
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

const userCols = `username, password_hash, created_at, updated_at, user_groups`

func (db *Store) scanUser(r scanner) (store.User, error) {
	var u store.User
	err := r.Scan(&u.Username, &u.PasswordHash, db.scanTime(&u.CreatedAt), db.scanTime(&u.UpdatedAt), db.scanStrings(&u.Groups))
	if len(u.Groups) == 0 {
		u.Groups = nil
	}
	return u, err
}

// SetUserGroups updates the row and notifies the user's live access
// tokens in one transaction: a replica that cached a token with the old
// groups drops it once the change is committed, never before.
func (db *Store) SetUserGroups(ctx context.Context, username string, groups []string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, "set user groups", now, audit, func(tx Querier) ([]string, error) {
		if err := execFound(ctx, tx, `UPDATE users SET user_groups = $1, updated_at = $2 WHERE username = $3`,
			db.strings(store.NormalizeGroups(groups)), db.nullTime(now), username); err != nil {
			return nil, err
		}
		return queryStrings(ctx, tx, `SELECT hash FROM tokens WHERE username = $1 AND kind = 'access' AND revoked_at IS NULL AND expires_at > $2`,
			username, db.time(now))
	})
}

func (db *Store) GetUser(ctx context.Context, username string) (store.User, error) {
	return readOne(ctx, db, "get user", db.scanUser, `SELECT `+userCols+` FROM users WHERE username = $1`, username)
}

func (db *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	return readAll(ctx, db, "list users", db.scanUser, `SELECT `+userCols+` FROM users ORDER BY username`)
}

// SetPassword replaces the hash, deletes the user's sessions and
// unredeemed codes and revokes their tokens in one transaction; the revoked
// hashes are invalidated.
func (db *Store) SetPassword(ctx context.Context, username, hash string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, "set password", now, audit, func(tx Querier) ([]string, error) {
		if err := execFound(ctx, tx, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3`, hash, db.nullTime(now), username); err != nil {
			return nil, err
		}
		return db.endSignIns(ctx, tx, username, now)
	})
}

// endSignIns deletes the user's sessions and unredeemed codes and revokes
// their tokens, returning the revoked hashes: what SetPassword and
// ResetSecondFactors do to whoever signed in with the old credentials.
func (db *Store) endSignIns(ctx context.Context, tx Querier, username string, now time.Time) ([]string, error) {
	if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE username = $1`, username); err != nil {
		return nil, err
	}
	// A code issued under the old credentials would otherwise become a
	// new token family after the change. Deleting codes before revoking
	// (as DeleteConsent does) makes a redemption that holds a code's row
	// finish first, so its tokens are revoked below.
	if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE username = $1 AND used_at IS NULL`, username); err != nil {
		return nil, err
	}
	return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL RETURNING hash`, db.time(now), username)
}

// DeleteUser deletes the user's row, sessions, consents, lockout state,
// unredeemed codes and tokens; the deleted token hashes are published.
func (db *Store) DeleteUser(ctx context.Context, username string, now time.Time) error {
	_, err := db.revoke(ctx, "delete user", now, nil, func(tx Querier) ([]string, error) {
		if err := execFound(ctx, tx, `DELETE FROM users WHERE username = $1`, username); err != nil {
			return nil, err
		}
		for _, q := range []string{
			`DELETE FROM sessions WHERE username = $1`,
			`DELETE FROM consents WHERE username = $1`,
			`DELETE FROM login_failures WHERE username = $1`,
			`DELETE FROM auth_codes WHERE username = $1`,
			`DELETE FROM totp_secrets WHERE username = $1`,
			`DELETE FROM recovery_codes WHERE username = $1`,
			`DELETE FROM passkeys WHERE username = $1`,
		} {
			if _, err := tx.Exec(ctx, q, username); err != nil {
				return nil, err
			}
		}
		// Every deleted token counts as revoked for the caches, even
		// one revoked earlier: dropping it again is harmless.
		return revokeAll(ctx, tx, `DELETE FROM tokens WHERE username = $1 RETURNING hash`, username)
	})
	return err
}

// ---- clients ----

const clientCols = `id, secret_hash, name, redirect_uris, token_endpoint_auth_method, grant_types, scope, source, client_uri, logo_uri, created_at, last_used_at`

func (db *Store) CreateClient(ctx context.Context, c store.Client) error {
	_, err := db.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		c.ID, c.SecretHash, c.Name, db.strings(c.RedirectURIs), c.TokenEndpointAuthMethod, db.strings(c.GrantTypes), c.Scope, c.Source,
		c.ClientURI, c.LogoURI, db.nullTime(c.CreatedAt), db.nullTime(c.LastUsedAt))
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

func (db *Store) scanClient(r scanner) (store.Client, error) {
	var c store.Client
	if err := r.Scan(&c.ID, &c.SecretHash, &c.Name, db.scanStrings(&c.RedirectURIs), &c.TokenEndpointAuthMethod, db.scanStrings(&c.GrantTypes), &c.Scope, &c.Source,
		&c.ClientURI, &c.LogoURI, db.scanTime(&c.CreatedAt), db.scanTime(&c.LastUsedAt)); err != nil {
		return store.Client{}, err
	}
	if len(c.RedirectURIs) == 0 {
		c.RedirectURIs = nil
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = nil
	}
	return c, nil
}

func (db *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	return readOne(ctx, db, "get client", db.scanClient, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id)
}

func (db *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	return readAll(ctx, db, "list clients", db.scanClient, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
}

// DeleteClient deletes the client, its codes and consents, and revokes
// (keeps, marked revoked) its tokens.
func (db *Store) DeleteClient(ctx context.Context, id string, now time.Time) error {
	_, err := db.revoke(ctx, "delete client", now, nil, func(tx Querier) ([]string, error) {
		if err := execFound(ctx, tx, `DELETE FROM clients WHERE id = $1`, id); err != nil {
			return nil, err
		}
		if err := deleteClientGrants(ctx, tx, id); err != nil {
			return nil, err
		}
		return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL RETURNING hash`, db.time(now), id)
	})
	return err
}

func (db *Store) DeleteStaleClients(ctx context.Context, olderThan time.Time) ([]string, error) {
	var ids []string
	err := db.write(ctx, "delete stale clients", nil, func(tx Querier) error {
		var err error
		ids, err = queryStrings(ctx, tx, `DELETE FROM clients
			WHERE source = $1 AND last_used_at IS NULL AND created_at < $2 RETURNING id`,
			store.ClientDynamic, db.time(olderThan))
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := deleteClientGrants(ctx, tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// deleteClientGrants deletes what a deleted client leaves besides tokens:
// its codes and the users' consents to it.
func deleteClientGrants(ctx context.Context, tx Querier, id string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE client_id = $1`, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, id)
	return err
}

// ---- sessions ----

const sessionCols = `id_hash, username, csrf_token, ip, user_agent, created_at, expires_at, last_seen_at, pending`

func (db *Store) scanSession(r scanner) (store.Session, error) {
	var s store.Session
	err := r.Scan(&s.IDHash, &s.Username, &s.CSRFToken, &s.IP, &s.UserAgent, db.scanTime(&s.CreatedAt), db.scanTime(&s.ExpiresAt), db.scanTime(&s.LastSeenAt), &s.Pending)
	return s, err
}

func (db *Store) CreateSession(ctx context.Context, s store.Session) error {
	_, err := db.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		s.IDHash, s.Username, s.CSRFToken, s.IP, s.UserAgent, db.nullTime(s.CreatedAt), db.time(s.ExpiresAt), db.nullTime(s.LastSeenAt), s.Pending)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (db *Store) GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error) {
	return readOne(ctx, db, "get session", db.scanSession, `SELECT `+sessionCols+` FROM sessions WHERE id_hash = $1 AND expires_at > $2`, idHash, db.time(now))
}

func (db *Store) TouchSession(ctx context.Context, idHash string, now time.Time) error {
	return db.changeRow(ctx, "touch session", `UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2`, db.nullTime(now), idHash)
}

func (db *Store) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := db.exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (db *Store) ListSessions(ctx context.Context, username string, now time.Time) ([]store.Session, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE expires_at > $1`
	args := []any{db.time(now)}
	if username != "" {
		q += ` AND username = $2`
		args = append(args, username)
	}
	return readAll(ctx, db, "list sessions", db.scanSession, q+` ORDER BY created_at DESC, id_hash`, args...)
}

func (db *Store) DeleteUserSessions(ctx context.Context, username string) (int, error) {
	n, err := db.exec(ctx, `DELETE FROM sessions WHERE username = $1`, username)
	if err != nil {
		return 0, fmt.Errorf("delete user sessions: %w", err)
	}
	return int(n), nil
}

// ---- codes ----

const codeCols = `code_hash, client_id, username, redirect_uri, code_challenge, code_challenge_method, scope, resource, family_id, created_at, expires_at, used_at`

func (db *Store) CreateAuthCode(ctx context.Context, c store.AuthCode, audit *store.AuditEvent) error {
	return db.write(ctx, "create auth code", audit, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO auth_codes (`+codeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			c.CodeHash, c.ClientID, c.Username, c.RedirectURI, c.CodeChallenge, c.CodeChallengeMethod, c.Scope, c.Resource,
			c.FamilyID, db.nullTime(c.CreatedAt), db.time(c.ExpiresAt), db.nullTime(c.UsedAt))
		return err
	})
}

func (db *Store) GetAuthCode(ctx context.Context, codeHash string, now time.Time) (store.AuthCode, error) {
	var c store.AuthCode
	err := db.c.Read.QueryRow(ctx, `SELECT `+codeCols+` FROM auth_codes WHERE code_hash = $1 AND expires_at > $2`, codeHash, db.time(now)).
		Scan(&c.CodeHash, &c.ClientID, &c.Username, &c.RedirectURI, &c.CodeChallenge, &c.CodeChallengeMethod, &c.Scope, &c.Resource,
			&c.FamilyID, db.scanTime(&c.CreatedAt), db.scanTime(&c.ExpiresAt), db.scanTime(&c.UsedAt))
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("get auth code: %w", db.notFound(err))
	}
	return c, nil
}

func (db *Store) RedeemCode(ctx context.Context, codeHash string, now time.Time, g store.CodeGrant) error {
	return db.write(ctx, "redeem code", &g.Audit, func(tx Querier) error {
		n, err := execN(ctx, tx, `UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $3`,
			db.time(now), codeHash, db.time(now))
		if err != nil {
			return err
		}
		if n == 0 {
			return conflictUnlessMissing(ctx, tx, `SELECT used_at FROM auth_codes WHERE code_hash = $1 AND expires_at > $2`, codeHash, db.time(now))
		}
		return db.insertGrant(ctx, tx, g.Access, g.Refresh, now)
	})
}

// ---- tokens ----

const tokenCols = `hash, kind, family_id, client_id, username, scope, resource, family_expires_at, created_at, expires_at, revoked_at, rotated_at, grace_response, last_used_at`

func (db *Store) insertToken(ctx context.Context, tx Querier, t store.Token) error {
	var grace any
	if t.GraceResponse != nil {
		grace = t.GraceResponse
	}
	_, err := tx.Exec(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource, db.nullTime(t.FamilyExpiresAt), db.nullTime(t.CreatedAt),
		db.time(t.ExpiresAt), db.nullTime(t.RevokedAt), db.nullTime(t.RotatedAt), grace, db.nullTime(t.LastUsedAt))
	if err != nil {
		return fmt.Errorf("insert %s token: %w", t.Kind, err)
	}
	return nil
}

// insertGrant stores a new access and refresh token (a redemption's or a
// rotation's, of one client) and sets the client's LastUsedAt.
func (db *Store) insertGrant(ctx context.Context, tx Querier, access, refresh store.Token, now time.Time) error {
	if err := db.insertToken(ctx, tx, access); err != nil {
		return err
	}
	if err := db.insertToken(ctx, tx, refresh); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE clients SET last_used_at = $1 WHERE id = $2`, db.time(now), access.ClientID); err != nil {
		return fmt.Errorf("touch client: %w", err)
	}
	return nil
}

func (db *Store) GetToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	var t store.Token
	err := db.c.Read.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = $1 AND expires_at > $2`, hash, db.time(now)).
		Scan(&t.Hash, &t.Kind, &t.FamilyID, &t.ClientID, &t.Username, &t.Scope, &t.Resource, db.scanTime(&t.FamilyExpiresAt), db.scanTime(&t.CreatedAt),
			db.scanTime(&t.ExpiresAt), db.scanTime(&t.RevokedAt), db.scanTime(&t.RotatedAt), &t.GraceResponse, db.scanTime(&t.LastUsedAt))
	if err != nil {
		return store.Token{}, fmt.Errorf("get token: %w", db.notFound(err))
	}
	return t, nil
}

// lookupTokenQuery selects only what a proxy check needs: no blob, no
// bookkeeping columns, fewer values to convert and copy on every cache
// miss. Both backends prepare reads once and reuse the statement (pgx per
// connection, SQLite per reader pool; see Config.Read).
// The user's groups come along (LEFT JOIN: a token outlives nothing, but
// a missing user must read as "no groups", not as "no token").
const lookupTokenQuery = `SELECT t.kind, t.client_id, t.username, t.scope, t.resource, t.expires_at, t.revoked_at, u.user_groups FROM tokens t LEFT JOIN users u ON u.username = t.username WHERE t.hash = $1 AND t.expires_at > $2`

// LookupToken passes its arguments and scan destinations in a pooled
// lookup: through the Querier interface they would escape, costing three
// allocations per proxy check (argument and destination slices, the token).
func (db *Store) LookupToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	l := lookups.Get().(*lookup)
	defer func() {
		*l = lookup{}
		lookups.Put(l)
	}()
	t := &l.t
	l.args = [...]any{hash, db.time(now)}
	l.dest = [...]any{&t.Kind, &t.ClientID, &t.Username, &t.Scope, &t.Resource, db.scanTime(&t.ExpiresAt), db.scanTime(&t.RevokedAt), db.scanStrings(&t.Groups)}
	if err := db.c.Read.QueryRow(ctx, lookupTokenQuery, l.args[:]...).Scan(l.dest[:]...); err != nil {
		return store.Token{}, fmt.Errorf("lookup token: %w", db.notFound(err))
	}
	if len(t.Groups) == 0 {
		t.Groups = nil
	}
	t.Hash = hash
	return *t, nil
}

// lookupTokensQuery is lookupTokenQuery for a list of hashes ($1).
func (db *Store) lookupTokensQuery() string {
	return `SELECT t.hash, t.kind, t.client_id, t.username, t.scope, t.resource, t.expires_at, t.revoked_at, u.user_groups FROM tokens t LEFT JOIN users u ON u.username = t.username WHERE t.hash ` +
		db.c.Dialect.InList + ` AND t.expires_at > $2`
}

// LookupTokens reads every hash in one statement: the proxy checks batch
// concurrent cache misses into it, so that a database server pays one
// round trip, parse and plan for many of them.
func (db *Store) LookupTokens(ctx context.Context, hashes []string, now time.Time) ([]store.Token, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	rows, err := db.c.Read.Query(ctx, db.lookupTokensQuery(), db.strings(hashes), db.time(now))
	if err != nil {
		return nil, fmt.Errorf("lookup tokens: %w", db.mapErr(err))
	}
	defer rows.Close()
	toks := make([]store.Token, 0, len(hashes))
	for rows.Next() {
		var t store.Token
		if err := rows.Scan(&t.Hash, &t.Kind, &t.ClientID, &t.Username, &t.Scope, &t.Resource, db.scanTime(&t.ExpiresAt), db.scanTime(&t.RevokedAt), db.scanStrings(&t.Groups)); err != nil {
			return nil, fmt.Errorf("lookup tokens: %w", db.mapErr(err))
		}
		if len(t.Groups) == 0 {
			t.Groups = nil
		}
		toks = append(toks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lookup tokens: %w", db.mapErr(err))
	}
	return toks, nil
}

// lookup is LookupToken's scratch space.
type lookup struct {
	t    store.Token
	args [2]any
	dest [8]any
}

var lookups = sync.Pool{New: func() any { return new(lookup) }}

func (db *Store) RotateRefresh(ctx context.Context, oldHash string, now time.Time, graceResponse []byte, access, refresh store.Token, audit store.AuditEvent) error {
	if graceResponse == nil {
		graceResponse = []byte{}
	}
	return db.write(ctx, "rotate refresh token", &audit, func(tx Querier) error {
		n, err := execN(ctx, tx, `UPDATE tokens SET rotated_at = $1, grace_response = $2, last_used_at = $3
			WHERE hash = $4 AND kind = 'refresh' AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $5`,
			db.time(now), graceResponse, db.time(now), oldHash, db.time(now))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrConflict
		}
		return db.insertGrant(ctx, tx, access, refresh, now)
	})
}

func (db *Store) RevokeToken(ctx context.Context, hash string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, "revoke token", now, audit, func(tx Querier) ([]string, error) {
		var kind, family string
		err := tx.QueryRow(ctx, `SELECT kind, family_id FROM tokens WHERE hash = $1`, hash).Scan(&kind, &family)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, nil // unknown tokens are not an error (RFC 7009)
		case err != nil:
			return nil, err
		case kind == store.KindRefresh:
			return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL RETURNING hash`, db.time(now), family)
		default:
			return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL RETURNING hash`, db.time(now), hash)
		}
	})
}

func (db *Store) RevokeFamily(ctx context.Context, familyID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revokeWhere(ctx, "revoke family", `family_id = $2`, []any{familyID}, now, audit)
}

func (db *Store) RevokeUserTokens(ctx context.Context, username, clientID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	if clientID == "" {
		return db.revokeWhere(ctx, "revoke user tokens", `username = $2`, []any{username}, now, audit)
	}
	return db.revokeWhere(ctx, "revoke user tokens", `username = $2 AND client_id = $3`, []any{username, clientID}, now, audit)
}

func (db *Store) revokeWhere(ctx context.Context, op, where string, args []any, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, op, now, audit, func(tx Querier) ([]string, error) {
		return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE `+where+` AND revoked_at IS NULL RETURNING hash`,
			append([]any{db.time(now)}, args...)...)
	})
}

// TouchToken sets LastUsedAt; ErrNotFound for an unknown token.
func (db *Store) TouchToken(ctx context.Context, hash string, now time.Time) error {
	return db.changeRow(ctx, "touch token", `UPDATE tokens SET last_used_at = $1 WHERE hash = $2`, db.time(now), hash)
}

// ---- consents ----

// PutConsent keeps the CreatedAt of an existing consent of the same
// client and resource and replaces scope and UpdatedAt.
func (db *Store) PutConsent(ctx context.Context, c store.Consent, audit *store.AuditEvent) error {
	return db.write(ctx, "put consent", audit, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO consents (username, client_id, resource, scope, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (username, client_id, resource) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at`,
			c.Username, c.ClientID, c.Resource, c.Scope, db.nullTime(c.CreatedAt), db.nullTime(c.UpdatedAt))
		return err
	})
}

const consentCols = `username, client_id, resource, scope, created_at, updated_at`

func (db *Store) scanConsent(r scanner) (store.Consent, error) {
	var c store.Consent
	err := r.Scan(&c.Username, &c.ClientID, &c.Resource, &c.Scope, db.scanTime(&c.CreatedAt), db.scanTime(&c.UpdatedAt))
	return c, err
}

func (db *Store) GetConsent(ctx context.Context, username, clientID, resource string) (store.Consent, error) {
	return readOne(ctx, db, "get consent", db.scanConsent, `SELECT `+consentCols+` FROM consents WHERE username = $1 AND client_id = $2 AND resource = $3`,
		username, clientID, resource)
}

func (db *Store) ListConsents(ctx context.Context, username string) ([]store.Consent, error) {
	return readAll(ctx, db, "list consents", db.scanConsent, `SELECT `+consentCols+` FROM consents
		WHERE username = $1 ORDER BY updated_at DESC, created_at DESC, client_id, resource`, username)
}

// DeleteConsent removes the user's consents for the client (every
// resource) and unredeemed codes for it, and revokes the user's tokens for
// it.
func (db *Store) DeleteConsent(ctx context.Context, username, clientID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revoke(ctx, "delete consent", now, audit, func(tx Querier) ([]string, error) {
		if err := execFound(ctx, tx, `DELETE FROM consents WHERE username = $1 AND client_id = $2`, username, clientID); err != nil {
			return nil, err
		}
		// Pending codes go too, so an authorization in flight cannot
		// mint tokens after the user revoked the client. A redemption
		// holding the code's row lock finishes first, and its tokens are
		// then visible to the revocation below.
		if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE username = $1 AND client_id = $2 AND used_at IS NULL`, username, clientID); err != nil {
			return nil, err
		}
		return revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE username = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING hash`,
			db.time(now), username, clientID)
	})
}

// ---- login failures ----

// ReserveLoginAttempt makes sure a row exists, then reads it under the
// dialect's lock (PostgreSQL: SELECT … FOR UPDATE; SQLite: the BEGIN
// IMMEDIATE write lock held since the transaction began): concurrent
// reservations for one account, in any process, queue on the lock and each
// sees the count the previous one wrote.
func (db *Store) ReserveLoginAttempt(ctx context.Context, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) (store.LoginFailures, bool, error) {
	var (
		out store.LoginFailures
		ok  bool
	)
	err := db.write(ctx, "reserve login attempt", nil, func(tx Querier) error {
		var cur store.LoginFailures
		for attempt := 0; ; attempt++ {
			// The placeholder's count of 0 reads as "no failures".
			if _, err := tx.Exec(ctx, `INSERT INTO login_failures (username, count, first_at, expires_at) VALUES ($1, 0, $2, $2)
				ON CONFLICT (username) DO NOTHING`, username, db.time(now)); err != nil {
				return err
			}
			err := tx.QueryRow(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = $1`+db.c.Dialect.ForUpdate, username).
				Scan(&cur.Username, &cur.Count, db.scanTime(&cur.FirstAt), db.scanTime(&cur.LockedUntil))
			// A successful login's ResetLoginFailures may delete the row
			// between the two statements (the lock wait ends on a
			// deleted row): insert it again. Each statement sees the
			// latest commits (READ COMMITTED on PostgreSQL; SQLite
			// writes one at a time), so this ends.
			if errors.Is(err, sql.ErrNoRows) && attempt < 10 {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		out, ok = store.ReserveLoginAttempt(cur, username, now, window, threshold, lockFor)
		if !ok {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE login_failures SET count = $2, first_at = $3, locked_until = $4, expires_at = $5 WHERE username = $1`,
			username, out.Count, db.time(out.FirstAt), db.nullTime(out.LockedUntil), db.time(out.ExpiresAt(window)))
		return err
	})
	if err != nil {
		return store.LoginFailures{}, false, err
	}
	return out, ok, nil
}

func (db *Store) GetLoginFailures(ctx context.Context, username string) (store.LoginFailures, error) {
	var f store.LoginFailures
	err := db.c.Read.QueryRow(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = $1`, username).
		Scan(&f.Username, &f.Count, db.scanTime(&f.FirstAt), db.scanTime(&f.LockedUntil))
	if errors.Is(err, sql.ErrNoRows) {
		return store.LoginFailures{}, nil
	}
	if err != nil {
		return store.LoginFailures{}, fmt.Errorf("get login failures: %w", db.mapErr(err))
	}
	return f, nil
}

func (db *Store) ResetLoginFailures(ctx context.Context, username string) error {
	if _, err := db.exec(ctx, `DELETE FROM login_failures WHERE username = $1`, username); err != nil {
		return fmt.Errorf("reset login failures: %w", err)
	}
	return nil
}

// ---- settings ----

func (db *Store) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := db.c.Read.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("get setting: %w", db.notFound(err))
	}
	return v, nil
}

func (db *Store) PutSetting(ctx context.Context, key, value string, now time.Time) error {
	_, err := db.exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, value, db.time(now))
	if err != nil {
		return fmt.Errorf("put setting: %w", err)
	}
	return nil
}

// ---- audit ----

// insertAudit appends e, if not nil, and sets its ID.
func (db *Store) insertAudit(ctx context.Context, tx Querier, e *store.AuditEvent) error {
	if e == nil {
		return nil
	}
	if e.CreatedAt.IsZero() {
		// The recorder stamps events; this only keeps a forgetful caller's
		// row in order rather than at year 1.
		e.CreatedAt = time.Now()
	}
	err := tx.QueryRow(ctx, `INSERT INTO auth_logs (event, success, ip, user_agent, client_id, username, error, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		e.Event, e.Success, e.IP, e.UserAgent, e.ClientID, e.Username, e.Error, db.time(e.CreatedAt)).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("insert audit row: %w", err)
	}
	return nil
}

// RecordAudit appends e; a zero CreatedAt is replaced by the current time.
func (db *Store) RecordAudit(ctx context.Context, e store.AuditEvent) error {
	return db.write(ctx, "record audit", &e, func(Querier) error { return nil })
}

func (db *Store) scanAuditEvent(r scanner) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := r.Scan(&e.ID, &e.Event, &e.Success, &e.IP, &e.UserAgent, &e.ClientID, &e.Username, &e.Error, db.scanTime(&e.CreatedAt))
	return e, err
}

func (db *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if !f.Since.IsZero() {
		add("created_at >=", db.time(f.Since))
	}
	if f.Event != "" {
		add("event =", f.Event)
	}
	if f.Username != "" {
		add("username =", f.Username)
	}
	if f.ClientID != "" {
		add("client_id =", f.ClientID)
	}
	if f.FailedOnly {
		where = append(where, "NOT success")
	}
	q := `SELECT id, event, success, ip, user_agent, client_id, username, error, created_at FROM auth_logs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += " LIMIT $" + strconv.Itoa(len(args))
	}
	return readAll(ctx, db, "list audit", db.scanAuditEvent, q, args...)
}

// ---- cleanup ----

// DeleteBatch is how many rows DeleteExpired deletes per transaction by
// default. SQLite has one writer: a batch holds it for tens of
// milliseconds, so logins, token issuance and revocation wait at most
// about that long behind a cleanup, however many rows it removes.
const DeleteBatch = 10000

// SetDeleteBatch makes DeleteExpired on s delete at most n rows per
// transaction instead of DeleteBatch, so a test can run a cleanup of many
// batches without writing many rows. Call it before s is used.
func SetDeleteBatch(s *Store, n int) { s.deleteBatch = n }

// sweep is one table DeleteExpired empties of old rows: those whose col
// is before (or at, when inclusive) a time. key is the primary key; col
// has an index, so a batch reads only the rows it deletes instead of
// scanning the table.
type sweep struct {
	table, key, col string
	inclusive       bool
}

// expiredSweeps delete what expired at now.
var expiredSweeps = []sweep{
	{"sessions", "id_hash", "expires_at", true},
	{"auth_codes", "code_hash", "expires_at", true},
	{"tokens", "hash", "expires_at", true},
	{"login_failures", "username", "expires_at", true},
	{"spent_nonces", "hash", "expires_at", true},
}

// auditSweep deletes audit rows created before the retention cutoff.
var auditSweep = sweep{"auth_logs", "id", "created_at", false}

func (db *Store) DeleteExpired(ctx context.Context, now, auditBefore time.Time) (int64, error) {
	var total int64
	for _, sw := range expiredSweeps {
		n, err := db.deleteBatched(ctx, sw, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	if db.c.Cleanup != nil {
		if err := db.write(ctx, "delete expired", nil, func(tx Querier) error {
			return db.c.Cleanup(ctx, tx, now)
		}); err != nil {
			return total, err
		}
	}
	if !auditBefore.IsZero() {
		n, err := db.deleteBatched(ctx, auditSweep, auditBefore)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteBatched deletes sw's rows older than cutoff in transactions of at
// most db.deleteBatch rows, until one deletes fewer, and returns how many
// rows the committed batches deleted. ORDER BY the indexed column makes
// PostgreSQL walk the index rather than scan the heap, whose front fills
// with the dead rows of earlier batches until vacuum.
//
// A cancelled ctx stops it between batches only: a batch once begun runs
// without ctx's cancellation, since a commit cut off by it may have
// happened or not, and the count returned would be wrong by a batch. One
// batch is short.
func (db *Store) deleteBatched(ctx context.Context, sw sweep, cutoff time.Time) (int64, error) {
	op := " < $1"
	if sw.inclusive {
		op = " <= $1"
	}
	in := db.c.Dialect.InKeys
	if in == "" {
		in = "IN (%s)"
	}
	q := `DELETE FROM ` + sw.table + ` WHERE ` + sw.key + ` ` + fmt.Sprintf(in, `SELECT `+sw.key+` FROM `+sw.table+
		` WHERE `+sw.col+op+` ORDER BY `+sw.col+` LIMIT $2`)
	arg := db.time(cutoff)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("delete expired %s: %w", sw.table, err)
		}
		var n int64
		ctx := context.WithoutCancel(ctx)
		err := db.write(ctx, "delete expired "+sw.table, nil, func(tx Querier) error {
			var err error
			n, err = tx.Exec(ctx, q, arg, db.deleteBatch)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(db.deleteBatch) {
			return total, nil
		}
	}
}

// ---- helpers ----

func execN(ctx context.Context, tx Querier, query string, args ...any) (int64, error) {
	return tx.Exec(ctx, query, args...)
}

// execFound runs a write that must find its row: store.ErrNotFound if it
// changed none.
func execFound(ctx context.Context, tx Querier, query string, args ...any) error {
	n, err := tx.Exec(ctx, query, args...)
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

// conflictUnlessMissing says why a conditional write changed nothing:
// store.ErrNotFound if query, a SELECT of the row it meant, finds none,
// store.ErrConflict if the row is there but not in the state the write
// required.
func conflictUnlessMissing(ctx context.Context, tx Querier, query string, args ...any) error {
	var v any
	err := tx.QueryRow(ctx, query, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return store.ErrConflict
}

// lockUserRow reads the user's row of table under the dialect's write
// lock (Dialect.ForUpdate) and fails with store.ErrNotFound if there is
// none: the transaction then writes rows that belong to it.
func (db *Store) lockUserRow(ctx context.Context, tx Querier, table, username string) error {
	var u string
	err := tx.QueryRow(ctx, `SELECT username FROM `+table+` WHERE username = $1`+db.c.Dialect.ForUpdate, username).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// exec runs one statement outside an explicit transaction and returns the
// number of rows it changed.
func (db *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	n, err := db.c.Write.Exec(ctx, query, args...)
	return n, db.mapErr(err)
}

// changeRow is execFound on the write pool, outside a transaction, with
// the error mapped and wrapped with op.
func (db *Store) changeRow(ctx context.Context, op, query string, args ...any) error {
	if err := execFound(ctx, db.c.Write, query, args...); err != nil {
		return fmt.Errorf("%s: %w", op, db.mapErr(err))
	}
	return nil
}

// revokeAll runs a revoking statement (UPDATE … SET revoked_at … WHERE …
// AND revoked_at IS NULL RETURNING hash, or a DELETE … RETURNING hash)
// until it finds nothing more, and returns every hash it hit.
//
// One statement is not enough at READ COMMITTED: when it waits for a
// concurrent rotation holding a token's row lock, it then re-checks that
// row but never sees the tokens the rotation inserted. Those are visible to
// the next statement, which therefore runs until a pass comes back empty.
// A rotation that starts later finds its token revoked (or gone) and fails.
// On SQLite, whose writers never overlap, the second pass finds nothing.
func revokeAll(ctx context.Context, tx Querier, query string, args ...any) ([]string, error) {
	var all []string
	for {
		hashes, err := queryStrings(ctx, tx, query, args...)
		if err != nil {
			return nil, err
		}
		if len(hashes) == 0 {
			return all, nil
		}
		all = append(all, hashes...)
	}
}

func queryStrings(ctx context.Context, tx Querier, query string, args ...any) ([]string, error) {
	return queryAll(ctx, tx, scanString, query, args...)
}

func scanString(r scanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

// queryAll runs query on q and scans every row with scan. It returns
// errors as they come; callers map and wrap them.
func queryAll[T any](ctx context.Context, q Querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
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

// readOne reads the one row of query from the read pool with scan. No row
// is store.ErrNotFound; every error is mapped and wrapped with op.
func readOne[T any](ctx context.Context, db *Store, op string, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	v, err := scan(db.c.Read.QueryRow(ctx, query, args...))
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", op, db.notFound(err))
	}
	return v, nil
}

// readAll reads every row of query from the read pool with scan; errors
// are mapped and wrapped with op.
func readAll[T any](ctx context.Context, db *Store, op string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	out, err := queryAll(ctx, db.c.Read, scan, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, db.mapErr(err))
	}
	return out, nil
}

// notFound maps sql.ErrNoRows to store.ErrNotFound and other errors with
// mapErr.
func (db *Store) notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return db.mapErr(err)
}
