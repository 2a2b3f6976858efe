package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// Defaults for Config.
const (
	DefaultUserHeader     = "X-Passgate-User"
	DefaultClientIDHeader = "X-Passgate-Client-Id"
	DefaultScopeHeader    = "X-Passgate-Scope"
	DefaultCacheSize      = 100_000
	// DefaultStoreTimeout bounds a store lookup on the check path, so a
	// stuck database turns into a fast fail-closed answer instead of a hung
	// proxy. It must stay below the proxy's own timeout for the check:
	// Envoy's ext_authz grpc_service timeout defaults to 200ms, so
	// envoy.yaml should set it to at least 500ms (or StoreTimeout lower).
	DefaultStoreTimeout = 300 * time.Millisecond
)

// negativeTTL bounds how long a refused token is remembered.
const negativeTTL = time.Minute

// maxTokenLen bounds the credential we hash; passgate's tokens are 47 bytes
// and nothing legitimate comes near this.
const maxTokenLen = 4096

// Config configures a Checker. Only Resources and Store are required.
type Config struct {
	// Resources are the protected resources; a request is for the one whose
	// origin matches and whose path is the longest prefix of the request
	// path (resource.Find).
	Resources []resource.Resource
	// Store is where tokens are looked up by hash.
	Store store.Store
	// APIKey is the seed's static API_KEY, kept for migration (named keys
	// from `passgate apikey add` replace it). Optional: when set, it is
	// accepted as a Bearer credential for the configured resources only
	// (compared in constant time, length included), with no scopes, so
	// scope rules refuse it; the user identity header says apikey:legacy.
	// It must pass ValidateAPIKey.
	APIKey string
	// Scopes are advertised in the scope parameter of 401 challenges when no
	// ScopeRule applies (normally the server's supported scopes). Optional.
	Scopes []string
	// Logger receives store errors (rate limited). Optional: default discards.
	Logger *slog.Logger
	// Now is the clock. Optional: default time.Now.
	Now func() time.Time
	// Metrics registers the check metrics. Optional: default a private
	// registry nobody scrapes.
	Metrics prometheus.Registerer
	// UserHeader, ClientIDHeader and ScopeHeader name the identity headers
	// sent to the upstream. Optional: defaults X-Passgate-User,
	// X-Passgate-Client-Id, X-Passgate-Scope. Copies sent by the client are
	// always removed or overwritten.
	UserHeader, ClientIDHeader, ScopeHeader string
	// KeepAuthorization passes the client's Authorization header to the
	// upstream. Default false: the MCP spec forbids token passthrough.
	KeepAuthorization bool
	// AllowPreflight allows CORS preflights (OPTIONS with Origin and
	// Access-Control-Request-Method, without Authorization) for protected
	// resources, so the upstream can answer them. The method is the one the
	// proxy reports (Request.Method), never a header the client chose.
	AllowPreflight bool
	// RequiredScopes require scopes per resource or path prefix; a valid
	// token lacking one gets 403 insufficient_scope. Optional.
	RequiredScopes []ScopeRule
	// CacheSize bounds the number of cached tokens. Optional: default
	// 100_000; negative disables the cache.
	CacheSize int
	// StoreTimeout bounds a store lookup on the check path. Optional:
	// default 300ms.
	StoreTimeout time.Duration
	// AllowUnknownResources allows requests that match no configured
	// resource (identity headers stripped, Authorization left alone).
	// Default false: they are denied with 403.
	AllowUnknownResources bool
}

// ScopeRule requires Scopes for the requests Match selects.
type ScopeRule struct {
	// Match is either an absolute URL (a resource URL, or a URL below one:
	// https://mcp.example.com/mcp/admin), matched on host and path prefix
	// like a resource, or a path prefix starting with "/" (any host).
	// Prefixes match on segment boundaries.
	Match string
	// Scopes are all required.
	Scopes []string
}

// Request is what the proxy tells us about the request it holds.
type Request struct {
	// Method is the method the proxy reports: from Envoy's attributes or
	// from the header the proxy's own configuration sets (see the package
	// documentation), never from one a client could add.
	Method string
	Scheme string // optional; "" means the resource's own scheme
	Host   string // authority the proxy routed on, port optional
	// Path is the request target in origin form as the proxy received it
	// (escaped, may include the query). Check matches on its canonical
	// form (resource.CanonicalPath) and refuses an ambiguous one.
	Path string
	// Headers holds request headers with lowercase keys. The check reads
	// authorization, origin and access-control-request-method.
	Headers map[string]string
	// SourceAddress is the client's address as the proxy saw it; for logs.
	SourceAddress string
}

// Header is one header name and value.
type Header struct {
	Name, Value string
}

// Decision is the answer to a Request.
type Decision struct {
	// Allow lets the request through.
	Allow bool
	// Status is 200 when allowed, else 400, 401, 403, or 503 with an
	// error.
	Status int
	// Headers: when allowed, every identity header, set (overwriting) on
	// the upstream request; an empty value means "no such identity" and
	// the header is in RemoveHeaders too. When denied, set on the response
	// to the client. Shared between decisions: do not modify.
	Headers []Header
	// RemoveHeaders lists lowercase names to remove from the upstream
	// request when allowed: Authorization (unless KeepAuthorization) and
	// the identity headers without a value. Shared between decisions: do
	// not modify.
	RemoveHeaders []string
	// Body is the JSON body of a denial.
	Body string
	// Reason says why, from a small fixed set (a metric label).
	Reason Reason

	// removeJoined is RemoveHeaders joined with ", " for the HTTP front
	// end, as a shared header value.
	removeJoined []string
}

// Reason is why a Decision was made.
type Reason uint8

// Reasons. Each maps to one decision label (allow, deny, error).
const (
	ReasonToken             Reason = iota // allow: valid access token
	ReasonAPIKey                          // allow: the static API key
	ReasonPreflight                       // allow: CORS preflight
	ReasonUnprotected                     // allow: no resource matched and AllowUnknownResources
	ReasonNoToken                         // 401: no Bearer credentials
	ReasonMalformed                       // 400: malformed Authorization header (RFC 6750 section 3.1 invalid_request)
	ReasonUnknownToken                    // 401: not a token passgate knows
	ReasonExpired                         // 401
	ReasonRevoked                         // 401
	ReasonWrongAudience                   // 401: token for another resource
	ReasonWrongKind                       // 401: not an access token
	ReasonInsufficientScope               // 403
	ReasonUnknownResource                 // 403: no configured resource matched
	ReasonStoreUnavailable                // error: uncached token, store failed
	ReasonInvalidPath                     // 400: a path proxies and upstreams read differently (resource.CanonicalPath)
	ReasonInvalidRequest                  // 400: the proxy reported the request incompletely (HTTP check)
	ReasonHostMismatch                    // 403: the reported host is not the one the check URL pins (ingress-nginx)
	numReasons
)

var reasonNames = [numReasons]string{
	"token", "api_key", "preflight", "unprotected", "no_token", "malformed",
	"unknown_token", "expired", "revoked", "wrong_audience", "wrong_kind",
	"insufficient_scope", "unknown_resource", "store_unavailable",
	"invalid_path", "invalid_request", "host_mismatch",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// label is the decision label of a reason.
func (r Reason) label() string {
	switch r {
	case ReasonToken, ReasonAPIKey, ReasonPreflight, ReasonUnprotected:
		return "allow"
	case ReasonStoreUnavailable:
		return "error"
	}
	return "deny"
}

// ErrStoreUnavailable is returned by Check (wrapping the store's error) when
// an uncached token could not be looked up in time.
var ErrStoreUnavailable = errors.New("extauthz: token store unavailable")

// Checker decides requests. It is safe for concurrent use.
type Checker struct {
	resources    []resource.Resource
	store        store.Store
	logger       *slog.Logger
	now          func() time.Time
	storeTimeout time.Duration
	keepAuth     bool
	preflight    bool
	allowUnknown bool
	rules        []scopeRule
	scopes       string // default challenge scope

	apiKeyHash [sha256.Size]byte
	hasAPIKey  bool

	userHeader, clientHeader, scopeHeader string // canonical
	// removeToken is removed after a token allow whose identity headers
	// all have values.
	removeToken, joinToken []string
	// The allowed answers that carry no token identity, built once.
	preflightAllow, unprotectedAllow Decision

	cache *cache
	// neg remembers tokens the store refused (unknown, expired, revoked,
	// not an access token). Each of these is final, so a client retrying
	// with a dead token costs no store round trip; entries still lapse
	// after negativeTTL. It is separate so that floods of garbage tokens
	// cannot evict verified ones.
	neg     *cache
	sf      singleflight.Group
	metrics *metrics

	lastLog atomic.Int64 // unix nanos of the last store-error log line
}

type scopeRule struct {
	res    resource.Resource // absolute form
	prefix string            // path form
	abs    bool
	scopes []string
}

// NewChecker validates cfg and returns a Checker. Call Run to keep its cache
// fresh; until Run has subscribed, nothing is cached.
func NewChecker(cfg Config) (*Checker, error) {
	var errs []error
	if len(cfg.Resources) == 0 {
		errs = append(errs, errors.New("no protected resources"))
	}
	for i, r := range cfg.Resources {
		if r.Host == "" || r.Path == "" {
			errs = append(errs, fmt.Errorf("resource %d (%q) was not built by resource.Parse", i, r.URL))
		}
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	for _, s := range cfg.Scopes {
		if !validScope(s) {
			errs = append(errs, fmt.Errorf("scope %q: not a valid scope token", s))
		}
	}
	c := &Checker{
		resources:    cfg.Resources,
		store:        cfg.Store,
		logger:       cfg.Logger,
		now:          cfg.Now,
		storeTimeout: cfg.StoreTimeout,
		keepAuth:     cfg.KeepAuthorization,
		preflight:    cfg.AllowPreflight,
		allowUnknown: cfg.AllowUnknownResources,
		scopes:       strings.Join(cfg.Scopes, " "),
	}
	for _, rule := range cfg.RequiredScopes {
		sr := scopeRule{scopes: rule.Scopes}
		if len(rule.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("scope rule %q: no scopes", rule.Match))
		}
		for _, s := range rule.Scopes {
			if !validScope(s) {
				errs = append(errs, fmt.Errorf("scope rule %q: scope %q is not a valid scope token", rule.Match, s))
			}
		}
		switch {
		case strings.HasPrefix(rule.Match, "/"):
			// Matched against canonical request paths, so it must be
			// canonical itself.
			if cp, err := resource.CanonicalPath(rule.Match); err != nil || cp != rule.Match {
				errs = append(errs, fmt.Errorf("scope rule %q: path is not canonical (%q, %v)", rule.Match, cp, err))
			}
			sr.prefix = rule.Match
		default:
			r, err := resource.Parse(rule.Match)
			if err != nil {
				errs = append(errs, fmt.Errorf("scope rule: %w", err))
			}
			sr.res, sr.abs = r, true
		}
		c.rules = append(c.rules, sr)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.storeTimeout <= 0 {
		c.storeTimeout = DefaultStoreTimeout
	}
	if cfg.APIKey != "" {
		if err := ValidateAPIKey(cfg.APIKey); err != nil {
			errs = append(errs, fmt.Errorf("api key: %w", err))
		}
		c.apiKeyHash = sha256.Sum256([]byte(cfg.APIKey))
		c.hasAPIKey = true
	}
	names := []*string{&cfg.UserHeader, &cfg.ClientIDHeader, &cfg.ScopeHeader}
	defaults := []string{DefaultUserHeader, DefaultClientIDHeader, DefaultScopeHeader}
	for i, n := range names {
		if *n == "" {
			*n = defaults[i]
		}
		if !validHeaderName(*n) {
			errs = append(errs, fmt.Errorf("identity header %q: not a valid header name", *n))
		}
	}
	c.userHeader = textproto.CanonicalMIMEHeaderKey(cfg.UserHeader)
	c.clientHeader = textproto.CanonicalMIMEHeaderKey(cfg.ClientIDHeader)
	c.scopeHeader = textproto.CanonicalMIMEHeaderKey(cfg.ScopeHeader)
	if !c.keepAuth {
		c.removeToken = []string{"authorization"}
		c.joinToken = []string{"authorization"}
	}
	c.preflightAllow = c.allowIdentity(ReasonPreflight, "", "", "", !c.keepAuth)
	// Outside every resource the Authorization header is not passgate's
	// to remove.
	c.unprotectedAllow = c.allowIdentity(ReasonUnprotected, "", "", "", false)

	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	var err error
	if c.metrics, err = newMetrics(reg, c.allowUnknown); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("extauthz: %w", errors.Join(errs...))
	}
	c.cache = newCache(size, c.metrics)
	negSize := size / 8
	if size > 0 {
		negSize = max(negSize, cacheShards)
	}
	c.neg = newCache(negSize, c.metrics)
	c.neg.arm()
	if err := c.metrics.registerCacheSize(reg, c.cache); err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	return c, nil
}

// Run keeps the cache consistent with the store: it consumes
// store.Subscribe, dropping revoked tokens (or everything), until ctx is
// done. The cache is only filled while a subscription is live.
func (c *Checker) Run(ctx context.Context) error {
	for {
		err := c.store.Subscribe(ctx, c.invalidate)
		// Whatever happened, we may miss invalidations until the next
		// subscription delivers its initial All.
		c.cache.disarm()
		if ctx.Err() != nil {
			return nil
		}
		c.logger.WarnContext(ctx, "token invalidation subscription ended; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (c *Checker) invalidate(inv store.Invalidation) {
	if inv.All {
		c.cache.clear()
		c.metrics.invalidations.WithLabelValues("all").Inc()
	}
	for _, h := range inv.TokenHashes {
		var key [sha256.Size]byte
		if n, err := hex.Decode(key[:], []byte(h)); err != nil || n != len(key) {
			// Not a hash we could have cached; drop everything to be safe.
			c.cache.clear()
			continue
		}
		c.cache.invalidate(key)
	}
	if len(inv.TokenHashes) > 0 {
		c.metrics.invalidations.WithLabelValues("token").Add(float64(len(inv.TokenHashes)))
	}
	// The first callback of a subscription (an All, by the store contract)
	// proves it is live: from now on revocations reach us.
	c.cache.arm()
}

// Check decides r. The error is non-nil (wrapping ErrStoreUnavailable) only
// when the token is not cached and the store could not be asked in time; the
// Decision then has Reason ReasonStoreUnavailable and Status 503, and
// callers must fail closed.
func (c *Checker) Check(ctx context.Context, r Request) (Decision, error) {
	// Everything below judges the canonical path: the one nginx, Envoy,
	// Caddy, Traefik and the upstream route on. A path they would read
	// differently is refused before any resource is looked up, so that
	// not even AllowUnknownResources lets it through.
	p, err := resource.CanonicalPath(r.Path)
	if err != nil {
		return c.refuse(ReasonInvalidPath), nil
	}
	res, ok := resource.Find(c.resources, r.Scheme, r.Host, p)
	if !ok {
		if c.allowUnknown {
			if d, refused := c.refuseAPIKeyOffResource(r); refused {
				return d, nil
			}
			return c.unprotectedAllow, nil
		}
		return c.deny(r, p, resource.Resource{}, ReasonUnknownResource, ""), nil
	}
	auth, hasAuth := r.Headers["authorization"]
	// r.Method is the method the proxy reports (Envoy's attributes, the
	// header its configuration sets from the request line), never a
	// client's header: each front end reads it from one declared source.
	if c.preflight && !hasAuth && r.Method == "OPTIONS" && r.Headers["origin"] != "" && r.Headers["access-control-request-method"] != "" {
		return c.preflightAllow, nil
	}
	secret, present, ok := parseBearer(auth)
	if !present {
		return c.deny(r, p, res, ReasonNoToken, ""), nil
	}
	if !ok {
		return c.deny(r, p, res, ReasonMalformed, ""), nil
	}
	key := hashSecret(secret)
	if d, done, err := c.checkAPIKey(ctx, r, p, res, secret, key); done {
		return d, err
	}
	if !token.HasPrefix(secret, token.PrefixAccess) {
		return c.deny(r, p, res, ReasonUnknownToken, ""), nil
	}
	now := c.now()
	e, reason, err := c.lookup(ctx, key, now)
	if err != nil {
		if now := time.Now().UnixNano(); now-c.lastLog.Load() > int64(time.Second) {
			c.lastLog.Store(now)
			c.logger.WarnContext(ctx, "token lookup failed; failing closed", "err", err, "source", strings.Clone(r.SourceAddress))
		}
		return Decision{Status: 503, Reason: ReasonStoreUnavailable, Body: bodyUnavailable,
			Headers: []Header{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}}}, err
	}
	if reason != ReasonToken {
		return c.deny(r, p, res, reason, ""), nil
	}
	id := e.id
	if id.resource != res.URL {
		return c.deny(r, p, res, ReasonWrongAudience, ""), nil
	}
	scope := id.scope
	if need := c.requiredScopes(r.Scheme, r.Host, p); need != nil {
		for _, s := range need {
			if !hasScope(scope, s) {
				return c.deny(r, p, res, ReasonInsufficientScope, strings.Join(need, " ")), nil
			}
		}
	}
	if id.user == "" || id.client == "" || scope == "" {
		return c.allowIdentity(ReasonToken, id.user, id.client, scope, !c.keepAuth), nil
	}
	return Decision{
		Allow:  true,
		Status: 200,
		Headers: []Header{
			{c.userHeader, id.user},
			{c.clientHeader, id.client},
			{c.scopeHeader, scope},
		},
		RemoveHeaders: c.removeToken,
		removeJoined:  c.joinToken,
		Reason:        ReasonToken,
	}, nil
}

// allowIdentity builds an allowed Decision that carries every identity
// header, so a proxy that copies them from the answer overwrites what the
// client sent. Empty values are also removed (Envoy drops an empty header
// instead of setting it); removeAuth removes Authorization too.
func (c *Checker) allowIdentity(reason Reason, user, client, scope string, removeAuth bool) Decision {
	d := Decision{Allow: true, Status: 200, Reason: reason,
		Headers: []Header{{c.userHeader, user}, {c.clientHeader, client}, {c.scopeHeader, scope}}}
	if removeAuth {
		d.RemoveHeaders = append(d.RemoveHeaders, "authorization")
	}
	for _, h := range d.Headers {
		if h.Value == "" {
			d.RemoveHeaders = append(d.RemoveHeaders, strings.ToLower(h.Name))
		}
	}
	if len(d.RemoveHeaders) > 0 {
		d.removeJoined = []string{strings.Join(d.RemoveHeaders, ", ")}
	}
	return d
}

// refuse answers a request passgate cannot judge: an ambiguous path, a
// proxy report that is incomplete, or a host other than the pinned one.
func (c *Checker) refuse(reason Reason) Decision {
	d := Decision{Status: 400, Reason: reason,
		Headers: []Header{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}}}
	switch reason {
	case ReasonInvalidPath:
		d.Body = bodyInvalidPath
	case ReasonHostMismatch:
		d.Status, d.Body = 403, bodyHostMismatch
	default:
		d.Body = bodyInvalidRequest
	}
	return d
}

// lookup returns the cache entry for key, asking the store on a miss.
// reason is ReasonToken for a valid access token.
func (c *Checker) lookup(ctx context.Context, key [sha256.Size]byte, now time.Time) (cacheEntry, Reason, error) {
	if e, found := c.cache.get(key); found {
		if now.UnixNano() >= e.expires {
			c.cache.invalidate(key)
			return cacheEntry{}, ReasonExpired, nil
		}
		c.metrics.hits.Inc()
		return e, ReasonToken, nil
	}
	if e, found := c.neg.get(key); found && now.UnixNano() < e.expires {
		c.metrics.hits.Inc()
		return cacheEntry{}, e.deny, nil
	}
	c.metrics.misses.Inc()
	return c.fetch(ctx, key, now)
}

// fetch asks the store about key, once for all concurrent callers, and
// caches a valid access token. It is separate from lookup because the
// closure's captured variables move to the heap: the hit path must not pay
// for that.
func (c *Checker) fetch(ctx context.Context, key [sha256.Size]byte, now time.Time) (cacheEntry, Reason, error) {
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], key[:])
	hash := string(hx[:])
	type result struct {
		e      cacheEntry
		reason Reason
	}
	ch := c.sf.DoChan(hash, func() (any, error) {
		// The generation is read before the store so that an invalidation
		// racing with this lookup keeps its (maybe stale) answer out of the
		// cache. The lookup is detached from the first caller's context so
		// one impatient caller does not fail the others sharing it.
		gen := c.cache.generation(key)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.storeTimeout)
		defer cancel()
		t, err := c.store.LookupToken(sctx, hash, now)
		var deny Reason
		switch {
		case errors.Is(err, store.ErrNotFound):
			deny = ReasonUnknownToken
		case err != nil:
			c.metrics.storeErrors.Inc()
			return nil, fmt.Errorf("%w: lookup token: %w", ErrStoreUnavailable, err)
		case t.Kind != store.KindAccess:
			deny = ReasonWrongKind
		case !t.RevokedAt.IsZero():
			deny = ReasonRevoked
		case !t.ExpiresAt.After(now):
			deny = ReasonExpired
		}
		if deny != ReasonToken {
			c.neg.put(key, cacheEntry{deny: deny, expires: now.Add(negativeTTL).UnixNano()}, c.neg.generation(key))
			return result{reason: deny}, nil
		}
		e := newEntry(t)
		c.cache.put(key, e, gen)
		return result{e: e, reason: ReasonToken}, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return cacheEntry{}, ReasonStoreUnavailable, res.Err
		}
		r := res.Val.(result)
		return r.e, r.reason, nil
	case <-ctx.Done():
		return cacheEntry{}, ReasonStoreUnavailable, fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
	}
}

// hashSecret is sha256.Sum256([]byte(secret)) without the heap copy Go
// makes for conversions longer than 32 bytes.
func hashSecret(secret string) [sha256.Size]byte {
	var buf [128]byte
	if len(secret) <= len(buf) {
		return sha256.Sum256(append(buf[:0], secret...))
	}
	return sha256.Sum256([]byte(secret))
}

// requiredScopes returns the scopes the rules require for a request to
// host and canonical path p, or nil.
func (c *Checker) requiredScopes(scheme, host, p string) []string {
	if len(c.rules) == 0 {
		return nil
	}
	var need []string
	matched := 0
	for i := range c.rules {
		rule := &c.rules[i]
		var m bool
		if rule.abs {
			m = rule.res.Matches(scheme, host, p)
		} else {
			m = pathHasPrefix(p, rule.prefix)
		}
		if !m {
			continue
		}
		matched++
		if matched == 1 {
			need = rule.scopes
			continue
		}
		if matched == 2 {
			need = append([]string(nil), need...)
		}
		for _, s := range rule.scopes {
			if !contains(need, s) {
				need = append(need, s)
			}
		}
	}
	return need
}

// challengeScope is the scope parameter of a 401 for r at canonical path p.
func (c *Checker) challengeScope(r Request, p string) string {
	if need := c.requiredScopes(r.Scheme, r.Host, p); need != nil {
		return strings.Join(need, " ")
	}
	return c.scopes
}

const (
	bodyNoToken        = `{"error":"` + oauth.ErrInvalidToken + `","error_description":"A bearer access token is required."}`
	bodyInvalidToken   = `{"error":"` + oauth.ErrInvalidToken + `","error_description":"The access token is invalid, expired or revoked."}`
	bodyMalformed      = `{"error":"` + oauth.ErrInvalidRequest + `","error_description":"The Authorization header is not a valid Bearer credential."}`
	bodyAudience       = `{"error":"` + oauth.ErrInvalidToken + `","error_description":"The access token was not issued for this resource."}`
	bodyScope          = `{"error":"` + oauth.ErrInsufficientScope + `","error_description":"The access token lacks a scope this resource requires."}`
	bodyNoResource     = `{"error":"` + oauth.ErrAccessDenied + `","error_description":"No protected resource matches this request."}`
	bodyUnavailable    = `{"error":"` + oauth.ErrTemporarilyUnavailable + `","error_description":"The token store is unavailable; try again."}`
	bodyInvalidPath    = `{"error":"` + oauth.ErrInvalidRequest + `","error_description":"The request path is ambiguous (encoded separators, parameters or double encoding) and is refused."}`
	bodyInvalidRequest = `{"error":"` + oauth.ErrInvalidRequest + `","error_description":"The proxy did not report the request as this check path expects."}`
	bodyHostMismatch   = `{"error":"` + oauth.ErrAccessDenied + `","error_description":"The request's host is not the host this check is pinned to."}`
)

// deny builds a denial of r at canonical path p. scope is the insufficient
// scope, for 403.
func (c *Checker) deny(r Request, p string, res resource.Resource, reason Reason, scope string) Decision {
	d := Decision{Status: 401, Reason: reason}
	h := make([]Header, 0, 4)
	var b strings.Builder
	switch reason {
	case ReasonUnknownResource:
		d.Status, d.Body = 403, bodyNoResource
	case ReasonInsufficientScope:
		d.Status, d.Body = 403, bodyScope
		b.WriteString(`Bearer error="insufficient_scope", scope="`)
		b.WriteString(scope)
		b.WriteString(`", resource_metadata="`)
		b.WriteString(res.MetadataURL())
		b.WriteString(`"`)
	default:
		b.WriteString(`Bearer resource_metadata="`)
		b.WriteString(res.MetadataURL())
		b.WriteByte('"')
		if s := c.challengeScope(r, p); s != "" {
			b.WriteString(`, scope="`)
			b.WriteString(s)
			b.WriteByte('"')
		}
		switch reason {
		case ReasonNoToken:
			// RFC 6750 section 3.1: no error code when no credentials came.
			d.Body = bodyNoToken
		case ReasonMalformed:
			// RFC 6750 section 3.1: a malformed request is 400
			// invalid_request, not 401.
			d.Status, d.Body = 400, bodyMalformed
			b.WriteString(`, error="invalid_request"`)
		case ReasonWrongAudience:
			d.Body = bodyAudience
			b.WriteString(`, error="invalid_token"`)
		default:
			d.Body = bodyInvalidToken
			b.WriteString(`, error="invalid_token"`)
		}
	}
	if b.Len() > 0 {
		h = append(h, Header{"WWW-Authenticate", b.String()})
		if r.Headers["origin"] != "" {
			h = append(h, Header{"Access-Control-Expose-Headers", "WWW-Authenticate"})
		}
	}
	h = append(h, Header{"Content-Type", "application/json"}, Header{"Cache-Control", "no-store"})
	d.Headers = h
	return d
}

// pathHasPrefix matches prefix on segment boundaries.
func pathHasPrefix(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	rest := p[len(prefix):]
	return rest == "" || rest[0] == '/'
}

// hasScope reports whether the space-separated list has s, without
// allocating.
func hasScope(list, s string) bool {
	for list != "" {
		var f string
		f, list, _ = strings.Cut(list, " ")
		if f == s {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validScope: RFC 6749 scope-token (%x21 / %x23-5B / %x5D-7E), which also
// keeps it safe inside a quoted WWW-Authenticate parameter.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		if !ok {
			return false
		}
	}
	return true
}
