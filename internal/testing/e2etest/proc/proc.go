// Package proc is the process half of the end-to-end harness, with no
// dependency on package testing so that cmd/passgate-bench can use it too:
// it finds installed tools, builds Go main packages, picks free loopback
// ports, starts a child and waits until it listens, stops it with a signal
// and then SIGKILL, runs nginx with a given configuration, collects a
// child's output in a concurrency-safe buffer, parses JSON logs, and polls
// for a condition.
//
// internal/testing/e2etest wraps these for tests (failing or skipping the test instead
// of returning errors); a test needing only a locked buffer imports this
// package, which depends on the standard library only.
package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Module is the module path whose go.mod ModuleRoot looks for.
const Module = "github.com/passgate/passgate"

// ModuleRoot returns the directory holding passgate's go.mod, found by
// walking up from the working directory (a test runs in its package
// directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+Module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of " + Module + " not found above the working directory")
		}
		dir = parent
	}
}

// BuildOptions says how Build compiles.
type BuildOptions struct {
	// Static builds the way the Dockerfile does: CGO_ENABLED=0, -trimpath,
	// -ldflags "-s -w". Optional.
	Static bool
	// Race adds -race (which needs cgo, so it excludes Static). Optional.
	Race bool
	// LDFlags are more -ldflags, such as the release build's
	// "-X main.version=…". Optional.
	LDFlags string
}

// Build compiles the main package pkg (relative to the module root, such
// as "./cmd/passgate") into the executable out.
func Build(ctx context.Context, pkg, out string, o BuildOptions) error {
	if o.Static && o.Race {
		return errors.New("build: -race needs cgo, a static build has none")
	}
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	ldflags := o.LDFlags
	if o.Static {
		args = append(args, "-trimpath")
		ldflags = strings.TrimSpace("-s -w " + ldflags)
	}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	if o.Race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, goTool(), append(args, pkg)...)
	cmd.Dir = root
	cmd.WaitDelay = 10 * time.Second
	if o.Static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// toolPaths are where Debian (and common setups) put the tools the
// end-to-end tests run, tried before $PATH: /usr/sbin is often not on a
// user's PATH.
var toolPaths = map[string][]string{
	"nginx":    {"/usr/sbin/nginx", "/usr/local/sbin/nginx"},
	"caddy":    {"/usr/bin/caddy", "/usr/local/bin/caddy"},
	"chromium": {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"},
}

// LookTool returns the path of an installed tool ("nginx", "caddy",
// "chromium", "sqlite3", …). It never installs anything: scripts/test.sh
// provisions the machine.
func LookTool(name string) (string, error) {
	for _, p := range toolPaths[name] {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (scripts/test.sh installs it)", name)
	}
	return p, nil
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago. Someone
// else may take it before the caller binds it; callers that start a
// process on it retry with another on "address already in use".
//
// The port is picked below the kernel's ephemeral range when it can be:
// a port the kernel hands out for ":0" is also one it hands out as the
// local port of an outgoing connection, and the harnesses open thousands
// (load, PostgreSQL) between picking a port and starting the process that
// binds it. That collision failed a benchmark smoke test with "address
// already in use".
func FreeAddr() (string, error) {
	if lo := ephemeralLow(); lo > minPickedPort+1000 {
		for range 32 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(minPickedPort+rand.IntN(lo-minPickedPort)))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// minPickedPort is the lowest port FreeAddr picks: above the well-known
// and most registered service ports.
const minPickedPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// or 0 when it is unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}

// WaitFor polls cond every interval until it holds, and reports whether
// it did within timeout (cond is asked once more at the deadline).
func WaitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// JSONLines parses a JSON log, one object a line as slog's JSON handler
// writes it (blank lines are skipped); a line that is not a JSON object
// is an error naming it.
func JSONLines(log string) ([]map[string]any, error) {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return nil, fmt.Errorf("log line %q: %w", l, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Buffer is a concurrency-safe buffer for a child's stdout and stderr,
// which exec copies from two goroutines. The zero value is ready to use.
type Buffer struct {
	// Max, when positive, keeps only about the last Max bytes (for error
	// messages of long-running children). Optional.
	Max int

	mu sync.Mutex
	b  []byte
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if b.Max > 0 && len(b.b) > 2*b.Max {
		b.b = append([]byte(nil), b.b[len(b.b)-b.Max:]...)
	}
	return len(p), nil
}

// String returns what was written so far (the tail, with Max).
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// Locked returns a writer that serializes writes to w, for handing one
// writer (such as a test's output) to both of a child's streams.
func Locked(w io.Writer) io.Writer { return &lockedWriter{w: w} }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Process is a started child.
type Process struct {
	Cmd *exec.Cmd

	done chan struct{}
	err  error // cmd.Wait's, valid once done is closed
}

// Start starts cmd and, if addr is not empty, waits until addr accepts TCP
// connections; it fails (and kills the child) if the child exits first, ctx
// ends or timeout passes. Unless cmd.SysProcAttr is set, the child gets
// SIGTERM when the parent dies without stopping it (a panic, a test
// -timeout), where the platform allows.
func Start(ctx context.Context, cmd *exec.Cmd, addr string, timeout time.Duration) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = orphanSignal()
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if addr == "" {
		return p, nil
	}
	if err := p.waitListening(ctx, addr, timeout); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("%s: %w", filepath.Base(cmd.Path), err)
	}
	return p, nil
}

func (p *Process) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before listening on %s: %v", addr, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v", addr, timeout)
		}
	}
}

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the child's exit error (nil for status 0), valid once Done is
// closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop sends sig and waits up to grace for the child to exit, then kills
// it. It reports whether the child had to be killed.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return true
	}
}

// Nginx runs the nginx at bin with the main configuration file conf and
// the prefix directory dir, which gets error.log, nginx.pid and (for conf
// to name) the temporary directories under dir/tmp. It checks the
// configuration first (nginx -t) for a readable error, then runs nginx in
// the foreground and waits until it listens on addr. conf must not set
// daemon or pid: they are given with -g. out gets nginx's own stdout and
// stderr; optional.
func Nginx(ctx context.Context, bin, dir, conf, addr string, out io.Writer) (*Process, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	errLog := ErrorLog(dir)
	if b, err := exec.CommandContext(ctx, bin, "-t", "-q", "-p", dir, "-c", conf, "-e", errLog).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %w\n%s", err, b)
	}
	var buf Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", errLog,
		"-g", fmt.Sprintf("daemon off; pid %s;", filepath.Join(dir, "nginx.pid")))
	w := io.Writer(&buf)
	if out != nil {
		w = io.MultiWriter(&buf, Locked(out))
	}
	cmd.Stdout, cmd.Stderr = w, w
	p, err := Start(ctx, cmd, addr, 10*time.Second)
	if err != nil {
		log, _ := os.ReadFile(errLog)
		return nil, fmt.Errorf("%w\n%s\n%s", err, strings.TrimSpace(buf.String()), log)
	}
	return p, nil
}

// ErrorLog is the path of the error log of an nginx started by Nginx with
// prefix directory dir.
func ErrorLog(dir string) string { return filepath.Join(dir, "error.log") }
