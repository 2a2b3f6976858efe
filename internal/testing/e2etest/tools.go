package e2etest

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// NeedTool returns the path of an installed tool ("nginx", "caddy",
// "chromium", "sqlite3", …) or ends the test: with CI=true a missing tool
// fails it (CI must run every test), otherwise it is skipped with a message
// naming the tool. Tests never install anything; scripts/test.sh does.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := proc.LookTool(name)
	if err != nil {
		missingTool(t, err)
	}
	return p
}

// missingTool fails the test with CI=true and skips it otherwise.
func missingTool(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("e2e: %v (CI=true, not skipping)", err)
	}
	t.Skipf("e2e: %v", err)
}

// Context returns a context that ends after d, or when the test's
// cleanups run (it is cancelled by a cleanup of its own, so cleanups
// registered after it may still use it): the bound for one step of a test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return addr
}

// StartProcess runs bin with args, and env added to the test's
// environment, sends its output to the test's output (shown for failing
// tests, or with -v), waits until it listens on addr, and stops it
// (SIGTERM, then SIGKILL after 5s and a test error) when the test ends.
func StartProcess(t testing.TB, addr, bin string, args, env []string) *proc.Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	w := proc.Locked(t.Output())
	cmd.Stdout, cmd.Stderr = w, w
	p, err := proc.Start(context.Background(), cmd, addr, 15*time.Second)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() { Stop(t, p) })
	return p
}

// Stop stops a process with SIGTERM (a fast shutdown for nginx and Caddy
// that does not wait for open event streams), and SIGKILL plus a test
// error if it is still there after 5s.
func Stop(t testing.TB, p *proc.Process) {
	t.Helper()
	if p.Stop(syscall.SIGTERM, 5*time.Second) {
		t.Errorf("e2e: process %d ignored SIGTERM for 5s; killed it", p.Cmd.Process.Pid)
	}
}

// StartNginx runs nginx (NeedTool) with the main configuration conf in the
// prefix directory dir (see proc.Nginx), waits until it listens on addr,
// and stops it when the test ends, printing its error log if the test
// failed. It returns the start error (such as "Address already in use" in
// ErrorLog) for the caller to retry on another port.
func StartNginx(t testing.TB, dir, conf, addr string) error {
	t.Helper()
	p, err := proc.Nginx(context.Background(), NeedTool(t, "nginx"), dir, conf, addr, t.Output())
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		Stop(t, p)
		if t.Failed() {
			b, _ := os.ReadFile(proc.ErrorLog(dir))
			t.Logf("nginx error log:\n%s", b)
		}
	})
	return nil
}
