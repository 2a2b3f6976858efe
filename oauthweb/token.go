package oauthweb

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// readForm checks the content type and body of an API form request and
// rejects repeated parameters (RFC 6749 §3.2).
func readForm(r *http.Request) *oauth.Error {
	if status, err := parsePostForm(r); err != nil {
		return &oauth.Error{Code: oauth.CodeInvalidRequest, Description: err.Error(), Status: status}
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" {
			return oauth.NewError(oauth.CodeInvalidRequest, "parameter "+truncate(k, 64)+" is repeated")
		}
	}
	return nil
}

// clientCreds is what a request presented to authenticate a client.
type clientCreds struct {
	id, secret string
	basic      bool
	method     string // none, client_secret_basic, client_secret_post
}

// readClientCreds extracts the credentials: HTTP Basic or the form. Using
// both is an error. Basic credentials are decoded exactly once, as RFC 6749
// §2.3.1 says (base64, then form-urlencoding of id and secret): a client
// that sends them unencoded fails when decoding changes them, rather than
// getting a second verification of the raw value, which doubled the hash
// work an attacker could cause with a '%' in a wrong secret. A client_id
// with characters textsafe refuses is refused before anyone records it.
func readClientCreds(r *http.Request) (clientCreds, *oauth.Error) {
	var c clientCreds
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, hasAuth := r.BasicAuth(); hasAuth {
		c.basic, c.method = true, "client_secret_basic"
		id, errID := url.QueryUnescape(u)
		secret, errSecret := url.QueryUnescape(p)
		if errID != nil || errSecret != nil {
			return c, invalidClient(true, "HTTP Basic credentials must be form-urlencoded (RFC 6749 section 2.3.1)")
		}
		c.id, c.secret = id, secret
		if formSecret != "" {
			return c, invalidClient(true, "use one client authentication method")
		}
		if formID != "" && formID != c.id {
			return c, invalidClient(true, "client_id does not match the credentials")
		}
	} else {
		if r.Header.Get("Authorization") != "" {
			return c, invalidClient(false, "unsupported client authentication")
		}
		c.id, c.secret = formID, formSecret
		if formSecret != "" {
			c.method = "client_secret_post"
		} else {
			c.method = "none"
		}
		if c.id == "" {
			return c, invalidClient(false, "client authentication is required")
		}
	}
	if !textsafe.Printable(c.id) {
		return c, invalidClient(c.basic, "client_id contains characters that are not allowed")
	}
	return c, nil
}

func invalidClient(basic bool, desc string) *oauth.Error {
	e := &oauth.Error{Code: oauth.CodeInvalidClient, Description: desc, Status: http.StatusUnauthorized}
	if basic {
		e.WWWAuthenticate = `Basic realm="passgate", charset="UTF-8"`
	}
	return e
}

// authenticateClient resolves and authenticates the client of a token,
// revocation or introspection request. Public and confidential stay strict: a client
// registered with "none" must not present a secret, and a client with a
// secret must present it. A client with a secret may present it with
// client_secret_basic or client_secret_post whichever it registered: RFC
// 6749 §2.3.1 requires Basic for every client that has a secret, and
// claude.ai sends its custom connectors' secrets in the form whatever the
// metadata says. (Both at once is refused earlier, by readClientCreds.) A
// secret's verification is paid for first from LimitClientSecret for the
// client_id (refunded when the secret matches), so guessing one client's
// secret is bounded however many addresses the guesses come from; when
// that limit refuses, it sets Retry-After on w and returns a 429. The
// per-client_id limit is separate from, and larger than, the endpoints'
// per-IP limits, so one who knows a client_id needs many addresses to
// hold up the real client's requests.
func (s *Server) authenticateClient(ctx context.Context, w http.ResponseWriter, r *http.Request, c clientCreds) (store.Client, *oauth.Error) {
	client, err := s.lookupClient(ctx, c.id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Client{}, invalidClient(c.basic, "unknown client")
		}
		return store.Client{}, s.storeError(ctx, "authenticate client", err)
	}
	registered := client.TokenEndpointAuthMethod
	if registered == "" {
		registered = "none"
	}
	switch {
	case registered == "none" && c.method != "none":
		return store.Client{}, invalidClient(c.basic, "the client is public (token_endpoint_auth_method none) and must not send a client secret")
	case registered == "none":
		return client, nil
	case c.method == "none":
		return store.Client{}, invalidClient(false, "the client has a secret and must authenticate with it (client_secret_basic or client_secret_post)")
	}
	if client.SecretHash == "" {
		return store.Client{}, invalidClient(c.basic, "client has no secret")
	}
	if c.secret == "" {
		// An empty Basic password: nothing to verify, no hash to pay for.
		return store.Client{}, invalidClient(c.basic, "client authentication failed")
	}
	ok, refund := s.reserve(w, r, LimitClientSecret, clientKey(client.ID), client.ID)
	if !ok {
		return store.Client{}, tooManyRequests()
	}
	if err := s.cfg.Hasher.Verify(ctx, client.SecretHash, c.secret); err != nil {
		if !errors.Is(err, passwd.ErrMismatch) {
			s.log.WarnContext(ctx, "client secret verification failed", "client_id", client.ID, "err", err)
		}
		return store.Client{}, invalidClient(c.basic, "client authentication failed")
	}
	refund()
	return client, nil
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev := s.event(r, store.EventTokenExchange, true)
	// Spent before anything is looked at or hashed, refunded on success:
	// only failures count, and a burst cannot overrun the limit.
	ok, refund := s.reserve(w, r, LimitToken, s.clientIP(r), "")
	if !ok {
		writeTooManyRequests(w)
		return
	}
	fail := func(oe *oauth.Error) {
		ev.Event, ev.Success, ev.Error = store.EventTokenFailure, false, oe.Code
		s.record(ctx, ev)
		if oe.Status == http.StatusServiceUnavailable {
			refund() // our outage is not the client's failure
		}
		oauth.WriteError(w, oe)
	}
	if oe := readForm(r); oe != nil {
		fail(oe)
		return
	}
	creds, oe := readClientCreds(r)
	ev.ClientID = auditClientID(creds.id)
	if oe != nil {
		fail(oe)
		return
	}
	grant := r.PostForm.Get("grant_type")
	if grant != "authorization_code" && grant != "refresh_token" {
		if grant == "" {
			fail(oauth.NewError(oauth.CodeInvalidRequest, "grant_type is required"))
		} else {
			fail(oauth.NewError(oauth.CodeUnsupportedGrantType, "supported grant types are authorization_code and refresh_token"))
		}
		return
	}
	client, oe := s.authenticateClient(ctx, w, r, creds)
	if oe != nil {
		fail(oe)
		return
	}
	ev.ClientID = client.ID
	var resp *tokenResponse
	if grant == "authorization_code" {
		resp, oe = s.codeGrant(ctx, r, client, &ev)
	} else {
		resp, oe = s.refreshGrant(ctx, r, client, &ev)
	}
	if oe != nil {
		fail(oe)
		return
	}
	refund()
	oauth.WriteJSON(w, http.StatusOK, resp)
}

// mint returns a new access and refresh token pair for a family.
func (s *Server) mint(now time.Time, client store.Client, username, scope, res, family string, familyExpires time.Time) (access, refresh string, at, rt store.Token) {
	access, refresh = token.New(token.PrefixAccess), token.New(token.PrefixRefresh)
	at = store.Token{
		Hash: token.Hash(access), Kind: store.KindAccess, FamilyID: family, ClientID: client.ID,
		Username: username, Scope: scope, Resource: res, FamilyExpiresAt: familyExpires,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.AccessTokenTTL),
	}
	refreshExp := now.Add(s.cfg.RefreshIdleTTL)
	if refreshExp.After(familyExpires) {
		refreshExp = familyExpires
	}
	rt = at
	rt.Hash, rt.Kind, rt.ExpiresAt = token.Hash(refresh), store.KindRefresh, refreshExp
	return access, refresh, at, rt
}

func (s *Server) codeGrant(ctx context.Context, r *http.Request, client store.Client, ev *store.AuditEvent) (*tokenResponse, *oauth.Error) {
	code := r.PostForm.Get("code")
	verifier := r.PostForm.Get("code_verifier")
	if code == "" {
		return nil, oauth.NewError(oauth.CodeInvalidRequest, "code is required")
	}
	if verifier == "" {
		return nil, oauth.NewError(oauth.CodeInvalidRequest, "code_verifier is required")
	}
	invalid := oauth.NewError(oauth.CodeInvalidGrant, "the authorization code is invalid, expired or already used")
	now := s.now()
	ac, codeHash, oe := presented(ctx, s, code, token.PrefixCode, now, s.cfg.Store.GetAuthCode, "get code", invalid)
	if oe != nil {
		return nil, oe
	}
	ev.Username = ac.Username
	if ac.ClientID != client.ID {
		return nil, invalid
	}
	if !ac.UsedAt.IsZero() {
		s.revokeReplayedCode(ctx, r, ac)
		return nil, invalid
	}
	// redirect_uri must repeat the authorization request's; when that
	// request omitted it (one registered URI), sending that URI is fine.
	if ru := r.PostForm.Get("redirect_uri"); ru != ac.RedirectURI &&
		!(ac.RedirectURI == "" && len(client.RedirectURIs) == 1 && ru == client.RedirectURIs[0]) {
		return nil, oauth.NewError(oauth.CodeInvalidGrant, "redirect_uri does not match the authorization request")
	}
	if !oauth.VerifyS256(verifier, ac.CodeChallenge) {
		return nil, oauth.NewError(oauth.CodeInvalidGrant, "PKCE verification failed")
	}
	if oe := s.checkBoundResource(r.PostForm["resource"], ac.Resource, "resource does not match the authorization request"); oe != nil {
		return nil, oe
	}
	if oe := s.policyRefusesGrant(ctx, r, client, ac.Username, ac.Resource); oe != nil {
		return nil, oe
	}
	familyExp := now.Add(s.cfg.RefreshTokenTTL)
	access, refresh, at, rt := s.mint(now, client, ac.Username, ac.Scope, ac.Resource, ac.FamilyID, familyExp)
	*ev = s.cfg.Audit.Stamp(*ev)
	switch err := s.cfg.Store.RedeemCode(ctx, codeHash, now, store.CodeGrant{Access: at, Refresh: rt, Audit: *ev}); {
	case errors.Is(err, store.ErrConflict):
		// Lost a race with another redemption of the same code: that is
		// a replay too.
		s.revokeReplayedCode(ctx, r, ac)
		return nil, invalid
	case errors.Is(err, store.ErrNotFound):
		return nil, invalid
	case err != nil:
		return nil, s.storeError(ctx, "redeem code", err)
	}
	s.cfg.Audit.Committed(*ev)
	return &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTokenTTL / time.Second), RefreshToken: refresh, Scope: ac.Scope}, nil
}

// presented looks up the code or refresh token a client presented by its
// hash. One without its prefix, or one the store does not have (or no
// longer has), is the grant's invalid error, so that a client cannot tell
// the cases apart; op names a store failure in the log.
func presented[T any](ctx context.Context, s *Server, raw, prefix string, now time.Time, get func(context.Context, string, time.Time) (T, error), op string, invalid *oauth.Error) (T, string, *oauth.Error) {
	var zero T
	if !token.HasPrefix(raw, prefix) {
		return zero, "", invalid
	}
	hash := token.Hash(raw)
	v, err := get(ctx, hash, now)
	if errors.Is(err, store.ErrNotFound) {
		return zero, "", invalid
	}
	if err != nil {
		return zero, "", s.storeError(ctx, op, err)
	}
	return v, hash, nil
}

// revokeReplayedCode revokes every token issued from a code presented a
// second time (OAuth 2.1 §4.1.3): whoever holds it now may be an attacker.
func (s *Server) revokeReplayedCode(ctx context.Context, r *http.Request, ac store.AuthCode) {
	e := s.event(r, store.EventTokenRevoked, true)
	e.ClientID, e.Username, e.Error = ac.ClientID, ac.Username, "code_replayed"
	e = s.cfg.Audit.Stamp(e)
	if _, err := s.cfg.Store.RevokeFamily(ctx, ac.FamilyID, s.now(), &e); err != nil {
		s.log.ErrorContext(ctx, "revoke family of replayed code", "client_id", ac.ClientID, "err", err)
		return
	}
	s.cfg.Audit.Committed(e)
}

func (s *Server) refreshGrant(ctx context.Context, r *http.Request, client store.Client, ev *store.AuditEvent) (*tokenResponse, *oauth.Error) {
	ev.Event = store.EventTokenRefresh
	old := r.PostForm.Get("refresh_token")
	if old == "" {
		return nil, oauth.NewError(oauth.CodeInvalidRequest, "refresh_token is required")
	}
	invalid := oauth.NewError(oauth.CodeInvalidGrant, "the refresh token is invalid, expired or revoked")
	now := s.now()
	t, oldHash, oe := presented(ctx, s, old, token.PrefixRefresh, now, s.cfg.Store.GetToken, "get refresh token", invalid)
	if oe != nil {
		return nil, oe
	}
	ev.Username = t.Username
	if t.Kind != store.KindRefresh || t.ClientID != client.ID || !t.RevokedAt.IsZero() {
		return nil, invalid
	}
	if !t.FamilyExpiresAt.IsZero() && !now.Before(t.FamilyExpiresAt) {
		return nil, invalid
	}
	if !t.RotatedAt.IsZero() {
		return s.rotatedRefresh(ctx, r, old, t, now)
	}
	scope := t.Scope
	if raw, ok := r.PostForm["scope"]; ok {
		req, err := oauth.ParseScope(raw[0])
		granted, _ := oauth.ParseScope(t.Scope)
		if err != nil || !oauth.ScopeSubset(req, granted) {
			return nil, oauth.NewError(oauth.CodeInvalidScope, "the requested scope exceeds the granted scope")
		}
		if len(req) > 0 {
			scope = oauth.JoinScope(req)
		}
	}
	if oe := s.checkBoundResource(r.PostForm["resource"], t.Resource, "the refresh token is bound to another resource"); oe != nil {
		return nil, oe
	}
	if oe := s.policyRefusesGrant(ctx, r, client, t.Username, t.Resource); oe != nil {
		return nil, oe
	}
	access, refresh, at, rt := s.mint(now, client, t.Username, t.Scope, t.Resource, t.FamilyID, t.FamilyExpiresAt)
	// A narrower scope applies to the new access token; the refresh token
	// keeps the original grant (RFC 6749 §6).
	at.Scope = scope
	resp := &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTokenTTL / time.Second), RefreshToken: refresh, Scope: scope}
	body, err := json.Marshal(resp)
	if err != nil {
		return nil, oauth.ServerError()
	}
	sealed, err := sealGrace(old, body)
	if err != nil {
		s.log.ErrorContext(ctx, "seal grace response", "err", err)
		return nil, oauth.ServerError()
	}
	*ev = s.cfg.Audit.Stamp(*ev)
	err = s.cfg.Store.RotateRefresh(ctx, oldHash, now, sealed, at, rt, *ev)
	switch {
	case errors.Is(err, store.ErrConflict):
		// Another request rotated (or revoked) it first: answer as for a
		// rotated token.
		t, err := s.cfg.Store.GetToken(ctx, oldHash, now)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, invalid
			}
			return nil, s.storeError(ctx, "get refresh token", err)
		}
		if !t.RevokedAt.IsZero() || t.RotatedAt.IsZero() {
			return nil, invalid
		}
		return s.rotatedRefresh(ctx, r, old, t, now)
	case errors.Is(err, store.ErrNotFound):
		return nil, invalid
	case err != nil:
		return nil, s.storeError(ctx, "rotate refresh token", err)
	}
	s.cfg.Audit.Committed(*ev)
	return resp, nil
}

// rotatedRefresh handles a refresh token that was already exchanged:
// within the grace window the sealed response is returned again (a client
// that raced itself); after it, this is reuse of a possibly stolen token
// and the whole family is revoked.
func (s *Server) rotatedRefresh(ctx context.Context, r *http.Request, old string, t store.Token, now time.Time) (*tokenResponse, *oauth.Error) {
	invalid := oauth.NewError(oauth.CodeInvalidGrant, "the refresh token is invalid, expired or revoked")
	if s.cfg.RefreshGrace > 0 && now.Sub(t.RotatedAt) <= s.cfg.RefreshGrace && len(t.GraceResponse) > 0 {
		if body, err := openGrace(old, t.GraceResponse); err == nil {
			var resp tokenResponse
			if err := json.Unmarshal(body, &resp); err == nil {
				e := s.event(r, store.EventTokenRefresh, true)
				e.ClientID, e.Username, e.Error = t.ClientID, t.Username, "grace_replay"
				s.record(ctx, e)
				return &resp, nil
			}
		}
	}
	e := s.event(r, store.EventRefreshReuseDetected, false)
	e.ClientID, e.Username, e.Error = t.ClientID, t.Username, "refresh_token_reused"
	e = s.cfg.Audit.Stamp(e)
	if _, err := s.cfg.Store.RevokeFamily(ctx, t.FamilyID, now, &e); err != nil {
		return nil, s.storeError(ctx, "revoke family after refresh reuse", err)
	}
	s.cfg.Audit.Committed(e)
	s.log.WarnContext(ctx, "refresh token reuse detected; family revoked", "client_id", t.ClientID, "username", t.Username)
	return nil, invalid
}

// graceKey derives the sealing key from the old refresh token's value,
// which the store never sees: a database dump alone cannot open the blob.
func graceKey(old string) []byte {
	m := hmac.New(sha256.New, []byte(old))
	m.Write([]byte("passgate grace v1"))
	return m.Sum(nil)
}

func graceAEAD(old string) (cipher.AEAD, error) {
	block, err := aes.NewCipher(graceKey(old))
	if err != nil {
		return nil, fmt.Errorf("grace cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealGrace encrypts body with AES-256-GCM: nonce || ciphertext.
func sealGrace(old string, body []byte) ([]byte, error) {
	aead, err := graceAEAD(old)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, body, []byte("passgate grace v1")), nil
}

func openGrace(old string, sealed []byte) ([]byte, error) {
	aead, err := graceAEAD(old)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("grace response too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], []byte("passgate grace v1"))
}

// checkBoundResource checks a token request's resource parameters (RFC
// 8707 §2.2; empty ones count as omitted) against bound, the resource the
// code or refresh token carries: omitted, or one that resource.Lookup
// finds and that is bound in canonical form. bound may be a URL as
// configured before identifiers were canonicalized (resource.Audience).
func (s *Server) checkBoundResource(vals []string, bound, desc string) *oauth.Error {
	vals = nonEmpty(vals)
	switch len(vals) {
	case 0:
		return nil
	case 1:
		r, err := resource.Lookup(s.cfg.Resources, vals[0])
		if err != nil {
			return invalidTarget(err, desc)
		}
		if r.URL == resource.Audience(bound) {
			return nil
		}
	}
	return &oauth.Error{Code: oauth.CodeInvalidTarget, Description: desc, Status: http.StatusBadRequest}
}

// policyRefusesGrant is the token endpoint's access-policy check: a user
// the policy no longer allows on resource (removed from a group, or the
// policy changed since the code or the refresh token was issued) gets no
// new token, only invalid_grant and an access_denied row.
func (s *Server) policyRefusesGrant(ctx context.Context, r *http.Request, client store.Client, username, bound string) *oauth.Error {
	pol := s.cfg.Policy.Load()
	if !pol.HasFile() {
		return nil
	}
	u, err := s.cfg.Store.GetUser(ctx, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s.storeError(ctx, "policy user", err)
	}
	// The policy names resources canonically; bound may be spelt as it
	// was configured when the grant was made (resource.Audience).
	d := pol.Decide(policy.Input{Resource: resource.Audience(bound), User: username, Groups: strings.Join(u.Groups, ","), ResourceOnly: true})
	if d.Allowed() {
		return nil
	}
	ev := s.event(r, store.EventAccessDenied, false)
	ev.Username, ev.ClientID, ev.Error = username, client.ID, d.Result.String()
	s.record(ctx, ev)
	return oauth.NewError(oauth.CodeInvalidGrant, "the access policy does not allow this user this resource")
}
