package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestValidGroup(t *testing.T) {
	validtest.Check(t, "ValidGroup", validtest.Bool(ValidGroup), validtest.Cases[string]{
		Accept: []string{"eng", "team-a.b_c", "2fa"},
		Refuse: []string{
			"",
			"Eng",
			"-eng",
			"group:eng",
			"a b",
			"a,b",
			"ènġ",
			string(make([]byte, MaxGroupLen+1)), // too long
		},
	})
	if d := cmp.Diff(NormalizeGroups([]string{"b", "a", "b"}), []string{"a", "b"}); d != "" {
		t.Errorf("NormalizeGroups (-got +want):\n%s", d)
	}
	if NormalizeGroups(nil) != nil || NormalizeGroups([]string{}) != nil {
		t.Errorf("NormalizeGroups of none is not nil")
	}
}
