package oauthweb

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// Passkeys (WebAuthn). The relying party ID is the issuer's host name and
// the only accepted origin is the issuer's origin, so a passkey made for
// passgate works nowhere else and nothing else's works here. Attestation
// is not asked for ("none"): passgate trusts the user who registers a
// key, not the key's maker. The ceremonies run in passgate.js, the pages'
// one script; their state travels sealed to the browser and back, and
// each challenge is spent in the store, so it answers once.

const (
	// passkeyTTL bounds a ceremony (the library's default timeout is
	// five minutes; a little more for the round trip).
	passkeyTTL = 6 * time.Minute
	// maxPasskeyBody bounds the JSON a ceremony posts back: a credential
	// with attestation "none" is well under 4 KiB.
	maxPasskeyBody = 64 << 10
	// maxPasskeyName bounds a passkey's name.
	maxPasskeyName = 64
)

// newRelyingParty configures WebAuthn for the issuer: its host is the RP
// ID (WebAuthn forbids IP addresses; use localhost for local tests), its
// origin the only origin.
func newRelyingParty(issuerHost, origin, title string) (*webauthn.WebAuthn, error) {
	return webauthn.New(&webauthn.Config{
		RPID:                  issuerHost,
		RPDisplayName:         title,
		RPOrigins:             []string{origin},
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementRequired,
			UserVerification: protocol.VerificationRequired,
		},
	})
}

// passkeyUser is a user as the WebAuthn library sees it.
type passkeyUser struct {
	name   string
	handle []byte
	creds  []webauthn.Credential
}

func (u *passkeyUser) WebAuthnID() []byte                         { return u.handle }
func (u *passkeyUser) WebAuthnName() string                       { return u.name }
func (u *passkeyUser) WebAuthnDisplayName() string                { return u.name }
func (u *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// loadPasskeyUser reads username's passkeys.
func (s *Server) loadPasskeyUser(ctx context.Context, username string) (*passkeyUser, error) {
	rows, err := s.cfg.Store.ListPasskeys(ctx, username)
	if err != nil {
		return nil, err
	}
	u := &passkeyUser{name: username, handle: s.cfg.Sealer.UserHandle(username)}
	for _, p := range rows {
		var c webauthn.Credential
		if err := json.Unmarshal(p.Record, &c); err != nil {
			s.log.ErrorContext(ctx, "passkey record unreadable", "user", username, "err", err)
			continue
		}
		u.creds = append(u.creds, c)
	}
	return u, nil
}

// sealState seals a ceremony's state for the browser to carry, bound to
// its purpose and user.
func (s *Server) sealState(purpose, username string, sd *webauthn.SessionData) (string, error) {
	b, err := json.Marshal(sd)
	if err != nil {
		return "", fmt.Errorf("encode webauthn state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.cfg.Sealer.Seal("webauthn\x00"+purpose+"\x00"+username, b)), nil
}

// openState opens a sealed state and spends its challenge: a state
// answers once, on one replica or many.
func (s *Server) openState(ctx context.Context, purpose, username, state string) (webauthn.SessionData, error) {
	var sd webauthn.SessionData
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil {
		return sd, errors.New("malformed state")
	}
	b, err := s.cfg.Sealer.Open("webauthn\x00"+purpose+"\x00"+username, raw)
	if err != nil {
		return sd, err
	}
	if err := json.Unmarshal(b, &sd); err != nil {
		return sd, fmt.Errorf("decode webauthn state: %w", err)
	}
	now := s.now()
	if err := s.cfg.Store.SpendNonce(ctx, token.Hash("webauthn "+sd.Challenge), now, now.Add(passkeyTTL)); err != nil {
		return sd, fmt.Errorf("spend challenge: %w", err)
	}
	return sd, nil
}

// ceremonyState opens a finish request's sealed state (openState). A
// store outage answers the request as one; any other failure goes to
// refuse, which answers it. It returns false when the request is answered.
func (s *Server) ceremonyState(w http.ResponseWriter, r *http.Request, purpose, username, state string, refuse func(error)) (webauthn.SessionData, bool) {
	sd, err := s.openState(r.Context(), purpose, username, state)
	if errors.Is(err, store.ErrUnavailable) {
		s.passkeyUnavailable(w, r, err)
		return sd, false
	}
	if err != nil {
		refuse(err)
		return sd, false
	}
	return sd, true
}

// finishCeremony checks the credential of a finish request for a signed-in
// user's ceremony: it opens the sealed state (ceremonyState), parses the
// credential with parse and has check verify it against the user's
// passkeys. A refusal goes to refuse with its audit reason
// (invalid_state, invalid_credential, invalid_assertion), which answers
// the request; a store outage is answered here. It returns false when the
// request is answered.
func finishCeremony[P any](s *Server, w http.ResponseWriter, r *http.Request, purpose, username string, body passkeyBody,
	parse func([]byte) (P, error), check func(webauthn.User, webauthn.SessionData, P) (*webauthn.Credential, error),
	refuse func(reason string, err error)) (*webauthn.Credential, bool) {
	sd, ok := s.ceremonyState(w, r, purpose, username, body.State, func(err error) { refuse("invalid_state", err) })
	if !ok {
		return nil, false
	}
	parsed, err := parse(body.Credential)
	if err != nil {
		refuse("invalid_credential", err)
		return nil, false
	}
	u, err := s.loadPasskeyUser(r.Context(), username)
	if err != nil {
		s.passkeyUnavailable(w, r, err)
		return nil, false
	}
	cred, err := check(u, sd, parsed)
	if err != nil {
		refuse("invalid_assertion", err)
		return nil, false
	}
	return cred, true
}

// passkeyBody is what passgate.js posts to a ceremony's finish endpoint.
type passkeyBody struct {
	State      string          `json:"state"`
	CSRF       string          `json:"csrf"`
	ReturnTo   string          `json:"return_to"`
	Name       string          `json:"name"`
	Credential json.RawMessage `json:"credential"`
}

// readPasskeyBody reads a JSON body (the only kind the ceremonies take);
// when it cannot, it answers the request and returns false.
func (s *Server) readPasskeyBody(w http.ResponseWriter, r *http.Request) (passkeyBody, bool) {
	b, status, err := decodePasskeyBody(r)
	if err != nil {
		s.passkeyError(w, r, status, "The request could not be read.", err)
		return b, false
	}
	return b, true
}

func decodePasskeyBody(r *http.Request) (passkeyBody, int, error) {
	var b passkeyBody
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return b, http.StatusUnsupportedMediaType, errors.New("content type must be application/json")
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&b); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return b, http.StatusRequestEntityTooLarge, errors.New("request body too large")
		}
		return b, http.StatusBadRequest, errors.New("malformed JSON body")
	}
	return b, 0, nil
}

// writeJSON answers a ceremony request. msg is for the person; details go
// to the log only.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) passkeyError(w http.ResponseWriter, r *http.Request, status int, msg string, err error) {
	if err != nil {
		s.log.InfoContext(r.Context(), "passkey ceremony refused", "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

// options answers a ceremony's first step: the options for the browser
// (the library's JSON, {"publicKey": …}) plus the ceremony's state sd,
// sealed for purpose and username. err is beginning the ceremony's.
func (s *Server) options(w http.ResponseWriter, r *http.Request, purpose, username string, opts any, sd *webauthn.SessionData, err error) {
	var state string
	if err == nil {
		state, err = s.sealState(purpose, username, sd)
	}
	if err != nil {
		s.passkeyError(w, r, http.StatusInternalServerError, "Passkeys are unavailable.", err)
		return
	}
	b, _ := json.Marshal(opts)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	st, _ := json.Marshal(state)
	m["state"] = st
	writeJSON(w, http.StatusOK, m)
}

const passkeyFailed = "That passkey did not work. Try again, or sign in with your password."

// ---- sign in with a passkey alone ----

func (s *Server) servePasskeyLoginOptions(w http.ResponseWriter, r *http.Request) {
	// A discoverable credential: the authenticator offers its passkeys
	// for this RP ID, and user verification (PIN, biometrics) makes the
	// passkey two factors by itself.
	opts, sd, err := s.rp.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	s.options(w, r, "login", "", opts, sd, err)
}

// servePasskeyLogin signs in with a passkey alone. A passkey cannot be
// guessed, so a failure is not counted toward the account's lockout (and
// a lock set by someone guessing the password does not stop the owner's
// passkey); failures are spent from the client's login rate limit.
func (s *Server) servePasskeyLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ok, refund := s.reserve(w, r, LimitLogin, s.clientIP(r), "")
	if !ok {
		s.passkeyError(w, r, http.StatusTooManyRequests, tooManyAttempts, nil)
		return
	}
	body, ok := s.readPasskeyBody(w, r)
	if !ok {
		return
	}
	ev := s.event(r, store.EventPasskeyLogin, false)
	sd, ok := s.ceremonyState(w, r, "login", "", body.State, func(err error) {
		ev.Error = "invalid_state"
		s.record(ctx, ev)
		s.passkeyError(w, r, http.StatusBadRequest, "This sign-in expired. Reload the page and try again.", err)
	})
	if !ok {
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body.Credential)
	if err != nil {
		ev.Error = "invalid_credential"
		s.record(ctx, ev)
		s.passkeyError(w, r, http.StatusBadRequest, passkeyFailed, err)
		return
	}
	var owner string
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		p, err := s.cfg.Store.GetPasskey(ctx, rawID)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(userHandle, s.cfg.Sealer.UserHandle(p.Username)) {
			return nil, errors.New("user handle does not match the credential's owner")
		}
		owner = p.Username
		return s.loadPasskeyUser(ctx, p.Username)
	}
	_, cred, err := s.rp.ValidatePasskeyLogin(handler, sd, parsed)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			s.passkeyUnavailable(w, r, err)
			return
		}
		ev.Username, ev.Error = owner, "invalid_assertion"
		s.record(ctx, ev)
		s.passkeyError(w, r, http.StatusUnauthorized, passkeyFailed, err)
		return
	}
	if reason, err := s.usePasskey(ctx, cred); err != nil || reason != "" {
		if err != nil {
			s.passkeyUnavailable(w, r, err)
			return
		}
		ev.Username, ev.Error = owner, reason
		s.record(ctx, ev)
		s.passkeyError(w, r, http.StatusUnauthorized, passkeyFailed, nil)
		return
	}
	refund()
	if _, err := s.startSession(w, r, owner, false); err != nil {
		s.passkeyUnavailable(w, r, err)
		return
	}
	if s.cfg.LockoutThreshold > 0 {
		if err := s.cfg.Store.ResetLoginFailures(ctx, owner); err != nil {
			s.log.WarnContext(ctx, "reset login failures", "err", err)
		}
	}
	ev.Success, ev.Username = true, owner
	s.record(ctx, ev)
	login := s.event(r, store.EventLoginSuccess, true)
	login.Username = owner
	s.record(ctx, login)
	writeJSON(w, http.StatusOK, map[string]string{"redirect": s.safeReturn(body.ReturnTo)})
}

// usePasskey records the validated use of cred: counter, backup state and
// record. A counter that did not advance is refused (cloned
// authenticator, or a replay); reason says so for the audit log.
func (s *Server) usePasskey(ctx context.Context, cred *webauthn.Credential) (reason string, err error) {
	if cred.Authenticator.CloneWarning {
		return "passkey_counter_regressed", nil
	}
	record, err := json.Marshal(cred)
	if err != nil {
		return "", fmt.Errorf("encode passkey record: %w", err)
	}
	switch err := s.cfg.Store.UsePasskey(ctx, cred.ID, cred.Authenticator.SignCount, cred.Flags.BackupState, record, s.now()); {
	case errors.Is(err, store.ErrConflict):
		return "passkey_counter_regressed", nil
	case errors.Is(err, store.ErrNotFound):
		return "passkey_removed", nil
	case err != nil:
		return "", err
	}
	return "", nil
}

func (s *Server) passkeyUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	oe := s.storeError(r.Context(), "passkey", err)
	s.passkeyError(w, r, oe.Status, "Sign-in is temporarily unavailable. Try again in a moment.", nil)
}

// ---- a passkey as the second factor ----

// ceremonySession returns the session for a ceremony (a pending one when
// pending is true), checking the CSRF token passgate.js sends in the
// X-CSRF-Token header (options) or the body (finish); otherwise it
// answers the request.
func (s *Server) ceremonySession(w http.ResponseWriter, r *http.Request, csrf string, pending bool) (store.Session, bool) {
	sess, err := s.anySession(r)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.passkeyError(w, r, http.StatusUnauthorized, "Your sign-in expired. Sign in again.", nil)
		} else {
			s.passkeyUnavailable(w, r, err)
		}
		return store.Session{}, false
	}
	if csrf == "" || !token.Equal(csrf, sess.CSRFToken) {
		s.passkeyError(w, r, http.StatusForbidden, "The page expired. Reload it and try again.", errors.New("passkey csrf mismatch"))
		return store.Session{}, false
	}
	if pending && !sess.Pending {
		s.passkeyError(w, r, http.StatusConflict, "You are already signed in.", nil)
		return store.Session{}, false
	}
	return sess, true
}

func (s *Server) servePasskeyFactorOptions(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.ceremonySession(w, r, r.Header.Get("X-CSRF-Token"), true)
	if !ok {
		return
	}
	u, err := s.loadPasskeyUser(ctx, sess.Username)
	if err != nil {
		s.passkeyUnavailable(w, r, err)
		return
	}
	if len(u.creds) == 0 {
		s.passkeyError(w, r, http.StatusNotFound, "You have no passkey here. Enter a code instead.", nil)
		return
	}
	opts, sd, err := s.rp.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationPreferred))
	s.options(w, r, "factor", sess.Username, opts, sd, err)
}

func (s *Server) servePasskeyFactor(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, ok := s.readPasskeyBody(w, r)
	if !ok {
		return
	}
	sess, ok := s.ceremonySession(w, r, body.CSRF, true)
	if !ok {
		return
	}
	if !s.allow(w, r, LimitLogin) {
		s.passkeyError(w, r, http.StatusTooManyRequests, tooManyAttempts, nil)
		return
	}
	ev := s.event(r, store.EventMFAFailure, false)
	ev.Username = sess.Username
	fail := func(reason string, err error) {
		ev.Error = reason
		s.record(ctx, ev)
		s.passkeyError(w, r, http.StatusUnauthorized, "That passkey did not work. Try again, or enter a code.", err)
	}
	cred, ok := finishCeremony(s, w, r, "factor", sess.Username, body, protocol.ParseCredentialRequestResponseBytes, s.rp.ValidateLogin, fail)
	if !ok {
		return
	}
	if reason, err := s.usePasskey(ctx, cred); err != nil || reason != "" {
		if err != nil {
			s.passkeyUnavailable(w, r, err)
			return
		}
		fail(reason, nil)
		return
	}
	next, err := s.completeSignIn(w, r, sess, "passkey", body.ReturnTo)
	if err != nil {
		s.passkeyUnavailable(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": next})
}

// ---- registering a passkey ----

// registerSession is enrolSession for the ceremonies: a complete session
// signed in recently, or a pending one that owes an enrolment.
func (s *Server) registerSession(w http.ResponseWriter, r *http.Request, csrf string) (store.Session, bool) {
	sess, ok := s.ceremonySession(w, r, csrf, false)
	if !ok {
		return store.Session{}, false
	}
	if sess.Pending {
		enrolled, required, err := s.factorState(r.Context(), sess.Username)
		if err != nil {
			s.passkeyUnavailable(w, r, err)
			return store.Session{}, false
		}
		if enrolled || !required {
			s.passkeyError(w, r, http.StatusForbidden, "Finish signing in first.", nil)
			return store.Session{}, false
		}
		return sess, true
	}
	if !s.recent(sess) {
		s.passkeyError(w, r, http.StatusForbidden, "Sign in again before adding a passkey.", nil)
		return store.Session{}, false
	}
	return sess, true
}

func (s *Server) servePasskeyRegisterOptions(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.registerSession(w, r, r.Header.Get("X-CSRF-Token"))
	if !ok {
		return
	}
	u, err := s.loadPasskeyUser(ctx, sess.Username)
	if err != nil {
		s.passkeyUnavailable(w, r, err)
		return
	}
	opts, sd, err := s.rp.BeginRegistration(u,
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		// The same authenticator twice would be one factor under two names.
		webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()),
	)
	s.options(w, r, "register", sess.Username, opts, sd, err)
}

func (s *Server) servePasskeyRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, ok := s.readPasskeyBody(w, r)
	if !ok {
		return
	}
	sess, ok := s.registerSession(w, r, body.CSRF)
	if !ok {
		return
	}
	name, ok := passkeyName(body.Name)
	if !ok {
		s.passkeyError(w, r, http.StatusBadRequest, fmt.Sprintf("Give the passkey a name of at most %d characters.", maxPasskeyName), nil)
		return
	}
	cred, ok := finishCeremony(s, w, r, "register", sess.Username, body, protocol.ParseCredentialCreationResponseBytes, s.rp.CreateCredential,
		func(reason string, err error) {
			msg := "The passkey could not be added."
			if reason == "invalid_state" {
				msg = "This page expired. Reload it and try again."
			}
			s.passkeyError(w, r, http.StatusBadRequest, msg, err)
		})
	if !ok {
		return
	}
	record, err := json.Marshal(cred)
	if err != nil {
		s.passkeyError(w, r, http.StatusInternalServerError, "The passkey could not be added.", err)
		return
	}
	now := s.now()
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventPasskeyAdded, true))
	ev.Username = sess.Username
	p := store.Passkey{ID: cred.ID, Username: sess.Username, Name: name, Record: record, SignCount: cred.Authenticator.SignCount,
		BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState, CreatedAt: now}
	switch err := s.cfg.Store.CreatePasskey(ctx, p, &ev); {
	case errors.Is(err, store.ErrAlreadyExists):
		s.passkeyError(w, r, http.StatusConflict, "This passkey is already registered.", nil)
		return
	case err != nil:
		s.passkeyUnavailable(w, r, err)
		return
	}
	s.cfg.Audit.Committed(ev)
	next := s.endpoints.account
	if sess.Pending {
		// Enrolling was the second factor this sign-in owed.
		if next, err = s.completeSignIn(w, r, sess, "passkey_enrolled", body.ReturnTo); err != nil {
			s.passkeyUnavailable(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": next})
}

// passkeyName trims and checks a passkey's name.
func passkeyName(raw string) (string, bool) {
	name := strings.TrimSpace(raw)
	if name == "" {
		name = "Passkey"
	}
	if len([]rune(name)) > maxPasskeyName || !textsafe.Printable(name) {
		return "", false
	}
	return name, true
}

// ---- managing passkeys on the account page (no script needed) ----

func decodeCredentialID(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return b, err == nil && len(b) > 0 && len(b) <= 1023
}

func (s *Server) serveRenamePasskey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	id, okID := decodeCredentialID(r.PostForm.Get("id"))
	name, okName := passkeyName(r.PostForm.Get("name"))
	if !okID || !okName {
		s.showAccount(w, r, http.StatusBadRequest, sess, fmt.Sprintf("Give the passkey a name of at most %d characters.", maxPasskeyName), "")
		return
	}
	switch err := s.cfg.Store.RenamePasskey(ctx, sess.Username, id, name); {
	case errors.Is(err, store.ErrNotFound):
		s.showAccount(w, r, http.StatusNotFound, sess, "That passkey no longer exists.", "")
		return
	case err != nil:
		s.unavailable(w, r, "account", err)
		return
	}
	s.showAccount(w, r, http.StatusOK, sess, "", "The passkey was renamed.")
}

func (s *Server) serveRemovePasskey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	id, okID := decodeCredentialID(r.PostForm.Get("id"))
	if !okID {
		s.showAccount(w, r, http.StatusBadRequest, sess, "That passkey no longer exists.", "")
		return
	}
	if last, err := s.lastRequiredFactor(ctx, sess.Username, "passkey"); err != nil {
		s.unavailable(w, r, "account", err)
		return
	} else if last {
		s.showAccount(w, r, http.StatusForbidden, sess, "This server requires a second factor for your account: add another passkey or an authenticator app before removing this one.", "")
		return
	}
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventPasskeyRemoved, true))
	ev.Username = sess.Username
	switch err := s.cfg.Store.DeletePasskey(ctx, sess.Username, id, &ev); {
	case errors.Is(err, store.ErrNotFound):
		s.showAccount(w, r, http.StatusNotFound, sess, "That passkey no longer exists.", "")
		return
	case err != nil:
		s.unavailable(w, r, "account", err)
		return
	}
	s.cfg.Audit.Committed(ev)
	s.showAccount(w, r, http.StatusOK, sess, "", "The passkey was removed.")
}

// lastRequiredFactor reports whether removing one factor of kind ("totp"
// or "passkey") would leave a user the policy requires to have a second
// factor without any.
func (s *Server) lastRequiredFactor(ctx context.Context, username, kind string) (bool, error) {
	required, err := s.factorRequired(ctx, username)
	if err != nil || !required {
		return false, err
	}
	keys, err := s.cfg.Store.ListPasskeys(ctx, username)
	if err != nil {
		return false, err
	}
	_, err = s.cfg.Store.GetTOTP(ctx, username)
	hasTOTP := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	left := len(keys)
	if hasTOTP {
		left++
	}
	return left <= 1 && (kind != "totp" || hasTOTP), nil
}

// passkeysOn reports whether passkeys are offered.
func (s *Server) passkeysOn() bool { return s.rp != nil }
