package extauthz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// API keys are long-lived bearer credentials for scripts. Two kinds reach
// the check:
//
//   - Named keys (`passgate apikey add NAME --resource URL [--scope S]`),
//     minted with token.PrefixAPIKey and stored as hashes (store.APIKey).
//     A named key is accepted only for its resources, carries its scopes
//     through the scope rules like a token, and sends the identity
//     apikey:NAME upstream. Verified keys share the token cache, so a
//     revocation reaches every replica's cache through store.Subscribe.
//   - The legacy static key (Config.APIKey, the seed's API_KEY), bound to
//     the configured resources, with no scopes (a scope rule refuses it),
//     and the identity apikey:legacy.
//
// Neither is ever let through to a host passgate does not protect: with
// AllowUnknownResources, a request carrying an API key for an unknown host
// is refused rather than forwarded with the key in it.

// APIKeyUserPrefix starts the user identity header of a request allowed by
// an API key: "apikey:" followed by the key's name.
const APIKeyUserPrefix = "apikey:"

// LegacyAPIKeyName is the name the legacy static key (Config.APIKey) goes
// by in the identity header (apikey:legacy); no named key may take it.
const LegacyAPIKeyName = "legacy"

// minAPIKeyLen is the shortest static key accepted: a guessable key
// protects nothing.
const minAPIKeyLen = 16

// maxAPIKeyNameLen bounds a key name, which travels in a header.
const maxAPIKeyNameLen = 64

// ValidateAPIKey reports why key cannot be the legacy static key
// (Config.APIKey): shorter than 16 characters, longer than the check reads
// (4096 bytes), or with characters outside the RFC 6750 b64token (RFC 7235
// token68) alphabet, [A-Za-z0-9-._~+/]+=*. A key with other characters
// (a space, a quote, a comma, non-ASCII) cannot be sent as
// "Authorization: Bearer KEY", so the check could never match it.
// NewChecker and the command line's configuration use this one rule.
func ValidateAPIKey(key string) error {
	switch {
	case len(key) < minAPIKeyLen:
		return fmt.Errorf("must be at least %d characters", minAPIKeyLen)
	case len(key) > maxTokenLen:
		return fmt.Errorf("must be at most %d bytes", maxTokenLen)
	case !isToken68(key):
		return errors.New("must use only the Bearer token characters A-Z a-z 0-9 - . _ ~ + / (and = only as trailing padding); " +
			"clients cannot send other characters in an Authorization: Bearer header, so the key could never match")
	}
	return nil
}

// ValidateAPIKeyName reports why name cannot name an API key: it must be 1
// to 64 letters, digits, '.', '_' or '-', and not "legacy", which is the
// static key's. The name is sent upstream in the user identity header.
func ValidateAPIKeyName(name string) error {
	if name == "" || len(name) > maxAPIKeyNameLen {
		return fmt.Errorf("api key name %q: must be 1 to %d characters", name, maxAPIKeyNameLen)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
			return fmt.Errorf("api key name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	if strings.EqualFold(name, LegacyAPIKeyName) {
		return fmt.Errorf("api key name %q: reserved for the static API_KEY", name)
	}
	return nil
}

// legacyIdentity is what the legacy key says about its bearer. Its
// resource is empty: it is bound to every configured resource, which is
// every resource the check matches.
var legacyIdentity = identity{user: APIKeyUserPrefix + LegacyAPIKeyName}

// checkAPIKey decides a request for res whose Bearer credential is an API
// key. done is false when secret is not one (the caller goes on with
// tokens). The error is non-nil only when a named key is not cached and
// the store could not be asked (ErrStoreUnavailable), with a 503 Decision.
func (c *Checker) checkAPIKey(ctx context.Context, r Request, p string, res resource.Resource, secret string, key [sha256.Size]byte) (d Decision, done bool, err error) {
	var id identity
	switch {
	case c.hasAPIKey && subtle.ConstantTimeCompare(key[:], c.apiKeyHash[:]) == 1:
		id = legacyIdentity
	case token.HasPrefix(secret, token.PrefixAPIKey):
		e, reason, err := c.lookupAPIKey(ctx, key, c.now())
		if err != nil {
			return c.storeUnavailable(ctx, r, err), true, err
		}
		if reason != ReasonAPIKey {
			return c.deny(r, p, res, reason, ""), true, nil
		}
		if !boundTo(e.id.resource, res.URL) {
			// Like a token for another audience (RFC 8707; the MCP
			// specification: accept only credentials meant for you).
			return c.deny(r, p, res, ReasonWrongAudience, ""), true, nil
		}
		id = e.id
	default:
		return Decision{}, false, nil
	}
	if need := c.requiredScopes(r.Scheme, r.Host, p); need != nil {
		for _, s := range need {
			if !hasScope(id.scope, s) {
				return c.deny(r, p, res, ReasonInsufficientScope, strings.Join(need, " ")), true, nil
			}
		}
	}
	return c.allowIdentity(ReasonAPIKey, id.user, "", id.scope, !c.keepAuth), true, nil
}

// bodyAPIKeyElsewhere answers an API key sent to a host passgate does not
// protect.
const bodyAPIKeyElsewhere = `{"error":"invalid_token","error_description":"API keys are accepted only for the resources they were issued for."}`

// refuseAPIKeyOffResource is asked, with AllowUnknownResources, about a
// request that matches no configured resource. It refuses (401
// invalid_token, reason wrong_audience) a request whose Bearer credential
// is an API key, which would otherwise reach an upstream passgate does not
// protect, key included. Any credential shaped like a named key is
// refused without a store lookup: no key is bound to an unknown host.
func (c *Checker) refuseAPIKeyOffResource(r Request) (Decision, bool) {
	secret, _, ok := parseBearer(r.Headers["authorization"])
	if !ok {
		return Decision{}, false
	}
	key := hashSecret(secret)
	legacy := c.hasAPIKey && subtle.ConstantTimeCompare(key[:], c.apiKeyHash[:]) == 1
	if !legacy && !token.HasPrefix(secret, token.PrefixAPIKey) {
		return Decision{}, false
	}
	h := make([]Header, 0, 4)
	h = append(h, Header{"WWW-Authenticate", `Bearer error="invalid_token"`})
	if r.Headers["origin"] != "" {
		h = append(h, Header{"Access-Control-Expose-Headers", "WWW-Authenticate"})
	}
	h = append(h, Header{"Content-Type", "application/json"}, Header{"Cache-Control", "no-store"})
	return Decision{Status: 401, Reason: ReasonWrongAudience, Body: bodyAPIKeyElsewhere, Headers: h}, true
}

// boundTo reports whether a named key's resources (newline-separated, as
// cached) include url.
func boundTo(resources, url string) bool {
	for resources != "" {
		var r string
		r, resources, _ = strings.Cut(resources, "\n")
		if r == url {
			return true
		}
	}
	return false
}

// newAPIKeyEntry is the cache entry of a verified named key. Keys do not
// expire; a revocation removes the entry (Run). Resource URLs cannot hold
// a newline (resource.Parse refuses control characters), so they are
// joined with one into the identity's resource.
func newAPIKeyEntry(k store.APIKey) cacheEntry {
	return cacheEntry{
		id:      identity{user: APIKeyUserPrefix + k.Name, scope: k.Scope, resource: strings.Join(k.Resources, "\n")},
		expires: math.MaxInt64,
	}
}

// lookupAPIKey returns the cache entry of a named key, asking the store on
// a miss; reason is ReasonAPIKey for a live key. Keys share the token
// cache: their hashes never collide with tokens' (the prefixes differ),
// and Run's invalidations drop both alike.
func (c *Checker) lookupAPIKey(ctx context.Context, key [sha256.Size]byte, now time.Time) (cacheEntry, Reason, error) {
	if e, found := c.cache.get(key); found {
		c.metrics.hits.Inc()
		return e, ReasonAPIKey, nil
	}
	if e, found := c.neg.get(key); found && now.UnixNano() < e.expires {
		c.metrics.hits.Inc()
		return cacheEntry{}, e.deny, nil
	}
	c.metrics.misses.Inc()
	return c.fetchAPIKey(ctx, key, now)
}

// fetchAPIKey asks the store about a named key, once for all concurrent
// callers, and caches a live one (see fetch, which it mirrors for
// tokens).
func (c *Checker) fetchAPIKey(ctx context.Context, key [sha256.Size]byte, now time.Time) (cacheEntry, Reason, error) {
	hash := hex.EncodeToString(key[:])
	type result struct {
		e      cacheEntry
		reason Reason
	}
	ch := c.sf.DoChan("apikey "+hash, func() (any, error) {
		gen := c.cache.generation(key)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.storeTimeout)
		defer cancel()
		k, err := c.store.LookupAPIKey(sctx, hash)
		var deny Reason
		switch {
		case errors.Is(err, store.ErrNotFound):
			deny = ReasonUnknownToken
		case err != nil:
			c.metrics.storeErrors.Inc()
			return nil, fmt.Errorf("%w: lookup api key: %w", ErrStoreUnavailable, err)
		case !k.RevokedAt.IsZero():
			deny = ReasonRevoked
		default:
			deny = ReasonAPIKey
		}
		if deny != ReasonAPIKey {
			c.neg.put(key, cacheEntry{deny: deny, expires: now.Add(negativeTTL).UnixNano()}, c.neg.generation(key))
			return result{reason: deny}, nil
		}
		e := newAPIKeyEntry(k)
		c.cache.put(key, e, gen)
		return result{e: e, reason: ReasonAPIKey}, nil
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

// storeUnavailable is the fail-closed answer when an uncached credential
// could not be looked up; the store error is logged at most once a second.
func (c *Checker) storeUnavailable(ctx context.Context, r Request, err error) Decision {
	if now := time.Now().UnixNano(); now-c.lastLog.Load() > int64(time.Second) {
		c.lastLog.Store(now)
		c.logger.WarnContext(ctx, "api key lookup failed; failing closed", "err", err, "source", strings.Clone(r.SourceAddress))
	}
	return Decision{Status: 503, Reason: ReasonStoreUnavailable, Body: bodyUnavailable,
		Headers: []Header{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}}}
}
