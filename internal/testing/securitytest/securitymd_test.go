package securitytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

var (
	pkgRefRE  = regexp.MustCompile("`([a-z0-9/]+)`([^`]*)")
	testRefRE = regexp.MustCompile(`\b((?:Test|Fuzz)[A-Za-z0-9_]+)\b`)
)

// TestSecurityMDNamesRealTests: every row of SECURITY.md's threat table
// names at least one test, and every test it names is a function in a test
// file of the package named before it, so the table cannot drift from the
// code. (CI runs those tests; this test makes sure they exist.)
func TestSecurityMDNamesRealTests(t *testing.T) {
	root, err := e2etest.ModuleRoot()
	must(t, "module root", err)
	raw, err := os.ReadFile(filepath.Join(root, "SECURITY.md"))
	must(t, "read SECURITY.md", err)
	rows := 0
	sources := map[string]string{}
	source := func(pkg string) string {
		if s, ok := sources[pkg]; ok {
			return s
		}
		files, _ := filepath.Glob(filepath.Join(root, pkg, "*_test.go"))
		var b strings.Builder
		for _, f := range files {
			data, err := os.ReadFile(f)
			must(t, "read", err)
			b.Write(data)
		}
		sources[pkg] = b.String()
		return sources[pkg]
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| **") {
			continue
		}
		rows++
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("malformed row: %s", line)
			continue
		}
		threat, tests := strings.TrimSpace(cells[1]), cells[3]
		named := 0
		for _, m := range pkgRefRE.FindAllStringSubmatch(tests, -1) {
			pkg := m[1]
			if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
				t.Errorf("%s: package %s does not exist", threat, pkg)
				continue
			}
			for _, name := range testRefRE.FindAllString(m[2], -1) {
				named++
				if !regexp.MustCompile(`(?m)^func ` + name + `\(`).MatchString(source(pkg)) {
					t.Errorf("%s: %s.%s is not a test function", threat, pkg, name)
				}
			}
		}
		if named == 0 {
			t.Errorf("%s: no test named", threat)
		}
	}
	if rows < 15 {
		t.Errorf("SECURITY.md's threat table has %d rows", rows)
	}
}
