package main

import (
	"strings"
	"testing"
)

// TestUserGroupsCommands: user add --groups, user set-groups and user list
// on both backends, with hostile group names refused and nothing changed.
func TestUserGroupsCommands(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			run := func(stdin string, args ...string) string {
				t.Helper()
				return passgateOK(t, b.env, stdin, args...)
			}
			fail := func(want string, args ...string) {
				t.Helper()
				passgateFails(t, b.env, "an-acceptable-passphrase\n", want, args...)
			}
			listed := func(user string) string {
				t.Helper()
				for _, line := range strings.Split(run("", "user", "list"), "\n") {
					if f := strings.Fields(line); len(f) >= 2 && f[0] == user {
						return f[1]
					}
				}
				t.Fatalf("user list lacks %s", user)
				return ""
			}
			run("an-acceptable-passphrase\n", "user", "add", "alice", "--groups", "ops,eng", "--password-stdin")
			run("an-acceptable-passphrase\n", "user", "add", "bob", "--password-stdin")
			if got := listed("alice"); got != "eng,ops" {
				t.Errorf("alice's groups = %q, want eng,ops", got)
			}
			if got := listed("bob"); got != "-" {
				t.Errorf("bob's groups = %q, want -", got)
			}
			fail("not a valid group name", "user", "add", "carol", "--groups", "group:eng", "--password-stdin")
			fail("not a valid group name", "user", "set-groups", "bob", "Eng,,x")
			fail("no user", "user", "set-groups", "nobody", "eng")
			if got := listed("bob"); got != "-" {
				t.Errorf("a refused set-groups changed bob's groups to %q", got)
			}
			if out := run("", "user", "set-groups", "bob", "eng"); !strings.Contains(out, "set the groups of bob to eng") {
				t.Errorf("set-groups printed %q", out)
			}
			if got := listed("bob"); got != "eng" {
				t.Errorf("bob's groups = %q, want eng", got)
			}
			run("", "user", "set-groups", "bob")
			if got := listed("bob"); got != "-" {
				t.Errorf("bob's groups after clearing = %q, want -", got)
			}
			if out := run("", "audit", "--event", "groups_changed"); strings.Count(out, "bob") != 2 {
				t.Errorf("audit shows %d groups_changed rows for bob, want 2:\n%s", strings.Count(out, "bob"), out)
			}
		})
	}
}
