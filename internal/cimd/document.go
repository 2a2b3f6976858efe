package cimd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
)

// maxURLLen bounds a Client Identifier URL; it is shown on the consent page
// and nothing legitimate is long.
const maxURLLen = 2000

// maxNameLen bounds client_name in runes; it is display text.
const maxNameLen = 200

// Document is a validated Client ID Metadata Document. Only Parse (and so
// Fetcher.Get) builds one, and every Document satisfies: ClientID is the
// URL it was fetched from, byte for byte; RedirectURIs is non-empty and
// each entry passes oauth.ValidateRedirectURI; TokenEndpointAuthMethod is
// "none"; GrantTypes contains "authorization_code" and ResponseTypes
// contains "code".
type Document struct {
	ClientID     string
	ClientName   string // Optional display name; may be empty.
	ClientURI    string // Optional https URL of the client's home page.
	LogoURI      string // Optional https URL of a logo.
	RedirectURIs []string
	// GrantTypes defaults to ["authorization_code"] when the document
	// omits it (RFC 7591 §2).
	GrantTypes []string
	// ResponseTypes defaults to ["code"].
	ResponseTypes []string
	// TokenEndpointAuthMethod is always "none": passgate treats document
	// clients as public clients (see Parse).
	TokenEndpointAuthMethod string
	// Scope is the space-separated scope the client says it will use, as
	// written (validated as RFC 6749 scope tokens); may be empty.
	Scope string
}

// Host returns the host (with port, if any) of the client_id URL. The
// draft (§8.5) asks the consent page to show it next to the client name.
func (d Document) Host() string {
	u, err := url.Parse(d.ClientID)
	if err != nil {
		return ""
	}
	return u.Host
}

// ValidateClientIDURL checks s against the Client Identifier URL rules of
// draft-ietf-oauth-client-id-metadata-document §3: https; a path that is
// neither empty nor "/" and has no "." or ".." segment (also not
// percent-encoded); no userinfo, no fragment. A query is allowed (the
// draft only discourages it). With allowLoopbackHTTP, http is also
// accepted for a loopback host (localhost, 127.0.0.0/8, ::1), for
// development and tests only. Errors wrap ErrInvalidURL.
func ValidateClientIDURL(s string, allowLoopbackHTTP bool) error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidURL, why) }
	if len(s) > maxURLLen {
		return bad("too long")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return bad("contains a forbidden character")
		}
	}
	if strings.Contains(s, "#") {
		return bad("must not have a fragment")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("does not parse")
	}
	switch {
	case strings.HasPrefix(s, "https://"):
	case allowLoopbackHTTP && strings.HasPrefix(s, "http://") && resource.IsLoopbackHost(u.Hostname()):
	default:
		return bad("must use https")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return bad("must have a host")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return bad("must not have userinfo")
	}
	if strings.Contains(u.Host, "%") {
		return bad("host must not be percent-encoded")
	}
	if p := u.Port(); p != "" {
		n := 0
		for _, c := range p {
			n = n*10 + int(c-'0')
			if n > 65535 {
				break
			}
		}
		if n < 1 || n > 65535 || p[0] == '0' {
			return bad("invalid port")
		}
	}
	if p := u.EscapedPath(); p == "" || p == "/" {
		return bad("must have a path")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		seg, err := url.PathUnescape(seg)
		if err != nil {
			return bad("path does not parse")
		}
		if seg == "." || seg == ".." {
			return bad("path must not have . or .. segments")
		}
	}
	return nil
}

// IsClientIDURL reports whether s is a valid https Client Identifier URL.
// (Fetcher.IsClientIDURL also honours Config.AllowLoopbackHTTP.)
func IsClientIDURL(s string) bool { return ValidateClientIDURL(s, false) == nil }

// rawDocument is the wire shape, filled member by member with exact,
// case-sensitive names (encoding/json's struct decoding would also take
// "Client_ID" or "REDIRECT_URIS", letting a document say two things).
type rawDocument struct {
	ClientID                string
	ClientName              string
	ClientURI               string
	LogoURI                 string
	RedirectURIs            []string
	GrantTypes              []string
	ResponseTypes           []string
	TokenEndpointAuthMethod string
	Scope                   string
}

// decodeMembers fills raw from members, reporting the first member with
// the wrong type. Absent members stay zero.
func decodeMembers(members map[string]json.RawMessage, raw *rawDocument) error {
	fields := []struct {
		name string
		dst  any
	}{
		{"client_id", &raw.ClientID},
		{"client_name", &raw.ClientName},
		{"client_uri", &raw.ClientURI},
		{"logo_uri", &raw.LogoURI},
		{"redirect_uris", &raw.RedirectURIs},
		{"grant_types", &raw.GrantTypes},
		{"response_types", &raw.ResponseTypes},
		{"token_endpoint_auth_method", &raw.TokenEndpointAuthMethod},
		{"scope", &raw.Scope},
	}
	for _, f := range fields {
		m, ok := members[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(m, f.dst); err != nil {
			return fmt.Errorf("%s has the wrong type", f.name)
		}
	}
	return nil
}

// secretFields must never appear: a document is public, so a secret in it
// is no secret (draft §4.1).
var secretFields = []string{"client_secret", "client_secret_expires_at"}

// privateJWKMembers are JWK members that only private or symmetric keys
// have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Parse validates body as the Client ID Metadata Document fetched from
// clientID and returns it with defaults filled in. Errors wrap
// ErrInvalidDocument; their text names the rule broken, never a value from
// the document.
//
// Rules: a single JSON object (UTF-8, nothing after it); client_id equal
// to clientID by simple string comparison; redirect_uris a non-empty array
// of redirect URIs that oauth.ValidateRedirectURI accepts
// under policy (the deployment's private-use scheme policy, as for dynamic
// registration); no client_secret or client_secret_expires_at; no private or
// symmetric key material in jwks; token_endpoint_auth_method absent or
// "none" (client_secret_* is refused because a public document cannot
// carry a shared secret, and private_key_jwt because passgate does not
// verify client assertions, so accepting it would quietly downgrade a
// confidential client to a public one); grant_types, if present, includes
// authorization_code; response_types, if present, includes code;
// client_uri and logo_uri, if present, are https URLs; client_name is
// present and not blank (the consent page names the application by it;
// the MCP authorization spec requires it), has no control or
// bidi-override characters and at most 200 characters; scope is
// well-formed. Unknown members are ignored (RFC 7591 §2).
func Parse(clientID string, body []byte, policy oauth.PrivateSchemes) (Document, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDocument, fmt.Sprintf(format, a...))
	}
	if !utf8.Valid(body) {
		return Document{}, bad("not UTF-8")
	}
	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&members); err != nil || members == nil {
		return Document{}, bad("not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Document{}, bad("data after the JSON object")
	}
	for _, f := range secretFields {
		if _, ok := members[f]; ok {
			return Document{}, bad("%s must not be in a public document", f)
		}
	}
	if raw, ok := members["jwks"]; ok {
		if err := checkPublicJWKS(raw); err != nil {
			return Document{}, bad("jwks: %v", err)
		}
	}
	if _, ok := members["client_id"]; !ok {
		return Document{}, bad("client_id is missing")
	}
	if _, ok := members["redirect_uris"]; !ok {
		return Document{}, bad("redirect_uris is missing")
	}
	var raw rawDocument
	if err := decodeMembers(members, &raw); err != nil {
		return Document{}, bad("%v", err)
	}
	if raw.ClientID != clientID {
		return Document{}, bad("client_id does not match the URL it was fetched from")
	}
	if len(raw.RedirectURIs) == 0 {
		return Document{}, bad("redirect_uris is empty")
	}
	for i, r := range raw.RedirectURIs {
		if err := oauth.ValidateRedirectURI(r, policy); err != nil {
			return Document{}, bad("redirect_uris[%d]: %v", i, err)
		}
	}
	switch m := raw.TokenEndpointAuthMethod; m {
	case "", "none":
		raw.TokenEndpointAuthMethod = "none"
	case "client_secret_basic", "client_secret_post", "client_secret_jwt":
		return Document{}, bad("token_endpoint_auth_method %s needs a shared secret, which a public document cannot have", m)
	case "private_key_jwt":
		return Document{}, bad("token_endpoint_auth_method private_key_jwt is not supported; use none")
	default:
		return Document{}, bad("token_endpoint_auth_method is not supported; use none")
	}
	if _, ok := members["grant_types"]; !ok {
		raw.GrantTypes = []string{"authorization_code"}
	}
	if !slices.Contains(raw.GrantTypes, "authorization_code") {
		return Document{}, bad("grant_types must include authorization_code")
	}
	if _, ok := members["response_types"]; !ok {
		raw.ResponseTypes = []string{"code"}
	}
	if !slices.Contains(raw.ResponseTypes, "code") {
		return Document{}, bad("response_types must include code")
	}
	if raw.ClientURI != "" && !isHTTPSURL(raw.ClientURI) {
		return Document{}, bad("client_uri must be an https URL")
	}
	if raw.LogoURI != "" && !isHTTPSURL(raw.LogoURI) {
		return Document{}, bad("logo_uri must be an https URL")
	}
	if err := checkDisplayName(raw.ClientName); err != nil {
		return Document{}, bad("client_name: %v", err)
	}
	if _, err := oauth.ParseScope(raw.Scope); err != nil {
		return Document{}, bad("scope: %v", err)
	}
	if strings.TrimSpace(raw.ClientName) == "" {
		return Document{}, bad("client_name is missing")
	}
	return Document(raw), nil
}

// checkPublicJWKS refuses a jwks that is not {"keys":[{...}, ...]} or
// whose keys carry private or symmetric material (draft §4.1).
func checkPublicJWKS(raw json.RawMessage) error {
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return errors.New("not a JWK set")
	}
	for _, k := range set.Keys {
		for _, m := range privateJWKMembers {
			if _, ok := k[m]; ok {
				return errors.New("contains private or symmetric key material")
			}
		}
	}
	return nil
}

func isHTTPSURL(s string) bool {
	if len(s) > maxURLLen || !strings.HasPrefix(s, "https://") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Hostname() != "" && u.User == nil
}

// checkDisplayName refuses names that could disguise themselves on the
// consent page: control characters and bidirectional overrides (which can
// reverse how the rest of the line reads).
func checkDisplayName(s string) error {
	if utf8.RuneCountInString(s) > maxNameLen {
		return fmt.Errorf("longer than %d characters", maxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f {
			return errors.New("contains control or bidi formatting characters")
		}
	}
	return nil
}
