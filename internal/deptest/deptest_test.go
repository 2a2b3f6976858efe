package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/passgate/passgate"

// goList runs `go list` with a template over pattern and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// deps returns the non-standard packages pkg depends on (not its tests).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	return goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/"+pkg)
}

func TestEveryPackageIsDocumented(t *testing.T) {
	for _, line := range goList(t, "-f", "{{if not .Doc}}{{.ImportPath}}{{end}}", module+"/...") {
		t.Errorf("package %s has no package doc comment", line)
	}
}

func TestImportRules(t *testing.T) {
	tests := []struct {
		pkg string
		// allowed prefixes of non-standard dependencies (the package itself
		// is always allowed); nil means anything not in forbidden.
		allowed   []string
		forbidden []string
		// forbiddenDirect may not be imported by the package itself (gRPC
		// pulls html/template in through x/net/trace, which is fine).
		forbiddenDirect []string
	}{
		{pkg: "store", allowed: []string{}},
		{pkg: "internal/token", allowed: []string{}},
		{pkg: "internal/resource", allowed: []string{}},
		// oauth's redirect URI and issuer rules ask resource what a
		// loopback host is.
		{pkg: "internal/oauth", allowed: []string{module + "/internal/resource"}},
		{pkg: "internal/passwd", allowed: []string{"golang.org/x/crypto", "golang.org/x/sys"}},
		{pkg: "internal/audit", forbidden: []string{module + "/store/sqlite", module + "/store/postgres", module + "/oauthweb", module + "/extauthz"}},
		{pkg: "oauthweb", forbidden: []string{module + "/extauthz", module + "/store/sqlite", module + "/store/postgres", module + "/cmd"}},
		{pkg: "extauthz", forbidden: []string{module + "/oauthweb", module + "/store/sqlite", module + "/store/postgres", module + "/cmd"}, forbiddenDirect: []string{"html/template"}},
		{pkg: "store/sqlite", forbidden: []string{module + "/store/postgres", module + "/oauthweb", module + "/extauthz"}},
		{pkg: "store/postgres", forbidden: []string{module + "/store/sqlite", module + "/oauthweb", module + "/extauthz"}},
		// The binary links no test helpers.
		{pkg: "cmd/passgate", forbidden: []string{module + "/store/storetest", module + "/store/postgres/pgtest", module + "/internal/e2e", "testing"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			all := deps(t, tt.pkg)
			// Standard packages are not listed by deps; ask separately for
			// the forbidden standard ones.
			std := goList(t, "-deps", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", module+"/"+tt.pkg)
			for _, d := range append(all, std...) {
				for _, f := range tt.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s", tt.pkg, d)
					}
				}
			}
			for _, d := range goList(t, "-f", `{{join .Imports " "}}`, module+"/"+tt.pkg) {
				for _, f := range tt.forbiddenDirect {
					if d == f {
						t.Errorf("%s imports %s", tt.pkg, d)
					}
				}
			}
			if tt.allowed == nil {
				return
			}
			for _, d := range all {
				if !strings.HasPrefix(d, module+"/") && !hasPrefixAny(d, tt.allowed) {
					t.Errorf("%s depends on %s, outside what its layout allows", tt.pkg, d)
				}
				if strings.HasPrefix(d, module+"/") && d != module+"/"+tt.pkg && !hasPrefixAny(d, tt.allowed) {
					t.Errorf("%s depends on %s; it must depend on the standard library only", tt.pkg, d)
				}
			}
		})
	}
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}
