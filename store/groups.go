package store

import (
	"slices"
)

// MaxGroupLen bounds a group name.
const MaxGroupLen = 64

// ValidGroup reports whether g may name a group: 1 to MaxGroupLen of
// lowercase ASCII letters, digits, '-', '_' and '.', starting with a letter
// or digit. The set is small on purpose: group names appear in the policy
// file (group:NAME), in the CLI and in logs, and must read the same
// everywhere.
func ValidGroup(g string) bool {
	if g == "" || len(g) > MaxGroupLen {
		return false
	}
	for i := 0; i < len(g); i++ {
		b := g[i]
		switch {
		case b >= 'a' && b <= 'z', b >= '0' && b <= '9':
		case (b == '-' || b == '_' || b == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// NormalizeGroups returns groups sorted and without duplicates; nil for
// none. Backends store groups in this form.
func NormalizeGroups(groups []string) []string {
	if len(groups) == 0 {
		return nil
	}
	out := slices.Clone(groups)
	slices.Sort(out)
	return slices.Compact(out)
}
