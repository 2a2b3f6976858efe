package oauthweb

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

const (
	maxUsernameLen = 256
	maxPasswordLen = 1024
)

// currentSession returns the live, complete session named by the cookie,
// or store.ErrNotFound. A pending session (a second factor still owed)
// is not a session here: only the second-factor and enrolment pages
// accept it, through anySession.
func (s *Server) currentSession(r *http.Request) (store.Session, error) {
	sess, err := s.anySession(r)
	if err == nil && sess.Pending {
		return store.Session{}, fmt.Errorf("session owes a second factor: %w", store.ErrNotFound)
	}
	return sess, err
}

// anySession returns the live session named by the cookie, pending or
// not, or store.ErrNotFound.
func (s *Server) anySession(r *http.Request) (store.Session, error) {
	c, err := r.Cookie(s.cookie)
	if err != nil || !token.HasPrefix(c.Value, token.PrefixSession) {
		return store.Session{}, store.ErrNotFound
	}
	sess, err := s.cfg.Store.GetSession(r.Context(), token.Hash(c.Value), s.now())
	if err != nil {
		return store.Session{}, fmt.Errorf("get session: %w", err)
	}
	return sess, nil
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// parsePostForm checks the content type and parses the body only (never
// the query), mapping an oversize body to 413.
func parsePostForm(r *http.Request) (status int, err error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return http.StatusUnsupportedMediaType, errors.New("content type must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, errors.New("request body too large")
		}
		return http.StatusBadRequest, errors.New("malformed form body")
	}
	return 0, nil
}

// safeReturn validates a post-login return URL. Only our own authorization
// endpoint (and the connected-apps page) are allowed, as a path on the
// issuer's origin; anything else falls back to the apps page. The seed had
// an open redirect here.
func (s *Server) safeReturn(raw string) string {
	fallback := s.endpoints.apps
	if raw == "" || len(raw) > maxQueryBytes+256 || strings.ContainsAny(raw, "\\\r\n\t") || !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
		return fallback
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Fragment != "" {
		return fallback
	}
	switch u.EscapedPath() {
	case s.prefix + "/oauth/authorize", "/authorize", s.prefix + "/authorize":
		return s.origin + u.EscapedPath() + "?" + u.RawQuery
	case s.prefix + "/apps":
		return s.endpoints.apps
	case s.prefix + "/account":
		return s.endpoints.account
	}
	return fallback
}

// loginURL sends the browser to the login page, to come back to
// returnPath (a path with query on our origin) afterwards.
func (s *Server) loginURL(returnPath string) string {
	return s.endpoints.login + "?" + url.Values{"return_to": {returnPath}}.Encode()
}

func (s *Server) serveLoginPage(w http.ResponseWriter, r *http.Request) {
	returnTo := r.URL.Query().Get("return_to")
	if len(r.URL.RawQuery) > maxQueryBytes+256 {
		s.renderError(w, r, http.StatusRequestURITooLong, "The request is too long.", nil)
		return
	}
	s.showLogin(w, r, http.StatusOK, "", "", returnTo)
}

// showLogin renders the login form with a fresh login CSRF token, set as a
// cookie and echoed in the form (double submit; the cookie is __Host- on
// https so no sibling host can plant it).
func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, status int, msg, username, returnTo string) {
	csrf := token.New("")
	s.setCookie(w, s.csrfCk, csrf, time.Hour)
	// Only a validated path goes back into the form.
	returnTo = strings.TrimPrefix(s.safeReturn(returnTo), s.origin)
	if username == "" && s.cfg.PrefillSingleUser {
		if users, err := s.cfg.Store.ListUsers(r.Context()); err == nil && len(users) == 1 {
			username = users[0].Username
		}
	}
	s.render(w, r, status, "login", page{Title: "Sign in", Error: msg, Data: loginData{
		Action: s.endpoints.login, CSRF: csrf, ReturnTo: returnTo, Username: username,
		PasskeyOptions: s.ifPasskeys("/webauthn/login/options"), PasskeyFinish: s.ifPasskeys("/webauthn/login"),
	}})
}

const loginFailed = "Sign-in failed. Check your username and password."

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := parsePostForm(r); err != nil {
		s.renderError(w, r, status, "The form could not be read.", err)
		return
	}
	returnTo := r.PostForm.Get("return_to")
	if !s.allow(w, r, LimitLogin) {
		s.showLogin(w, r, http.StatusTooManyRequests, "Too many sign-in attempts. Wait a few minutes and try again.", "", returnTo)
		return
	}
	ck, err := r.Cookie(s.csrfCk)
	if err != nil || ck.Value == "" || !token.Equal(ck.Value, r.PostForm.Get("csrf")) {
		s.showLogin(w, r, http.StatusForbidden, "The sign-in form expired. Please try again.", "", returnTo)
		return
	}
	username := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	if username == "" || password == "" || len(username) > maxUsernameLen || len(password) > maxPasswordLen {
		s.showLogin(w, r, http.StatusBadRequest, loginFailed, "", returnTo)
		return
	}
	now := s.now()
	ev := s.event(r, store.EventLoginFailure, false)
	if !textsafe.Printable(username) {
		// Nobody can have such a name (user add refuses it); recorded
		// escaped so the audit log cannot be forged or carry terminal
		// escapes, and never counted against a real account.
		ev.Username, ev.Error = textsafe.Escape(username), "invalid_username"
		s.record(ctx, ev)
		s.showLogin(w, r, http.StatusUnauthorized, loginFailed, "", returnTo)
		return
	}
	ev.Username = username

	// The attempt is counted before the hash runs: of any burst, at most
	// LockoutThreshold attempts per lock window reach the verification,
	// and none after the lock, however many were already queued for a
	// hash slot (they were never given a reservation). A success clears
	// the state below.
	var reserved store.LoginFailures
	if s.cfg.LockoutThreshold > 0 {
		lf, ok, err := s.cfg.Store.ReserveLoginAttempt(ctx, username, now, s.cfg.LockoutWindow, s.cfg.LockoutThreshold, s.cfg.LockoutDuration)
		if err != nil {
			s.loginUnavailable(w, r, err, returnTo)
			return
		}
		if !ok {
			// No verification while locked: its cost is what the lock
			// protects, and the lock exists for unknown names too, so
			// the faster answer tells nothing about the account.
			ev.Error = "account_locked"
			s.record(ctx, ev)
			s.showLogin(w, r, http.StatusUnauthorized, loginFailed, "", returnTo)
			return
		}
		reserved = lf
	}
	hash := ""
	u, err := s.cfg.Store.GetUser(ctx, username)
	switch {
	case err == nil:
		hash = u.PasswordHash
	case errors.Is(err, store.ErrNotFound):
	default:
		s.loginUnavailable(w, r, err, returnTo)
		return
	}
	// Always verify, even for unknown accounts: an empty hash costs a
	// dummy verification, so timing tells nothing.
	verr := s.cfg.Hasher.Verify(ctx, hash, password)
	if verr != nil || hash == "" {
		switch {
		case hash == "":
			ev.Error = "invalid_credentials"
		case errors.Is(verr, passwd.ErrMismatch):
			ev.Error = "invalid_credentials"
		default:
			ev.Error = "verify_failed"
			s.log.WarnContext(ctx, "password verification failed", "err", verr)
		}
		s.record(ctx, ev)
		if reserved.Count == s.cfg.LockoutThreshold && reserved.LockedUntil.After(now) {
			le := s.event(r, store.EventAccountLocked, false)
			le.Username = username
			s.record(ctx, le)
		}
		s.showLogin(w, r, http.StatusUnauthorized, loginFailed, "", returnTo)
		return
	}

	// The password was right. If a second factor is owed, or must first
	// be enrolled, the browser gets a short pending session that reaches
	// only those pages.
	enrolled, required, err := s.factorState(ctx, u.Username)
	if err != nil {
		s.loginUnavailable(w, r, err, returnTo)
		return
	}
	if enrolled || required {
		if _, err := s.startSession(w, r, u.Username, true); err != nil {
			s.loginUnavailable(w, r, err, returnTo)
			return
		}
		// An enrolled account keeps its failure count until the second
		// factor passes: clearing it here would give whoever knows the
		// password a fresh set of guesses at the code after every
		// password. One without a factor yet has proven all it can.
		if !enrolled && s.cfg.LockoutThreshold > 0 {
			if err := s.cfg.Store.ResetLoginFailures(ctx, u.Username); err != nil {
				s.log.WarnContext(ctx, "reset login failures", "err", err)
			}
		}
		s.setCookie(w, s.csrfCk, "", -1)
		next := s.endpoints.secondFactor
		if !enrolled {
			next = s.endpoints.enroll
		}
		back := strings.TrimPrefix(s.safeReturn(returnTo), s.origin)
		http.Redirect(w, r, next+"?"+url.Values{"return_to": {back}}.Encode(), http.StatusSeeOther)
		return
	}
	if _, err := s.startSession(w, r, u.Username, false); err != nil {
		s.loginUnavailable(w, r, err, returnTo)
		return
	}
	if s.cfg.LockoutThreshold > 0 {
		// A success clears the account's whole lockout state, this
		// reservation included: the password was right.
		if err := s.cfg.Store.ResetLoginFailures(ctx, u.Username); err != nil {
			s.log.WarnContext(ctx, "reset login failures", "err", err)
		}
	}
	s.setCookie(w, s.csrfCk, "", -1)
	ok := s.event(r, store.EventLoginSuccess, true)
	ok.Username = u.Username
	s.record(ctx, ok)
	http.Redirect(w, r, s.safeReturn(returnTo), http.StatusSeeOther)
}

// pendingTTL bounds a pending session: long enough to find a phone and
// type a code or scan a QR code, short enough that a password alone
// opens nothing for long.
const pendingTTL = 10 * time.Minute

// startSession begins a new session for username and sets its cookie: a
// new ID every time (no fixation), and the browser's previous session, if
// any, ends.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, username string, pending bool) (store.Session, error) {
	ctx := r.Context()
	if old, err := r.Cookie(s.cookie); err == nil && old.Value != "" {
		if err := s.cfg.Store.DeleteSession(ctx, token.Hash(old.Value)); err != nil {
			s.log.WarnContext(ctx, "delete previous session", "err", err)
		}
	}
	now := s.now()
	ttl := s.cfg.SessionTTL
	if pending {
		ttl = pendingTTL
	}
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	id := token.New(token.PrefixSession)
	sess := store.Session{
		IDHash:     token.Hash(id),
		Username:   username,
		CSRFToken:  token.New(""),
		IP:         s.clientIP(r),
		UserAgent:  ua,
		CreatedAt:  now,
		ExpiresAt:  now.Add(ttl),
		LastSeenAt: now,
		Pending:    pending,
	}
	if err := s.cfg.Store.CreateSession(ctx, sess); err != nil {
		return store.Session{}, err
	}
	s.setCookie(w, s.cookie, id, ttl)
	return sess, nil
}

func (s *Server) loginUnavailable(w http.ResponseWriter, r *http.Request, err error, returnTo string) {
	oe := s.storeError(r.Context(), "login", err)
	s.showLogin(w, r, oe.Status, "Sign-in is temporarily unavailable. Try again in a moment.", "", returnTo)
}

// requireSession returns the session, or answers the request (login
// redirect or error page) and returns false.
func (s *Server) requireSession(w http.ResponseWriter, r *http.Request, returnPath string) (store.Session, bool) {
	sess, err := s.currentSession(r)
	if err == nil {
		return sess, true
	}
	if errors.Is(err, store.ErrNotFound) {
		code := http.StatusFound
		if r.Method == http.MethodPost {
			code = http.StatusSeeOther
		}
		http.Redirect(w, r, s.loginURL(returnPath), code)
		return store.Session{}, false
	}
	s.unavailable(w, r, "session", err)
	return store.Session{}, false
}

// checkCSRF compares the form's token with the session's in constant time.
func checkCSRF(r *http.Request, sess store.Session) bool {
	got := r.PostForm.Get("csrf")
	return got != "" && sess.CSRFToken != "" && token.Equal(got, sess.CSRFToken)
}

// formSession is the common start of a form posted from a signed-in
// page: it parses the body, gets the session from session (which answers
// the request itself when there is none) and checks the form's CSRF token
// against it; a mismatch shows expired and logs "<form> csrf mismatch".
// When it returns false, the request is answered.
func (s *Server) formSession(w http.ResponseWriter, r *http.Request, session func(http.ResponseWriter, *http.Request) (store.Session, bool), form, expired string) (store.Session, bool) {
	if status, err := parsePostForm(r); err != nil {
		s.renderError(w, r, status, "The form could not be read.", err)
		return store.Session{}, false
	}
	sess, ok := session(w, r)
	if !ok {
		return store.Session{}, false
	}
	if !checkCSRF(r, sess) {
		s.renderError(w, r, http.StatusForbidden, expired, errors.New(form+" csrf mismatch"))
		return store.Session{}, false
	}
	return sess, true
}

func (s *Server) serveLogoutPage(w http.ResponseWriter, r *http.Request) {
	sess, err := s.anySession(r)
	if err != nil {
		s.render(w, r, http.StatusOK, "logout", page{Title: "Signed out", Data: logoutData{Done: true}})
		return
	}
	s.render(w, r, http.StatusOK, "logout", page{Title: "Sign out", Data: logoutData{
		Action: s.endpoints.logout, CSRF: sess.CSRFToken, Username: sess.Username,
	}})
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := parsePostForm(r); err != nil {
		s.renderError(w, r, status, "The form could not be read.", err)
		return
	}
	sess, err := s.anySession(r)
	if err != nil {
		s.setCookie(w, s.cookie, "", -1)
		s.render(w, r, http.StatusOK, "logout", page{Title: "Signed out", Data: logoutData{Done: true}})
		return
	}
	if !checkCSRF(r, sess) {
		s.renderError(w, r, http.StatusForbidden, "The form expired. Reload the page and try again.", errors.New("logout csrf mismatch"))
		return
	}
	if err := s.cfg.Store.DeleteSession(ctx, sess.IDHash); err != nil {
		s.unavailable(w, r, "logout", err)
		return
	}
	s.setCookie(w, s.cookie, "", -1)
	ev := s.event(r, store.EventLogout, true)
	ev.Username = sess.Username
	s.record(ctx, ev)
	s.render(w, r, http.StatusOK, "logout", page{Title: "Signed out", Data: logoutData{Done: true}})
}

// touch records session activity, best effort.
func (s *Server) touch(ctx context.Context, sess store.Session) {
	if err := s.cfg.Store.TouchSession(ctx, sess.IDHash, s.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(ctx, "touch session", "err", err)
	}
}
