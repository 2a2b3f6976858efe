package oauthweb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// authzRequest is a validated authorization request.
type authzRequest struct {
	client store.Client
	// redirectParam is redirect_uri as sent ("" when omitted); target is
	// where the browser goes back to.
	redirectParam string
	target        string
	state         string
	challenge     string
	scope         []string
	resource      string
}

// authzParams are the request parameters carried through the consent
// form; nothing else is.
var authzParams = []string{"response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope", "resource"}

// pageError is an authorization error that must not redirect: the client
// or redirect URI cannot be trusted (RFC 6749 §4.1.2.1).
type pageError struct {
	status int
	msg    string
	log    error
}

// parseAuthorize validates an authorization request. It returns a
// pageError when the browser must not be redirected, or an *oauth.Error to
// send to the (now trusted) redirect target.
func (s *Server) parseAuthorize(r *http.Request, v url.Values) (*authzRequest, *pageError, *oauth.Error) {
	ctx := r.Context()
	// Parameters must not repeat (RFC 6749 §3.1). A repeated client_id or
	// redirect_uri leaves nowhere safe to redirect to.
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(v[k]) > 1 {
			return nil, &pageError{http.StatusBadRequest, "The request repeats " + k + ".", nil}, nil
		}
	}
	clientID := v.Get("client_id")
	if clientID == "" {
		return nil, &pageError{http.StatusBadRequest, "The request does not name a client (client_id is missing).", nil}, nil
	}
	client, err := s.lookupClient(ctx, clientID)
	if err != nil {
		var doc interface{ PublicReason() string }
		if errors.As(err, &doc) {
			// A metadata document that breaks a rule: say which, on our
			// page (its redirect URIs are unverified, so never there).
			return nil, &pageError{http.StatusBadRequest, fmt.Sprintf(msgBadClientDocument, doc.PublicReason()), err}, nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, &pageError{http.StatusBadRequest, msgUnknownClient, err}, nil
		}
		oe := s.storeError(ctx, "authorize client", err)
		return nil, &pageError{oe.Status, "The service is temporarily unavailable. Try again in a moment.", nil}, nil
	}
	req := &authzRequest{client: client, redirectParam: v.Get("redirect_uri")}
	switch {
	case req.redirectParam != "":
		if !oauth.MatchRedirectURI(client.RedirectURIs, req.redirectParam) {
			return nil, &pageError{http.StatusBadRequest, msgBadRedirect, fmt.Errorf("redirect uri mismatch for client %s", clientID)}, nil
		}
		req.target = req.redirectParam
	case len(client.RedirectURIs) == 1:
		// OAuth 2.1 §4.1.1: optional when exactly one is registered.
		req.target = client.RedirectURIs[0]
	default:
		return nil, &pageError{http.StatusBadRequest, "The request does not say where to return (redirect_uri is missing).", nil}, nil
	}
	// A stored redirect URI is held to today's rules at every use: a client
	// stored by an older passgate, or by hand, may hold one they refuse
	// (javascript:, http off loopback, a fragment). Private-use schemes
	// count as allowed: that was decided when the client was registered.
	if err := oauth.ValidateRedirectURI(req.target, oauth.PrivateSchemesAny); err != nil {
		return nil, &pageError{http.StatusBadRequest, msgBadRedirect, fmt.Errorf("client %s: stored redirect uri refused: %w", clientID, err)}, nil
	}
	req.state = v.Get("state")

	for _, k := range authzParams {
		// Several resources are legal in RFC 8707; pickResource refuses
		// them with invalid_target.
		if len(v[k]) > 1 && k != "resource" {
			return req, nil, oauth.NewError(oauth.CodeInvalidRequest, k+" is repeated")
		}
	}
	if len(req.state) > 2048 {
		req.state = ""
		return req, nil, oauth.NewError(oauth.CodeInvalidRequest, "state is too long")
	}
	if rt := v.Get("response_type"); rt != "code" {
		if rt == "" {
			return req, nil, oauth.NewError(oauth.CodeInvalidRequest, "response_type is required")
		}
		return req, nil, oauth.NewError(oauth.CodeUnsupportedResponseType, "only response_type=code is supported")
	}
	if len(client.GrantTypes) > 0 && !slices.Contains(client.GrantTypes, "authorization_code") {
		return req, nil, oauth.NewError(oauth.CodeUnauthorizedClient, "the client is not registered for the authorization_code grant")
	}
	req.challenge = v.Get("code_challenge")
	switch method := v.Get("code_challenge_method"); {
	case req.challenge == "":
		return req, nil, oauth.NewError(oauth.CodeInvalidRequest, "code_challenge is required (PKCE)")
	case method != oauth.MethodS256:
		return req, nil, oauth.NewError(oauth.CodeInvalidRequest, "code_challenge_method must be S256")
	case !oauth.ValidChallenge(req.challenge):
		return req, nil, oauth.NewError(oauth.CodeInvalidRequest, "code_challenge is malformed")
	}
	scope, oe := s.grantScope(client, v.Get("scope"))
	if oe != nil {
		return req, nil, oe
	}
	req.scope = scope
	res, oe := s.pickResource(v["resource"])
	if oe != nil {
		return req, nil, oe
	}
	req.resource = res
	// A scope the policy says another implies comes with it (admin
	// implies mcp): the token then carries both, for the upstream too.
	if implied := s.cfg.Policy.Load().Implied(res, req.scope); len(implied) != len(req.scope) {
		req.scope = slices.DeleteFunc(implied, func(x string) bool { return !slices.Contains(s.cfg.Scopes, x) })
	}
	return req, nil, nil
}

// grantScope turns a requested scope into the granted one: offline_access
// dropped, every other token supported, and for none the client's
// registered scope (within the supported ones) or else the base scopes.
// The registered scope caps the request only with ClientScopeCap: by
// default it is the client's default, so that a client can step up
// (MCP authorization: on 403 insufficient_scope it asks again with more)
// through the registration it already has; the user consents to the new
// scopes either way.
func (s *Server) grantScope(client store.Client, raw string) ([]string, *oauth.Error) {
	def := s.cfg.BaseScopes
	if client.Scope != "" {
		if cs, err := oauth.ParseScope(client.Scope); err == nil && len(cs) > 0 {
			def = slices.DeleteFunc(cs, func(x string) bool { return !slices.Contains(s.cfg.Scopes, x) })
		}
	}
	allowed := s.cfg.Scopes
	if s.cfg.ClientScopeCap && client.Scope != "" {
		allowed = def
	}
	req, err := oauth.ParseScope(raw)
	if err != nil {
		return nil, oauth.NewError(oauth.CodeInvalidScope, "scope is malformed")
	}
	req = slices.DeleteFunc(req, func(x string) bool { return x == oauth.ScopeOfflineAccess })
	if len(req) == 0 {
		if len(def) == 0 {
			return nil, oauth.NewError(oauth.CodeInvalidScope, "no scope is available to this client")
		}
		return slices.Clone(def), nil
	}
	if !oauth.ScopeSubset(req, allowed) {
		return nil, oauth.NewError(oauth.CodeInvalidScope, "unsupported scope requested")
	}
	return req, nil
}

// pickResource applies RFC 8707: the resource must be configured,
// compared in canonical form (resource.Lookup), and is recorded in its
// canonical form; with none requested the single configured one is used.
// An empty resource= is treated as omitted (OAuth 2.1 §3.1).
func (s *Server) pickResource(vals []string) (string, *oauth.Error) {
	vals = nonEmpty(vals)
	switch len(vals) {
	case 0:
		if len(s.cfg.Resources) == 1 {
			return s.cfg.Resources[0].URL, nil
		}
		return "", &oauth.Error{Code: oauth.CodeInvalidTarget, Description: "resource is required: this server protects several resources", Status: http.StatusBadRequest}
	case 1:
		r, err := resource.Lookup(s.cfg.Resources, vals[0])
		if err != nil {
			return "", invalidTarget(err, "unknown resource")
		}
		return r.URL, nil
	default:
		return "", &oauth.Error{Code: oauth.CodeInvalidTarget, Description: "only one resource per request is supported", Status: http.StatusBadRequest}
	}
}

// invalidTarget is the invalid_target error for a resource indicator
// resource.Lookup refused: one that is not a valid identifier says so,
// otherwise desc.
func invalidTarget(err error, desc string) *oauth.Error {
	if errors.Is(err, resource.ErrInvalidIndicator) {
		desc = "resource must be an absolute https URL without userinfo, query or fragment"
	}
	return &oauth.Error{Code: oauth.CodeInvalidTarget, Description: desc, Status: http.StatusBadRequest}
}

// nonEmpty drops empty values: OAuth 2.1 §3.1 treats a parameter sent
// without a value as omitted.
func nonEmpty(vals []string) []string {
	return slices.DeleteFunc(slices.Clone(vals), func(v string) bool { return v == "" })
}

// getConsent is Store.GetConsent for a resource in canonical form, falling
// back to the resource's URL as configured: consents recorded before
// identifiers were canonicalized carry that.
func (s *Server) getConsent(ctx context.Context, username, clientID, res string) (store.Consent, error) {
	c, err := s.cfg.Store.GetConsent(ctx, username, clientID, res)
	if !errors.Is(err, store.ErrNotFound) {
		return c, err
	}
	for _, r := range s.cfg.Resources {
		if r.URL == res && r.Configured != r.URL {
			return s.cfg.Store.GetConsent(ctx, username, clientID, r.Configured)
		}
	}
	return c, err
}

// redirectTo builds the authorization response URL: target plus params
// plus iss (RFC 9207), keeping target's own query.
func (s *Server) redirectTo(target string, params url.Values) string {
	params.Set("iss", s.cfg.Issuer)
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
		if strings.HasSuffix(target, "?") || strings.HasSuffix(target, "&") {
			sep = ""
		}
	}
	return target + sep + params.Encode()
}

// redirectError sends the browser back to the client with an error.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req *authzRequest, oe *oauth.Error) {
	http.Redirect(w, r, s.errorRedirectURL(req, oe), redirectStatus(r))
}

// errorRedirectURL is req's redirect URI carrying oe (RFC 6749 §4.1.2.1,
// with state and, by redirectTo, iss).
func (s *Server) errorRedirectURL(req *authzRequest, oe *oauth.Error) string {
	p := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		p.Set("error_description", oe.Description)
	}
	if req.state != "" {
		p.Set("state", req.state)
	}
	return s.redirectTo(req.target, p)
}

// redirectStatus is 303 after a form POST (so the client's callback sees a
// GET, never a re-POST as 307/308 would cause) and 302 otherwise.
func redirectStatus(r *http.Request) int {
	if r.Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}

func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if len(r.URL.RawQuery) > maxQueryBytes {
		s.renderError(w, r, http.StatusRequestURITooLong, "The request is too long.", nil)
		return
	}
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The request is malformed.", err)
		return
	}
	ev := s.event(r, store.EventAuthorizeRequest, true)
	ev.ClientID = auditClientID(v.Get("client_id"))
	if !s.allow(w, r, LimitAuthorize) {
		s.renderError(w, r, http.StatusTooManyRequests, "Too many requests. Wait a few minutes and try again.", nil)
		return
	}
	req, pe, oe := s.parseAuthorize(r, v)
	if pe != nil {
		ev.Success, ev.Error = false, "invalid_client_or_redirect_uri"
		s.record(ctx, ev)
		s.renderError(w, r, pe.status, pe.msg, pe.log)
		return
	}
	// The session is read before any error is sent to the client: whether
	// the redirect URI may be trusted can depend on it.
	sess, err := s.currentSession(r)
	signedIn := err == nil
	if signedIn {
		ev.Username = sess.Username
	}
	if oe == nil && err != nil && !errors.Is(err, store.ErrNotFound) {
		oe = s.storeError(ctx, "authorize session", err)
	}
	if oe != nil {
		ev.Success, ev.Error = false, oe.Code
		s.record(ctx, ev)
		switch {
		case redirectTrustedBeforeLogin(req.client) || signedIn && s.userApprovedClient(ctx, sess.Username, req.client.ID):
			s.redirectError(w, r, req, oe)
		case signedIn:
			// Signed in, but this client was never approved: the error
			// page, with the way back as a link the user may follow.
			s.renderAuthorizeErrorWithReturn(w, r, req, oe)
		default:
			s.renderAuthorizeError(w, r, oe)
		}
		return
	}
	s.record(ctx, ev)
	if !signedIn {
		http.Redirect(w, r, s.loginURL(r.URL.EscapedPath()+"?"+r.URL.RawQuery), http.StatusFound)
		return
	}
	s.touch(ctx, sess)
	if !s.policyAllows(w, r, req, sess.Username) {
		return
	}
	// Consent is remembered per user, client and resource for a set of
	// scopes: a request within an approved set needs no new prompt, unless
	// the client's identity is not assured (see rememberConsent).
	if s.rememberConsent(req) {
		c, err := s.getConsent(ctx, sess.Username, req.client.ID, req.resource)
		switch {
		case err == nil:
			approved, _ := oauth.ParseScope(c.Scope)
			if oauth.ScopeSubset(req.scope, approved) {
				s.issueCode(w, r, req, sess.Username)
				return
			}
		case !errors.Is(err, store.ErrNotFound):
			s.redirectError(w, r, req, s.storeError(ctx, "get consent", err))
			return
		}
	}
	s.showConsent(w, r, req, sess, v)
}

// redirectTrustedBeforeLogin reports whether an error about a request of c
// (its client and redirect URI already verified) may be sent to c's
// redirect URI before the user has signed in. OAuth 2.1 §7.12.2 and RFC
// 9700 §4.11.2: an authorization server must not redirect automatically to
// a URI it does not trust, or it becomes an open redirector: a link to
// passgate that lands on an attacker's site.
//
// Only clients the operator registered (store.ClientStatic: the CLI or
// OAUTH_CLIENT_ID) are trusted. Dynamically registered clients are not:
// with open registration anyone creates one with their own redirect URI,
// and a closed or token mode today says nothing about clients registered
// while it was open. Client ID Metadata Document clients are not either:
// anyone who can publish a file on an https host mints one, with any
// redirect URIs, so a "verified" redirect URI is only verified against the
// attacker's own document. For those clients the error is shown on
// passgate's error page, and goes to the client only once the user has
// signed in and has approved that client before (userApprovedClient):
// being signed in alone says nothing about a client a link just named.
func redirectTrustedBeforeLogin(c store.Client) bool {
	return c.Source == store.ClientStatic
}

// userApprovedClient reports whether username has a consent for clientID
// (for any resource): the user chose that client, so its redirect URI may
// receive an authorization error. A store error counts as no: the error
// page is always safe.
func (s *Server) userApprovedClient(ctx context.Context, username, clientID string) bool {
	consents, err := s.cfg.Store.ListConsents(ctx, username)
	if err != nil {
		return false
	}
	for _, c := range consents {
		if c.ClientID == clientID {
			return true
		}
	}
	return false
}

// renderAuthorizeError shows an authorization error that may not be
// redirected (see redirectTrustedBeforeLogin). The description is one of
// passgate's own fixed texts, never request input.
func (s *Server) renderAuthorizeError(w http.ResponseWriter, r *http.Request, oe *oauth.Error) {
	s.renderError(w, r, oe.Status, authorizeErrorMessage(oe), nil)
}

// renderAuthorizeErrorWithReturn is renderAuthorizeError for a signed-in
// user and a client they never approved: the page offers the client's
// redirect URI, with the error, as a link (OAuth 2.1 §7.12.2: inform the
// user and let them decide) instead of redirecting there automatically.
func (s *Server) renderAuthorizeErrorWithReturn(w http.ResponseWriter, r *http.Request, req *authzRequest, oe *oauth.Error) {
	ret := s.errorRedirectURL(req, oe)
	host := ""
	if u, err := url.Parse(req.target); err == nil {
		host = u.Host
		if host == "" {
			host = u.Scheme + ":" // a private-use scheme: an app on this device
		}
	}
	d := errorPage(w, oe.Status, authorizeErrorMessage(oe))
	d.ReturnURL, d.ReturnHost = ret, host
	s.renderErrorData(w, r, oe.Status, d)
}

// authorizeErrorMessage is the error page's message for an authorization
// error.
func authorizeErrorMessage(oe *oauth.Error) string {
	msg := msgBadAuthorizeRequest
	switch oe.Code {
	case oauth.CodeTemporarilyUnavailable:
		msg = "The service is temporarily unavailable. Try again in a moment."
	case oauth.CodeServerError:
		msg = "Something went wrong on this server. Try again in a moment."
	default:
		if oe.Description != "" {
			msg += " (" + oe.Code + ": " + oe.Description + ")"
		}
	}
	return msg
}

// rememberConsent reports whether an earlier consent may answer req
// without showing the page. RFC 8252 §8.6: a request must not be approved
// automatically unless the client's identity is assured. It is when the
// client authenticates at the token endpoint (a code is useless without
// its secret) or when the code can only reach an https redirect URI the
// client registered (for a metadata document: that its publisher listed).
// It is not for a public client redirecting to loopback or a private-use
// scheme: any program on any computer can use that client_id with such a
// redirect URI (Claude Code's and VS Code's metadata documents are
// public), so a remembered consent would hand it codes without a word.
// Those clients see the page every time unless the operator opted in with
// Config.RememberPublicConsent.
func (s *Server) rememberConsent(req *authzRequest) bool {
	if s.cfg.RememberPublicConsent {
		return true
	}
	if m := req.client.TokenEndpointAuthMethod; m != "" && m != "none" {
		return true
	}
	return !oauth.LoopbackRedirect(req.target) && oauth.PrivateScheme(req.target) == ""
}

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, req *authzRequest, sess store.Session, v url.Values) {
	var params []hiddenField
	for _, k := range authzParams {
		if val, ok := v[k]; ok && len(val) == 1 {
			params = append(params, hiddenField{k, val[0]})
		}
	}
	s.render(w, r, http.StatusOK, "consent", page{Title: "Allow access?", Data: consentData{
		Action:         s.endpoints.consent,
		CSRF:           sess.CSRFToken,
		ClientName:     clientName(req.client),
		ClientID:       req.client.ID,
		RedirectHost:   redirectHost(req.target),
		Unverified:     req.client.Source != store.ClientStatic,
		SelfDeclared:   req.client.Source == store.ClientDynamic,
		Local:          oauth.LoopbackRedirect(req.target),
		AppScheme:      oauth.PrivateScheme(req.target),
		AskedEveryTime: !s.rememberConsent(req),
		Scopes:         req.scope,
		Resource:       req.resource,
		ScopeText:      func(scope string) string { return s.cfg.Policy.Load().ScopeDescription(req.resource, scope) },
		Username:       sess.Username,
		Params:         params,
		LogoutURL:      s.endpoints.logout,
	}})
}

// redirectHost is what the consent page shows prominently: the host the
// code will be sent to, or the scheme of a private-use URI.
func redirectHost(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
		return u.Scheme + ":"
	}
	return u.Host
}

func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := parsePostForm(r); err != nil {
		s.renderError(w, r, status, "The form could not be read.", err)
		return
	}
	v := url.Values{}
	for _, k := range authzParams {
		if val, ok := r.PostForm[k]; ok {
			v[k] = val
		}
	}
	sess, ok := s.requireSession(w, r, s.prefix+"/oauth/authorize?"+v.Encode())
	if !ok {
		return
	}
	if !checkCSRF(r, sess) {
		s.renderError(w, r, http.StatusForbidden, "The form expired. Start again from your application.", errors.New("consent csrf mismatch"))
		return
	}
	req, pe, oe := s.parseAuthorize(r, v)
	if pe != nil {
		s.renderError(w, r, pe.status, pe.msg, pe.log)
		return
	}
	if oe != nil {
		s.redirectError(w, r, req, oe)
		return
	}
	// The policy may have changed, or the user's groups, since the
	// consent page was shown.
	if !s.policyAllows(w, r, req, sess.Username) {
		return
	}
	ev := s.event(r, store.EventConsentGranted, true)
	ev.Username, ev.ClientID = sess.Username, req.client.ID
	switch r.PostForm.Get("decision") {
	case "approve":
	case "deny":
		ev.Event, ev.Success, ev.Error = store.EventConsentDenied, false, oauth.CodeAccessDenied
		s.record(ctx, ev)
		s.redirectError(w, r, req, oauth.NewError(oauth.CodeAccessDenied, "the user denied access"))
		return
	default:
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read.", errors.New("consent decision missing"))
		return
	}
	now := s.now()
	scope := req.scope
	if prev, err := s.getConsent(ctx, sess.Username, req.client.ID, req.resource); err == nil {
		old, _ := oauth.ParseScope(prev.Scope)
		scope = oauth.ScopeUnion(old, scope)
	} else if !errors.Is(err, store.ErrNotFound) {
		s.redirectError(w, r, req, s.storeError(ctx, "get consent", err))
		return
	}
	ev = s.cfg.Audit.Stamp(ev)
	err := s.cfg.Store.PutConsent(ctx, store.Consent{
		Username: sess.Username, ClientID: req.client.ID, Resource: req.resource, Scope: oauth.JoinScope(scope), CreatedAt: now, UpdatedAt: now,
	}, &ev)
	if err != nil {
		s.redirectError(w, r, req, s.storeError(ctx, "put consent", err))
		return
	}
	s.cfg.Audit.Committed(ev)
	s.issueCode(w, r, req, sess.Username)
}

// policyAllows reports whether the access policy lets username use
// req.resource. If not, it records access_denied (its metric follows) and
// shows an error page: no consent, no code, nothing sent to the client.
func (s *Server) policyAllows(w http.ResponseWriter, r *http.Request, req *authzRequest, username string) bool {
	ctx := r.Context()
	pol := s.cfg.Policy.Load()
	if !pol.HasFile() {
		return true
	}
	u, err := s.cfg.Store.GetUser(ctx, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.redirectError(w, r, req, s.storeError(ctx, "policy user", err))
		return false
	}
	d := pol.Decide(policy.Input{Resource: req.resource, User: username, Groups: strings.Join(u.Groups, ","), ResourceOnly: true})
	if d.Allowed() {
		return true
	}
	ev := s.event(r, store.EventAccessDenied, false)
	ev.Username, ev.ClientID, ev.Error = username, req.client.ID, d.Result.String()
	s.record(ctx, ev)
	s.renderError(w, r, http.StatusForbidden, msgNotAllowed, nil)
	return false
}

// issueCode stores a fresh authorization code and redirects to the client
// with code, state and iss.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authzRequest, username string) {
	ctx := r.Context()
	now := s.now()
	code := token.New(token.PrefixCode)
	err := s.cfg.Store.CreateAuthCode(ctx, store.AuthCode{
		CodeHash:            token.Hash(code),
		ClientID:            req.client.ID,
		Username:            username,
		RedirectURI:         req.redirectParam,
		CodeChallenge:       req.challenge,
		CodeChallengeMethod: oauth.MethodS256,
		Scope:               oauth.JoinScope(req.scope),
		Resource:            req.resource,
		FamilyID:            token.New(""),
		CreatedAt:           now,
		ExpiresAt:           now.Add(s.cfg.CodeTTL),
	}, nil)
	if err != nil {
		s.redirectError(w, r, req, s.storeError(ctx, "create code", err))
		return
	}
	p := url.Values{"code": {code}}
	if req.state != "" {
		p.Set("state", req.state)
	}
	http.Redirect(w, r, s.redirectTo(req.target, p), redirectStatus(r))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
