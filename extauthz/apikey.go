package extauthz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
	"github.com/passgate/passgate/internal/policy"
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
var legacyIdentity = tokencache.Identity{User: APIKeyUserPrefix + LegacyAPIKeyName}

// isLegacyKey reports, in constant time, whether key is the hash of the
// legacy static key.
func (c *Checker) isLegacyKey(key [sha256.Size]byte) bool {
	return c.hasAPIKey && subtle.ConstantTimeCompare(key[:], c.apiKeyHash[:]) == 1
}

// checkAPIKey decides a request for res whose Bearer credential is an API
// key. done is false when secret is not one (the caller goes on with
// tokens). The error is non-nil only when a named key is not cached and
// the store could not be asked (ErrStoreUnavailable), with a 503 Decision.
func (c *Checker) checkAPIKey(ctx context.Context, r Request, p string, res resource.Resource, secret string, key [sha256.Size]byte) (d Decision, done bool, err error) {
	var id tokencache.Identity
	switch {
	case c.isLegacyKey(key):
		id = legacyIdentity
	case token.HasPrefix(secret, token.PrefixAPIKey):
		e, reason, err := c.lookup(ctx, key, c.now(), namedAPIKey)
		if err != nil {
			return c.storeUnavailable(ctx, r, err), true, err
		}
		if reason != ReasonAPIKey {
			return c.deny(r, p, res, reason, ""), true, nil
		}
		if !boundTo(e.ID.Resource, res.URL) {
			// Like a token for another audience (RFC 8707; the MCP
			// specification: accept only credentials meant for you).
			return c.deny(r, p, res, ReasonWrongAudience, ""), true, nil
		}
		id = e.ID
	default:
		return Decision{}, false, nil
	}
	if d, denied := c.policyDenial(ctx, r, p, res, credential{user: id.User, scope: id.Scope}); denied {
		return d, true, nil
	}
	return c.allowIdentity(ReasonAPIKey, id.User, "", id.Scope, !c.keepAuth), true, nil
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
	if !c.isLegacyKey(key) && !token.HasPrefix(secret, token.PrefixAPIKey) {
		return Decision{}, false
	}
	return Decision{Status: 401, Reason: ReasonWrongAudience, Body: bodyAPIKeyElsewhere,
		Headers: denialHeaders(r.Headers["origin"] != "", `Bearer error="invalid_token"`)}, true
}

// boundTo reports whether a named key's resources (newline-separated, as
// cached) include url.
func boundTo(resources, url string) bool { return policy.HasField(resources, "\n", url) }

// askAPIKey asks the store about a named API key, answering as
// flight.complete takes it: ReasonAPIKey for a live key.
// Keys do not expire; a revocation removes the entry (Run). Resource URLs
// cannot hold a newline (resource.Parse refuses control characters), so
// they are joined with one into the identity's resource (see boundTo).
func askAPIKey(ctx context.Context, c *Checker, hash string) (tokencache.Entry, Reason, error) {
	k, err := c.store.LookupAPIKey(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tokencache.Entry{}, ReasonUnknownToken, nil
	case err != nil:
		return tokencache.Entry{}, ReasonStoreUnavailable, fmt.Errorf("lookup api key: %w", err)
	case !k.RevokedAt.IsZero():
		return tokencache.Entry{}, ReasonRevoked, nil
	}
	// Keys bound before identifiers were canonicalized carry the URLs as
	// configured then; the check compares canonical forms.
	bound := make([]string, len(k.Resources))
	for i, r := range k.Resources {
		bound[i] = resource.Audience(r)
	}
	return tokencache.Entry{
		ID:      tokencache.Identity{User: APIKeyUserPrefix + k.Name, Scope: k.Scope, Resource: strings.Join(bound, "\n")},
		Expires: math.MaxInt64,
	}, ReasonAPIKey, nil
}
