package oauth

import (
	"errors"
	"slices"
	"strings"
)

// ScopeOfflineAccess is accepted in requests and dropped from grants:
// passgate issues refresh tokens whether or not it is asked for.
const ScopeOfflineAccess = "offline_access"

// maxScopeLen bounds a scope parameter; nothing legitimate comes close.
const maxScopeLen = 1024

// ParseScope splits a scope parameter (RFC 6749 §3.3: space-delimited
// tokens of %x21 / %x23-5B / %x5D-7E) into sorted, de-duplicated tokens.
// Runs of spaces are tolerated; any other whitespace or a forbidden
// character is an error.
func ParseScope(s string) ([]string, error) {
	if len(s) > maxScopeLen {
		return nil, errors.New("scope too long")
	}
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		if !ValidScopeToken(tok) {
			return nil, errors.New("scope contains a forbidden character")
		}
		out = append(out, tok)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ValidScopeToken reports whether s is one RFC 6749 §3.3 scope-token:
// one or more of %x21 / %x23-5B / %x5D-7E. It is the one rule for scope
// names everywhere passgate takes them (requests, configuration, check
// rules); it also keeps a scope safe inside a quoted WWW-Authenticate
// parameter (no quote, backslash or space).
func ValidScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// JoinScope joins scope tokens with single spaces.
func JoinScope(scopes []string) string { return strings.Join(scopes, " ") }

// ScopeSubset reports whether every token of sub is in set.
func ScopeSubset(sub, set []string) bool {
	for _, s := range sub {
		if !slices.Contains(set, s) {
			return false
		}
	}
	return true
}

// ScopeUnion returns the sorted, de-duplicated union of a and b.
func ScopeUnion(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
