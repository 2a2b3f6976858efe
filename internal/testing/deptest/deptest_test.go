package deptest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/internal/testing/validtest"
)

const module = "github.com/passgate/passgate"

// goList runs `go list` with args and returns the words it printed.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	return strings.Fields(string(goListRaw(t, args...)))
}

// goListRaw runs `go list` with args and returns its output.
func goListRaw(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return out
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
		allowed []string
		// allowedModule lists the module's packages it may depend on
		// when allowed is set (otherwise none).
		allowedModule []string
		forbidden     []string
		// forbiddenDirect may not be imported by the package itself (gRPC
		// pulls html/template in through x/net/trace, which is fine).
		forbiddenDirect []string
	}{
		{pkg: "store", allowed: []string{}},
		// The shared SQL transaction scripts know no driver: the backends
		// bring theirs.
		{pkg: "store/internal/sqlstore", allowed: []string{}, allowedModule: []string{"store"}},
		{pkg: "internal/token", allowed: []string{}},
		{pkg: "internal/resource", allowed: []string{}},
		// oauth's redirect URI and issuer rules ask resource what a
		// loopback host is.
		{pkg: "internal/oauth", allowed: []string{}, allowedModule: []string{"internal/resource"}},
		// The access policy: YAML in, decisions out; metrics for reloads.
		{pkg: "internal/policy", allowed: []string{"sigs.k8s.io/yaml", "go.yaml.in/yaml", "github.com/prometheus", "github.com/beorn7", "github.com/cespare", "github.com/munnerz", "google.golang.org/protobuf", "go.yaml.in", "golang.org/x/sys"}, allowedModule: []string{"internal/oauth", "internal/resource", "store"}},
		{pkg: "internal/passwd", allowed: []string{"golang.org/x/crypto", "golang.org/x/sys"}},
		{pkg: "internal/audit", forbidden: []string{module + "/store/sqlite", module + "/store/postgres", module + "/oauthweb", module + "/extauthz"}},
		{pkg: "oauthweb", forbidden: []string{module + "/extauthz", module + "/store/sqlite", module + "/store/postgres", module + "/cmd"}},
		// The token cache knows no credential, store or decision: only
		// keys, entries and an opaque tag.
		{pkg: "extauthz/internal/tokencache", allowed: []string{"golang.org/x/sys"}},
		{pkg: "extauthz", forbidden: []string{module + "/oauthweb", module + "/store/sqlite", module + "/store/postgres", module + "/cmd"}, forbiddenDirect: []string{"html/template"}},
		// The tracing decorator knows the interface and the tracing API,
		// never the SDK, an exporter or a backend.
		{pkg: "store/tracestore", allowed: []string{"go.opentelemetry.io/otel", "github.com/cespare/xxhash"}, allowedModule: []string{"store"},
			forbidden: []string{"go.opentelemetry.io/otel/sdk"}},
		// The built-in proxy decides with the Checker only: no second
		// decision path, no authorization server, no backend.
		{pkg: "extauthz/proxy", forbidden: []string{module + "/oauthweb", module + "/store/sqlite", module + "/store/postgres", module + "/cmd"}, forbiddenDirect: []string{"html/template", module + "/store"}},
		{pkg: "store/sqlite", forbidden: []string{module + "/store/postgres", module + "/oauthweb", module + "/extauthz"}},
		{pkg: "store/postgres", forbidden: []string{module + "/store/sqlite", module + "/oauthweb", module + "/extauthz"}},
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
				if strings.HasPrefix(d, module+"/") && d != module+"/"+tt.pkg && !slices.Contains(tt.allowedModule, strings.TrimPrefix(d, module+"/")) {
					t.Errorf("%s depends on %s; it must depend on the standard library only", tt.pkg, d)
				}
			}
		})
	}
}

// isTestOnly reports whether the module package path exists only for
// tests: its last element ends in "test" (storetest, pgtest, browsertest,
// faulttest, securitytest, deptest, e2etest). The rule makes a new
// test-only package known here by its name alone. (The harness's proc
// package has no "test" suffix on purpose: it links no test code and
// cmd/passgate-bench uses it.)
func isTestOnly(path string) bool {
	if !strings.HasPrefix(path, module+"/") {
		return false
	}
	last := path[strings.LastIndex(path, "/")+1:]
	return strings.HasSuffix(last, "test")
}

// TestNoProductPackageLinksTests: no package that is not itself test-only
// depends, directly or not, on package testing (or testing/...) or on a
// test-only package. It ranges over every package of the module, so a new
// package is guarded without being listed; the binary, the bench and the
// examples link no test code.
func TestNoProductPackageLinksTests(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(string(goListRaw(t, "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"/..."))), "\n")
	checked := 0
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || isTestOnly(f[0]) {
			continue
		}
		checked++
		for _, d := range f[1:] {
			if d == "testing" || strings.HasPrefix(d, "testing/") || isTestOnly(d) {
				t.Errorf("%s depends on %s, which exists for tests only", f[0], d)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; go list found %q", checked, lines)
	}
}

func TestIsTestOnly(t *testing.T) {
	validtest.Check(t, "isTestOnly", validtest.Bool(isTestOnly), validtest.Cases[string]{
		Accept: []string{
			module + "/store/storetest",
			module + "/store/postgres/pgtest",
			module + "/internal/testing/e2etest",
			module + "/internal/testing/browsertest",
			module + "/internal/newthingtest",
		},
		Refuse: []string{
			module + "/internal/testing/e2etest/proc",
			module + "/extauthz",
			module + "/store",
			"github.com/other/footest",
		},
	})
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

// TestCodeMapListsEveryPackage: README.md's code map names every package of
// the module (as `path` in its table), so a new package gets its line. A
// package under another one's internal/ directory (such as
// extauthz/internal/x) is covered by its parent's line.
func TestCodeMapListsEveryPackage(t *testing.T) {
	root, err := proc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Code map\n")
	if !ok {
		t.Fatal("README.md has no \"## Code map\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	listed := func(path string) bool { return strings.Contains(section, "`"+path+"`") }
	for _, pkg := range goList(t, module+"/...") {
		path := strings.TrimPrefix(pkg, module+"/")
		parent, _, private := strings.Cut(path, "/internal/")
		if !listed(path) && !(private && listed(parent)) {
			t.Errorf("README.md's code map does not list `%s`", path)
		}
	}
}
