// Package store defines what passgate keeps across restarts: users, OAuth
// clients, browser sessions, authorization codes, tokens, consents, API
// keys, second factors (sealed TOTP secrets, recovery code hashes,
// passkeys, spent WebAuthn challenges), login
// failure counters and the audit log. It holds the Store interface, its
// domain types and sentinel errors; the backends live in store/sqlite and
// store/postgres and both pass the suite in store/storetest.
//
// Secrets never reach the store in clear: session IDs, authorization codes,
// access and refresh tokens, API keys and recovery codes are identified by the SHA-256 hash
// of their value (see internal/token), passwords and client secrets by a password
// hash (see internal/passwd).
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends map driver errors onto these at their edge, and
// callers compare with errors.Is.
var (
	// ErrNotFound: no such row, or the row has expired.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a unique constraint would be violated.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrConflict: a conditional state change lost: the code was already
	// redeemed, the refresh token already rotated or revoked.
	ErrConflict = errors.New("store: conflict")
	// ErrUnavailable wraps failures to reach the database (connection
	// refused, timeouts). Callers answer 503 / temporarily_unavailable and
	// the checks fail closed for uncached tokens.
	ErrUnavailable = errors.New("store: unavailable")
)

// Token kinds.
const (
	KindAccess  = "access"
	KindRefresh = "refresh"
)

// Client sources.
const (
	ClientStatic  = "static"  // pre-registered by the CLI or OAUTH_CLIENT_ID
	ClientDynamic = "dynamic" // RFC 7591 dynamic registration
)

// User is a person who logs in with a password.
type User struct {
	Username     string
	PasswordHash string // bcrypt ($2a$/$2b$/$2y$) or argon2id PHC string
	// Groups are the access-policy groups the user belongs to, sorted and
	// without duplicates; nil when none. ValidGroup says what a name may be.
	Groups    []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Client is an OAuth client known to passgate. Clients identified by a
// Client ID Metadata Document URL are not stored here.
type Client struct {
	ID string
	// SecretHash is empty for public clients (auth method "none").
	SecretHash string
	Name       string
	// RedirectURIs are matched exactly (loopback ports excepted).
	RedirectURIs []string
	// TokenEndpointAuthMethod is "none", "client_secret_basic" or
	// "client_secret_post"; the token endpoint holds the client to it.
	TokenEndpointAuthMethod string
	GrantTypes              []string
	Scope                   string
	Source                  string // ClientStatic or ClientDynamic
	// ClientURI and LogoURI are optional registration metadata.
	ClientURI  string
	LogoURI    string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero until the first successful grant
}

// Session is a browser session after a successful login.
type Session struct {
	IDHash     string // SHA-256 of the cookie value
	Username   string
	CSRFToken  string // random per session, compared in constant time
	IP         string
	UserAgent  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastSeenAt time.Time
	// Pending marks a session whose password was right but whose second
	// factor is still owed (or must first be enrolled): it only reaches
	// the second-factor and enrolment pages, never consent, connected
	// apps or the account page.
	Pending bool
}

// AuthCode is an authorization code, valid once for ten minutes.
type AuthCode struct {
	CodeHash            string
	ClientID            string
	Username            string
	RedirectURI         string
	CodeChallenge       string
	CodeChallengeMethod string // "S256"
	Scope               string
	Resource            string
	// FamilyID is the ID every token issued from this code carries, so a
	// replayed code (or a reused refresh token) can revoke all of them.
	FamilyID  string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero until redeemed
}

// Token is an access or refresh token.
type Token struct {
	Hash     string // SHA-256 hex of the token value
	Kind     string // KindAccess or KindRefresh
	FamilyID string
	ClientID string
	Username string
	Scope    string
	Resource string // audience (RFC 8707)
	// Groups is, from LookupToken only, the token's user's current groups
	// (nil for none, or when the user no longer exists): the checks judge
	// the access policy on them. Every other method leaves it nil.
	Groups []string
	// FamilyExpiresAt is the absolute end of the refresh family's life
	// (issue time of the first token plus the absolute refresh lifetime);
	// every token of the family carries it so rotation can cap ExpiresAt.
	FamilyExpiresAt time.Time
	CreatedAt       time.Time
	ExpiresAt       time.Time
	RevokedAt       time.Time // zero unless revoked
	// RotatedAt is set on a refresh token once it has been exchanged.
	RotatedAt time.Time
	// GraceResponse is, for a rotated refresh token, the token response
	// sealed with a key derived from the old refresh token's value (never
	// stored). A client that races itself within the grace window gets the
	// same answer again; without the old token the blob is useless.
	GraceResponse []byte
	LastUsedAt    time.Time
}

// Consent records that a user approved a client for a set of scopes on one
// resource (RFC 8707): an approval for one MCP server says nothing about
// another.
type Consent struct {
	Username string
	ClientID string
	// Resource is the protected resource the approval is for. It is ""
	// only on rows recorded before consents were kept per resource; such
	// a row matches no request (every request names a configured
	// resource) but still lists the client and is removed with it.
	Resource  string
	Scope     string // space-separated, sorted
	CreatedAt time.Time
	UpdatedAt time.Time
}

// APIKey is a named, long-lived bearer credential for scripts
// (`passgate apikey add`), accepted by the checks only for its Resources
// and carrying Scope like a token. Keys do not expire; they end when
// revoked.
type APIKey struct {
	// Name is unique forever: a revoked key keeps its name, so an audit
	// row or the identity header apikey:NAME always means one key.
	Name string
	Hash string // SHA-256 hex of the key (internal/token); the key itself is never stored
	// Resources are the resource URLs (RFC 8707 audiences) the key is
	// accepted for, as configured; at least one.
	Resources []string
	Scope     string // space-separated; may be empty
	CreatedAt time.Time
	RevokedAt time.Time // zero unless revoked
}

// LoginFailures is the lockout state of one account.
type LoginFailures struct {
	Username    string
	Count       int
	FirstAt     time.Time // start of the current window
	LockedUntil time.Time // zero unless locked
}

// Audit event names. The first six are mcp-oauth-password's and stay valid
// for people who migrate their queries.
const (
	EventLoginSuccess         = "login_success"
	EventLoginFailure         = "login_failure"
	EventTokenExchange        = "token_exchange"
	EventTokenFailure         = "token_failure"
	EventAuthorizeRequest     = "authorize_request"
	EventClientRegistration   = "client_registration"
	EventConsentGranted       = "consent_granted"
	EventConsentDenied        = "consent_denied"
	EventLogout               = "logout"
	EventTokenRefresh         = "token_refresh"
	EventRefreshReuseDetected = "refresh_reuse_detected"
	EventTokenRevoked         = "token_revoked"
	EventAccountLocked        = "account_locked"
	EventRateLimited          = "rate_limited"
	EventClientDeleted        = "client_deleted"
	EventAPIKeyCreated        = "api_key_created"
	EventAPIKeyRevoked        = "api_key_revoked"
	EventPasswordChanged      = "password_changed"
	EventGroupsChanged        = "groups_changed"
	// EventAccessDenied: the access policy refused a user at
	// /oauth/authorize (Error names the reason).
	EventAccessDenied = "access_denied"
	// Second factors.
	EventMFAEnrolled        = "mfa_enrolled"
	EventMFARemoved         = "mfa_removed"
	EventMFASuccess         = "mfa_success"
	EventMFAFailure         = "mfa_failure"
	EventRecoveryCodeUsed   = "recovery_code_used"
	EventRecoveryCodesReset = "recovery_codes_regenerated"
	EventMFAReset           = "mfa_reset"
	EventPasskeyAdded       = "passkey_added"
	EventPasskeyRemoved     = "passkey_removed"
	EventPasskeyLogin       = "passkey_login"
)

// Passkey is a WebAuthn credential a user registered. Its ID is the
// credential ID the authenticator chose (unique across users).
type Passkey struct {
	ID       []byte
	Username string
	// Name is what the user calls it ("Work laptop").
	Name string
	// Record is the relying party's full credential record (public key,
	// attestation, flags), opaque to the store.
	Record []byte
	// SignCount is the authenticator's signature counter at the last use
	// (0 for authenticators without one, such as most synced passkeys).
	SignCount uint32
	// BackupEligible and BackupState are the credential's backup flags:
	// whether it may be synced to other devices, and whether it is.
	BackupEligible, BackupState bool
	CreatedAt                   time.Time
	LastUsedAt                  time.Time // zero until the first sign-in
}

// TOTP is a user's confirmed time-based one-time password secret (RFC
// 6238). A user has at most one.
type TOTP struct {
	Username string
	// Secret is the shared secret sealed (AEAD) by the caller with a key
	// the store never sees; a copy of the database alone cannot compute
	// codes.
	Secret []byte
	// LastStep is the highest time step (Unix time / period) a code was
	// accepted for; UseTOTPStep refuses it and every earlier step, so a
	// code cannot be replayed within its window.
	LastStep   int64
	CreatedAt  time.Time
	LastUsedAt time.Time // zero until the first sign-in with a code
}

// AuditEvent is one row of the auth_logs table.
type AuditEvent struct {
	ID        int64 // assigned by the store
	Event     string
	Success   bool
	IP        string
	UserAgent string
	ClientID  string
	Username  string
	Error     string // an OAuth error code or short reason; never a secret
	CreatedAt time.Time
}

// AuditFilter selects audit rows. Zero fields match everything.
type AuditFilter struct {
	Since      time.Time
	Event      string
	Username   string
	ClientID   string
	FailedOnly bool
	Limit      int // 0: no limit
}

// Invalidation tells token caches which tokens are no longer valid.
type Invalidation struct {
	// TokenHashes lists the revoked tokens and API keys (both are cached
	// under the hash of their value, which never collide: their prefixes
	// differ).
	TokenHashes []string
	// All asks to drop every cached token: sent when notifications may have
	// been lost (after a reconnect) or when a revocation was too large to
	// list.
	All bool
}

// CodeGrant is what RedeemCode writes together with marking the code used.
type CodeGrant struct {
	Access  Token
	Refresh Token
	Audit   AuditEvent
}

// Store is passgate's persistence. Implementations are safe for concurrent
// use by many goroutines and, for PostgreSQL, by many processes: every
// method that changes state does so in one transaction, and the conditional
// updates below are atomic across replicas.
//
// Every time passed in is the caller's clock (UTC is not required; the
// store keeps and returns times in UTC with at least microsecond
// precision). "Expired" means ExpiresAt <= now. Reads never return expired
// rows: they answer ErrNotFound instead.
//
// Errors: ErrNotFound, ErrAlreadyExists and ErrConflict as documented per
// method; ErrUnavailable (wrapped) when the database cannot be reached;
// anything else is a bug or corruption.
type Store interface {
	// Migrate applies embedded, versioned migrations and returns how many it
	// applied. Running it again applies none.
	Migrate(ctx context.Context) (applied int, err error)
	// Ping reports whether the database answers and is migrated.
	Ping(ctx context.Context) error
	// Close releases the store's resources and ends every Subscribe call,
	// which then returns nil. Calling it again does nothing.
	Close() error

	// CreateUser fails with ErrAlreadyExists if the username is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns ErrNotFound for an unknown username.
	GetUser(ctx context.Context, username string) (User, error)
	// ListUsers returns users ordered by username.
	ListUsers(ctx context.Context) ([]User, error)
	// SetPassword replaces the user's hash and, in the same transaction,
	// ends every session of the user, deletes their unredeemed
	// authorization codes and revokes every token they hold (whoever knew
	// the old password is out, everywhere). It returns the
	// hashes newly revoked, which are notified to Subscribe like any
	// revocation, so every replica's cache drops them. audit, when
	// non-nil, is written in the transaction. ErrNotFound for an unknown
	// user, with nothing changed.
	SetPassword(ctx context.Context, username, hash string, now time.Time, audit *AuditEvent) ([]string, error)
	// SetUserGroups replaces the user's groups (sorted and deduplicated
	// by the store; nil or empty clears them) and, in the same
	// transaction, notifies the hashes of the user's unexpired access
	// tokens to Subscribe without revoking them, so every replica's check
	// forgets the groups it cached with them and reads the new ones. It
	// returns those hashes. audit, when non-nil, is written in the
	// transaction. ErrNotFound for an unknown user, with nothing changed.
	// The caller validates the names (ValidGroup).
	SetUserGroups(ctx context.Context, username string, groups []string, now time.Time, audit *AuditEvent) ([]string, error)
	// DeleteUser removes the user with their sessions, consents, lockout
	// state, second factors and tokens (revoking them; the hashes are notified to
	// Subscribe). ErrNotFound for an unknown user.
	DeleteUser(ctx context.Context, username string, now time.Time) error

	// CreateClient fails with ErrAlreadyExists if the ID is taken.
	CreateClient(ctx context.Context, c Client) error
	// GetClient returns ErrNotFound for an unknown client.
	GetClient(ctx context.Context, id string) (Client, error)
	// ListClients returns clients ordered by creation time, then ID.
	ListClients(ctx context.Context) ([]Client, error)
	// DeleteClient removes the client, its codes and consents, and revokes
	// its tokens (notified). ErrNotFound for an unknown client.
	DeleteClient(ctx context.Context, id string, now time.Time) error
	// DeleteStaleClients removes dynamically registered clients created
	// before olderThan that never completed a grant (LastUsedAt zero), and
	// returns their IDs.
	DeleteStaleClients(ctx context.Context, olderThan time.Time) ([]string, error)

	// CreateSession stores a new session; ErrAlreadyExists on a hash clash.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns a live session; ErrNotFound if unknown or expired.
	GetSession(ctx context.Context, idHash string, now time.Time) (Session, error)
	// TouchSession sets LastSeenAt; ErrNotFound if unknown.
	TouchSession(ctx context.Context, idHash string, now time.Time) error
	// DeleteSession removes one session; deleting an unknown one is not an
	// error.
	DeleteSession(ctx context.Context, idHash string) error
	// ListSessions returns the live sessions of a user (all users when
	// username is empty), newest first.
	ListSessions(ctx context.Context, username string, now time.Time) ([]Session, error)
	// DeleteUserSessions removes every session of a user and returns how
	// many there were.
	DeleteUserSessions(ctx context.Context, username string) (int, error)

	// CreateAuthCode stores a code, writing audit in the same transaction
	// when it is non-nil. ErrAlreadyExists on a hash clash.
	CreateAuthCode(ctx context.Context, c AuthCode, audit *AuditEvent) error
	// GetAuthCode returns the code whether or not it was used (UsedAt tells),
	// and ErrNotFound if unknown or expired.
	GetAuthCode(ctx context.Context, codeHash string, now time.Time) (AuthCode, error)
	// RedeemCode atomically marks an unused, unexpired code used, stores
	// both tokens of g, records g.Audit, and sets the client's LastUsedAt.
	// Of concurrent calls with one code exactly one succeeds; the others get
	// ErrConflict (already used) or ErrNotFound (unknown or expired). No
	// failure leaves the code used without its tokens, or the reverse.
	RedeemCode(ctx context.Context, codeHash string, now time.Time, g CodeGrant) error

	// GetToken returns an unexpired token by hash, including revoked and
	// rotated ones (RevokedAt / RotatedAt tell); ErrNotFound otherwise.
	GetToken(ctx context.Context, hash string, now time.Time) (Token, error)
	// LookupToken is like GetToken but without GraceResponse and
	// LastUsedAt, for the hot path (the proxy checks' cache misses): the
	// same tokens and the same errors, with only Hash, Kind, ClientID,
	// Username, Scope, Resource, ExpiresAt and RevokedAt set; every other
	// field is zero. It reads less than GetToken, and backends keep it a
	// prepared statement.
	LookupToken(ctx context.Context, hash string, now time.Time) (Token, error)
	// LookupTokens is LookupToken for many hashes in one read (one round
	// trip to a database server): the tokens LookupToken would return for
	// each of hashes at now, each at most once (duplicate hashes are
	// allowed) and in no particular order, with the same fields set.
	// Hashes LookupToken would answer ErrNotFound for are simply absent;
	// no hash found is an empty result, not an error. An error means no
	// answer for any hash. The caller bounds len(hashes) (the proxy
	// checks send at most a few dozen); an empty list reads nothing.
	LookupTokens(ctx context.Context, hashes []string, now time.Time) ([]Token, error)
	// RotateRefresh atomically marks the refresh token oldHash rotated at
	// now (storing graceResponse on it), stores the new access and refresh
	// tokens, records audit and sets the client's LastUsedAt. It fails with
	// ErrConflict unless oldHash is an unexpired refresh token that is
	// neither revoked nor already rotated; of concurrent calls exactly one
	// succeeds.
	RotateRefresh(ctx context.Context, oldHash string, now time.Time, graceResponse []byte, access, refresh Token, audit AuditEvent) error
	// RevokeToken revokes one token; revoking a refresh token revokes its
	// whole family. Unknown or already revoked tokens are not an error.
	// Returns the hashes newly revoked (notified to Subscribe).
	RevokeToken(ctx context.Context, hash string, now time.Time, audit *AuditEvent) ([]string, error)
	// RevokeFamily revokes every token of a family; returns the hashes newly
	// revoked (notified).
	RevokeFamily(ctx context.Context, familyID string, now time.Time, audit *AuditEvent) ([]string, error)
	// RevokeUserTokens revokes every token of a user, or of a user and one
	// client when clientID is not empty (notified).
	RevokeUserTokens(ctx context.Context, username, clientID string, now time.Time, audit *AuditEvent) ([]string, error)
	// TouchToken sets a token's LastUsedAt (best effort, for connected apps).
	TouchToken(ctx context.Context, hash string, now time.Time) error

	// PutConsent creates or replaces the consent of (Username, ClientID,
	// Resource), keeping an existing row's CreatedAt, and writes audit in
	// the same transaction when it is non-nil. Consents of the same user
	// and client for other resources are left alone.
	PutConsent(ctx context.Context, c Consent, audit *AuditEvent) error
	// GetConsent returns the consent of (username, clientID, resource), or
	// ErrNotFound if the user never approved the client for that resource
	// (an approval for another resource does not count).
	GetConsent(ctx context.Context, username, clientID, resource string) (Consent, error)
	// ListConsents returns a user's consents, one per client and
	// resource, newest (UpdatedAt) first, then by client ID and resource.
	ListConsents(ctx context.Context, username string) ([]Consent, error)
	// DeleteConsent removes every consent of the user for the client
	// (all resources), the user's unredeemed codes for it, and revokes the
	// user's tokens for it (notified), in one transaction. ErrNotFound if
	// there was no consent for any resource.
	DeleteConsent(ctx context.Context, username, clientID string, now time.Time, audit *AuditEvent) ([]string, error)

	// CreateAPIKey stores k, writing audit in the same transaction when it
	// is non-nil. ErrAlreadyExists if the name is taken, by a live or a
	// revoked key, or on a hash clash; then nothing is written.
	CreateAPIKey(ctx context.Context, k APIKey, audit *AuditEvent) error
	// ListAPIKeys returns every key, revoked ones included, ordered by
	// name.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// LookupAPIKey returns the key whose Hash is hash, revoked ones
	// included (RevokedAt tells, so the checks can remember the refusal);
	// ErrNotFound if there is none. It is the checks' read on a cache miss.
	LookupAPIKey(ctx context.Context, hash string) (APIKey, error)
	// RevokeAPIKey atomically marks the named key revoked at now, notifies
	// its hash to Subscribe (every replica's check cache drops it) and
	// writes audit when it is non-nil, all in one transaction. ErrNotFound
	// for an unknown name; ErrConflict if it is already revoked (nothing is
	// written). Of concurrent calls for one key exactly one succeeds.
	RevokeAPIKey(ctx context.Context, name string, now time.Time, audit *AuditEvent) error

	// ReserveLoginAttempt reserves one password verification for username
	// before it runs: unless the account is locked at now, it counts the
	// attempt as a failure up front (see NextLoginFailures: a passed window
	// restarts counting, reaching threshold locks until now+lockFor) and
	// reports ok; a successful login then clears the whole state with
	// ResetLoginFailures (the password was right: earlier failures and a
	// lock set meanwhile by concurrent guesses are cleared with it). A locked account is left unchanged and ok is
	// false. The read and the write are one atomic step across goroutines,
	// processes and replicas, so of any burst of concurrent calls at most
	// threshold are ok per lock window, and a call that comes after the
	// lock never verifies. Returns the resulting state. Works for usernames
	// that do not exist too (no enumeration).
	ReserveLoginAttempt(ctx context.Context, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) (state LoginFailures, ok bool, err error)
	// GetLoginFailures returns the state; a zero value (not ErrNotFound) for
	// an account without failures.
	GetLoginFailures(ctx context.Context, username string) (LoginFailures, error)
	// ResetLoginFailures deletes the whole state, counts and any lock
	// (after a successful login, or `passgate user unlock`).
	ResetLoginFailures(ctx context.Context, username string) error

	// EnrollTOTP stores t as the user's TOTP secret, replacing any
	// earlier one, and replaces all of the user's recovery codes with
	// recoveryHashes (token hashes of fresh codes), writing audit when it
	// is non-nil, all in one transaction. ErrNotFound for an unknown user,
	// with nothing changed.
	EnrollTOTP(ctx context.Context, t TOTP, recoveryHashes []string, now time.Time, audit *AuditEvent) error
	// GetTOTP returns the user's TOTP secret; ErrNotFound if none.
	GetTOTP(ctx context.Context, username string) (TOTP, error)
	// UseTOTPStep atomically records that a code for step was accepted:
	// it succeeds only if step is greater than the stored LastStep, and
	// then sets LastStep and LastUsedAt. ErrConflict if step was already
	// used (or an earlier one): of concurrent calls with one step exactly
	// one succeeds. ErrNotFound if the user has no TOTP secret.
	UseTOTPStep(ctx context.Context, username string, step int64, now time.Time) error
	// DeleteTOTP removes the user's TOTP secret and recovery codes,
	// writing audit when it is non-nil, in one transaction. ErrNotFound if
	// the user had no TOTP secret (nothing is written).
	DeleteTOTP(ctx context.Context, username string, now time.Time, audit *AuditEvent) error
	// ReplaceRecoveryCodes replaces all of the user's recovery codes, used
	// or not, with hashes, writing audit when it is non-nil.
	// ErrNotFound if the user has no TOTP secret (codes only stand in for
	// a second factor).
	ReplaceRecoveryCodes(ctx context.Context, username string, hashes []string, now time.Time, audit *AuditEvent) error
	// UseRecoveryCode atomically marks the user's unused recovery code
	// whose hash is hash used at now, writing audit when it is non-nil.
	// ErrNotFound if there is no such unused code; of concurrent calls
	// with one code exactly one succeeds.
	UseRecoveryCode(ctx context.Context, username, hash string, now time.Time, audit *AuditEvent) error
	// CountRecoveryCodes returns how many unused recovery codes the user
	// has (0 for an unknown user).
	CountRecoveryCodes(ctx context.Context, username string) (int, error)
	// CreatePasskey stores p, writing audit when it is non-nil, in one
	// transaction. ErrNotFound for an unknown user; ErrAlreadyExists if
	// the credential ID is taken (by any user); nothing is written then.
	CreatePasskey(ctx context.Context, p Passkey, audit *AuditEvent) error
	// ListPasskeys returns the user's passkeys, oldest first.
	ListPasskeys(ctx context.Context, username string) ([]Passkey, error)
	// GetPasskey returns the passkey with credential ID id; ErrNotFound
	// if none.
	GetPasskey(ctx context.Context, id []byte) (Passkey, error)
	// UsePasskey records a sign-in with the passkey: it sets SignCount,
	// BackupState, Record and LastUsedAt, provided signCount is greater
	// than the stored count, or both are 0 (an authenticator without a
	// counter). Otherwise ErrConflict: a counter that did not advance
	// means a cloned authenticator or a replay, and of concurrent uses
	// with one count exactly one succeeds. ErrNotFound if unknown.
	UsePasskey(ctx context.Context, id []byte, signCount uint32, backupState bool, record []byte, now time.Time) error
	// RenamePasskey renames the user's passkey; ErrNotFound if the user
	// has no passkey with that ID.
	RenamePasskey(ctx context.Context, username string, id []byte, name string) error
	// DeletePasskey removes the user's passkey, writing audit when it is
	// non-nil; ErrNotFound if the user has no passkey with that ID
	// (nothing is written).
	DeletePasskey(ctx context.Context, username string, id []byte, audit *AuditEvent) error
	// SpendNonce records that a one-time value (its hash) was used at
	// now, until expiresAt; ErrAlreadyExists if it was spent before and
	// has not expired at now. Of concurrent calls with one hash exactly one succeeds.
	// DeleteExpired forgets expired ones.
	SpendNonce(ctx context.Context, hash string, now, expiresAt time.Time) error

	// ResetSecondFactors removes every second factor of the user (TOTP
	// secret, recovery codes, passkeys) and, in the same transaction, ends their
	// sessions, deletes their unredeemed codes and revokes their tokens,
	// like SetPassword; the hashes are returned and notified. audit, when
	// non-nil, is written in the transaction. ErrNotFound for an unknown
	// user.
	ResetSecondFactors(ctx context.Context, username string, now time.Time, audit *AuditEvent) ([]string, error)

	// GetSetting returns a value passgate keeps about itself (such as
	// what it last applied from its configuration); ErrNotFound if unset.
	GetSetting(ctx context.Context, key string) (string, error)
	// PutSetting creates or replaces a setting.
	PutSetting(ctx context.Context, key, value string, now time.Time) error

	// RecordAudit appends one audit row, setting ID.
	RecordAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns matching rows, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)

	// DeleteExpired removes expired sessions, codes, tokens (expired, or
	// revoked/rotated ones past expiry), lapsed login failures, expired
	// spent nonces, and audit rows created before auditBefore (zero: keep
	// all). Returns how many rows it removed.
	//
	// It is atomic per batch, not as a whole: it deletes in transactions
	// of a bounded number of rows (10,000), each committed before the next
	// begins, so other writers (logins, token issuance, revocation) wait
	// for one batch at most, never for a cleanup of millions of rows, which
	// on SQLite's single writer would stall them for the whole run. No row
	// it deletes is live at now (audit rows only age out), so a cleanup
	// that stops between batches leaves nothing inconsistent. On an error,
	// or when ctx is cancelled (checked between batches; a batch once
	// begun runs to its end), the committed batches stay deleted and their
	// count is returned with the error; the next call deletes the rest.
	DeleteExpired(ctx context.Context, now, auditBefore time.Time) (int64, error)

	// Subscribe calls fn for every invalidation committed by any process
	// sharing the database, in order, until ctx ends. It returns once ctx
	// is done. After a (re)connection it first calls fn with All set, since
	// notifications may have been lost. fn must not block for long.
	Subscribe(ctx context.Context, fn func(Invalidation)) error
}
