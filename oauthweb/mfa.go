package oauthweb

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// enrolTTL bounds how long an enrolment page's secret can be confirmed.
const enrolTTL = 15 * time.Minute

// RecentSignIn is how recent a sign-in must be for a security change on
// the account page (password, authenticator, recovery codes): a browser
// left signed in for days does not let whoever sits at it change them.
const RecentSignIn = 15 * time.Minute

const secondFactorFailed = "That code did not work. Check your authenticator app and try again, or use a recovery code."

// factorState says whether username has a second factor (enrolled) and
// whether the policy requires one (required). Both are false when second
// factors are off or unavailable.
func (s *Server) factorState(ctx context.Context, username string) (enrolled, required bool, err error) {
	if s.cfg.Sealer == nil || s.cfg.SecondFactor.Mode == mfa.PolicyOff {
		return false, false, nil
	}
	_, err = s.cfg.Store.GetTOTP(ctx, username)
	switch {
	case err == nil:
		enrolled = true
	case !errors.Is(err, store.ErrNotFound):
		return false, false, fmt.Errorf("second factor state: %w", err)
	}
	if !enrolled {
		keys, err := s.cfg.Store.ListPasskeys(ctx, username)
		if err != nil {
			return false, false, fmt.Errorf("second factor state: %w", err)
		}
		enrolled = len(keys) > 0
	}
	required, err = s.factorRequired(ctx, username)
	return enrolled, required, err
}

func (s *Server) factorRequired(ctx context.Context, username string) (bool, error) {
	switch s.cfg.SecondFactor.Mode {
	case mfa.PolicyAll:
		return true, nil
	case mfa.PolicyGroup:
		in, err := s.cfg.InGroup(ctx, s.cfg.SecondFactor.Group, username)
		if err != nil {
			return false, fmt.Errorf("group membership: %w", err)
		}
		return in, nil
	}
	return false, nil
}

// pendingSession returns the browser's pending session, or answers the
// request (back to the login page) and returns false.
func (s *Server) pendingSession(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
	sess, err := s.anySession(r)
	if err == nil && sess.Pending {
		return sess, true
	}
	if err == nil || errors.Is(err, store.ErrNotFound) {
		http.Redirect(w, r, s.loginURL(strings.TrimPrefix(s.safeReturn(r.FormValue("return_to")), s.origin)), http.StatusSeeOther)
		return store.Session{}, false
	}
	s.unavailable(w, r, "session", err)
	return store.Session{}, false
}

func (s *Server) serveSecondFactorPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pendingSession(w, r)
	if !ok {
		return
	}
	returnTo := r.URL.Query().Get("return_to")
	enrolled, _, err := s.factorState(r.Context(), sess.Username)
	if err != nil {
		s.secondFactorUnavailable(w, r, err, sess, returnTo)
		return
	}
	if !enrolled {
		// This sign-in owes an enrolment, not a code.
		back := strings.TrimPrefix(s.safeReturn(returnTo), s.origin)
		http.Redirect(w, r, s.endpoints.enroll+"?"+url.Values{"return_to": {back}}.Encode(), http.StatusSeeOther)
		return
	}
	s.showSecondFactor(w, r, http.StatusOK, "", sess, returnTo)
}

func (s *Server) showSecondFactor(w http.ResponseWriter, r *http.Request, status int, msg string, sess store.Session, returnTo string) {
	ctx := r.Context()
	d := mfaData{
		Action: s.endpoints.secondFactor, CSRF: sess.CSRFToken, ReturnTo: strings.TrimPrefix(s.safeReturn(returnTo), s.origin),
		Username: sess.Username, LogoutURL: s.endpoints.logout, TOTP: true,
	}
	if _, err := s.cfg.Store.GetTOTP(ctx, sess.Username); errors.Is(err, store.ErrNotFound) {
		d.TOTP = false
	}
	if s.passkeysOn() {
		if keys, err := s.cfg.Store.ListPasskeys(ctx, sess.Username); err == nil && len(keys) > 0 {
			d.PasskeyOptions = s.base + "/webauthn/second-factor/options"
			d.PasskeyFinish = s.base + "/webauthn/second-factor"
		}
	}
	s.render(w, r, status, "mfa", page{Title: "Two-step verification", Error: msg, Data: d})
}

// serveSecondFactor checks a TOTP code or a recovery code for a pending
// session. Each attempt is spent from the client's login rate limit and
// reserved against the account's lockout before it is checked, like a
// password; only a success clears the lockout state.
func (s *Server) serveSecondFactor(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.formSession(w, r, s.pendingSession, "second factor", "The form expired. Sign in again.")
	if !ok {
		return
	}
	returnTo := r.PostForm.Get("return_to")
	if !s.allow(w, r, LimitLogin) {
		s.showSecondFactor(w, r, http.StatusTooManyRequests, tooManyAttempts, sess, returnTo)
		return
	}
	now := s.now()
	ev := s.event(r, store.EventMFAFailure, false)
	ev.Username = sess.Username
	var reserved store.LoginFailures
	if s.cfg.LockoutThreshold > 0 {
		lf, ok, err := s.cfg.Store.ReserveLoginAttempt(ctx, sess.Username, now, s.cfg.LockoutWindow, s.cfg.LockoutThreshold, s.cfg.LockoutDuration)
		if err != nil {
			s.secondFactorUnavailable(w, r, err, sess, returnTo)
			return
		}
		if !ok {
			ev.Error = "account_locked"
			s.record(ctx, ev)
			s.showSecondFactor(w, r, http.StatusUnauthorized, "Too many failed attempts: sign-in to this account is paused for a few minutes.", sess, returnTo)
			return
		}
		reserved = lf
	}
	method, reason, err := s.checkSecondFactor(r, sess.Username, r.PostForm.Get("code"), now)
	if err != nil {
		s.secondFactorUnavailable(w, r, err, sess, returnTo)
		return
	}
	if reason != "" {
		ev.Error = reason
		s.record(ctx, ev)
		if reserved.Count == s.cfg.LockoutThreshold && reserved.LockedUntil.After(now) {
			le := s.event(r, store.EventAccountLocked, false)
			le.Username = sess.Username
			s.record(ctx, le)
		}
		s.showSecondFactor(w, r, http.StatusUnauthorized, secondFactorFailed, sess, returnTo)
		return
	}
	next, err := s.completeSignIn(w, r, sess, method, returnTo)
	if err != nil {
		s.secondFactorUnavailable(w, r, err, sess, returnTo)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// completeSignIn turns a pending session whose second factor passed
// (method: totp, recovery_code, passkey, or an enrolment) into a new,
// complete session, clears the lockout state, records the success, and
// returns where the browser goes next.
func (s *Server) completeSignIn(w http.ResponseWriter, r *http.Request, sess store.Session, method, returnTo string) (string, error) {
	ctx := r.Context()
	if err := s.cfg.Store.DeleteSession(ctx, sess.IDHash); err != nil {
		s.log.WarnContext(ctx, "delete pending session", "err", err)
	}
	if _, err := s.startSession(w, r, sess.Username, false); err != nil {
		return "", err
	}
	if s.cfg.LockoutThreshold > 0 {
		if err := s.cfg.Store.ResetLoginFailures(ctx, sess.Username); err != nil {
			s.log.WarnContext(ctx, "reset login failures", "err", err)
		}
	}
	okEv := s.event(r, store.EventMFASuccess, true)
	okEv.Username, okEv.Error = sess.Username, method
	s.record(ctx, okEv)
	login := s.event(r, store.EventLoginSuccess, true)
	login.Username = sess.Username
	s.record(ctx, login)
	return s.safeReturn(returnTo), nil
}

func (s *Server) secondFactorUnavailable(w http.ResponseWriter, r *http.Request, err error, sess store.Session, returnTo string) {
	oe := s.storeError(r.Context(), "second factor", err)
	s.showSecondFactor(w, r, oe.Status, "Sign-in is temporarily unavailable. Try again in a moment.", sess, returnTo)
}

// checkSecondFactor checks code as a TOTP code (six digits) or else as a
// recovery code. It returns the method that passed ("totp" or
// "recovery_code"), or the reason it failed for the audit log; err only
// when the store failed.
func (s *Server) checkSecondFactor(r *http.Request, username, code string, now time.Time) (method, reason string, err error) {
	ctx := r.Context()
	if len(code) > 64 {
		return "", "invalid_code", nil
	}
	if c := mfa.NormalizeCode(code); len(c) == mfa.Digits {
		t, err := s.cfg.Store.GetTOTP(ctx, username)
		if errors.Is(err, store.ErrNotFound) {
			return "", "not_enrolled", nil
		}
		if err != nil {
			return "", "", err
		}
		secret, err := s.cfg.Sealer.Open(username, t.Secret)
		if err != nil {
			// The key changed or the row was tampered with: no code can
			// pass, and the operator must know.
			s.log.ErrorContext(ctx, "open totp secret", "user", username, "err", err)
			return "", "secret_unreadable", nil
		}
		step, err := mfa.Verify(string(secret), c, now)
		if err != nil {
			return "", "invalid_code", nil
		}
		switch err := s.cfg.Store.UseTOTPStep(ctx, username, step, now); {
		case errors.Is(err, store.ErrConflict):
			return "", "code_reused", nil
		case errors.Is(err, store.ErrNotFound):
			return "", "not_enrolled", nil
		case err != nil:
			return "", "", err
		}
		return "totp", "", nil
	}
	rc, ok := mfa.NormalizeRecoveryCode(code)
	if !ok {
		return "", "invalid_code", nil
	}
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventRecoveryCodeUsed, true))
	ev.Username = username
	switch err := s.cfg.Store.UseRecoveryCode(ctx, username, token.Hash(rc), now, &ev); {
	case errors.Is(err, store.ErrNotFound):
		return "", "invalid_recovery_code", nil
	case err != nil:
		return "", "", err
	}
	s.cfg.Audit.Committed(ev)
	return "recovery_code", "", nil
}

// ifPasskeys returns the URL of a ceremony endpoint, or "" when passkeys
// are off (the templates then show no passkey button).
func (s *Server) ifPasskeys(path string) string {
	if !s.passkeysOn() {
		return ""
	}
	return s.base + path
}

// ---- enrolment ----

// enrolSession returns the session that may enrol an authenticator: a
// complete session whose sign-in is recent, or a pending one whose user
// must enrol before going on. Otherwise it answers the request.
func (s *Server) enrolSession(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
	ctx := r.Context()
	if s.cfg.Sealer == nil || s.cfg.SecondFactor.Mode == mfa.PolicyOff {
		s.renderError(w, r, http.StatusNotFound, "Two-step verification is not enabled on this server.", nil)
		return store.Session{}, false
	}
	sess, err := s.anySession(r)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Redirect(w, r, s.loginURL(s.prefix+"/account"), http.StatusSeeOther)
		return store.Session{}, false
	case err != nil:
		s.unavailable(w, r, "session", err)
		return store.Session{}, false
	}
	if sess.Pending {
		// Only someone who owes an enrolment may enrol from a pending
		// session; one who owes a code must give it.
		enrolled, required, err := s.factorState(ctx, sess.Username)
		if err != nil {
			s.unavailable(w, r, "second factor state", err)
			return store.Session{}, false
		}
		if enrolled || !required {
			back := strings.TrimPrefix(s.safeReturn(r.FormValue("return_to")), s.origin)
			http.Redirect(w, r, s.endpoints.secondFactor+"?"+url.Values{"return_to": {back}}.Encode(), http.StatusSeeOther)
			return store.Session{}, false
		}
		return sess, true
	}
	if !s.recent(sess) {
		http.Redirect(w, r, s.loginURL(s.prefix+"/account"), http.StatusSeeOther)
		return store.Session{}, false
	}
	return sess, true
}

// recent reports whether sess was signed in within RecentSignIn.
func (s *Server) recent(sess store.Session) bool {
	return s.now().Sub(sess.CreatedAt) < RecentSignIn
}

func (s *Server) serveEnrollPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.enrolSession(w, r)
	if !ok {
		return
	}
	s.showEnroll(w, r, http.StatusOK, "", sess, r.URL.Query().Get("return_to"), "")
}

// showEnroll renders the enrolment page for a fresh secret, or for the
// sealed one of a failed attempt (the app already has it).
func (s *Server) showEnroll(w http.ResponseWriter, r *http.Request, status int, msg string, sess store.Session, returnTo, secret string) {
	var e mfa.Enrolment
	var err error
	if secret == "" {
		e, err = mfa.NewEnrolment(s.pages.brand.Title, sess.Username)
	} else {
		e, err = mfa.EnrolmentFor(s.pages.brand.Title, sess.Username, secret)
	}
	if err != nil {
		s.renderError(w, r, http.StatusInternalServerError, "Something went wrong. Try again.", err)
		return
	}
	qr, err := e.QRDataURI()
	if err != nil {
		s.renderError(w, r, http.StatusInternalServerError, "Something went wrong. Try again.", err)
		return
	}
	// The secret travels in the form sealed for this user with an expiry:
	// nothing is stored until a code confirms the app has it.
	exp := strconv.FormatInt(s.now().Add(enrolTTL).Unix(), 10)
	sealed := base64.RawURLEncoding.EncodeToString(s.cfg.Sealer.Seal("enrol\x00"+sess.Username, []byte(exp+"|"+e.Secret)))
	back := strings.TrimPrefix(s.safeReturn(returnTo), s.origin)
	if returnTo == "" && !sess.Pending {
		back = s.prefix + "/account"
	}
	s.render(w, r, status, "enroll", page{Title: "Set up an authenticator app", Error: msg, Data: enrollData{
		Action: s.endpoints.enroll, CSRF: sess.CSRFToken, ReturnTo: back, Username: sess.Username,
		QR: template.URL(qr), Secret: e.Secret, Enrolment: sealed, Required: sess.Pending,
		LogoutURL: s.endpoints.logout, AccountURL: s.endpoints.account,
		PasskeyOptions: s.ifPasskeys("/webauthn/register/options"), PasskeyFinish: s.ifPasskeys("/webauthn/register"),
	}})
}

func (s *Server) serveEnroll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.formSession(w, r, s.enrolSession, "enrol", "The form expired. Reload the page and try again.")
	if !ok {
		return
	}
	returnTo := r.PostForm.Get("return_to")
	if !s.allow(w, r, LimitLogin) {
		s.renderError(w, r, http.StatusTooManyRequests, tooManyAttempts, nil)
		return
	}
	now := s.now()
	raw, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get("enrolment"))
	var secret string
	if err == nil {
		var pt []byte
		pt, err = s.cfg.Sealer.Open("enrol\x00"+sess.Username, raw)
		if err == nil {
			exp, sec, found := strings.Cut(string(pt), "|")
			n, perr := strconv.ParseInt(exp, 10, 64)
			if !found || perr != nil || !now.Before(time.Unix(n, 0)) {
				err = errors.New("enrolment expired")
			}
			secret = sec
		}
	}
	if err != nil {
		s.showEnroll(w, r, http.StatusBadRequest, "This setup page expired. Scan the new code below.", sess, returnTo, "")
		return
	}
	step, verr := mfa.Verify(secret, r.PostForm.Get("code"), now)
	if verr != nil {
		ev := s.event(r, store.EventMFAFailure, false)
		ev.Username, ev.Error = sess.Username, "enrol_invalid_code"
		s.record(ctx, ev)
		s.showEnroll(w, r, http.StatusUnauthorized, "That code did not match. Check that the app shows this account and try the current code.", sess, returnTo, secret)
		return
	}
	codes, hashes := newRecoveryCodes()
	ev := s.cfg.Audit.Stamp(s.event(r, store.EventMFAEnrolled, true))
	ev.Username, ev.Error = sess.Username, "totp"
	t := store.TOTP{Username: sess.Username, Secret: s.cfg.Sealer.Seal(sess.Username, []byte(secret)), LastStep: step, CreatedAt: now}
	if err := s.cfg.Store.EnrollTOTP(ctx, t, hashes, now, &ev); err != nil {
		s.unavailable(w, r, "enrol totp", err)
		return
	}
	s.cfg.Audit.Committed(ev)
	if sess.Pending {
		// The enrolment was the second factor this sign-in owed.
		if err := s.cfg.Store.DeleteSession(ctx, sess.IDHash); err != nil {
			s.log.WarnContext(ctx, "delete pending session", "err", err)
		}
		if _, err := s.startSession(w, r, sess.Username, false); err != nil {
			s.unavailable(w, r, "start session", err)
			return
		}
		login := s.event(r, store.EventLoginSuccess, true)
		login.Username = sess.Username
		s.record(ctx, login)
	}
	s.showRecoveryCodes(w, r, sess.Username, codes, s.safeReturn(returnTo), true)
}

// showRecoveryCodes shows fresh recovery codes once; they are stored only
// as hashes.
func (s *Server) showRecoveryCodes(w http.ResponseWriter, r *http.Request, username string, codes []string, next string, enrolled bool) {
	s.render(w, r, http.StatusOK, "recovery", page{Title: "Your recovery codes", Data: recoveryData{
		Username: username, Codes: codes, ContinueURL: next, Enrolled: enrolled,
	}})
}

// newRecoveryCodes returns fresh recovery codes, shown once, and the
// hashes of them that the store keeps.
func newRecoveryCodes() (codes, hashes []string) {
	codes = mfa.NewRecoveryCodes()
	hashes = make([]string, len(codes))
	for i, c := range codes {
		hashes[i] = token.Hash(c)
	}
	return codes, hashes
}
