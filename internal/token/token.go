// Package token mints passgate's opaque secrets (access and refresh tokens,
// authorization codes, session IDs, client secrets, API keys) and hashes them for
// lookup. A secret is a recognisable prefix followed by 256 bits of
// randomness in base64url, so secret scanners can find leaked ones; the store
// only ever sees Hash(secret).
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Prefixes of the secrets passgate issues.
const (
	PrefixAccess       = "pga_"  // access token
	PrefixRefresh      = "pgr_"  // refresh token
	PrefixCode         = "pgc_"  // authorization code
	PrefixSession      = "pgs_"  // browser session cookie value
	PrefixClientSecret = "pgcs_" // confidential client secret
	PrefixAPIKey       = "pgk_"  // named API key (`passgate apikey add`)
)

// randomBytes is the amount of randomness in every secret (256 bits).
const randomBytes = 32

// New returns prefix followed by 256 random bits in unpadded base64url.
func New(prefix string) string {
	var b [randomBytes]byte
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Hash returns the lowercase hex SHA-256 of secret: the key under which the
// store keeps it.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// HashInto writes the hex SHA-256 of secret into dst without allocating; the
// check path uses it for cache lookups.
func HashInto(dst *[64]byte, secret string) {
	sum := sha256.Sum256([]byte(secret))
	hex.Encode(dst[:], sum[:])
}

// Equal compares two secrets in constant time (for equal lengths).
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// HasPrefix reports whether secret looks like one minted with prefix; it is
// a cheap pre-filter, never a substitute for a lookup.
func HasPrefix(secret, prefix string) bool {
	return strings.HasPrefix(secret, prefix) && len(secret) == len(prefix)+base64.RawURLEncoding.EncodedLen(randomBytes)
}
