package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/extauthz/proxy"
	"github.com/passgate/passgate/internal/clientip"
	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/oauthweb"
)

// Config is passgate's whole configuration. Every field is a flag with an
// environment fallback; a flag given on the command line wins over the
// environment. Defaults a package owns are its exported Default* constants,
// which bindFlags uses; the README's table repeats them and
// TestREADMEConfigTableMatchesFlags keeps it true.
type Config struct {
	// Issuer is the authorization server's issuer URL, used byte for byte
	// in metadata and as the base of every endpoint URL
	// (oauth.ValidateIssuer: https unless its host is loopback). Default
	// defaultIssuer.
	// Env PASSGATE_ISSUER, or the seed's SERVER_URL.
	Issuer string
	// Resources are the protected MCP resource URLs (RFC 8707 audiences),
	// e.g. https://mcp.example.com/mcp. Default http://localhost:8080/mcp.
	// Env PASSGATE_RESOURCES, comma-separated.
	Resources []string
	// Scopes are the scopes passgate grants. Default oauthweb.DefaultScope.
	// Env PASSGATE_SCOPES, comma- or space-separated.
	Scopes []string
	// BaseScopes are the minimal scopes: advertised in the protected
	// resource metadata and the checks' 401 challenges, and granted when
	// a client asks for none; the others are reached by step-up.
	// Optional; default Scopes. Env PASSGATE_BASE_SCOPES.
	BaseScopes []string
	// ClientScopeCap makes a client's registered scope a cap on what it
	// may request (no step-up past it). Default false. Env
	// PASSGATE_CLIENT_SCOPE_CAP.
	ClientScopeCap bool

	// HTTPListen serves the login pages, OAuth endpoints, metadata, the
	// HTTP check and health. Default :8080. Env PASSGATE_HTTP_LISTEN.
	HTTPListen string
	// GRPCListen serves Envoy ext_authz v3 and gRPC health. Default :9191.
	// Env PASSGATE_GRPC_LISTEN. Empty disables it.
	GRPCListen string
	// MetricsListen serves Prometheus metrics, never on the public
	// listener. Default 127.0.0.1:9464: loopback, so metrics are private
	// unless an operator opens them; 9464 is the default port of the
	// OpenTelemetry SDKs' Prometheus exporter (OTEL_EXPORTER_PROMETHEUS_PORT),
	// a metrics endpoint like this one, and none of the Prometheus
	// ecosystem's own (9090 Prometheus, 9091 Pushgateway, 9093
	// Alertmanager, 9100 node_exporter).
	// Env PASSGATE_METRICS_LISTEN. Empty disables.
	MetricsListen string

	// DatabaseURL selects PostgreSQL (postgres:// or postgresql://).
	// Optional; without it passgate uses SQLite in DataDir. Env DATABASE_URL.
	DatabaseURL string
	// DataDir holds the SQLite database. Default defaultDataDir.
	// Env PASSGATE_DATA_DIR.
	DataDir string
	// CreateDataDir lets openStore create a missing DataDir: serve does,
	// the store commands only with --create, so that a mistyped
	// --data-dir is an error rather than a new empty database. Not a
	// flag of serve.
	CreateDataDir bool
	// ConfigFile is an optional YAML file of settings, one key per flag
	// with the flag's name (configfile.go). Flags and the environment win
	// over it. Env PASSGATE_CONFIG.
	ConfigFile string

	// AccessTokenTTL, RefreshTokenTTL (the absolute lifetime of a refresh
	// family), RefreshIdleTTL (how long an unused refresh token lives),
	// RefreshGrace (how long a rotated refresh token may be presented again
	// and get the same answer: clients racing themselves) and SessionTTL
	// (the browser session). Defaults oauthweb.Default*.
	AccessTokenTTL, RefreshTokenTTL, RefreshIdleTTL, RefreshGrace, SessionTTL time.Duration

	// Registration is "open" (default), "closed" or "token" (requires
	// RegistrationTokenFile's token as an initial access token).
	// Env PASSGATE_REGISTRATION.
	Registration string
	// RegistrationTokenFile holds the initial access token for
	// Registration "token". Env PASSGATE_REGISTRATION_TOKEN_FILE.
	RegistrationTokenFile string
	// PrivateSchemes is the policy for private-use redirect URI schemes
	// (RFC 8252 §7.1) at registration, in metadata documents and for
	// static clients: "off", "default" (reverse-domain schemes such as
	// com.example.app and oauth.KnownAppSchemes: cursor, vscode,
	// vscode-insiders, windsurf) or "any" (every scheme but the dangerous
	// ones). Default "default"; true and false are accepted as any and off,
	// for the boolean it was. Env PASSGATE_ALLOW_PRIVATE_SCHEMES.
	PrivateSchemes oauth.PrivateSchemes
	// StaleClientAge removes dynamically registered clients that never
	// completed a grant after this long. Default 24h; 0 keeps them.
	StaleClientAge time.Duration
	// CIMD enables Client ID Metadata Documents (https client_id URLs).
	// Default true.
	CIMD bool
	// CIMDAllowLoopbackHTTP lets passgate fetch client ID metadata
	// documents from loopback addresses, over http or https, for
	// development and tests only. Default false.
	CIMDAllowLoopbackHTTP bool
	// RememberPublicConsent lets a consent skip the page next time for
	// public clients whose identity is not assured (loopback or private-use
	// redirect URIs; see oauthweb.Config.RememberPublicConsent). Default
	// false: they see the consent page every time.
	// Env PASSGATE_REMEMBER_PUBLIC_CONSENT.
	RememberPublicConsent bool
	// PrefillSingleUser fills in the username on the login page when only
	// one user exists. Default false: it tells anyone the username.
	PrefillSingleUser bool
	// TemplateDir overrides any page template by file name. Optional.
	TemplateDir string
	// BrandTitle, BrandLogoURL, BrandLogoFile, BrandAccent and BrandFooter
	// brand the pages (oauthweb.Branding): a title instead of "passgate",
	// a logo as an absolute path, https or data:image URL, or a PNG, JPEG,
	// GIF, WebP or SVG file embedded in the pages, an accent colour
	// (#RGB or #RRGGBB) and a footer line. Optional.
	// Env PASSGATE_BRAND_TITLE, _LOGO_URL, _LOGO_FILE, _ACCENT, _FOOTER.
	BrandTitle, BrandLogoURL, BrandLogoFile, BrandAccent, BrandFooter string

	// TrustedProxies are CIDRs whose X-Forwarded-For / X-Real-IP are
	// believed. Default clientip.DefaultTrusted (loopback).
	// Env PASSGATE_TRUSTED_PROXIES.
	TrustedProxies []netip.Prefix
	// Rate limits per client IP, as "N/duration" or "off". Defaults
	// ratelimit.Default*.
	// RegisterLimit counts failed registrations only;
	// RegisterSuccessLimit (env PASSGATE_REGISTER_SUCCESS_LIMIT) counts
	// successful ones.
	LoginLimit, TokenLimit, AuthorizeLimit, RegisterLimit, RevokeLimit ratelimit.Limit
	RegisterSuccessLimit                                               ratelimit.Limit
	// ClientSecretLimit counts failed client-secret verifications per
	// client_id from every address together (token, revocation and
	// introspection). Default ratelimit.DefaultClientSecret.
	// Env PASSGATE_CLIENT_SECRET_LIMIT.
	ClientSecretLimit ratelimit.Limit
	// LockoutThreshold failed logins within LockoutWindow lock an account
	// for LockoutDuration. Defaults oauthweb.DefaultLockout*; threshold 0
	// disables.
	LockoutThreshold int
	LockoutWindow    time.Duration
	LockoutDuration  time.Duration
	// HashConcurrency bounds the password hashes that run at once
	// (passwd.Options.Concurrency). Default 0: half the CPUs, at least one.
	HashConcurrency int
	// HashPriority is the priority of the threads that hash passwords:
	// a nice value from 0 to 19, or "idle" (passwd.ParsePriority).
	// Default passwd.DefaultPriority.
	HashPriority string
	// MinPasswordLength is the shortest password, in characters, that
	// `passgate user add` and `user passwd` accept (with the rest of
	// passwd.Policy: at most 72 bytes, not a common password, not the
	// username). Default and least passwd.MinLength.
	// Env PASSGATE_MIN_PASSWORD_LENGTH.
	MinPasswordLength int
	// RequireSecondFactor is who must pass a second factor after the
	// password: off, optional (those who enrolled one), all, or
	// group:NAME (mfa.ParsePolicy). Default optional.
	// Env PASSGATE_REQUIRE_SECOND_FACTOR.
	RequireSecondFactor string
	// SecretKeyFile holds the 32-byte key (64 hex digits or base64) that
	// seals TOTP secrets at rest. Optional; with SQLite, passgate creates
	// DataDir/secret.key when missing. With PostgreSQL it is required for
	// second factors (replicas must share it); without it they are off.
	// Env PASSGATE_SECRET_KEY_FILE.
	SecretKeyFile string

	// APIKeyFile holds the legacy static bearer credential for scripts,
	// accepted by the checks for the configured resources as user
	// apikey:legacy, with no scopes. Named keys (`passgate apikey add`)
	// replace it; serve warns while it is set. The key must be 16 to 4096
	// characters of the Bearer token alphabet (A-Z a-z 0-9 - . _ ~ + /,
	// trailing =). Optional. Env PASSGATE_API_KEY_FILE; the seed's API_KEY
	// (the key itself) also works.
	APIKeyFile string
	// UserHeader, ClientIDHeader and ScopeHeader name the identity headers
	// sent upstream (extauthz.ValidateIdentityHeader). Defaults
	// extauthz.DefaultUserHeader, DefaultClientIDHeader, DefaultScopeHeader.
	UserHeader, ClientIDHeader, ScopeHeader string
	// KeepAuthorization forwards the client's Authorization header upstream
	// (the MCP specification forbids token passthrough). Default false.
	KeepAuthorization bool
	// AllowPreflight lets CORS preflight requests (OPTIONS without
	// credentials) through the checks. Default true.
	AllowPreflight bool
	// RequireScopes demands scopes for a resource URL or path prefix, as
	// "MATCH=scope1 scope2"; several rules are separated by ";". Requests
	// whose token lacks them get 403 insufficient_scope. Optional.
	// Env PASSGATE_REQUIRE_SCOPES.
	RequireScopes []extauthz.ScopeRule
	// Upstreams put passgate's built-in reverse proxy (extauthz/proxy) in
	// front of MCP servers on the HTTP listener: "RESOURCE=URL" each, or
	// one bare URL for the only resource. Optional.
	// Env PASSGATE_UPSTREAM, comma-separated.
	Upstreams []string
	// PolicyFile is the access policy (README "Access policy"): who may
	// use which resource, and per-MCP-method rules. Reloaded on SIGHUP and
	// when its content changes. Optional: without it every user may use
	// every resource. Env PASSGATE_POLICY.
	PolicyFile string
	// CheckCacheSize bounds the verified-token cache. Default
	// extauthz.DefaultCacheSize.
	CheckCacheSize int
	// StoreTimeout bounds every store call on the check path. Default
	// extauthz.DefaultStoreTimeout.
	StoreTimeout time.Duration
	// CheckBatchWait bounds how long a check's cache miss waits for
	// concurrent misses to share one PostgreSQL read while another read
	// is in flight (extauthz.Config.BatchWait). Default
	// extauthz.DefaultBatchWait; 0 reads every miss on its own, as SQLite
	// always does; at most maxCheckBatchWait.
	CheckBatchWait time.Duration

	// AuditRetention deletes audit rows older than this. Default 2160h
	// (90 days); 0 keeps them forever.
	AuditRetention time.Duration
	// CleanupInterval is how often expired rows are deleted. Default 10m.
	CleanupInterval time.Duration
	// StartupWait is how long serve waits for an unreachable PostgreSQL
	// before giving up. Default 60s.
	StartupWait time.Duration
	// RequestTimeout bounds every request to the authorization server's
	// pages and endpoints, so a stuck database yields 503
	// temporarily_unavailable instead of a hanging client. Default 10s.
	RequestTimeout time.Duration
	// ShutdownDelay is how long, after SIGTERM, passgate keeps serving while
	// /readyz and gRPC health already say NOT_SERVING, so proxies and
	// orchestrators move traffic away before listeners close. Default 2s.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds graceful shutdown. Default 15s.
	ShutdownTimeout time.Duration
	// LogFormat is "json", "text" or "auto" (JSON unless stderr is a
	// terminal). LogLevel is debug, info, warn or error.
	LogFormat, LogLevel string
	// Tracing exports OpenTelemetry traces over OTLP, configured by the
	// standard OTEL_* variables (internal/tracing.New). Default false.
	// Env PASSGATE_TRACING.
	Tracing bool

	// Seed (mcp-oauth-password) compatibility; environment only.
	//
	// SeedClientID / SeedClientSecret pre-register one confidential client
	// (OAUTH_CLIENT_ID / OAUTH_CLIENT_SECRET) with SeedRedirectURIs
	// (PASSGATE_CLIENT_REDIRECT_URIS, matched exactly; default Claude's
	// callback URLs).
	SeedClientID, SeedClientSecret string
	SeedRedirectURIs               []string
	// SeedPasswordHash (OAUTH_PASSWORD_HASH) is the bcrypt hash of user
	// admin's password, created or updated at start.
	SeedPasswordHash string
	// SeedAPIKey is the seed's API_KEY.
	SeedAPIKey string
}

// defaultSeedRedirectURIs are Claude's OAuth callbacks, the clients the
// seed's single pre-registered client was made for.
var defaultSeedRedirectURIs = []string{
	"https://claude.ai/api/mcp/auth_callback",
	"https://claude.com/api/mcp/auth_callback",
}

// defaultIssuer is Config.Issuer's default, the address of --http-listen's
// default on loopback (which oauth.ValidateIssuer lets use http).
const defaultIssuer = "http://localhost:8080"

// defaultMetricsListen is Config.MetricsListen's default.
const defaultMetricsListen = "127.0.0.1:9464"

// defaultDataDir is Config.DataDir's default, for serve and the commands
// that open the store.
const defaultDataDir = "data"

// Defaults of Config.Resources and Config.Scopes, which `passgate apikey
// add` also reads (from $PASSGATE_RESOURCES and $PASSGATE_SCOPES).
var (
	defaultResources = []string{"http://localhost:8080/mcp"}
	defaultScopes    = []string{oauthweb.DefaultScope}
)

// setting is one configuration item: a flag and its environment variables.
type setting struct {
	flag string
	env  []string
}

// bindFlags registers every Config field on fs with its default and returns
// the flag-to-environment mapping used by applyEnv.
func (c *Config) bindFlags(fs *flag.FlagSet) []setting {
	var s []setting
	str := func(p *string, name, def, usage string, env ...string) {
		fs.StringVar(p, name, def, usage+envHelp(env))
		s = append(s, setting{name, env})
	}
	dur := func(p *time.Duration, name string, def time.Duration, usage string, env ...string) {
		fs.DurationVar(p, name, def, usage+envHelp(env))
		s = append(s, setting{name, env})
	}
	boolean := func(p *bool, name string, def bool, usage string, env ...string) {
		fs.BoolVar(p, name, def, usage+envHelp(env))
		s = append(s, setting{name, env})
	}
	integer := func(p *int, name string, def int, usage string, env ...string) {
		fs.IntVar(p, name, def, usage+envHelp(env))
		s = append(s, setting{name, env})
	}
	list := func(p *[]string, name string, def []string, usage string, env ...string) {
		*p = def
		fs.Var(listValue(p), name, usage+" (comma-separated)"+envHelp(env))
		s = append(s, setting{name, env})
	}
	limit := func(p *ratelimit.Limit, name string, def ratelimit.Limit, usage string, env ...string) {
		*p = def
		fs.Var(limitValue(p), name, usage+" (N/duration or off)"+envHelp(env))
		s = append(s, setting{name, env})
	}

	str(&c.ConfigFile, "config", "", "YAML file of settings named like the flags; flags and the environment win over it", "PASSGATE_CONFIG")
	str(&c.Issuer, "issuer", defaultIssuer, "authorization server issuer URL, used exactly as given", "PASSGATE_ISSUER", "SERVER_URL")
	list(&c.Resources, "resource", defaultResources, "protected MCP resource URLs", "PASSGATE_RESOURCES")
	list(&c.Scopes, "scopes", defaultScopes, "scopes passgate grants", "PASSGATE_SCOPES")
	list(&c.BaseScopes, "base-scopes", nil, "minimal scopes advertised and granted by default; others by step-up (default: --scopes)", "PASSGATE_BASE_SCOPES")
	boolean(&c.ClientScopeCap, "client-scope-cap", false, "a client's registered scope caps what it may request (no step-up past it)", "PASSGATE_CLIENT_SCOPE_CAP")
	str(&c.HTTPListen, "http-listen", ":8080", "address for pages, OAuth endpoints, the HTTP check and health", "PASSGATE_HTTP_LISTEN")
	str(&c.GRPCListen, "grpc-listen", ":9191", "address for Envoy ext_authz gRPC (empty disables)", "PASSGATE_GRPC_LISTEN")
	str(&c.MetricsListen, "metrics-listen", defaultMetricsListen, "address for Prometheus metrics (empty disables)", "PASSGATE_METRICS_LISTEN")
	str(&c.DatabaseURL, "database", "", "PostgreSQL URL; SQLite in --data-dir when empty", "DATABASE_URL")
	str(&c.DataDir, "data-dir", defaultDataDir, "directory of the SQLite database", "PASSGATE_DATA_DIR")
	dur(&c.AccessTokenTTL, "access-token-ttl", oauthweb.DefaultAccessTokenTTL, "access token lifetime", "PASSGATE_ACCESS_TOKEN_TTL")
	dur(&c.RefreshTokenTTL, "refresh-token-ttl", oauthweb.DefaultRefreshTokenTTL, "absolute refresh token lifetime", "PASSGATE_REFRESH_TOKEN_TTL")
	dur(&c.RefreshIdleTTL, "refresh-idle-ttl", oauthweb.DefaultRefreshIdleTTL, "refresh token idle lifetime", "PASSGATE_REFRESH_IDLE_TTL")
	dur(&c.RefreshGrace, "refresh-grace", oauthweb.DefaultRefreshGrace, "window in which a rotated refresh token gets the same answer again", "PASSGATE_REFRESH_GRACE")
	dur(&c.SessionTTL, "session-ttl", oauthweb.DefaultSessionTTL, "browser session lifetime", "PASSGATE_SESSION_TTL")
	str(&c.Registration, "registration", oauthweb.RegistrationOpen, "dynamic client registration: open, closed or token", "PASSGATE_REGISTRATION")
	str(&c.RegistrationTokenFile, "registration-token-file", "", "file holding the initial access token for --registration=token", "PASSGATE_REGISTRATION_TOKEN_FILE")
	s = append(s, bindPrivateSchemes(fs, c))
	dur(&c.StaleClientAge, "stale-client-age", 24*time.Hour, "remove registered clients that never completed a grant after this long (0 keeps them)", "PASSGATE_STALE_CLIENT_AGE")
	boolean(&c.CIMD, "cimd", true, "accept Client ID Metadata Document URLs as client_id", "PASSGATE_CIMD")
	boolean(&c.CIMDAllowLoopbackHTTP, "cimd-allow-loopback-http", false, "allow client_id documents on loopback, over http or https (development only; SSL_CERT_FILE trusts a self-signed certificate)", "PASSGATE_CIMD_ALLOW_LOOPBACK_HTTP")
	boolean(&c.RememberPublicConsent, "remember-public-consent", false, "remember consent for public clients on loopback or private-scheme redirects (default: ask every time)", "PASSGATE_REMEMBER_PUBLIC_CONSENT")
	boolean(&c.PrefillSingleUser, "prefill-single-user", false, "prefill the login form's username when only one user exists", "PASSGATE_PREFILL_SINGLE_USER")
	str(&c.TemplateDir, "template-dir", "", "directory of page templates overriding the built-in ones", "PASSGATE_TEMPLATE_DIR")
	str(&c.BrandTitle, "brand-title", "", "title shown on the pages instead of passgate", "PASSGATE_BRAND_TITLE")
	str(&c.BrandLogoURL, "brand-logo-url", "", "logo on the pages: an absolute path, https URL or data:image URL", "PASSGATE_BRAND_LOGO_URL")
	str(&c.BrandLogoFile, "brand-logo-file", "", "logo image file (PNG, JPEG, GIF, WebP, SVG; max 256 KiB) embedded in the pages", "PASSGATE_BRAND_LOGO_FILE")
	str(&c.BrandAccent, "brand-accent", "", "accent colour of the pages, #RGB or #RRGGBB", "PASSGATE_BRAND_ACCENT")
	str(&c.BrandFooter, "brand-footer", "", "a line of text at the bottom of every page", "PASSGATE_BRAND_FOOTER")
	c.TrustedProxies = clientip.DefaultTrusted()
	fs.Var(prefixesValue(&c.TrustedProxies), "trusted-proxies", "CIDRs whose X-Forwarded-For is believed"+envHelp([]string{"PASSGATE_TRUSTED_PROXIES"}))
	s = append(s, setting{"trusted-proxies", []string{"PASSGATE_TRUSTED_PROXIES"}})
	limit(&c.LoginLimit, "login-limit", ratelimit.DefaultLogin, "login attempts per client IP", "PASSGATE_LOGIN_LIMIT")
	limit(&c.TokenLimit, "token-limit", ratelimit.DefaultToken, "failed token requests per client IP", "PASSGATE_TOKEN_LIMIT")
	limit(&c.AuthorizeLimit, "authorize-limit", ratelimit.DefaultAuthorize, "authorization requests per client IP", "PASSGATE_AUTHORIZE_LIMIT")
	limit(&c.RegisterLimit, "register-limit", ratelimit.DefaultRegister, "failed client registrations per client IP", "PASSGATE_REGISTER_LIMIT")
	limit(&c.ClientSecretLimit, "client-secret-limit", ratelimit.DefaultClientSecret, "failed client-secret verifications per client_id, from all addresses", "PASSGATE_CLIENT_SECRET_LIMIT")
	limit(&c.RegisterSuccessLimit, "register-success-limit", ratelimit.DefaultRegisterSuccess, "successful client registrations per client IP", "PASSGATE_REGISTER_SUCCESS_LIMIT")
	limit(&c.RevokeLimit, "revoke-limit", ratelimit.DefaultRevoke, "revocation and introspection requests per client IP", "PASSGATE_REVOKE_LIMIT")
	integer(&c.LockoutThreshold, "lockout-threshold", oauthweb.DefaultLockoutThreshold, "failed logins that lock an account (0 disables)", "PASSGATE_LOCKOUT_THRESHOLD")
	dur(&c.LockoutWindow, "lockout-window", oauthweb.DefaultLockoutWindow, "window in which failed logins are counted", "PASSGATE_LOCKOUT_WINDOW")
	dur(&c.LockoutDuration, "lockout-duration", oauthweb.DefaultLockoutDuration, "how long a locked account stays locked", "PASSGATE_LOCKOUT_DURATION")
	s = append(s, bindPasswordPolicy(fs, c))
	str(&c.RequireSecondFactor, "require-second-factor", mfa.PolicyOptional, "who must pass a second factor: off, optional, all or group:NAME", "PASSGATE_REQUIRE_SECOND_FACTOR")
	str(&c.SecretKeyFile, "secret-key-file", "", "file holding the key that seals TOTP secrets (default: secret.key in --data-dir with SQLite)", "PASSGATE_SECRET_KEY_FILE")
	str(&c.APIKeyFile, "api-key-file", "", "file holding a static bearer credential the checks accept", "PASSGATE_API_KEY_FILE")
	str(&c.UserHeader, "user-header", extauthz.DefaultUserHeader, "identity header carrying the username upstream", "PASSGATE_USER_HEADER")
	str(&c.ClientIDHeader, "client-id-header", extauthz.DefaultClientIDHeader, "identity header carrying the client ID upstream", "PASSGATE_CLIENT_ID_HEADER")
	str(&c.ScopeHeader, "scope-header", extauthz.DefaultScopeHeader, "identity header carrying the granted scope upstream", "PASSGATE_SCOPE_HEADER")
	boolean(&c.KeepAuthorization, "keep-authorization", false, "forward the client's Authorization header upstream", "PASSGATE_KEEP_AUTHORIZATION")
	boolean(&c.AllowPreflight, "allow-preflight", true, "let CORS preflight requests through the checks", "PASSGATE_ALLOW_PREFLIGHT")
	fs.Func("require-scopes", `scopes required per resource URL or path prefix: "MATCH=scope1 scope2;MATCH2=scope3"`+envHelp([]string{"PASSGATE_REQUIRE_SCOPES"}), func(v string) error {
		rules, err := parseScopeRules(v)
		if err != nil {
			return err
		}
		c.RequireScopes = append(c.RequireScopes, rules...)
		return nil
	})
	s = append(s, setting{"require-scopes", []string{"PASSGATE_REQUIRE_SCOPES"}})
	list(&c.Upstreams, "upstream", nil, "proxy a resource to its MCP server on the HTTP listener: RESOURCE=URL, or URL for the only resource", "PASSGATE_UPSTREAM")
	str(&c.PolicyFile, "policy", "", "access policy file (YAML): who may use which resource and tool; reloaded on SIGHUP and on change", "PASSGATE_POLICY")
	integer(&c.CheckCacheSize, "check-cache-size", extauthz.DefaultCacheSize, "verified tokens kept in memory", "PASSGATE_CHECK_CACHE_SIZE")
	integer(&c.HashConcurrency, "hash-concurrency", 0, "password hashes run at once (0: half the CPUs, at least one)", "PASSGATE_HASH_CONCURRENCY")
	str(&c.HashPriority, "hash-priority", passwd.DefaultPriority.String(), "priority of password-hashing threads: nice value 0-19, or idle (only when a CPU is idle)", "PASSGATE_HASH_PRIORITY")
	dur(&c.StoreTimeout, "store-timeout", extauthz.DefaultStoreTimeout, "budget for a store lookup on the check path", "PASSGATE_STORE_TIMEOUT")
	dur(&c.CheckBatchWait, "check-batch-wait", extauthz.DefaultBatchWait, "how long a check's cache miss may wait to share a PostgreSQL read with concurrent misses (0: no batching)", "PASSGATE_CHECK_BATCH_WAIT")
	dur(&c.AuditRetention, "audit-retention", 90*24*time.Hour, "delete audit rows older than this (0 keeps them)", "PASSGATE_AUDIT_RETENTION")
	dur(&c.CleanupInterval, "cleanup-interval", 10*time.Minute, "how often expired rows are deleted", "PASSGATE_CLEANUP_INTERVAL")
	dur(&c.StartupWait, "startup-wait", time.Minute, "how long to wait for an unreachable PostgreSQL at start", "PASSGATE_STARTUP_WAIT")
	dur(&c.RequestTimeout, "request-timeout", 10*time.Second, "bound on every authorization server request", "PASSGATE_REQUEST_TIMEOUT")
	dur(&c.ShutdownDelay, "shutdown-delay", 2*time.Second, "after SIGTERM, keep serving this long while readiness says not ready", "PASSGATE_SHUTDOWN_DELAY")
	dur(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "graceful shutdown bound", "PASSGATE_SHUTDOWN_TIMEOUT")
	str(&c.LogFormat, "log-format", "auto", "log format: auto, json or text", "PASSGATE_LOG_FORMAT")
	str(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error", "PASSGATE_LOG_LEVEL")
	boolean(&c.Tracing, "tracing", false, "export OpenTelemetry traces over OTLP, configured by the OTEL_* variables", "PASSGATE_TRACING")
	return s
}

// parseScopeRules parses "MATCH=scope1 scope2;MATCH2=scope3".
func parseScopeRules(v string) ([]extauthz.ScopeRule, error) {
	var (
		rules []extauthz.ScopeRule
		errs  []error
	)
	for _, part := range strings.Split(v, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		match, scopes, ok := strings.Cut(part, "=")
		match = strings.TrimSpace(match)
		list := splitList(scopes)
		if !ok || match == "" || len(list) == 0 {
			errs = append(errs, fmt.Errorf("%q: want MATCH=scope1 scope2", part))
			continue
		}
		if !strings.HasPrefix(match, "/") && !strings.HasPrefix(match, "https://") && !strings.HasPrefix(match, "http://") {
			errs = append(errs, fmt.Errorf("%q: MATCH must be a URL or a path starting with /", part))
			continue
		}
		rules = append(rules, extauthz.ScopeRule{Match: match, Scopes: list})
	}
	return rules, errors.Join(errs...)
}

func envHelp(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return " [$" + strings.Join(env, ", $") + "]"
}

// applyEnv sets every flag not given on the command line from the first of
// its environment variables that is set (or its _FILE variant, for the
// secrets of secretEnv), and reads the seed's environment-only variables.
// It reports every bad value at once and returns the flags whose value was
// refused, so that Validate's complaint about the value left behind is not
// reported as a second error.
func (c *Config) applyEnv(fs *flag.FlagSet, settings []setting, getenv func(string) string) (failed map[string]bool, err error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	failed = map[string]bool{}
	var errs []error
	// env reads a variable; failed marks a flag, or a "$NAME" of the
	// seed's, whose variable could not be read.
	env := func(name, flag string) string {
		v, err := lookupEnv(getenv, name)
		if err != nil {
			errs = append(errs, err)
			failed[flag] = true
		}
		return v
	}
	for _, s := range settings {
		if given[s.flag] {
			continue
		}
		for _, e := range s.env {
			v := env(e, s.flag)
			if v == "" {
				continue
			}
			if err := fs.Set(s.flag, v); err != nil {
				failed[s.flag] = true
				errs = append(errs, fmt.Errorf("$%s: %s", e, explainValue(fs.Lookup(s.flag), v, err)))
			}
			break
		}
	}
	c.SeedClientID = getenv("OAUTH_CLIENT_ID")
	c.SeedClientSecret = env("OAUTH_CLIENT_SECRET", "$OAUTH_CLIENT_SECRET")
	c.SeedRedirectURIs = defaultSeedRedirectURIs
	if v := getenv("PASSGATE_CLIENT_REDIRECT_URIS"); v != "" {
		c.SeedRedirectURIs = splitList(v)
	}
	c.SeedPasswordHash = env("OAUTH_PASSWORD_HASH", "$OAUTH_PASSWORD_HASH")
	c.SeedAPIKey = env("API_KEY", "$API_KEY")
	return failed, errors.Join(errs...)
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := oauth.ValidateIssuer(c.Issuer); err != nil {
		add("--issuer: %q: %v", c.Issuer, err)
	}
	if len(c.Resources) == 0 {
		add("--resource: at least one protected resource URL is required")
	}
	if rs, err := resource.ParseAll(c.Resources); err != nil {
		errs = append(errs, fmt.Errorf("--resource: %w", err))
	} else if _, err := proxy.ParseUpstreams(rs, c.Upstreams); err != nil {
		errs = append(errs, fmt.Errorf("--upstream: %w", err))
	}
	if len(c.Scopes) == 0 {
		add("--scopes: at least one scope is required")
	}
	for _, s := range c.Scopes {
		if !oauth.ValidScopeToken(s) {
			add("--scopes: %q is not a valid scope token", s)
		}
	}
	for _, s := range c.BaseScopes {
		if !slices.Contains(c.Scopes, s) {
			add("--base-scopes: %q is not in --scopes", s)
		}
	}
	for _, r := range c.RequireScopes {
		for _, s := range r.Scopes {
			if !slices.Contains(c.Scopes, s) {
				add("--require-scopes: %q requires scope %q, which is not in --scopes", r.Match, s)
			}
		}
	}
	if c.PolicyFile != "" {
		if _, err := c.loadPolicy(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				add("--policy: %s", strings.TrimPrefix(line, "policy: "))
			}
		}
	}
	if c.HTTPListen == "" {
		add("--http-listen: required")
	}
	for _, l := range []struct{ name, addr string }{
		{"--http-listen", c.HTTPListen}, {"--grpc-listen", c.GRPCListen}, {"--metrics-listen", c.MetricsListen},
	} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			add("%s: %q is not host:port: %v", l.name, l.addr, err)
		}
	}
	if c.HTTPListen != "" && (c.HTTPListen == c.GRPCListen || c.HTTPListen == c.MetricsListen) ||
		c.GRPCListen != "" && c.GRPCListen == c.MetricsListen {
		add("listeners: --http-listen, --grpc-listen and --metrics-listen must differ")
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			add("--database: must be a postgres:// URL")
		}
	} else if c.DataDir == "" {
		add("--data-dir: required when --database is not set")
	}
	// Slices, not maps, so that errors come out in the same order every
	// time.
	// zeroOK marks the durations for which 0 means off (or none).
	for _, d := range []struct {
		name   string
		d      time.Duration
		zeroOK bool
	}{
		{"--access-token-ttl", c.AccessTokenTTL, false}, {"--refresh-token-ttl", c.RefreshTokenTTL, false},
		{"--refresh-idle-ttl", c.RefreshIdleTTL, false}, {"--session-ttl", c.SessionTTL, false},
		{"--cleanup-interval", c.CleanupInterval, false}, {"--shutdown-timeout", c.ShutdownTimeout, false},
		{"--store-timeout", c.StoreTimeout, false}, {"--request-timeout", c.RequestTimeout, false},
		{"--refresh-grace", c.RefreshGrace, true}, {"--stale-client-age", c.StaleClientAge, true},
		{"--audit-retention", c.AuditRetention, true}, {"--lockout-window", c.LockoutWindow, true},
		{"--lockout-duration", c.LockoutDuration, true}, {"--shutdown-delay", c.ShutdownDelay, true},
		{"--check-batch-wait", c.CheckBatchWait, true},
	} {
		switch {
		case d.zeroOK && d.d < 0:
			add("%s: must not be negative, got %v", d.name, d.d)
		case !d.zeroOK && d.d <= 0:
			add("%s: must be positive, got %v", d.name, d.d)
		}
	}
	if c.HashConcurrency < 0 {
		add("--hash-concurrency: must not be negative, got %d", c.HashConcurrency)
	}
	if _, err := passwd.ParsePriority(c.HashPriority); err != nil {
		add("--hash-priority: %q is neither idle nor a nice value from 0 to 19", c.HashPriority)
	}
	if c.CheckBatchWait > maxCheckBatchWait {
		add("--check-batch-wait: at most %v (it delays cache misses), got %v", maxCheckBatchWait, c.CheckBatchWait)
	}
	if c.RefreshGrace > oauthweb.MaxRefreshGrace {
		add("--refresh-grace: at most %v (a long grace window weakens reuse detection), got %v", oauthweb.MaxRefreshGrace, c.RefreshGrace)
	}
	switch c.Registration {
	case oauthweb.RegistrationOpen, oauthweb.RegistrationClosed:
	case oauthweb.RegistrationToken:
		if c.RegistrationTokenFile == "" {
			add("--registration=token needs --registration-token-file")
		}
	default:
		add("--registration: must be open, closed or token, got %q", c.Registration)
	}
	if c.LockoutThreshold < 0 {
		add("--lockout-threshold: must not be negative")
	}
	if p, err := mfa.ParsePolicy(c.RequireSecondFactor); err != nil {
		add("--require-second-factor: %v", err)
	} else {
		if (p.Mode == mfa.PolicyAll || p.Mode == mfa.PolicyGroup) && c.DatabaseURL != "" && c.SecretKeyFile == "" {
			add("--require-second-factor %s: with --database, --secret-key-file is required (replicas must share the key)", p)
		}
	}
	if c.CheckCacheSize <= 0 {
		add("--check-cache-size: must be positive")
	}
	for _, h := range []struct{ name, value string }{
		{"--user-header", c.UserHeader}, {"--client-id-header", c.ClientIDHeader}, {"--scope-header", c.ScopeHeader},
	} {
		if err := extauthz.ValidateIdentityHeader(h.value); err != nil {
			add("%s: %q: %v", h.name, h.value, err)
		}
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		add("--log-format: must be auto, json or text")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("--log-level: must be debug, info, warn or error")
	}
	if err := c.passwordPolicy().Validate(); err != nil {
		add("--min-password-length: %v", err)
	}
	if (c.SeedClientID == "") != (c.SeedClientSecret == "") {
		add("$OAUTH_CLIENT_ID and $OAUTH_CLIENT_SECRET must be set together")
	}
	if c.SeedClientSecret != "" && len(c.SeedClientSecret) < minClientSecretLen {
		add("$OAUTH_CLIENT_SECRET: must be at least %d characters (make one with `openssl rand -hex 32`: no `+`, `/` or `=`, which clients that send Basic credentials without form-encoding them would garble)", minClientSecretLen)
	}
	if c.SeedClientID != "" {
		if !textsafe.Printable(c.SeedClientID) {
			add("$OAUTH_CLIENT_ID: contains control or invisible characters")
		}
		// The same rule as dynamic registration: https, or http on
		// loopback, or a private scheme when allowed; never javascript:.
		for _, u := range c.SeedRedirectURIs {
			if err := oauth.ValidateRedirectURI(u, c.PrivateSchemes); err != nil {
				add("$PASSGATE_CLIENT_REDIRECT_URIS: %q: %v", u, err)
			}
		}
	}
	if c.SeedPasswordHash != "" {
		// Only the format: the password policy cannot be checked on a
		// hash. `passgate hash-password`, which makes it, checks it.
		if err := passwd.CheckFormat(c.SeedPasswordHash); err != nil {
			add("$OAUTH_PASSWORD_HASH: %v (make one with `passgate hash-password`)", err)
		}
	}
	if c.SeedAPIKey != "" && c.APIKeyFile != "" {
		add("$API_KEY and --api-key-file: set only one")
	}
	if c.RegistrationTokenFile != "" {
		if v, err := readSecretFile(c.RegistrationTokenFile); err != nil {
			add("--registration-token-file: %v", err)
		} else if len(v) < oauthweb.MinSecretLen {
			add("--registration-token-file: the secret must be at least %d characters", oauthweb.MinSecretLen)
		}
	}
	if c.APIKeyFile != "" {
		if v, err := readSecretFile(c.APIKeyFile); err != nil {
			add("--api-key-file: %v", err)
		} else if err := extauthz.ValidateAPIKey(v); err != nil {
			add("--api-key-file: the key %v", err)
		}
	}
	if c.SeedAPIKey != "" {
		if err := extauthz.ValidateAPIKey(c.SeedAPIKey); err != nil {
			add("$API_KEY: %v", err)
		}
	}
	if c.TemplateDir != "" {
		if st, err := os.Stat(c.TemplateDir); err != nil || !st.IsDir() {
			add("--template-dir: %q is not a directory", c.TemplateDir)
		}
	}
	if err := c.branding().Check(); err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...)
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// minClientSecretLen is the least length of $OAUTH_CLIENT_SECRET: a
// client secret is a machine credential, so it is random and long, not a
// password a person remembers.
const minClientSecretLen = oauthweb.MinSecretLen

// bindPasswordPolicy registers --min-password-length, shared by `serve`
// (which validates it) and the commands that set passwords.
func bindPasswordPolicy(fs *flag.FlagSet, c *Config) setting {
	fs.IntVar(&c.MinPasswordLength, "min-password-length", passwd.MinLength, "shortest password user add and user passwd accept (at least 8)"+envHelp([]string{"PASSGATE_MIN_PASSWORD_LENGTH"}))
	return setting{"min-password-length", []string{"PASSGATE_MIN_PASSWORD_LENGTH"}}
}

// passwordPolicy is the policy for passwords people choose.
func (c *Config) passwordPolicy() passwd.Policy {
	return passwd.Policy{MinLength: c.MinPasswordLength}
}

// branding is the pages' branding from the --brand-* flags.
func (c *Config) branding() oauthweb.Branding {
	return oauthweb.Branding{
		Title: c.BrandTitle, LogoURL: c.BrandLogoURL, LogoFile: c.BrandLogoFile,
		Accent: c.BrandAccent, Footer: c.BrandFooter,
	}
}

// readSecretFile reads a secret from a file, trimming surrounding white space.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// parsedValue is a flag value parsed by parse into *p; its String (format)
// is the default as -h and the README show it.
type parsedValue[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v parsedValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func (v parsedValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

// listValue is a comma- or space-separated list.
func listValue(p *[]string) parsedValue[[]string] {
	parse := func(s string) ([]string, error) { return splitList(s), nil }
	return parsedValue[[]string]{p, parse, func(l []string) string { return strings.Join(l, ",") }}
}

// limitValue is a rate limit, N/duration or off.
func limitValue(p *ratelimit.Limit) parsedValue[ratelimit.Limit] {
	return parsedValue[ratelimit.Limit]{p, ratelimit.ParseLimit, ratelimit.Limit.String}
}

// prefixesValue is --trusted-proxies.
func prefixesValue(p *[]netip.Prefix) parsedValue[[]netip.Prefix] {
	return parsedValue[[]netip.Prefix]{p, clientip.ParsePrefixes, func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, ",")
	}}
}

// bindPrivateSchemes registers --allow-private-schemes: off, default or
// any (true and false, its values when it was a boolean, mean any and
// off). It is deliberately not a boolean flag any more: as one,
// "--allow-private-schemes off" would read as the bare flag (any) and a
// stray argument.
func bindPrivateSchemes(fs *flag.FlagSet, c *Config) setting {
	const usage = "private-use redirect URI schemes: off, default (reverse-domain schemes and claude, cursor, vscode, vscode-insiders, windsurf) or any (true and false mean any and off)"
	env := []string{"PASSGATE_ALLOW_PRIVATE_SCHEMES"}
	show := func(p oauth.PrivateSchemes) string {
		if p == "" {
			return string(oauth.PrivateSchemesDefault)
		}
		return string(p)
	}
	c.PrivateSchemes = oauth.PrivateSchemesDefault
	fs.Var(parsedValue[oauth.PrivateSchemes]{&c.PrivateSchemes, oauth.ParsePrivateSchemes, show}, "allow-private-schemes", usage+envHelp(env))
	return setting{"allow-private-schemes", env}
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
}

// baseScopes returns the base scopes (--base-scopes, else --scopes).
func (c *Config) baseScopes() []string {
	if len(c.BaseScopes) > 0 {
		return c.BaseScopes
	}
	return c.Scopes
}

// loadPolicy reads the policy file and compiles it with the configured
// resources and --require-scopes rules; nil without a file.
func (c *Config) loadPolicy() (*policy.Policy, error) {
	if c.PolicyFile == "" {
		return policy.Compile(nil, nil, c.RequireScopes)
	}
	b, err := policy.Read(c.PolicyFile)
	if err != nil {
		return nil, err
	}
	f, err := policy.Decode(b)
	if err != nil {
		return nil, err
	}
	return c.compilePolicy(f)
}

// compilePolicy compiles a policy file with the configuration: its
// resources must be configured ones and its scopes in --scopes (a client
// could never be granted another).
func (c *Config) compilePolicy(f *policy.File) (*policy.Policy, error) {
	resources, err := resource.ParseAll(c.Resources)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, r := range f.Resources {
		var used []string
		for s, implied := range r.Scopes {
			used = append(used, s)
			used = append(used, implied...)
		}
		for _, rule := range r.Rules {
			if rule.Scope != "" {
				used = append(used, rule.Scope)
			}
		}
		slices.Sort(used)
		for _, s := range slices.Compact(used) {
			if !slices.Contains(c.Scopes, s) {
				errs = append(errs, fmt.Errorf("resources[%d]: scope %q is not in --scopes", i, s))
			}
		}
	}
	p, err := policy.Compile(f, resources, c.RequireScopes)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}
