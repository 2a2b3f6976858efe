package extauthz

import (
	"context"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
)

// refuse answers a request passgate cannot judge: an ambiguous path, a
// proxy report that is incomplete, or a host other than the pinned one.
func (c *Checker) refuse(reason Reason) Decision {
	d := Decision{Status: 400, Reason: reason, Headers: denialHeaders(false, "")}
	switch reason {
	case ReasonInvalidPath:
		d.Body = bodyInvalidPath
	case ReasonHostMismatch:
		d.Status, d.Body = 403, bodyHostMismatch
	case ReasonUserNotAllowed:
		d.Status, d.Body = 403, bodyUserNotAllowed
	case ReasonRuleDenied:
		d.Status, d.Body = 403, bodyRuleDenied
	case ReasonHeaderMismatch:
		d.Body = bodyHeaderMismatch
	case ReasonUnreadableBody:
		d.Body = bodyUnreadable
	default:
		d.Body = bodyInvalidRequest
	}
	return d
}

const (
	bodyNoToken        = `{"error":"` + oauth.CodeInvalidToken + `","error_description":"A bearer access token is required."}`
	bodyInvalidToken   = `{"error":"` + oauth.CodeInvalidToken + `","error_description":"The access token is invalid, expired or revoked."}`
	bodyMalformed      = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The Authorization header is not a valid Bearer credential."}`
	bodyAudience       = `{"error":"` + oauth.CodeInvalidToken + `","error_description":"The access token was not issued for this resource."}`
	bodyScope          = `{"error":"` + oauth.CodeInsufficientScope + `","error_description":"The access token lacks a scope this resource requires."}`
	bodyNoResource     = `{"error":"` + oauth.CodeAccessDenied + `","error_description":"No protected resource matches this request."}`
	bodyUnavailable    = `{"error":"` + oauth.CodeTemporarilyUnavailable + `","error_description":"The token store is unavailable; try again."}`
	bodyInvalidPath    = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The request path is ambiguous (encoded separators, parameters or double encoding) and is refused."}`
	bodyInvalidRequest = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The proxy did not report the request as this check path expects."}`
	bodyHostMismatch   = `{"error":"` + oauth.CodeAccessDenied + `","error_description":"The request's host is not the host this check is pinned to."}`
	bodyUserNotAllowed = `{"error":"` + oauth.CodeAccessDenied + `","error_description":"The access policy does not allow this user to use this resource."}`
	bodyRuleDenied     = `{"error":"` + oauth.CodeAccessDenied + `","error_description":"The access policy does not allow this user this request."}`
	bodyNoMethodHeader = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The Mcp-Method header is required: the access policy judges this resource's requests by their MCP method."}`
	bodyNoNameHeader   = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The Mcp-Name header is required: the access policy has rules for this method's names."}`
	bodyOldProtocol    = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The MCP-Protocol-Version header must be 2026-07-28 or later: this resource judges requests by their Mcp-Method and Mcp-Name headers, which older servers do not check against the body."}`
	bodyHeaderMismatch = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The Mcp-Method or Mcp-Name header is repeated or disagrees with the request body."}`
	bodyUnreadable     = `{"error":"` + oauth.CodeInvalidRequest + `","error_description":"The request body is not one JSON-RPC request the access policy can judge."}`
)

// deny builds a denial of r at canonical path p. scope is the insufficient
// scope, for 403.
func (c *Checker) deny(r Request, p string, res resource.Resource, reason Reason, scope string) Decision {
	d := Decision{Status: 401, Reason: reason, resource: res.URL}
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
	d.Headers = denialHeaders(r.Headers["origin"] != "", b.String())
	return d
}

// denialHeaders are the headers of a denial: the challenge, when there is
// one, readable by a cross-origin caller's script when the request had an
// Origin (so an MCP client in a browser, such as MCP Inspector, can follow
// resource_metadata), and a JSON body never cached. Envoy, Caddy and
// Traefik send a denial's headers to the client; nginx's auth_request does
// not, and deploy/nginx.conf adds the same CORS headers itself. The policy
// is nginx.conf's: any origin ("*"), as the credential is a Bearer header a
// page must already hold, never a cookie. Vary: Origin because the CORS
// headers depend on it.
func denialHeaders(cors bool, challenge string) []Header {
	h := make([]Header, 0, 7)
	if challenge != "" {
		h = append(h, Header{"WWW-Authenticate", challenge})
		if cors {
			h = append(h,
				Header{"Access-Control-Allow-Origin", "*"},
				Header{"Access-Control-Expose-Headers", "WWW-Authenticate"},
				Header{"Vary", "Origin"})
		}
	}
	return append(h, Header{"Content-Type", "application/json"}, Header{"Cache-Control", "no-store"})
}

// storeUnavailable is the fail-closed answer when an uncached token or
// named API key could not be looked up; the store error is logged at most
// once a second.
func (c *Checker) storeUnavailable(ctx context.Context, r Request, err error) Decision {
	if now := time.Now().UnixNano(); now-c.lastLog.Load() > int64(time.Second) {
		c.lastLog.Store(now)
		c.logger.WarnContext(ctx, "token lookup failed; failing closed", "err", err, "source", strings.Clone(r.SourceAddress))
	}
	return Decision{Status: 503, Reason: ReasonStoreUnavailable, Body: bodyUnavailable, Headers: denialHeaders(false, "")}
}
