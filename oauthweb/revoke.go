package oauthweb

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// serveRevoke is RFC 7009. Unknown, expired, already revoked and other
// clients' tokens all get 200 with nothing done: the answer never tells a
// caller whether a token exists.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	creds, ok := s.readClientForm(w, r, LimitRevoke)
	if !ok {
		return
	}
	client, oe := s.authenticateClient(ctx, w, r, creds)
	if oe != nil {
		oauth.WriteError(w, oe)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauth.WriteError(w, oauth.NewError(oauth.CodeInvalidRequest, "token is required"))
		return
	}
	// token_type_hint is only a hint; lookups are by hash whatever the kind.
	now := s.now()
	t, err := s.cfg.Store.GetToken(ctx, token.Hash(tok), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		oauth.WriteJSON(w, http.StatusOK, struct{}{})
		return
	case err != nil:
		oauth.WriteError(w, s.storeError(ctx, "get token", err))
		return
	}
	if t.ClientID != client.ID || !t.RevokedAt.IsZero() {
		oauth.WriteJSON(w, http.StatusOK, struct{}{})
		return
	}
	ev := s.event(r, store.EventTokenRevoked, true)
	ev.ClientID, ev.Username = client.ID, t.Username
	ev = s.cfg.Audit.Stamp(ev)
	if _, err := s.cfg.Store.RevokeToken(ctx, t.Hash, now, &ev); err != nil {
		oauth.WriteError(w, s.storeError(ctx, "revoke token", err))
		return
	}
	s.cfg.Audit.Committed(ev)
	oauth.WriteJSON(w, http.StatusOK, struct{}{})
}

// readClientForm starts the revocation and introspection endpoints: it
// spends endpoint's rate limit for the client's address (every request
// counts, before any hash), then reads the form and the client's
// credentials (not yet checked). When it returns false it has written the
// error response.
func (s *Server) readClientForm(w http.ResponseWriter, r *http.Request, endpoint string) (clientCreds, bool) {
	if !s.allow(w, r, endpoint) {
		writeTooManyRequests(w)
		return clientCreds{}, false
	}
	if oe := readForm(r); oe != nil {
		oauth.WriteError(w, oe)
		return clientCreds{}, false
	}
	creds, oe := readClientCreds(r)
	if oe != nil {
		oauth.WriteError(w, oe)
		return clientCreds{}, false
	}
	return creds, true
}

// introspection is the RFC 7662 response; only active is sent for an
// inactive token.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	Subject   string `json:"sub,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Aud       string `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
}

// serveIntrospect is RFC 7662, for resource servers with a configured
// credential (which may introspect any token) and confidential clients
// (only their own tokens).
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	creds, ok := s.readClientForm(w, r, LimitIntrospect)
	if !ok {
		return
	}
	var owner string // "" for a resource server: any token
	if secret, ok := s.cfg.IntrospectionCredentials[creds.id]; ok && creds.method != "none" {
		if subtle.ConstantTimeCompare([]byte(secret), []byte(creds.secret)) != 1 {
			oauth.WriteError(w, invalidClient(creds.basic, "client authentication failed"))
			return
		}
	} else {
		if creds.method == "none" {
			oauth.WriteError(w, invalidClient(creds.basic, "introspection requires a confidential client"))
			return
		}
		client, oe := s.authenticateClient(ctx, w, r, creds)
		if oe != nil {
			oauth.WriteError(w, oe)
			return
		}
		owner = client.ID
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauth.WriteError(w, oauth.NewError(oauth.CodeInvalidRequest, "token is required"))
		return
	}
	inactive := introspection{}
	if !strings.HasPrefix(tok, token.PrefixAccess) && !strings.HasPrefix(tok, token.PrefixRefresh) {
		oauth.WriteJSON(w, http.StatusOK, inactive)
		return
	}
	now := s.now()
	t, err := s.cfg.Store.GetToken(ctx, token.Hash(tok), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		oauth.WriteJSON(w, http.StatusOK, inactive)
		return
	case err != nil:
		oauth.WriteError(w, s.storeError(ctx, "get token", err))
		return
	}
	if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt) ||
		(owner != "" && t.ClientID != owner) ||
		(t.Kind == store.KindRefresh && (!t.RotatedAt.IsZero() || (!t.FamilyExpiresAt.IsZero() && !now.Before(t.FamilyExpiresAt)))) {
		oauth.WriteJSON(w, http.StatusOK, inactive)
		return
	}
	typ := "Bearer"
	if t.Kind == store.KindRefresh {
		typ = "refresh_token"
	}
	oauth.WriteJSON(w, http.StatusOK, introspection{
		Active: true, Scope: t.Scope, ClientID: t.ClientID, Username: t.Username, Subject: t.Username,
		TokenType: typ, Exp: t.ExpiresAt.Unix(), Iat: t.CreatedAt.Unix(), Aud: t.Resource, Iss: s.cfg.Issuer,
	})
}
