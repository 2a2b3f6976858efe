// Package oauthweb is passgate's authorization server: RFC 8414 and RFC 9728
// metadata, the authorization endpoint with its login and consent pages,
// the token endpoint (authorization code with PKCE, refresh rotation with
// reuse detection), dynamic client registration (RFC 7591), revocation
// (RFC 7009), introspection (RFC 7662), the connected-apps page, and
// second factors: TOTP and recovery codes, passkeys (WebAuthn), and the
// account page that manages them and the password.
//
// Pages that carry the session cookie are served through a browser chain
// (cross-origin protection, a per-session CSRF token, CSP, no-store), the
// machine endpoints through an API chain (CORS, JSON errors, no cookies).
// Every URL passgate hands out is built from the configured issuer, never
// from the Host header.
package oauthweb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/store"
)

// Registration modes.
const (
	RegistrationOpen   = "open"
	RegistrationClosed = "closed"
	RegistrationToken  = "token"
)

// Defaults of Config, which the CLI's flags also show.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultRefreshIdleTTL  = 14 * 24 * time.Hour
	// DefaultRefreshGrace covers a client racing itself with one refresh
	// token; longer windows weaken reuse detection.
	DefaultRefreshGrace     = 5 * time.Second
	DefaultSessionTTL       = 30 * 24 * time.Hour
	DefaultCodeTTL          = 10 * time.Minute
	DefaultLockoutThreshold = 10
	DefaultLockoutWindow    = 15 * time.Minute
	DefaultLockoutDuration  = 15 * time.Minute
	DefaultScope            = "mcp"
)

// Limits of Config.
const (
	// MaxRefreshGrace bounds RefreshGrace: within the window a stolen,
	// already rotated refresh token is answered instead of revoking its
	// family, so a long one weakens reuse detection.
	MaxRefreshGrace = time.Minute
	// MinSecretLen is the least length of the machine secrets of Config
	// (RegistrationToken, IntrospectionCredentials): random and long, not
	// passwords people remember.
	MinSecretLen = 16
)

// Rate-limit endpoint names passed to Config.RateLimit.
const (
	LimitLogin     = "login"
	LimitToken     = "token"
	LimitAuthorize = "authorize"
	LimitRegister  = "register"
	// LimitRegisterSuccess counts successful registrations per IP;
	// LimitRegister counts only failed ones.
	LimitRegisterSuccess = "register_success"
	LimitRevoke          = "revoke"
	// LimitClientSecret counts failed client-secret verifications per
	// client_id, at the token, revocation and introspection endpoints
	// alike; the endpoints' own limits count per client IP.
	LimitClientSecret = "client_secret"
	LimitIntrospect   = "introspect"
)

// Body limits. Token, revocation and introspection requests are a handful
// of short parameters; registration documents are small JSON objects.
const (
	maxFormBytes     = 16 << 10
	maxRegisterBytes = 64 << 10
	maxQueryBytes    = 8 << 10
)

// Config configures the authorization server. The field comments are the
// reference: defaults and "Optional." are stated per field.
type Config struct {
	// Issuer is the authorization server's identifier (RFC 8414), e.g.
	// https://auth.example.com or https://example.com/auth. It is repeated
	// byte for byte in metadata and in the iss of every authorization
	// response; endpoint URLs are built from it. https, or http on a
	// loopback host. Required.
	Issuer string
	// Resources are the protected MCP resources; at least one. Tokens are
	// bound to one of them (RFC 8707); when a request names none, the only
	// configured resource is used.
	Resources []resource.Resource
	// Store persists everything. Required.
	Store store.Store
	// Audit records security events. Required.
	Audit *audit.Recorder
	// Policy is the access policy: /oauth/authorize refuses a user it
	// does not allow on the requested resource, before consent and
	// without a code. Optional: default every user.
	Policy *policy.Holder
	// Hasher verifies passwords and client secrets and hashes new client
	// secrets. Required.
	Hasher *passwd.Hasher
	// Logger receives operational logs, never secrets. Optional; default
	// discards.
	Logger *slog.Logger
	// Now is the clock. Optional; default time.Now.
	Now func() time.Time
	// Metrics registers passgate_http_requests_total. Optional; nil: no
	// metrics.
	Metrics prometheus.Registerer
	// ClientIP returns the client address of a request for rate limits and
	// the audit log (trusted-proxy logic plugs in here). Optional; default:
	// the host of RemoteAddr.
	ClientIP func(*http.Request) string
	// Scopes are the supported scopes. Optional; default [DefaultScope].
	Scopes []string
	// BaseScopes are the minimal scopes: what the protected-resource
	// metadata advertises (scopes_supported) and what a request without a
	// scope gets, when its client registered none. The others are reached
	// by step-up: the check answers 403 insufficient_scope naming one, and
	// the client asks again for more. Optional; default Scopes (no
	// step-up). Each must be in Scopes.
	BaseScopes []string
	// ClientScopeCap makes the scope a client registered (RFC 7591) a cap
	// on what it may request, as before step-up existed. Default false:
	// the registered scope is the client's default, and a later request
	// for more supported scopes is honoured (with the user's consent), as
	// the MCP specification's step-up needs.
	ClientScopeCap bool
	// AccessTokenTTL is the access token lifetime. Optional; default
	// DefaultAccessTokenTTL.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the absolute lifetime of a refresh token family,
	// counted from the authorization code grant. Optional; default
	// DefaultRefreshTokenTTL.
	RefreshTokenTTL time.Duration
	// RefreshIdleTTL is how long an unused refresh token stays valid.
	// Optional; default DefaultRefreshIdleTTL.
	RefreshIdleTTL time.Duration
	// RefreshGrace is how long after a rotation the old refresh token
	// still gets the same response again (a client racing itself) instead
	// of triggering reuse detection. Optional; default DefaultRefreshGrace; negative
	// disables the grace window.
	RefreshGrace time.Duration
	// SessionTTL is the browser session lifetime. Optional; default
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// CodeTTL is the authorization code lifetime. Optional; default
	// DefaultCodeTTL.
	CodeTTL time.Duration
	// Registration is "open" (default), "closed" or "token" (an initial
	// access token is required as a Bearer token).
	Registration string
	// RegistrationToken is the initial access token required when
	// Registration is "token".
	RegistrationToken string
	// PrivateSchemes is the policy for private-use redirect URI schemes
	// (RFC 8252 §7.1) at registration, e.g. cursor:// and
	// com.example.app:/cb. Optional; the zero value is
	// oauth.PrivateSchemesDefault (reverse-domain schemes and
	// oauth.KnownAppSchemes).
	PrivateSchemes oauth.PrivateSchemes
	// TemplateDir overrides the embedded templates: a file there with the
	// name of an embedded one (layout.html, login.html, consent.html,
	// error.html, apps.html, logout.html, mfa.html, enroll.html,
	// recovery.html, account.html) replaces it. Optional.
	TemplateDir string
	// Branding sets the pages' title, logo, accent colour and footer.
	// Optional; see Branding.
	Branding Branding
	// IntrospectionCredentials maps resource-server IDs to their secrets
	// for RFC 7662 introspection (HTTP Basic or client_secret_post form).
	// Confidential clients may introspect their own tokens too. Optional.
	IntrospectionCredentials map[string]string
	// ResolveClient resolves a client_id that is an https URL (a Client ID
	// Metadata Document) into a public client. It returns an error wrapping
	// store.ErrNotFound when the document cannot be used, and
	// store.ErrUnavailable never (a fetch failure is ErrNotFound). Optional;
	// nil: URL client_ids are unknown and metadata does not advertise
	// client_id_metadata_document_supported.
	ResolveClient func(ctx context.Context, clientID string) (store.Client, error)
	// RateLimit spends one event of endpoint's limit (one of the Limit*
	// names) for key, and if it cannot, says when to retry. key is the
	// client's IP (a ClientIP result) or, for the per-client limits of the
	// token, revocation and introspection endpoints, "client_id " followed
	// by the client_id. refund gives the event back (never nil; calling it
	// more than once gives back one event). Events are spent before the
	// work they pay for, so a burst of concurrent requests cannot overrun
	// a limit: the token endpoint spends up front and refunds successful
	// grants (it counts failures only: a hosted client such as claude.ai
	// refreshes for all its users from a few addresses, while guessing
	// codes, refresh tokens or client secrets fails every time), and a
	// client secret's verification is paid for per client_id and refunded
	// when it matches. Optional; nil: no limits.
	RateLimit func(endpoint, key string) (ok bool, retryAfter time.Duration, refund func())
	// RememberPublicConsent lets an earlier consent answer a request
	// without the consent page for public clients whose identity is not
	// assured: no client secret, and a loopback or private-use redirect URI
	// (RFC 8252 §8.6; any program can use such a client_id, e.g. a public
	// Client ID Metadata Document). Optional; default false: those clients
	// see the consent page every time. Confidential clients and https
	// redirect URIs are remembered either way.
	RememberPublicConsent bool
	// PrefillSingleUser fills in the username on the login page when
	// exactly one user exists (the seed had a single password and no
	// username). It reveals that username to anyone who opens the page.
	// Optional; default false.
	PrefillSingleUser bool
	// LockoutThreshold is the number of failed logins for one account
	// within LockoutWindow that locks it for LockoutDuration. Each attempt
	// is reserved in the store before its password is verified (and given
	// back on success), so at most this many verifications run per lock
	// window under any burst, and none while locked. Optional; default
	// DefaultLockoutThreshold; negative disables lockout.
	LockoutThreshold int
	// SecondFactor is the --require-second-factor policy: PolicyOff asks
	// nobody for a second factor and offers no enrolment; PolicyOptional
	// (the zero value) asks those who enrolled one; PolicyAll sends
	// everyone without one to enrol right after the password, before any
	// consent; PolicyGroup does that for the members of Group (see
	// InGroup). Optional.
	SecondFactor mfa.Policy
	// Sealer seals TOTP secrets at rest. Optional; nil: second factors
	// are unavailable, and SecondFactor must be off or optional.
	Sealer *mfa.Sealer
	// InGroup reports whether username is a member of group, for a
	// SecondFactor of PolicyGroup (required then). An error denies the
	// sign-in as unavailable.
	InGroup func(ctx context.Context, group, username string) (bool, error)
	// PasswordPolicy is what a new password chosen on the account page
	// must pass. Optional; the zero value is passwd's default policy.
	PasswordPolicy passwd.Policy
	// LockoutWindow optional; default DefaultLockoutWindow.
	LockoutWindow time.Duration
	// LockoutDuration optional; default DefaultLockoutDuration.
	LockoutDuration time.Duration
}

// Server is the authorization server. Build it with New.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	clientIP  func(*http.Request) string
	pages     *pages
	secure    bool   // issuer is https: Secure cookies with __Host- prefix
	origin    string // scheme://host of the issuer
	prefix    string // issuer path without trailing slash ("" for none)
	base      string // issuer without trailing slash
	cookie    string // session cookie name
	csrfCk    string // login CSRF cookie name
	requests  *prometheus.CounterVec
	endpoints endpoints
	// rp is the WebAuthn relying party; nil when second factors are
	// unavailable or off (no passkeys then).
	rp *webauthn.WebAuthn
}

type endpoints struct {
	authorize, token, register, revoke, introspect, login, consent, logout, apps, css string
	secondFactor, account, enroll, js                                                 string
}

// New validates cfg (reporting every problem at once), applies defaults
// and parses the templates.
func New(cfg Config) (*Server, error) {
	var errs []error
	if err := oauth.ValidateIssuer(cfg.Issuer); err != nil {
		errs = append(errs, err)
	}
	// Valid issuers parse; an invalid one stops New below.
	iu, _ := url.Parse(cfg.Issuer)
	if len(cfg.Resources) == 0 {
		errs = append(errs, errors.New("at least one resource is required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if cfg.Audit == nil {
		errs = append(errs, errors.New("audit recorder is required"))
	}
	if cfg.Hasher == nil {
		errs = append(errs, errors.New("hasher is required"))
	}
	switch cfg.Registration {
	case "":
		cfg.Registration = RegistrationOpen
	case RegistrationOpen, RegistrationClosed:
	case RegistrationToken:
		if len(cfg.RegistrationToken) < MinSecretLen {
			errs = append(errs, fmt.Errorf("registration token must be at least %d characters", MinSecretLen))
		}
	default:
		errs = append(errs, fmt.Errorf("registration %q: want open, closed or token", cfg.Registration))
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{DefaultScope}
	}
	if sc, err := oauth.ParseScope(oauth.JoinScope(cfg.Scopes)); err != nil || len(sc) != len(cfg.Scopes) {
		errs = append(errs, errors.New("scopes must be distinct valid scope tokens"))
	} else {
		cfg.Scopes = sc
	}
	if len(cfg.BaseScopes) == 0 {
		cfg.BaseScopes = cfg.Scopes
	}
	for _, b := range cfg.BaseScopes {
		if !slices.Contains(cfg.Scopes, b) {
			errs = append(errs, fmt.Errorf("base scope %q is not a supported scope", b))
		}
	}
	for id, secret := range cfg.IntrospectionCredentials {
		if id == "" || len(secret) < MinSecretLen {
			errs = append(errs, fmt.Errorf("introspection credential %q: secret must be at least %d characters", id, MinSecretLen))
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
		if *d < 0 && d != &cfg.RefreshGrace {
			errs = append(errs, errors.New("durations must not be negative"))
		}
	}
	def(&cfg.AccessTokenTTL, DefaultAccessTokenTTL)
	def(&cfg.RefreshTokenTTL, DefaultRefreshTokenTTL)
	def(&cfg.RefreshIdleTTL, DefaultRefreshIdleTTL)
	def(&cfg.RefreshGrace, DefaultRefreshGrace)
	if cfg.RefreshGrace > MaxRefreshGrace {
		errs = append(errs, fmt.Errorf("refresh grace %v: at most %v", cfg.RefreshGrace, MaxRefreshGrace))
	}
	def(&cfg.SessionTTL, DefaultSessionTTL)
	def(&cfg.CodeTTL, DefaultCodeTTL)
	def(&cfg.LockoutWindow, DefaultLockoutWindow)
	def(&cfg.LockoutDuration, DefaultLockoutDuration)
	if cfg.LockoutThreshold == 0 {
		cfg.LockoutThreshold = DefaultLockoutThreshold
	}
	if cfg.RefreshGrace < 0 {
		cfg.RefreshGrace = 0
	}
	switch cfg.SecondFactor.Mode {
	case "":
		cfg.SecondFactor.Mode = mfa.PolicyOptional
	case mfa.PolicyOff, mfa.PolicyOptional:
	case mfa.PolicyAll, mfa.PolicyGroup:
		if cfg.Sealer == nil {
			errs = append(errs, fmt.Errorf("require second factor %s: a secret key (Sealer) is required", cfg.SecondFactor))
		}
		if cfg.SecondFactor.Mode == mfa.PolicyGroup && cfg.InGroup == nil {
			errs = append(errs, fmt.Errorf("require second factor %s: groups are not available (InGroup is nil)", cfg.SecondFactor))
		}
	default:
		errs = append(errs, fmt.Errorf("require second factor %q: unknown mode", cfg.SecondFactor.Mode))
	}
	if err := cfg.PasswordPolicy.Validate(); err != nil {
		errs = append(errs, err)
	}
	pg, err := loadPages(cfg.TemplateDir, cfg.Branding)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oauthweb: %w", err)
	}

	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, clientIP: cfg.ClientIP, pages: pg}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.clientIP == nil {
		s.clientIP = remoteHost
	}
	s.secure = iu.Scheme == "https"
	s.origin = iu.Scheme + "://" + iu.Host
	s.prefix = strings.TrimSuffix(iu.EscapedPath(), "/")
	s.base = strings.TrimSuffix(cfg.Issuer, "/")
	if s.secure {
		s.cookie, s.csrfCk = "__Host-passgate_session", "__Host-passgate_login"
	} else {
		s.cookie, s.csrfCk = "passgate_session", "passgate_login"
	}
	s.endpoints = endpoints{
		authorize:    s.base + "/oauth/authorize",
		token:        s.base + "/oauth/token",
		register:     s.base + "/oauth/register",
		revoke:       s.base + "/oauth/revoke",
		introspect:   s.base + "/oauth/introspect",
		login:        s.base + "/login",
		consent:      s.base + "/consent",
		logout:       s.base + "/logout",
		apps:         s.base + "/apps",
		secondFactor: s.base + "/login/second-factor",
		account:      s.base + "/account",
		enroll:       s.base + "/account/totp",
		css:          s.prefix + "/static/passgate.css",
		js:           s.prefix + "/static/passgate.js",
	}
	// WebAuthn relying-party IDs are domain names, never IP addresses: an
	// issuer on an address (http://127.0.0.1:8080) gets TOTP but no
	// passkeys; http://localhost works for local use.
	if cfg.Sealer != nil && cfg.SecondFactor.Mode != mfa.PolicyOff && net.ParseIP(iu.Hostname()) == nil {
		rp, err := newRelyingParty(iu.Hostname(), s.origin, pg.brand.Title)
		if err != nil {
			return nil, fmt.Errorf("oauthweb: passkeys: %w", err)
		}
		s.rp = rp
		// Only passgate.js may run, and it may only call the ceremonies.
		pg.script = s.origin + s.endpoints.js
		pg.connect = s.origin + s.prefix + "/webauthn/"
	}
	if cfg.Metrics != nil {
		s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passgate_http_requests_total",
			Help: "HTTP requests to the authorization server by handler, method and status code.",
		}, []string{"handler", "method", "code"})
		if err := cfg.Metrics.Register(s.requests); err != nil {
			return nil, fmt.Errorf("oauthweb: register metrics: %w", err)
		}
	}
	return s, nil
}

// remoteHost is the default ClientIP: the peer address without its port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Handler returns the authorization server's routes. Browser pages and API
// endpoints are registered through separate chains; see the package doc.
// Every path it serves for an issuer without a path is in PublicPaths.
func (s *Server) Handler() http.Handler { return s.handler() }

// handler builds Handler's mux, keeping its patterns for the test that
// holds PublicPaths complete.
func (s *Server) handler() *routeMux {
	mux := &routeMux{ServeMux: http.NewServeMux()}
	p := s.prefix

	// API chain: metadata and machine endpoints, CORS, no cookies read.
	asMeta := s.api("metadata", http.MethodGet, http.HandlerFunc(s.serveASMetadata), 0)
	mux.Handle("/.well-known/oauth-authorization-server", asMeta)
	if p != "" {
		mux.Handle("/.well-known/oauth-authorization-server"+p, asMeta)
		mux.Handle(p+"/.well-known/oauth-authorization-server", asMeta)
	}
	prm := s.api("resource_metadata", http.MethodGet, http.HandlerFunc(s.serveResourceMetadata), 0)
	seen := map[string]bool{}
	for _, path := range append([]string{"/.well-known/oauth-protected-resource"}, s.resourceMetadataPaths()...) {
		if !seen[path] {
			seen[path] = true
			mux.Handle(path, prm)
		}
	}
	token := s.api("token", http.MethodPost, http.HandlerFunc(s.serveToken), maxFormBytes)
	register := s.api("register", http.MethodPost, http.HandlerFunc(s.serveRegister), maxRegisterBytes)
	revoke := s.api("revoke", http.MethodPost, http.HandlerFunc(s.serveRevoke), maxFormBytes)
	introspect := s.apiNoCORS("introspect", http.MethodPost, http.HandlerFunc(s.serveIntrospect), maxFormBytes)
	mux.Handle(p+"/oauth/token", token)
	mux.Handle(p+"/oauth/register", register)
	mux.Handle(p+"/oauth/revoke", revoke)
	mux.Handle(p+"/oauth/introspect", introspect)
	mux.Handle("GET "+s.endpoints.css, s.instrument("static", http.HandlerFunc(s.serveCSS)))

	// Browser chain: cookie-bearing pages.
	authorize := s.browser("authorize", http.HandlerFunc(s.serveAuthorize))
	mux.Handle("GET "+p+"/oauth/authorize", authorize)
	mux.Handle("GET "+p+"/login", s.browser("login", http.HandlerFunc(s.serveLoginPage)))
	mux.Handle("POST "+p+"/login", s.browser("login", http.MaxBytesHandler(http.HandlerFunc(s.serveLogin), maxFormBytes)))
	mux.Handle("POST "+p+"/consent", s.browser("consent", http.MaxBytesHandler(http.HandlerFunc(s.serveConsent), maxFormBytes)))
	mux.Handle("GET "+p+"/logout", s.browser("logout", http.HandlerFunc(s.serveLogoutPage)))
	mux.Handle("POST "+p+"/logout", s.browser("logout", http.MaxBytesHandler(http.HandlerFunc(s.serveLogout), maxFormBytes)))
	mux.Handle("GET "+p+"/apps", s.browser("apps", http.HandlerFunc(s.serveApps)))
	mux.Handle("POST "+p+"/apps/revoke", s.browser("apps", http.MaxBytesHandler(http.HandlerFunc(s.serveAppRevoke), maxFormBytes)))
	mux.Handle("GET "+p+"/login/second-factor", s.browser("second_factor", http.HandlerFunc(s.serveSecondFactorPage)))
	mux.Handle("POST "+p+"/login/second-factor", s.browser("second_factor", http.MaxBytesHandler(http.HandlerFunc(s.serveSecondFactor), maxFormBytes)))
	mux.Handle("GET "+p+"/account", s.browser("account", http.HandlerFunc(s.serveAccount)))
	mux.Handle("POST "+p+"/account/password", s.browser("account", http.MaxBytesHandler(http.HandlerFunc(s.serveChangePassword), maxFormBytes)))
	mux.Handle("POST "+p+"/account/totp/remove", s.browser("account", http.MaxBytesHandler(http.HandlerFunc(s.serveRemoveTOTP), maxFormBytes)))
	mux.Handle("POST "+p+"/account/recovery-codes", s.browser("account", http.MaxBytesHandler(http.HandlerFunc(s.serveNewRecoveryCodes), maxFormBytes)))
	mux.Handle("POST "+p+"/account/passkeys/rename", s.browser("account", http.MaxBytesHandler(http.HandlerFunc(s.serveRenamePasskey), maxFormBytes)))
	mux.Handle("POST "+p+"/account/passkeys/remove", s.browser("account", http.MaxBytesHandler(http.HandlerFunc(s.serveRemovePasskey), maxFormBytes)))
	if s.rp != nil {
		mux.Handle("GET "+s.endpoints.js, s.instrument("static", http.HandlerFunc(s.serveJS)))
		for path, h := range map[string]http.HandlerFunc{
			"/webauthn/login/options":         s.servePasskeyLoginOptions,
			"/webauthn/login":                 s.servePasskeyLogin,
			"/webauthn/second-factor/options": s.servePasskeyFactorOptions,
			"/webauthn/second-factor":         s.servePasskeyFactor,
			"/webauthn/register/options":      s.servePasskeyRegisterOptions,
			"/webauthn/register":              s.servePasskeyRegister,
		} {
			mux.Handle("POST "+p+path, s.browser("webauthn", http.MaxBytesHandler(h, maxPasskeyBody)))
		}
	}
	mux.Handle("GET "+p+"/account/totp", s.browser("enroll", http.HandlerFunc(s.serveEnrollPage)))
	mux.Handle("POST "+p+"/account/totp", s.browser("enroll", http.MaxBytesHandler(http.HandlerFunc(s.serveEnroll), maxFormBytes)))

	// The 2025-03-26 default endpoints on the issuer's origin, for clients
	// that skip discovery.
	aliases := []string{""}
	if p != "" {
		aliases = append(aliases, p)
	}
	for _, a := range aliases {
		mux.Handle("GET "+a+"/authorize", authorize)
		mux.Handle(a+"/token", token)
		mux.Handle(a+"/register", register)
	}
	return mux
}

// instrument counts requests when metrics are configured.
func (s *Server) instrument(name string, h http.Handler) http.Handler {
	if s.requests == nil {
		return h
	}
	return promhttp.InstrumentHandlerCounter(s.requests.MustCurryWith(prometheus.Labels{"handler": name}), h)
}

// browser wraps a page handler: security headers on every response, then
// Go's cross-origin protection (Sec-Fetch-Site / Origin) on unsafe methods.
func (s *Server) browser(name string, h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.renderError(w, r, http.StatusForbidden, "This form was submitted from another site and was refused.", errors.New("cross-origin form post"))
	}))
	inner := cop.Handler(h)
	return s.instrument(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// No inline script anywhere; styles only from our own stylesheet
		// (see pages.csp).
		hd.Set("Content-Security-Policy", s.pages.csp())
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Pragma", "no-cache")
		inner.ServeHTTP(w, r)
	}))
}

// api wraps a machine endpoint: CORS for browser-based clients (any origin,
// never credentials; OPTIONS preflight answered here), the method check
// with a JSON error, and a body limit when limit > 0.
func (s *Server) api(name, method string, h http.Handler, limit int64) http.Handler {
	inner := s.apiNoCORS(name, method, h, limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		if r.Method == http.MethodOptions {
			hd.Set("Access-Control-Allow-Methods", method+", OPTIONS")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			hd.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func (s *Server) apiNoCORS(name, method string, h http.Handler, limit int64) http.Handler {
	if limit > 0 {
		h = http.MaxBytesHandler(h, limit)
	}
	return s.instrument(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			oauth.WriteError(w, &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "method not allowed", Status: http.StatusMethodNotAllowed})
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// event returns an audit event carrying the request's client IP and user
// agent.
func (s *Server) event(r *http.Request, name string, success bool) store.AuditEvent {
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	return store.AuditEvent{Event: name, Success: success, IP: s.clientIP(r), UserAgent: ua}
}

// record writes an audit event; a failure to record is logged, not fatal to
// the request (the state change it describes already happened or was
// refused).
func (s *Server) record(ctx context.Context, e store.AuditEvent) {
	if err := s.cfg.Audit.Record(ctx, e); err != nil {
		s.log.WarnContext(ctx, "audit record failed", "event", e.Event, "err", err)
	}
}

// allow applies the configured rate limit to r's client address; on
// refusal it records the event and sets Retry-After on w, and the caller
// answers 429.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	ok, _ := s.reserve(w, r, endpoint, s.clientIP(r), "")
	return ok
}

// tooManyAttempts is what a page says when allow refuses a sign-in step.
const tooManyAttempts = "Too many attempts. Wait a few minutes and try again."

// clientKey is the rate-limit key of a client_id: it can never parse as
// an IP address, so it never shares a bucket with one.
func clientKey(clientID string) string { return "client_id " + clientID }

// writeTooManyRequests answers an API request refused by the rate limit
// (allow or reserve has set Retry-After).
func writeTooManyRequests(w http.ResponseWriter) {
	oauth.WriteError(w, tooManyRequests())
}

func tooManyRequests() *oauth.Error {
	return &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Description: "too many requests", Status: http.StatusTooManyRequests}
}

// auditClientID is how a client_id the request chose goes into an audit
// row: bounded, and with every non-printable character escaped so that
// `passgate audit` cannot be made to print forged rows or terminal escapes.
func auditClientID(clientID string) string {
	return textsafe.Escape(truncate(clientID, 256))
}

// reserve spends one event of endpoint's limit for key (see
// Config.RateLimit) and returns its refund, never nil. On refusal it
// records rate_limited (with clientID, when the key is a client's) and
// sets Retry-After on w.
func (s *Server) reserve(w http.ResponseWriter, r *http.Request, endpoint, key, clientID string) (ok bool, refund func()) {
	if s.cfg.RateLimit == nil {
		return true, func() {}
	}
	ok, wait, refund := s.cfg.RateLimit(endpoint, key)
	if ok {
		return true, refund
	}
	e := s.event(r, store.EventRateLimited, false)
	e.Error = endpoint
	e.ClientID = auditClientID(clientID)
	s.record(r.Context(), e)
	secs := int(wait.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	return false, func() {}
}

// storeError maps a store error to the OAuth error the client sees and logs
// the detail.
func (s *Server) storeError(ctx context.Context, op string, err error) *oauth.Error {
	if errors.Is(err, store.ErrUnavailable) {
		s.log.WarnContext(ctx, "store unavailable", "op", op, "err", err)
		return oauth.Unavailable()
	}
	s.log.ErrorContext(ctx, "store failure", "op", op, "err", err)
	return oauth.ServerError()
}

// lookupClient finds a registered client, or resolves a Client ID Metadata
// Document when the client_id is an https URL and a resolver is configured.
func (s *Server) lookupClient(ctx context.Context, id string) (store.Client, error) {
	if id == "" || len(id) > 2048 {
		return store.Client{}, store.ErrNotFound
	}
	if strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://") {
		if s.cfg.ResolveClient == nil {
			return store.Client{}, store.ErrNotFound
		}
		c, err := s.cfg.ResolveClient(ctx, id)
		if err != nil {
			return store.Client{}, fmt.Errorf("resolve client metadata document: %w", err)
		}
		if c.TokenEndpointAuthMethod == "" {
			c.TokenEndpointAuthMethod = "none"
		}
		return c, nil
	}
	c, err := s.cfg.Store.GetClient(ctx, id)
	if err != nil {
		return store.Client{}, fmt.Errorf("lookup client: %w", err)
	}
	return c, nil
}

// clientName is what pages call a client.
func clientName(c store.Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}
