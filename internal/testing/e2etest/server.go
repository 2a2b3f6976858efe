package e2etest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// Options configures Start. Every field is optional.
type Options struct {
	// Name prefixes log lines in failure output ("a", "b" for replicas).
	Name string
	// DatabaseURL selects PostgreSQL; empty means SQLite in DataDir.
	DatabaseURL string
	// DataDir is the SQLite directory; default a t.TempDir().
	DataDir string
	// HTTPAddr, GRPCAddr and MetricsAddr are the listeners; default free
	// loopback ports (kept across Restart).
	HTTPAddr, GRPCAddr, MetricsAddr string
	// Resource is the protected resource URL; default
	// http://127.0.0.1:<a free port>/mcp (nothing needs to listen there:
	// the checks only compare host and path).
	Resource string
	// Args are extra `passgate serve` flags, such as "--store-timeout=200ms".
	// They come after the harness's flags, so they win.
	Args []string
	// Env is added to the process environment (which is otherwise the
	// test's, minus PASSGATE_* and DATABASE_URL variables).
	Env []string
	// ReadyTimeout bounds the wait for /readyz; default 20s.
	ReadyTimeout time.Duration
	// NoWaitReady makes Start return once the HTTP listener accepts
	// connections, without waiting for /readyz 200 (for a store that is
	// down on purpose).
	NoWaitReady bool
}

// Server is a passgate process started by Start. Its addresses, store and
// flags stay the same across Restart, so tokens, cookies (keyed by host)
// and clients keep working.
type Server struct {
	Opts Options
	// Issuer is http://HTTPAddr, also the base URL of every endpoint.
	Issuer string
	// Resource is the protected resource URL.
	Resource string
	// HTTPClient talks to the server; it does not follow redirects.
	HTTPClient *http.Client

	t    testing.TB
	mu   sync.Mutex
	logs *proc.Buffer
	p    *proc.Process // the current process; nil before the first start
}

// Start starts `passgate serve` and waits until /readyz answers 200 (unless
// NoWaitReady). The process is stopped (SIGTERM, then SIGKILL after 10s)
// when the test ends, and its log is printed if the test failed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.DatabaseURL == "" && o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = FreeAddr(t)
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = FreeAddr(t)
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = FreeAddr(t)
	}
	if o.Resource == "" {
		o.Resource = "http://" + FreeAddr(t) + "/mcp"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	s := &Server{
		Opts:     o,
		Issuer:   "http://" + o.HTTPAddr,
		Resource: o.Resource,
		HTTPClient: &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		},
		t:    t,
		logs: &proc.Buffer{},
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("passgate %s log:\n%s", o.Name, s.Logs())
		}
	})
	s.start(t)
	return s
}

// Args returns the `passgate serve` arguments the server runs with.
func (s *Server) Args() []string {
	o := s.Opts
	args := []string{"serve",
		"--http-listen", o.HTTPAddr, "--grpc-listen", o.GRPCAddr, "--metrics-listen", o.MetricsAddr,
		"--issuer", s.Issuer, "--resource", s.Resource,
		"--log-format", "json", "--log-level", "debug",
	}
	args = append(args, s.StoreArgs()...)
	return append(args, o.Args...)
}

// StoreArgs are the flags that select the server's store, for CLI commands.
func (s *Server) StoreArgs() []string {
	if s.Opts.DatabaseURL != "" {
		return []string{"--database", s.Opts.DatabaseURL}
	}
	return []string{"--data-dir", s.Opts.DataDir}
}

func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PASSGATE_") || strings.HasPrefix(kv, "DATABASE_URL=") ||
			strings.HasPrefix(kv, "OAUTH_") || strings.HasPrefix(kv, "API_KEY=") || strings.HasPrefix(kv, "SERVER_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, s.Opts.Env...)
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.p != nil {
		select {
		case <-s.p.Done():
		default:
			s.mu.Unlock()
			t.Fatalf("e2e: passgate %s is already running", s.Opts.Name)
		}
	}
	fmt.Fprintf(s.logs, "---- start passgate %s\n", strings.Join(s.Args(), " "))
	cmd := exec.Command(Binary(t), s.Args()...)
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	// Its own process group, so a SIGKILL to the test does not leave it
	// behind silently, and signals from the terminal do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := proc.Start(context.Background(), cmd, "", 0)
	if err != nil {
		s.mu.Unlock()
		t.Fatalf("e2e: start passgate: %v", err)
	}
	s.p = p
	s.mu.Unlock()
	done := p.Done()
	deadline := time.Now().Add(s.Opts.ReadyTimeout)
	for {
		if s.Opts.NoWaitReady {
			if c, err := net.DialTimeout("tcp", s.Opts.HTTPAddr, time.Second); err == nil {
				c.Close()
				return
			}
		} else if code, err := s.Readyz(context.Background()); err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-done:
			t.Fatalf("e2e: passgate %s exited before it was ready (%v); log:\n%s", s.Opts.Name, s.ExitErr(), s.Logs())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("e2e: passgate %s not ready after %v; log:\n%s", s.Opts.Name, s.Opts.ReadyTimeout, s.Logs())
		}
	}
}

// Restart starts the server again with the same options after Stop or
// Kill, and waits for readiness.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.HTTPClient.CloseIdleConnections()
	s.start(t)
}

// current returns the current process, or nil before the first start.
func (s *Server) current() *proc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Pid returns the process ID of the running process.
func (s *Server) Pid() int { return s.current().Cmd.Process.Pid }

// Exited returns a channel closed when the current process has exited.
func (s *Server) Exited() <-chan struct{} { return s.current().Done() }

// ExitErr is the current process's exit error (nil for exit status 0),
// valid once Exited is closed.
func (s *Server) ExitErr() error { return s.current().Err() }

// Signal sends sig to the running process, without waiting.
func (s *Server) Signal(sig syscall.Signal) error {
	p := s.current()
	if p == nil {
		return errors.New("not started")
	}
	return p.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits for the process to exit (up to 20s, then
// SIGKILL and a test error). It does nothing if the process has exited.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if p := s.current(); p != nil && p.Stop(syscall.SIGTERM, 20*time.Second) {
		t.Errorf("e2e: passgate %s ignored SIGTERM for 20s; killed it", s.Opts.Name)
	}
	s.HTTPClient.CloseIdleConnections()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	p := s.current()
	if p == nil {
		return
	}
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("e2e: passgate %s survived SIGKILL for 10s", s.Opts.Name)
	}
	s.HTTPClient.CloseIdleConnections()
}

// Logs returns everything the server's processes wrote so far (JSON lines,
// one "---- start" marker per start).
func (s *Server) Logs() string { return s.logs.String() }

// WaitLog waits up to timeout for a log line containing substr and
// reports whether one appeared.
func (s *Server) WaitLog(substr string, timeout time.Duration) bool {
	return proc.WaitFor(timeout, 20*time.Millisecond, func() bool { return strings.Contains(s.Logs(), substr) })
}

// AssertNoSecrets fails the test if the logs contain anything that looks
// like a passgate secret (access, refresh, code, session, client secret)
// or any of the extra strings (such as passwords).
func (s *Server) AssertNoSecrets(t testing.TB, extra ...string) {
	t.Helper()
	logs := s.Logs()
	for _, p := range []string{"pga_", "pgr_", "pgc_", "pgs_", "pgcs_"} {
		if strings.Contains(logs, p) {
			t.Errorf("passgate %s logged something with the secret prefix %q", s.Opts.Name, p)
		}
	}
	for _, x := range extra {
		if x != "" && strings.Contains(logs, x) {
			t.Errorf("passgate %s logged a secret", s.Opts.Name)
		}
	}
}

// URL returns the issuer joined with path ("/oauth/token").
func (s *Server) URL(path string) string { return s.Issuer + path }

// Readyz returns the status of GET /readyz (a 2s bound).
func (s *Server) Readyz(ctx context.Context) (int, error) {
	return s.getStatus(ctx, "/readyz")
}

// Healthz returns the status of GET /healthz (a 2s bound).
func (s *Server) Healthz(ctx context.Context) (int, error) {
	return s.getStatus(ctx, "/healthz")
}

func (s *Server) getStatus(ctx context.Context, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(path), nil)
	if err != nil {
		return 0, err
	}
	return s.status(req)
}

// status sends req and returns the response's status, discarding the body.
func (s *Server) status(req *http.Request) (int, error) {
	resp, err := s.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Metrics returns the Prometheus text exposition from the metrics listener.
func (s *Server) Metrics(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Opts.MetricsAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := s.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// WaitReadyz polls /readyz every 50ms until it answers want or timeout
// passes, and returns how long that took, or an error.
func (s *Server) WaitReadyz(want int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		code, err := s.Readyz(context.Background())
		if err == nil && code == want {
			return time.Since(start), nil
		}
		last = fmt.Sprint(code, err)
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("readyz did not answer %d within %v (last: %s)", want, timeout, last)
}

// CLI runs `passgate args… <store flags>` against the server's store and
// returns its stdout; stdin feeds --password-stdin. A non-zero exit fails
// the test.
func (s *Server) CLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append(args, s.StoreArgs()...)...)
	cmd.Env = s.env()
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("e2e: passgate %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}
