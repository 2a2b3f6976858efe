package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/passgate/passgate/store"
)

// The methods below implement store.Store, whose doc comments state their
// contracts; comments here add only what is specific to this backend.

// ---- users ----

func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.exec(ctx, `INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4)`,
		u.Username, u.PasswordHash, ntv(u.CreatedAt), ntv(u.UpdatedAt))
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
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE username = $1`, username))
	if err != nil {
		return store.User{}, fmt.Errorf("get user: %w", notFound(err))
	}
	return u, nil
}

func (db *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY username`)
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
// their tokens in one transaction; the revoked hashes are notified.
func (db *DB) SetPassword(ctx context.Context, username, hash string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3`, hash, ntv(now), username)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE username = $1`, username); err != nil {
			return err
		}
		hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL RETURNING hash`, tv(now), username)
		if err != nil {
			return err
		}
		return finishRevocation(ctx, tx, hashes, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("set password: %w", err)
	}
	return hashes, nil
}

// DeleteUser deletes the user's row, sessions, consents, lockout state,
// unredeemed codes and tokens; the deleted token hashes are published.
func (db *DB) DeleteUser(ctx context.Context, username string, now time.Time) error {
	var hashes []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM users WHERE username = $1`, username)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		for _, q := range []string{
			`DELETE FROM sessions WHERE username = $1`,
			`DELETE FROM consents WHERE username = $1`,
			`DELETE FROM login_failures WHERE username = $1`,
			`DELETE FROM auth_codes WHERE username = $1`,
		} {
			if _, err := tx.Exec(ctx, q, username); err != nil {
				return err
			}
		}
		// Every deleted token counts as revoked for the caches, even
		// one revoked earlier: dropping it again is harmless.
		hashes, err = revokeAll(ctx, tx, `DELETE FROM tokens WHERE username = $1 RETURNING hash`, username)
		if err != nil {
			return err
		}
		return notify(ctx, tx, hashes)
	})
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// ---- clients ----

const clientCols = `id, secret_hash, name, redirect_uris, token_endpoint_auth_method, grant_types, scope, source, client_uri, logo_uri, created_at, last_used_at`

func (db *DB) CreateClient(ctx context.Context, c store.Client) error {
	_, err := db.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		c.ID, c.SecretHash, c.Name, nonNil(c.RedirectURIs), c.TokenEndpointAuthMethod, nonNil(c.GrantTypes), c.Scope, c.Source,
		c.ClientURI, c.LogoURI, ntv(c.CreatedAt), ntv(c.LastUsedAt))
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
	if err := r.Scan(&c.ID, &c.SecretHash, &c.Name, &c.RedirectURIs, &c.TokenEndpointAuthMethod, &c.GrantTypes, &c.Scope, &c.Source,
		&c.ClientURI, &c.LogoURI, tm(&c.CreatedAt), tm(&c.LastUsedAt)); err != nil {
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

func (db *DB) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(db.pool.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
	if err != nil {
		return store.Client{}, fmt.Errorf("get client: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE client_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, id); err != nil {
			return err
		}
		hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL RETURNING hash`, tv(now), id)
		if err != nil {
			return err
		}
		return notify(ctx, tx, hashes)
	})
	if err != nil {
		return fmt.Errorf("delete client: %w", err)
	}
	return nil
}

func (db *DB) DeleteStaleClients(ctx context.Context, olderThan time.Time) ([]string, error) {
	var ids []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		ids, err = queryStrings(ctx, tx, `DELETE FROM clients
			WHERE source = $1 AND last_used_at IS NULL AND created_at < $2 RETURNING id`,
			store.ClientDynamic, tv(olderThan))
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE client_id = $1`, id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, id); err != nil {
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
	_, err := db.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.IDHash, s.Username, s.CSRFToken, s.IP, s.UserAgent, ntv(s.CreatedAt), tv(s.ExpiresAt), ntv(s.LastSeenAt))
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func (db *DB) GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error) {
	s, err := scanSession(db.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id_hash = $1 AND expires_at > $2`, idHash, tv(now)))
	if err != nil {
		return store.Session{}, fmt.Errorf("get session: %w", notFound(err))
	}
	return s, nil
}

func (db *DB) TouchSession(ctx context.Context, idHash string, now time.Time) error {
	n, err := db.exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2`, ntv(now), idHash)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch session: %w", store.ErrNotFound)
	}
	return nil
}

func (db *DB) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := db.exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (db *DB) ListSessions(ctx context.Context, username string, now time.Time) ([]store.Session, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE expires_at > $1`
	args := []any{tv(now)}
	if username != "" {
		q += ` AND username = $2`
		args = append(args, username)
	}
	rows, err := db.pool.Query(ctx, q+` ORDER BY created_at DESC, id_hash`, args...)
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
	n, err := db.exec(ctx, `DELETE FROM sessions WHERE username = $1`, username)
	if err != nil {
		return 0, fmt.Errorf("delete user sessions: %w", err)
	}
	return int(n), nil
}

// ---- codes ----

const codeCols = `code_hash, client_id, username, redirect_uri, code_challenge, code_challenge_method, scope, resource, family_id, created_at, expires_at, used_at`

func (db *DB) CreateAuthCode(ctx context.Context, c store.AuthCode, audit *store.AuditEvent) error {
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO auth_codes (`+codeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			c.CodeHash, c.ClientID, c.Username, c.RedirectURI, c.CodeChallenge, c.CodeChallengeMethod, c.Scope, c.Resource,
			c.FamilyID, ntv(c.CreatedAt), tv(c.ExpiresAt), ntv(c.UsedAt)); err != nil {
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
	err := db.pool.QueryRow(ctx, `SELECT `+codeCols+` FROM auth_codes WHERE code_hash = $1 AND expires_at > $2`, codeHash, tv(now)).
		Scan(&c.CodeHash, &c.ClientID, &c.Username, &c.RedirectURI, &c.CodeChallenge, &c.CodeChallengeMethod, &c.Scope, &c.Resource,
			&c.FamilyID, tm(&c.CreatedAt), tm(&c.ExpiresAt), tm(&c.UsedAt))
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("get auth code: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) RedeemCode(ctx context.Context, codeHash string, now time.Time, g store.CodeGrant) error {
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $3`,
			tv(now), codeHash, tv(now))
		if err != nil {
			return err
		}
		if n == 0 {
			var usedAt time.Time
			err := tx.QueryRow(ctx, `SELECT used_at FROM auth_codes WHERE code_hash = $1 AND expires_at > $2`, codeHash, tv(now)).Scan(tm(&usedAt))
			if errors.Is(err, pgx.ErrNoRows) {
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

func insertToken(ctx context.Context, tx pgx.Tx, t store.Token) error {
	var grace any
	if t.GraceResponse != nil {
		grace = t.GraceResponse
	}
	_, err := tx.Exec(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		t.Hash, t.Kind, t.FamilyID, t.ClientID, t.Username, t.Scope, t.Resource, ntv(t.FamilyExpiresAt), ntv(t.CreatedAt),
		tv(t.ExpiresAt), ntv(t.RevokedAt), ntv(t.RotatedAt), grace, ntv(t.LastUsedAt))
	if err != nil {
		return fmt.Errorf("insert %s token: %w", t.Kind, err)
	}
	return nil
}

func touchClient(ctx context.Context, tx pgx.Tx, clientID string, now time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE clients SET last_used_at = $1 WHERE id = $2`, tv(now), clientID); err != nil {
		return fmt.Errorf("touch client: %w", err)
	}
	return nil
}

func (db *DB) GetToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	var t store.Token
	err := db.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = $1 AND expires_at > $2`, hash, tv(now)).
		Scan(&t.Hash, &t.Kind, &t.FamilyID, &t.ClientID, &t.Username, &t.Scope, &t.Resource, tm(&t.FamilyExpiresAt), tm(&t.CreatedAt),
			tm(&t.ExpiresAt), tm(&t.RevokedAt), tm(&t.RotatedAt), &t.GraceResponse, tm(&t.LastUsedAt))
	if err != nil {
		return store.Token{}, fmt.Errorf("get token: %w", notFound(err))
	}
	return t, nil
}

// lookupTokenQuery selects only what a proxy check needs: no blob, no
// bookkeeping columns. pgx prepares it once per connection and caches the
// statement (its default QueryExecModeCacheStatement), so a lookup is one
// round trip with no parsing or planning.
const lookupTokenQuery = `SELECT kind, client_id, username, scope, resource, expires_at, revoked_at FROM tokens WHERE hash = $1 AND expires_at > $2`

func (db *DB) LookupToken(ctx context.Context, hash string, now time.Time) (store.Token, error) {
	t := store.Token{Hash: hash}
	err := db.pool.QueryRow(ctx, lookupTokenQuery, hash, tv(now)).
		Scan(&t.Kind, &t.ClientID, &t.Username, &t.Scope, &t.Resource, tm(&t.ExpiresAt), tm(&t.RevokedAt))
	if err != nil {
		return store.Token{}, fmt.Errorf("lookup token: %w", notFound(err))
	}
	return t, nil
}

func (db *DB) RotateRefresh(ctx context.Context, oldHash string, now time.Time, graceResponse []byte, access, refresh store.Token, audit store.AuditEvent) error {
	if graceResponse == nil {
		graceResponse = []byte{}
	}
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `UPDATE tokens SET rotated_at = $1, grace_response = $2, last_used_at = $3
			WHERE hash = $4 AND kind = 'refresh' AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $5`,
			tv(now), graceResponse, tv(now), oldHash, tv(now))
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var kind, family string
		err := tx.QueryRow(ctx, `SELECT kind, family_id FROM tokens WHERE hash = $1`, hash).Scan(&kind, &family)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			err = nil // unknown tokens are not an error (RFC 7009)
		case err != nil:
			return err
		case kind == store.KindRefresh:
			hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL RETURNING hash`, tv(now), family)
		default:
			hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL RETURNING hash`, tv(now), hash)
		}
		if err != nil {
			return err
		}
		return finishRevocation(ctx, tx, hashes, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	return hashes, nil
}

func (db *DB) RevokeFamily(ctx context.Context, familyID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	return db.revokeWhere(ctx, "revoke family", `family_id = $2`, []any{familyID}, now, audit)
}

func (db *DB) RevokeUserTokens(ctx context.Context, username, clientID string, now time.Time, audit *store.AuditEvent) ([]string, error) {
	if clientID == "" {
		return db.revokeWhere(ctx, "revoke user tokens", `username = $2`, []any{username}, now, audit)
	}
	return db.revokeWhere(ctx, "revoke user tokens", `username = $2 AND client_id = $3`, []any{username, clientID}, now, audit)
}

func (db *DB) revokeWhere(ctx context.Context, op, where string, args []any, now time.Time, audit *store.AuditEvent) ([]string, error) {
	var hashes []string
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var err error
		hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE `+where+` AND revoked_at IS NULL RETURNING hash`,
			append([]any{tv(now)}, args...)...)
		if err != nil {
			return err
		}
		return finishRevocation(ctx, tx, hashes, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return hashes, nil
}

// finishRevocation ends a revoking transaction: it queues the
// notification of the revoked hashes and writes the audit row, if any.
func finishRevocation(ctx context.Context, tx pgx.Tx, hashes []string, audit *store.AuditEvent) error {
	if err := notify(ctx, tx, hashes); err != nil {
		return err
	}
	if audit != nil {
		return insertAudit(ctx, tx, audit)
	}
	return nil
}

// TouchToken sets LastUsedAt; ErrNotFound for an unknown token.
func (db *DB) TouchToken(ctx context.Context, hash string, now time.Time) error {
	n, err := db.exec(ctx, `UPDATE tokens SET last_used_at = $1 WHERE hash = $2`, tv(now), hash)
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO consents (username, client_id, resource, scope, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (username, client_id, resource) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at`,
			c.Username, c.ClientID, c.Resource, c.Scope, ntv(c.CreatedAt), ntv(c.UpdatedAt)); err != nil {
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
	c, err := scanConsent(db.pool.QueryRow(ctx, `SELECT `+consentCols+` FROM consents WHERE username = $1 AND client_id = $2 AND resource = $3`,
		username, clientID, resource))
	if err != nil {
		return store.Consent{}, fmt.Errorf("get consent: %w", notFound(err))
	}
	return c, nil
}

func (db *DB) ListConsents(ctx context.Context, username string) ([]store.Consent, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+consentCols+` FROM consents
		WHERE username = $1 ORDER BY updated_at DESC, created_at DESC, client_id, resource`, username)
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		n, err := execN(ctx, tx, `DELETE FROM consents WHERE username = $1 AND client_id = $2`, username, clientID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		// Pending codes go too, so an authorization in flight cannot
		// mint tokens after the user revoked the client. A redemption
		// holding the code's row lock finishes first, and its tokens are
		// then visible to the revocation below.
		if _, err := tx.Exec(ctx, `DELETE FROM auth_codes WHERE username = $1 AND client_id = $2 AND used_at IS NULL`, username, clientID); err != nil {
			return err
		}
		hashes, err = revokeAll(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE username = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING hash`,
			tv(now), username, clientID)
		if err != nil {
			return err
		}
		return finishRevocation(ctx, tx, hashes, audit)
	})
	if err != nil {
		return nil, fmt.Errorf("delete consent: %w", err)
	}
	return hashes, nil
}

// ---- login failures ----

// ReserveLoginAttempt makes sure a row exists, then locks it with SELECT …
// FOR UPDATE: concurrent reservations for one account, on any replica,
// queue on the row lock and each sees the count the previous one wrote.
func (db *DB) ReserveLoginAttempt(ctx context.Context, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) (store.LoginFailures, bool, error) {
	var (
		out store.LoginFailures
		ok  bool
	)
	err := db.tx(ctx, func(tx pgx.Tx) error {
		var cur store.LoginFailures
		for attempt := 0; ; attempt++ {
			// The placeholder's count of 0 reads as "no failures".
			if _, err := tx.Exec(ctx, `INSERT INTO login_failures (username, count, first_at, expires_at) VALUES ($1, 0, $2, $2)
				ON CONFLICT (username) DO NOTHING`, username, tv(now)); err != nil {
				return err
			}
			err := tx.QueryRow(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = $1 FOR UPDATE`, username).
				Scan(&cur.Username, &cur.Count, tm(&cur.FirstAt), tm(&cur.LockedUntil))
			// A successful login's ResetLoginFailures may delete the row
			// between the two statements (the lock wait ends on a
			// deleted row): insert it again. Each statement sees the
			// latest commits (READ COMMITTED), so this ends.
			if errors.Is(err, pgx.ErrNoRows) && attempt < 10 {
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
			username, out.Count, tv(out.FirstAt), ntv(out.LockedUntil), tv(out.ExpiresAt(window)))
		return err
	})
	if err != nil {
		return store.LoginFailures{}, false, fmt.Errorf("reserve login attempt: %w", err)
	}
	return out, ok, nil
}

func (db *DB) GetLoginFailures(ctx context.Context, username string) (store.LoginFailures, error) {
	var f store.LoginFailures
	err := db.pool.QueryRow(ctx, `SELECT username, count, first_at, locked_until FROM login_failures WHERE username = $1`, username).
		Scan(&f.Username, &f.Count, tm(&f.FirstAt), tm(&f.LockedUntil))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.LoginFailures{}, nil
	}
	if err != nil {
		return store.LoginFailures{}, fmt.Errorf("get login failures: %w", mapErr(err))
	}
	return f, nil
}

func (db *DB) ResetLoginFailures(ctx context.Context, username string) error {
	if _, err := db.exec(ctx, `DELETE FROM login_failures WHERE username = $1`, username); err != nil {
		return fmt.Errorf("reset login failures: %w", err)
	}
	return nil
}

// ---- settings ----

func (db *DB) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("get setting: %w", notFound(err))
	}
	return v, nil
}

func (db *DB) PutSetting(ctx context.Context, key, value string, now time.Time) error {
	_, err := db.exec(ctx, `INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, key, value, tv(now))
	if err != nil {
		return fmt.Errorf("put setting: %w", err)
	}
	return nil
}

// ---- audit ----

func insertAudit(ctx context.Context, tx pgx.Tx, e *store.AuditEvent) error {
	if e.CreatedAt.IsZero() {
		// The recorder stamps events; this only keeps a forgetful caller's
		// row in order rather than at year 1.
		e.CreatedAt = time.Now()
	}
	err := tx.QueryRow(ctx, `INSERT INTO auth_logs (event, success, ip, user_agent, client_id, username, error, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		e.Event, e.Success, e.IP, e.UserAgent, e.ClientID, e.Username, e.Error, tv(e.CreatedAt)).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("insert audit row: %w", err)
	}
	return nil
}

// RecordAudit appends e; a zero CreatedAt is replaced by the current time.
func (db *DB) RecordAudit(ctx context.Context, e store.AuditEvent) error {
	err := db.tx(ctx, func(tx pgx.Tx) error { return insertAudit(ctx, tx, &e) })
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
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if !f.Since.IsZero() {
		add("created_at >=", tv(f.Since))
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
	rows, err := db.pool.Query(ctx, q, args...)
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
	err := db.tx(ctx, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM sessions WHERE expires_at <= $1`,
			`DELETE FROM auth_codes WHERE expires_at <= $1`,
			`DELETE FROM tokens WHERE expires_at <= $1`,
			`DELETE FROM login_failures WHERE expires_at <= $1`,
		} {
			n, err := execN(ctx, tx, q, tv(now))
			if err != nil {
				return err
			}
			total += n
		}
		if !auditBefore.IsZero() {
			n, err := execN(ctx, tx, `DELETE FROM auth_logs WHERE created_at < $1`, tv(auditBefore))
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

func execN(ctx context.Context, tx pgx.Tx, query string, args ...any) (int64, error) {
	tag, err := tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// exec runs one statement outside an explicit transaction and returns the
// number of rows it changed.
func (db *DB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := db.pool.Exec(ctx, query, args...)
	if err != nil {
		return 0, mapErr(err)
	}
	return tag.RowsAffected(), nil
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
func revokeAll(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]string, error) {
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

func queryStrings(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, query, args...)
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
func collect[T any](rows pgx.Rows, scan func(scanner) (T, error)) ([]T, error) {
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

// notFound maps pgx.ErrNoRows to store.ErrNotFound and other errors with
// mapErr.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return mapErr(err)
}
