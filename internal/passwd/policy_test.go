package passwd

import (
	"errors"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		name     string
		policy   Policy
		user, pw string
		want     error // nil: accepted
	}{
		{"passphrase", Policy{}, "alice", "correct horse battery staple", nil},
		{"eight characters", Policy{}, "alice", "v8#kq!Zp", nil},
		{"five characters (the issue's)", Policy{}, "alice", "abcde", ErrTooShort},
		{"seven characters", Policy{}, "alice", "v8#kq!Z", ErrTooShort},
		{"characters, not bytes", Policy{}, "alice", "ééééééé", ErrTooShort},
		{"eight multibyte characters", Policy{}, "alice", "éàüöçñøå", nil},
		{"configured minimum", Policy{MinLength: 12}, "alice", "v8#kq!Zp3xy", ErrTooShort},
		{"configured minimum met", Policy{MinLength: 12}, "alice", "v8#kq!Zp3xyW", nil},
		{"72 bytes", Policy{}, "alice", strings.Repeat("k", 72), nil},
		{"73 bytes refused, not truncated", Policy{}, "alice", strings.Repeat("k", 73), ErrTooLong},
		{"common", Policy{}, "alice", "password1", ErrCommon},
		{"common, other case", Policy{}, "alice", "PassWord1", ErrCommon},
		{"common digits", Policy{}, "alice", "12345678", ErrCommon},
		{"common qwerty", Policy{}, "alice", "qwertyuiop", ErrCommon},
		{"the username", Policy{}, "administrator", "administrator", ErrUsername},
		{"the username, other case", Policy{}, "alice.smith", "Alice.Smith", ErrUsername},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.user, tt.pw)
			// errors.Is(err, nil) holds only for a nil err: want nil is
			// "accepted".
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), tt.pw) {
				t.Errorf("the error %q repeats the password", err)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	validate := func(min int) error { return Policy{MinLength: min}.Validate() }
	validtest.Check(t, "Policy.Validate of MinLength", validate, validtest.Cases[int]{
		Accept: []int{0, 8, 20},
		Refuse: []int{7, 1, 73},
	})
}

// TestCommonListIsLoaded guards the embed: an empty or mangled list would
// accept everything.
func TestCommonListIsLoaded(t *testing.T) {
	set := commonSet()
	if len(set) < 17000 {
		t.Fatalf("common password list has %d entries, want about 18k", len(set))
	}
	for p := range set {
		if len(p) < MinLength || strings.ToLower(p) != p {
			t.Fatalf("entry %q is shorter than %d or not lowercase", p, MinLength)
		}
	}
}

// TestGeneratedBootstrapPasswordPasses: the 24 random characters the
// bootstrap prints pass the policy.
func TestGeneratedBootstrapPasswordPasses(t *testing.T) {
	if err := (Policy{}).Check("admin", "Kq3v9ZpT0xWm2LbN8rYc5HdF"); err != nil {
		t.Errorf("a 24-character random password: %v", err)
	}
}
