package oauthweb

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/store"
)

// serveAccount shows the account page: password, authenticator app and
// recovery codes, and a way to the connected apps.
func (s *Server) serveAccount(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r, s.prefix+"/account")
	if !ok {
		return
	}
	s.showAccount(w, r, http.StatusOK, sess, "", "")
}

func (s *Server) showAccount(w http.ResponseWriter, r *http.Request, status int, sess store.Session, msg, done string) {
	ctx := r.Context()
	d := accountData{
		Username: sess.Username, CSRF: sess.CSRFToken,
		PasswordURL: s.endpoints.account + "/password", EnrollURL: s.endpoints.enroll,
		RemoveTOTPURL: s.endpoints.account + "/totp/remove", RecoveryURL: s.endpoints.account + "/recovery-codes",
		AppsURL: s.endpoints.apps, LogoutURL: s.endpoints.logout, Done: done,
		SecondFactors: s.cfg.Sealer != nil && s.cfg.SecondFactor.Mode != mfa.PolicyOff,
		Recent:        s.recent(sess),
		ReauthURL:     s.loginURL(s.prefix + "/account"),
	}
	if d.SecondFactors {
		t, err := s.cfg.Store.GetTOTP(ctx, sess.Username)
		switch {
		case err == nil:
			d.TOTP, d.TOTPCreated, d.TOTPLastUsed = true, t.CreatedAt, t.LastUsedAt
			n, err := s.cfg.Store.CountRecoveryCodes(ctx, sess.Username)
			if err != nil {
				s.unavailable(w, r, "account", err)
				return
			}
			d.RecoveryLeft = n
		case !errors.Is(err, store.ErrNotFound):
			s.unavailable(w, r, "account", err)
			return
		}
		req, err := s.factorRequired(ctx, sess.Username)
		if err != nil {
			s.unavailable(w, r, "account", err)
			return
		}
		d.Required = req
		keys, err := s.cfg.Store.ListPasskeys(ctx, sess.Username)
		if err != nil {
			s.unavailable(w, r, "account", err)
			return
		}
		for _, k := range keys {
			d.Passkeys = append(d.Passkeys, passkeyRow{ID: base64.RawURLEncoding.EncodeToString(k.ID), Name: k.Name,
				CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, Synced: k.BackupState})
		}
		d.PasskeyRenameURL, d.PasskeyRemoveURL = s.endpoints.account+"/passkeys/rename", s.endpoints.account+"/passkeys/remove"
		d.PasskeyOptions, d.PasskeyFinish = s.ifPasskeys("/webauthn/register/options"), s.ifPasskeys("/webauthn/register")
	}
	s.render(w, r, status, "account", page{Title: "Account", Error: msg, Data: d})
}

// unavailable answers a page's request that the store could not serve
// (err, logged under op) with the status storeError chose.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, op string, err error) {
	oe := s.storeError(r.Context(), op, err)
	s.renderError(w, r, oe.Status, "The service is temporarily unavailable. Try again in a moment.", nil)
}

// accountForm is the common start of the account page's forms: a parsed
// body, a complete session, its CSRF token, and a recent sign-in (or a
// trip to the login page that comes back here).
func (s *Server) accountForm(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
	sess, ok := s.formSession(w, r, func(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
		return s.requireSession(w, r, s.prefix+"/account")
	}, "account", "The form expired. Reload the page and try again.")
	if !ok {
		return store.Session{}, false
	}
	if !s.recent(sess) {
		http.Redirect(w, r, s.loginURL(s.prefix+"/account"), http.StatusSeeOther)
		return store.Session{}, false
	}
	return sess, true
}

// serveChangePassword changes the password after checking the current
// one (rate-limited and counted toward the lockout like a sign-in). The
// store ends every session and revokes every token of the user; this
// browser gets a new session.
func (s *Server) serveChangePassword(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	if !s.allow(w, r, LimitLogin) {
		s.showAccount(w, r, http.StatusTooManyRequests, sess, tooManyAttempts, "")
		return
	}
	current, next, confirm := r.PostForm.Get("current_password"), r.PostForm.Get("new_password"), r.PostForm.Get("confirm_password")
	if next != confirm {
		s.showAccount(w, r, http.StatusBadRequest, sess, "The new passwords do not match.", "")
		return
	}
	if err := s.cfg.PasswordPolicy.Check(sess.Username, next); err != nil {
		s.showAccount(w, r, http.StatusBadRequest, sess, "The new password cannot be used: "+passwordProblem(err), "")
		return
	}
	now := s.now()
	if s.cfg.LockoutThreshold > 0 {
		_, ok, err := s.cfg.Store.ReserveLoginAttempt(ctx, sess.Username, now, s.cfg.LockoutWindow, s.cfg.LockoutThreshold, s.cfg.LockoutDuration)
		if err != nil {
			s.unavailable(w, r, "account", err)
			return
		}
		if !ok {
			s.showAccount(w, r, http.StatusUnauthorized, sess, "Too many failed attempts: password checks for this account are paused for a few minutes.", "")
			return
		}
	}
	u, err := s.cfg.Store.GetUser(ctx, sess.Username)
	if err != nil {
		s.unavailable(w, r, "account", err)
		return
	}
	if len(current) > maxPasswordLen || s.cfg.Hasher.Verify(ctx, u.PasswordHash, current) != nil {
		ev := s.event(r, store.EventLoginFailure, false)
		ev.Username, ev.Error = sess.Username, "password_change_wrong_current"
		s.record(ctx, ev)
		s.showAccount(w, r, http.StatusUnauthorized, sess, "The current password is not right.", "")
		return
	}
	if s.cfg.LockoutThreshold > 0 {
		if err := s.cfg.Store.ResetLoginFailures(ctx, sess.Username); err != nil {
			s.log.WarnContext(ctx, "reset login failures", "err", err)
		}
	}
	hash, err := s.cfg.Hasher.Hash(ctx, next)
	if err != nil {
		s.renderError(w, r, http.StatusInternalServerError, "Something went wrong. Try again.", err)
		return
	}
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventPasswordChanged, true))
	ev.Username = sess.Username
	if _, err := s.cfg.Store.SetPassword(ctx, sess.Username, hash, now, &ev); err != nil {
		s.unavailable(w, r, "account", err)
		return
	}
	s.cfg.Audit.Committed(ev)
	// Every session ended with the change, this one too; the person who
	// just proved the password keeps going in a new one.
	ns, err := s.startSession(w, r, sess.Username, false)
	if err != nil {
		s.unavailable(w, r, "account", err)
		return
	}
	s.showAccount(w, r, http.StatusOK, ns, "", "Your password was changed. Every other browser was signed out and every connected app must sign in again.")
}

// passwordProblem is the part of a policy error a person can act on.
func passwordProblem(err error) string {
	switch {
	case errors.Is(err, passwd.ErrTooShort):
		return "it is too short."
	case errors.Is(err, passwd.ErrTooLong):
		return "it is too long."
	case errors.Is(err, passwd.ErrCommon):
		return "it is in a list of passwords attackers try first."
	case errors.Is(err, passwd.ErrUsername):
		return "it is your username."
	}
	return "it does not meet the password policy."
}

func (s *Server) serveRemoveTOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	last, err := s.lastRequiredFactor(ctx, sess.Username, "totp")
	if err != nil {
		s.unavailable(w, r, "account", err)
		return
	}
	if last {
		s.showAccount(w, r, http.StatusForbidden, sess, "This server requires a second factor for your account: replace the authenticator app, or add a passkey, before removing it.", "")
		return
	}
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventMFARemoved, true))
	ev.Username, ev.Error = sess.Username, "totp"
	switch err := s.cfg.Store.DeleteTOTP(ctx, sess.Username, s.now(), &ev); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.unavailable(w, r, "account", err)
		return
	default:
		s.cfg.Audit.Committed(ev)
	}
	s.showAccount(w, r, http.StatusOK, sess, "", "The authenticator app and its recovery codes were removed.")
}

func (s *Server) serveNewRecoveryCodes(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	codes, hashes := newRecoveryCodes()
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventRecoveryCodesReset, true))
	ev.Username = sess.Username
	switch err := s.cfg.Store.ReplaceRecoveryCodes(ctx, sess.Username, hashes, s.now(), &ev); {
	case errors.Is(err, store.ErrNotFound):
		s.showAccount(w, r, http.StatusConflict, sess, "Set up an authenticator app first: recovery codes stand in for it.", "")
		return
	case err != nil:
		s.unavailable(w, r, "account", err)
		return
	}
	s.cfg.Audit.Committed(ev)
	s.showRecoveryCodes(w, r, sess.Username, codes, s.endpoints.account, false)
}

// accountData is the account page's data; see docs/templates.md.
type accountData struct {
	Username                                           string
	CSRF                                               string
	PasswordURL, EnrollURL, RemoveTOTPURL, RecoveryURL string
	AppsURL, LogoutURL, ReauthURL                      string
	// Done confirms the change just made.
	Done string
	// SecondFactors: the server offers two-step verification.
	SecondFactors bool
	// TOTP: an authenticator app is set up (since TOTPCreated).
	TOTP                      bool
	TOTPCreated, TOTPLastUsed time.Time
	RecoveryLeft              int
	// Required: the policy requires a second factor of this user.
	Required bool
	// Recent: the sign-in is recent enough for changes; otherwise the
	// forms lead through the login page first.
	Recent bool
	// Passkeys lists the user's passkeys; PasskeyRenameURL and
	// PasskeyRemoveURL take csrf, id (and name) forms.
	Passkeys                           []passkeyRow
	PasskeyRenameURL, PasskeyRemoveURL string
	// PasskeyOptions and PasskeyFinish are the registration ceremony for
	// passgate.js when passkeys are on, else "".
	PasskeyOptions, PasskeyFinish string
}

// passkeyRow is one passkey on the account page.
type passkeyRow struct {
	ID                    string // base64url credential ID, for the forms
	Name                  string
	CreatedAt, LastUsedAt time.Time
	// Synced: the passkey is backed up (for example to a phone's cloud
	// keychain), so it survives losing one device.
	Synced bool
}

type mfaData struct {
	Action, CSRF, ReturnTo, Username, LogoutURL string
	// TOTP: the user has an authenticator app (show the code form).
	TOTP bool
	// PasskeyOptions and PasskeyFinish are the ceremony URLs for
	// passgate.js when the user has a passkey, else "".
	PasskeyOptions, PasskeyFinish string
}

type enrollData struct {
	Action, CSRF, ReturnTo, Username string
	// QR is the otpauth URL as a PNG data: URL.
	QR template.URL
	// Secret is the base32 secret for manual entry.
	Secret string
	// Enrolment carries the sealed secret back with the form.
	Enrolment string
	// Required: this sign-in cannot go on before the enrolment.
	Required              bool
	LogoutURL, AccountURL string
	// PasskeyOptions and PasskeyFinish offer a passkey instead, through
	// passgate.js, when passkeys are on; else "".
	PasskeyOptions, PasskeyFinish string
}

type recoveryData struct {
	Username    string
	Codes       []string
	ContinueURL string
	// Enrolled: the codes come with a new enrolment.
	Enrolled bool
}
