package extauthz

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/policy"
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
	// token lacking one gets 403 insufficient_scope. Optional; ignored
	// when Policy is set (the caller compiled them into it).
	RequiredScopes []ScopeRule
	// Policy holds the access policy (policy.Compile of the policy file
	// and the --require-scopes rules), which the caller may replace at any
	// time (a reload). Optional: default RequiredScopes alone.
	Policy *policy.Holder
	// CacheSize bounds the number of cached tokens. Optional: default
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
	// StoreTimeout bounds a store lookup on the check path. Optional:
	// default 300ms.
	StoreTimeout time.Duration
	// BatchWait bounds how long a cache miss for an access token waits
	// for concurrent misses to share its store read (store.LookupTokens)
	// while another read is in flight; a lone miss is sent at once.
	// Optional: default DefaultBatchWait; negative sends every miss on its
	// own (LookupToken), as before batching.
	BatchWait time.Duration
	// MaxBatch bounds the hashes of one batched store read. Optional:
	// default DefaultMaxBatch.
	MaxBatch int
	// AllowUnknownResources allows requests that match no configured
	// resource (identity headers stripped, Authorization left alone).
	// Default false: they are denied with 403.
	AllowUnknownResources bool
	// TracerProvider traces every check as a span "passgate.check" (see
	// Check), a child of the span in the check's context. Optional: nil
	// traces nothing and costs nothing.
	TracerProvider trace.TracerProvider
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
	// Body is the request body when the proxy sends it (Envoy's
	// with_request_body), else "". The access policy reads the JSON-RPC
	// method and name from it.
	Body string
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
	// resource is the URL of the resource a denial was for ("" when none
	// matched) and rule the access-policy rule that denied it (its label:
	// scopes[N], rules[N], resource, request); both
	// for the debug log of denials (logDenial).
	resource, rule string
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
	policy       *policy.Holder
	scopes       string // default challenge scope

	apiKeyHash [sha256.Size]byte
	hasAPIKey  bool

	userHeader, clientHeader, scopeHeader string // canonical
	// removeToken is removed after a token allow whose identity headers
	// all have values.
	removeToken, joinToken []string
	// The allowed answers that carry no token identity, built once.
	preflightAllow, unprotectedAllow Decision

	// cache holds verified credentials, tagged with the Reason that allows
	// them (ReasonToken, ReasonAPIKey).
	cache *tokencache.Cache
	// neg remembers tokens the store refused (unknown, expired, revoked,
	// not an access token). Each of these is final, so a client retrying
	// with a dead token costs no store round trip; entries still lapse
	// after negativeTTL. It is separate so that floods of garbage tokens
	// cannot evict verified ones. Entries are tagged with the Reason of the
	// refusal.
	neg *tokencache.Cache
	// flights are the store asks in the air, by key (see flight).
	flightMu sync.Mutex
	flights  map[[sha256.Size]byte]*flight
	// tokens batches the access-token misses' store reads.
	tokens  *tokenBatcher
	metrics *metrics
	tracer  trace.Tracer // nil: no tracing
	// policyCounters count the access policy's decisions.
	policyCounters *policyCounters

	lastLog atomic.Int64 // unix nanos of the last store-error log line
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
		if !oauth.ValidScopeToken(s) {
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
		flights:      make(map[[sha256.Size]byte]*flight),
	}
	c.policy = cfg.Policy
	if c.policy == nil {
		p, err := policy.Compile(nil, cfg.Resources, cfg.RequiredScopes)
		if err != nil {
			errs = append(errs, err)
		}
		c.policy = policy.NewHolder(p)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer(InstrumentationName)
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
		if err := ValidateIdentityHeader(*n); err != nil {
			errs = append(errs, fmt.Errorf("identity header %q: %w", *n, err))
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
	if c.policyCounters, err = newPolicyCounters(reg); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("extauthz: %w", errors.Join(errs...))
	}
	batchWait, maxBatch := cfg.BatchWait, cfg.MaxBatch
	if batchWait == 0 {
		batchWait = DefaultBatchWait
	}
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	c.tokens = newTokenBatcher(c.store, c.storeTimeout, batchWait, maxBatch)
	c.cache = tokencache.New(size, c.metrics.evictions.Inc)
	negSize := size / 8
	if size > 0 {
		negSize = max(negSize, tokencache.Shards)
	}
	c.neg = tokencache.New(negSize, c.metrics.evictions.Inc)
	c.neg.Arm()
	if err := c.metrics.registerCacheSize(reg, c.cache); err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	return c, nil
}

// Check decides r. The error is non-nil (wrapping ErrStoreUnavailable) only
// when the token is not cached and the store could not be asked in time; the
// Decision then has Reason ReasonStoreUnavailable and Status 503, and
// callers must fail closed.
//
// With a TracerProvider, the check is a span (see checkTraced).
func (c *Checker) Check(ctx context.Context, r Request) (Decision, error) {
	if c.tracer != nil {
		return c.checkTraced(ctx, r)
	}
	return c.check(ctx, r)
}

func (c *Checker) check(ctx context.Context, r Request) (Decision, error) {
	// Everything below judges the canonical path: the one nginx, Envoy,
	// Caddy, Traefik and the upstream route on. A path they would read
	// differently is refused before any resource is looked up, so that
	// not even AllowUnknownResources lets it through.
	p, err := resource.CanonicalPath(r.Path)
	if err != nil {
		return c.refuse(ReasonInvalidPath), nil
	}
	// Express and ASP.NET Core route without regard to letter case, so
	// they serve /mcp/TENANT2 as /mcp/tenant2: a request whose resource
	// depends on letter case is refused rather than guessed.
	res, ok, ambiguous := resource.FindUnambiguous(c.resources, r.Scheme, r.Host, p)
	if ambiguous {
		return c.refuse(ReasonInvalidPath), nil
	}
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
	e, reason, err := c.lookup(ctx, key, c.now(), accessToken)
	if err != nil {
		return c.storeUnavailable(ctx, r, err), err
	}
	if reason != ReasonToken {
		return c.deny(r, p, res, reason, ""), nil
	}
	id := e.ID
	if id.Resource != res.URL {
		return c.deny(r, p, res, ReasonWrongAudience, ""), nil
	}
	if d, denied := c.policyDenial(ctx, r, p, res, credential{id.User, id.Groups, id.Scope}); denied {
		return d, nil
	}
	if id.User == "" || id.Client == "" || id.Scope == "" {
		return c.allowIdentity(ReasonToken, id.User, id.Client, id.Scope, !c.keepAuth), nil
	}
	return Decision{
		Allow:  true,
		Status: 200,
		Headers: []Header{
			{c.userHeader, id.User},
			{c.clientHeader, id.Client},
			{c.scopeHeader, id.Scope},
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

// ValidateIdentityHeader checks the name of an identity header passgate
// sends upstream: letters, digits and hyphens only, a subset of the
// RFC 9110 token. Underscores and dots are refused because servers do not
// agree on them: CGI, WSGI, PHP and Rack map both "X-Passgate-User" and
// "X_Passgate_User" to HTTP_X_PASSGATE_USER, and nginx drops underscored
// headers by default, so a header the proxy does not strip could pass for
// the one passgate sets.
func ValidateIdentityHeader(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
			return errors.New("only letters, digits and hyphens are allowed in a header name")
		}
	}
	return nil
}
