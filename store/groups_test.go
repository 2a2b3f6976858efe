package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidGroup(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"simple", "eng", true},
		{"with separators", "team-a.b_c", true},
		{"digit first", "2fa", true},
		{"empty", "", false},
		{"upper case", "Eng", false},
		{"leading hyphen", "-eng", false},
		{"colon", "group:eng", false},
		{"space", "a b", false},
		{"comma", "a,b", false},
		{"non-ascii", "ènġ", false},
		{"too long", string(make([]byte, MaxGroupLen+1)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidGroup(tt.in); got != tt.want {
				t.Errorf("ValidGroup(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if d := cmp.Diff(NormalizeGroups([]string{"b", "a", "b"}), []string{"a", "b"}); d != "" {
		t.Errorf("NormalizeGroups (-got +want):\n%s", d)
	}
	if NormalizeGroups(nil) != nil || NormalizeGroups([]string{}) != nil {
		t.Errorf("NormalizeGroups of none is not nil")
	}
}
