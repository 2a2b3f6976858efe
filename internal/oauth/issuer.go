package oauth

import (
	"errors"
	"net/url"
	"strings"

	"github.com/passgate/passgate/internal/resource"
)

// ValidateIssuer checks an authorization server issuer identifier (RFC 8414
// §2): an absolute https URL with a host and no query, fragment or
// userinfo; http only on a loopback host, for development. Clients compare
// the issuer byte for byte (RFC 8414 §3.3, RFC 9207 §2.4), so it must be
// written as it will be sent: a lowercase scheme, no spaces, control
// characters or backslashes.
func ValidateIssuer(raw string) error {
	if raw == "" {
		return errors.New("issuer is required")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c == 0x7f || c == '\\' {
			return errors.New("issuer contains a space, control character or backslash")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("issuer must be an absolute URL with a host")
	}
	if !strings.HasPrefix(raw, u.Scheme+"://") {
		return errors.New("issuer scheme must be lowercase")
	}
	// "#" catches an empty fragment, which url.URL does not keep.
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("issuer must not have userinfo, a query or a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !resource.IsLoopbackHost(u.Hostname()) {
			return errors.New("issuer must use https (http is allowed only for loopback hosts)")
		}
	default:
		return errors.New("issuer must use https")
	}
	return nil
}
