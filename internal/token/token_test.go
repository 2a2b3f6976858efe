package token

import (
	"strings"
	"testing"
)

func TestNewIsPrefixedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := New(PrefixAccess)
		if !strings.HasPrefix(s, PrefixAccess) {
			t.Fatalf("New(%q) = %q: missing prefix", PrefixAccess, s)
		}
		if !HasPrefix(s, PrefixAccess) {
			t.Fatalf("HasPrefix(%q) = false", s)
		}
		if seen[s] {
			t.Fatalf("duplicate secret %q", s)
		}
		seen[s] = true
	}
}

func TestHash(t *testing.T) {
	// SHA-256("abc"), from FIPS 180-2.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Hash("abc"); got != want {
		t.Errorf("Hash(abc) = %s, want %s", got, want)
	}
	var buf [64]byte
	HashInto(&buf, "abc")
	if string(buf[:]) != want {
		t.Errorf("HashInto(abc) = %s, want %s", buf[:], want)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"x", "x", true},
		{"x", "y", false},
		{"x", "xx", false},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestHasPrefixRejects(t *testing.T) {
	for _, s := range []string{"", "pga_", "pga_short", "pgr_" + New("")[0:43], New(PrefixAccess) + "x"} {
		if HasPrefix(s, PrefixAccess) {
			t.Errorf("HasPrefix(%q, %q) = true", s, PrefixAccess)
		}
	}
}

// TestPrefixesDistinct: the checks tell an API key from an access token by
// its prefix alone, so no prefix may begin another.
func TestPrefixesDistinct(t *testing.T) {
	prefixes := []string{PrefixAccess, PrefixRefresh, PrefixCode, PrefixSession, PrefixClientSecret, PrefixAPIKey}
	for i, a := range prefixes {
		for j, b := range prefixes {
			if i != j && strings.HasPrefix(b, a) {
				t.Errorf("prefix %q begins prefix %q", a, b)
			}
		}
	}
	k := New(PrefixAPIKey)
	if !HasPrefix(k, PrefixAPIKey) || HasPrefix(k, PrefixAccess) {
		t.Errorf("New(PrefixAPIKey) = %q: HasPrefix API key %v, access %v", k, HasPrefix(k, PrefixAPIKey), HasPrefix(k, PrefixAccess))
	}
}
