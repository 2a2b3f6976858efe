package e2etest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// The binaries Binary and BuildPackage built, in one directory per test
// process that RunMain (or RemoveBinary) removes.
var (
	buildMu    sync.Mutex
	buildDir   string
	buildCache = map[string]buildResult{}
)

type buildResult struct {
	path string
	err  error
}

// Binary returns the path of a passgate binary built from this checkout's
// cmd/passgate, once per test process (later calls reuse it). With
// PASSGATE_E2E_RACE=1 it is built with -race. The build takes a few
// seconds; a failure fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	return build(t, "./cmd/passgate", proc.BuildOptions{Race: os.Getenv("PASSGATE_E2E_RACE") == "1"})
}

// BuildPackage returns the path of the main package pkg (relative to the
// module root, such as "./examples/mcp-server"), built once per test
// process the way the Dockerfile builds (static, CGO-free, trimmed).
func BuildPackage(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, proc.BuildOptions{Static: true})
}

// BuildWith returns the path of the main package pkg built with o, once
// per test process and set of options.
func BuildWith(t testing.TB, pkg string, o proc.BuildOptions) string {
	t.Helper()
	return build(t, pkg, o)
}

func build(t testing.TB, pkg string, o proc.BuildOptions) string {
	t.Helper()
	key := fmt.Sprintf("%s %+v", pkg, o)
	buildMu.Lock()
	defer buildMu.Unlock()
	r, ok := buildCache[key]
	if !ok {
		r = buildOnce(pkg, o)
		buildCache[key] = r
	}
	if r.err != nil {
		t.Fatalf("e2e: %v", r.err)
	}
	return r.path
}

func buildOnce(pkg string, o proc.BuildOptions) buildResult {
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "passgate-e2e-")
		if err != nil {
			return buildResult{err: err}
		}
		buildDir = dir
	}
	name := strings.Trim(strings.NewReplacer("/", "_", ".", "_").Replace(pkg), "_")
	if o.Static {
		name += "-static"
	}
	if o.LDFlags != "" {
		name += fmt.Sprintf("-%d", len(buildCache))
	}
	out := filepath.Join(buildDir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := proc.Build(ctx, pkg, out, o); err != nil {
		return buildResult{err: err}
	}
	return buildResult{path: out}
}

// ModuleRoot returns the directory holding passgate's go.mod, found by
// walking up from the working directory (a test runs in its package
// directory).
func ModuleRoot() (string, error) { return proc.ModuleRoot() }

// RunMain runs the tests and removes the binaries Binary and BuildPackage
// built. Call it from TestMain; without it they stay in the system's temp
// directory.
func RunMain(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// RemoveBinary removes the binaries Binary and BuildPackage built, for a
// TestMain that does more than RunMain. Call it after m.Run.
func RemoveBinary() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}
