package passwd

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// Password policy errors; Policy.Check wraps them with the detail a person
// needs to pick another password.
var (
	ErrTooShort = errors.New("password too short")
	ErrTooLong  = errors.New("password too long")
	ErrCommon   = errors.New("password is too common")
	ErrUsername = errors.New("password is the username")
)

// MinLength is the default and the least minimum password length in
// characters (Unicode code points): NIST SP 800-63B §3.1.1.2 says
// passwords chosen by a person SHALL be at least 8 characters.
const MinLength = 8

// MaxBytes is the longest password passgate accepts, in bytes: bcrypt
// reads at most 72 bytes and silently ignores the rest, so two passwords
// sharing their first 72 bytes would be one. Longer passwords are refused
// with a message saying so, not pre-hashed: a pre-hash (say SHA-256, then
// bcrypt) would make passgate's hashes differ from every other bcrypt tool's,
// and OAUTH_PASSWORD_HASH, `passgate hash-password` and imported hashes
// must stay plain bcrypt. 72 bytes is 72 ASCII characters, more than the
// 64 NIST SP 800-63B asks verifiers to permit (fewer for scripts that need
// several bytes per character).
const MaxBytes = 72

// commonPasswords is the list of common passwords a new password must not
// be in: the passwords of at least MinLength characters in the
// frequency-ordered list of @zxcvbn-ts/language-common 4.1.3 (MIT, see
// common-passwords.LICENSE; the list zxcvbn-ts and Dropbox's zxcvbn check
// against, drawn from leaked-password corpora), 17,950 entries, one per
// line, lowercase.
//
//go:embed common-passwords.txt
var commonPasswords string

// commonSet builds the lookup set once, on first use.
var commonSet = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 18000)
	for line := range strings.Lines(commonPasswords) {
		if p := strings.TrimRight(line, "\r\n"); p != "" {
			set[p] = struct{}{}
		}
	}
	return set
})

// Policy is the password policy of NIST SP 800-63B §3.1.1.2 for passwords
// a person chooses (`passgate user add`, `user passwd`): a minimum length,
// bcrypt's maximum, no password from a list of common ones, and not the
// username. It deliberately has no composition rules (digits, symbols)
// and no expiry, which that section says not to impose. It cannot apply
// to OAUTH_PASSWORD_HASH, which is a hash; passgate's generated bootstrap
// password (24 random characters) passes it.
type Policy struct {
	// MinLength is the minimum length in characters. Optional; default
	// (and least) MinLength, 8.
	MinLength int
}

// Validate reports a configuration problem.
func (p Policy) Validate() error {
	if p.MinLength != 0 && p.MinLength < MinLength {
		return fmt.Errorf("passwd: minimum password length %d is below %d (NIST SP 800-63B)", p.MinLength, MinLength)
	}
	if p.MinLength > MaxBytes {
		return fmt.Errorf("passwd: minimum password length %d is above the %d bytes bcrypt can use", p.MinLength, MaxBytes)
	}
	return nil
}

// Check reports why password may not be username's password, or nil.
// Errors wrap ErrTooShort, ErrTooLong, ErrCommon or ErrUsername and say
// what to do; they never contain the password. The common-password and
// username comparisons ignore case, so "Password1" counts as "password1".
func (p Policy) Check(username, password string) error {
	minLen := max(p.MinLength, MinLength)
	if n := utf8.RuneCountInString(password); n < minLen {
		return fmt.Errorf("%w: at least %d characters, got %d", ErrTooShort, minLen, n)
	}
	if len(password) > MaxBytes {
		return fmt.Errorf("%w: at most %d bytes (bcrypt ignores the rest), got %d", ErrTooLong, MaxBytes, len(password))
	}
	lower := strings.ToLower(password)
	if username != "" && lower == strings.ToLower(username) {
		return fmt.Errorf("%w: choose a password that is not the username", ErrUsername)
	}
	if _, ok := commonSet()[lower]; ok {
		return fmt.Errorf("%w: it is in a list of passwords attackers try first; choose another", ErrCommon)
	}
	return nil
}
