package extauthz

import "fmt"

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
	ReasonUserNotAllowed                  // 403: the access policy does not list the user for the resource
	ReasonRuleDenied                      // 403: an access-policy rule refuses the user this MCP request
	ReasonMissingHeader                   // 400: the access policy needs an Mcp-Method or Mcp-Name header the request lacks
	ReasonHeaderMismatch                  // 400: an Mcp-Method or Mcp-Name header disagrees with the body, or is repeated
	ReasonUnreadableBody                  // 400: the proxy sent a body that is not one JSON-RPC request, for a resource with rules
	numReasons
)

var reasonNames = [numReasons]string{
	"token", "api_key", "preflight", "unprotected", "no_token", "malformed",
	"unknown_token", "expired", "revoked", "wrong_audience", "wrong_kind",
	"insufficient_scope", "unknown_resource", "store_unavailable",
	"invalid_path", "invalid_request", "host_mismatch",
	"user_not_allowed", "rule_denied", "missing_header", "header_mismatch", "unreadable_body",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// allows reports whether r is a reason to allow.
func (r Reason) allows() bool {
	switch r {
	case ReasonToken, ReasonAPIKey, ReasonPreflight, ReasonUnprotected:
		return true
	}
	return false
}

// label is the decision label of a reason.
func (r Reason) label() string {
	switch {
	case r.allows():
		return "allow"
	case r == ReasonStoreUnavailable:
		return "error"
	}
	return "deny"
}
