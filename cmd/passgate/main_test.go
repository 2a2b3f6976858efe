package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

// testCost is bcrypt's minimum cost: under -race, cost 12 takes seconds.
const testCost = 4

// passgate runs the CLI in process, as main does, with args, the
// environment env (KEY=value) and stdin, and returns its output and exit
// code.
func passgate(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var o, e bytes.Buffer
	code = run(t.Context(), args, stdio{in: strings.NewReader(stdin), out: &o, err: &e, getenv: func(k string) string { return vars[k] },
		environ: func() []string { return env }, hashCost: testCost})
	return o.String(), e.String(), code
}

// passgateOK runs passgate in process and fails the test unless it exits
// 0; it returns stdout.
func passgateOK(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, code := passgate(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("passgate %v: exit %d: %s", args, code, stderr)
	}
	return stdout
}

// passgateFails runs passgate in process and fails the test unless it
// exits non-zero with an error that mentions want, in one line (or with
// the usage text).
func passgateFails(t *testing.T, env []string, stdin, want string, args ...string) {
	t.Helper()
	_, stderr, code := passgate(t, env, stdin, args...)
	if code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("passgate %v: exit %d, stderr %q; want failure mentioning %q", args, code, stderr, want)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && !strings.Contains(stderr, "Usage") {
		t.Errorf("passgate %v: error is not one line: %q", args, stderr)
	}
}

// TestBinaryExitCodes: main hands run's exit code and error to the real
// process.
func TestBinaryExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"version", []string{"version"}, 0, ""},
		{"help", []string{"--help"}, 0, ""},
		{"failure", []string{"healthcheck", "http://" + e2etest.FreeAddr(t) + "/healthz"}, 1, "passgate: healthcheck:"},
		{"usage error", []string{"frobnicate"}, 2, `passgate: unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(e2etest.Binary(t), tt.args...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			var e bytes.Buffer
			cmd.Stderr = &e
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tt.code || !strings.Contains(e.String(), tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, e.String(), tt.code, tt.stderr)
			}
		})
	}
}

func TestServeBootstrapsAndAnswersHealth(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{})
	dataDir, httpAddr, metricsAddr := srv.Opts.DataDir, srv.Opts.HTTPAddr, srv.Opts.MetricsAddr

	// The bootstrap password is printed once, outside the JSON log lines.
	pwRE := regexp.MustCompile(`created user "admin" with password: (\S+)`)
	m := pwRE.FindStringSubmatch(srv.Logs())
	if m == nil {
		t.Fatalf("no bootstrap password printed; output:\n%s", srv.Logs())
	}
	password := m[1]
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, family := range []string{"passgate_build_info", "passgate_auth_events_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), family) {
			t.Errorf("metrics lack %s", family)
		}
	}
	// Metrics live only on their own listener.
	if resp, err := http.Get("http://" + httpAddr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("/metrics answered on the public listener")
		}
	}

	// Only the hash is stored: the password works for a login check but
	// appears nowhere in the database file.
	db, err := os.ReadFile(filepath.Join(dataDir, "passgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(password)) {
		t.Error("the bootstrap password is stored in clear")
	}

	srv.Stop(t) // SIGTERM; an error if it had to be killed
	if err := srv.ExitErr(); err != nil {
		t.Errorf("passgate exited with %v after SIGTERM, want 0", err)
	}
	for _, l := range strings.Split(srv.Logs(), "\n") {
		if strings.Contains(l, password) && !pwRE.MatchString(l) {
			t.Errorf("the bootstrap password leaked into a log line: %s", l)
		}
	}

	// A second start prints no password: the user exists.
	errOut, _ := serveInProcess(t, e2etest.FreeAddr(t), "--data-dir", dataDir, "--grpc-listen", "", "--metrics-listen", "")()
	if pwRE.MatchString(errOut) {
		t.Error("a second start printed a new bootstrap password")
	}
}

// serveInProcess runs `passgate serve --http-listen httpAddr` with args in
// process until stop is called (or the test ends), and waits until it
// listens. stop cancels the run, as SIGTERM does, and returns its stderr
// and exit code.
func serveInProcess(t *testing.T, httpAddr string, args ...string) (stop func() (stderr string, code int)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// Read only once run has returned: its log lines are written
	// concurrently (serialized by the one slog handler).
	var errOut bytes.Buffer
	done := make(chan int, 1)
	args = append([]string{"serve", "--http-listen", httpAddr, "--shutdown-delay", "0"}, args...)
	go func() {
		done <- run(ctx, args, stdio{in: strings.NewReader(""), out: io.Discard, err: &errOut, getenv: func(string) string { return "" }, hashCost: testCost})
	}()
	var (
		once sync.Once
		code int
	)
	stop = func() (string, int) {
		once.Do(func() {
			cancel()
			code = <-done
		})
		return errOut.String(), code
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(20 * time.Second); !listening(httpAddr); time.Sleep(20 * time.Millisecond) {
		if len(done) > 0 || time.Now().After(deadline) {
			stderr, code := stop()
			t.Fatalf("serve did not listen within 20s (exit %d):\n%s", code, stderr)
		}
	}
	return stop
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestServeRejectsBadConfiguration: a bad flag, environment value or
// combination stops serve with exit 2, naming the flag, before anything
// listens. Among them the second factor's: an unknown policy, an empty
// group, and a required second factor on PostgreSQL without a shared key.
func TestServeRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"unknown flag", []string{"serve", "--no-such-flag"}, nil, []string{"no-such-flag"}},
		{"http issuer", []string{"serve", "--issuer", "http://auth.example.com"}, nil, []string{"--issuer"}},
		{"bad env value", []string{"serve"}, []string{"PASSGATE_SESSION_TTL=tomorrow", "PASSGATE_REGISTRATION=maybe"}, []string{"PASSGATE_SESSION_TTL", "--registration"}},
		{"unknown command", []string{"frobnicate"}, nil, []string{"unknown command"}},
		{"unknown second-factor policy", []string{"serve", "--require-second-factor", "sometimes"}, nil, []string{"--require-second-factor", "off, optional, all or group:NAME"}},
		{"empty second-factor group", []string{"serve"}, []string{"PASSGATE_REQUIRE_SECOND_FACTOR=group:"}, []string{"--require-second-factor"}},
		{"second-factor group with PostgreSQL and no key", []string{"serve", "--require-second-factor", "group:admins", "--database", "postgres://127.0.0.1:1/x"}, nil, []string{"group:admins", "--secret-key-file"}},
		{"second factor for all on PostgreSQL without a key file", []string{"serve", "--require-second-factor", "all", "--database", "postgres://db.invalid/x"}, nil, []string{"--secret-key-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantUsageError(t, tt.env, tt.args, tt.want...)
		})
	}
}

// wantUsageError runs passgate with args and env and wants exit code 2 and
// a stderr that mentions each of want; it returns stderr.
func wantUsageError(t *testing.T, env, args []string, want ...string) string {
	t.Helper()
	_, stderr, code := passgate(t, append(env, "PASSGATE_DATA_DIR="+t.TempDir()), "", args...)
	if code != 2 {
		t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr)
		}
	}
	return stderr
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"user", "add", "--help"}, {"client", "add", "--help"}, {"audit", "--help"}, {"hash-password", "--help"}, {"token", "revoke", "--help"}, {"session", "list", "--help"}} {
		stdout, stderr, code := passgate(t, nil, "", args...)
		if code != 0 {
			t.Errorf("passgate %v: exit %d, want 0", args, code)
		}
		if !strings.Contains(stdout+stderr, "Usage") {
			t.Errorf("passgate %v printed no usage", args)
		}
	}
}

func TestHashPassword(t *testing.T) {
	stdout, stderr, code := passgate(t, nil, "correct horse\n", "hash-password", "--cost", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	hash := strings.TrimSpace(stdout)
	if err := passwd.Verify(hash, "correct horse"); err != nil {
		t.Errorf("printed hash %q does not verify: %v", hash, err)
	}
	if _, _, code := passgate(t, nil, "", "hash-password"); code == 0 {
		t.Error("hash-password accepted an empty password")
	}
}

// TestAdminCommands drives the user, client, token, session and audit
// commands on both backends.
func TestAdminCommands(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			env := b.env
			run := func(stdin string, args ...string) string {
				t.Helper()
				return passgateOK(t, env, stdin, args...)
			}
			fail := func(want string, args ...string) {
				t.Helper()
				passgateFails(t, env, "an-acceptable-passphrase\n", want, args...)
			}
			run("s3cret-pass\n", "user", "add", "alice", "--password-stdin")
			fail("already exists", "user", "add", "alice", "--password-stdin")
			fail("not a valid username", "user", "add", "bad name", "--password-stdin")
			if out := run("", "user", "list"); !strings.Contains(out, "alice") {
				t.Errorf("user list lacks alice:\n%s", out)
			}
			run("n3w-pass\n", "user", "passwd", "alice", "--password-stdin")
			fail("no user", "user", "passwd", "nobody", "--password-stdin")
			run("", "user", "unlock", "alice")

			out := run("", "client", "add", "--name", "Script", "--redirect-uri", "https://app.example.com/cb")
			if !strings.Contains(out, "client_secret: pgcs_") {
				t.Errorf("client add printed no secret:\n%s", out)
			}
			id := regexp.MustCompile(`client_id:\s+(\S+)`).FindStringSubmatch(out)
			if id == nil {
				t.Fatalf("client add printed no client_id:\n%s", out)
			}
			fail("allowed only for loopback hosts", "client", "add", "--name", "X", "--redirect-uri", "http://evil.example/cb")
			if out := run("", "client", "list"); !strings.Contains(out, id[1]) || strings.Contains(out, "pgcs_") {
				t.Errorf("client list wrong (or shows a secret):\n%s", out)
			}
			run("", "client", "remove", id[1])
			fail("no client", "client", "remove", id[1])

			if out := run("", "token", "revoke", "--user", "alice"); !strings.Contains(out, "revoked 0 tokens") {
				t.Errorf("token revoke: %s", out)
			}
			run("", "session", "list")
			run("", "session", "revoke", "--user", "alice")

			var ev map[string]any
			out = run("", "audit", "--json", "--event", "client_deleted")
			if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ev); err != nil || ev["event"] != "client_deleted" || ev["client_id"] != id[1] {
				t.Errorf("audit --json = %q (%v), want the client_deleted row", out, err)
			}
			if out := run("", "audit", "--failed", "--json"); strings.TrimSpace(out) != "" {
				t.Errorf("audit --failed shows rows though nothing failed:\n%s", out)
			}
			run("", "user", "remove", "alice")
			fail("no user", "user", "remove", "alice")
		})
	}
}

// TestServeMountsCheckPaths: the HTTP listener serves exactly the four
// check paths, each reading its own family's headers; the old
// /_passgate/check is gone, and Envoy's form is judged, never redirected
// to a cleaned path.
func TestServeMountsCheckPaths(t *testing.T) {
	httpAddr := e2etest.FreeAddr(t)
	// The default resource is http://localhost:8080/mcp.
	serveInProcess(t, httpAddr, "--data-dir", t.TempDir(), "--grpc-listen", "", "--metrics-listen", "")
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	const host = "localhost:8080"
	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"old path", "GET", "/_passgate/check", nil, 404},
		{"old path, Envoy form", "POST", "/_passgate/check/mcp", nil, 404},
		{"no family", "GET", "/_passgate/check/", nil, 404},
		{"nginx", "GET", extauthz.CheckPathNginx, map[string]string{"X-Original-URI": "/mcp", "X-Original-Method": "POST", "X-Forwarded-Host": host}, 401},
		{"nginx without its headers", "GET", extauthz.CheckPathNginx, map[string]string{"X-Forwarded-Uri": "/mcp", "X-Forwarded-Method": "POST", "X-Forwarded-Host": host}, 400},
		{"forward auth", "GET", extauthz.CheckPathForwardAuth, map[string]string{"X-Forwarded-Uri": "/mcp", "X-Forwarded-Method": "POST", "X-Forwarded-Host": host}, 401},
		{"ingress-nginx", "GET", extauthz.CheckPathIngressNginx + "?host=" + host, map[string]string{"X-Original-URL": "http://" + host + "/mcp", "X-Original-Method": "POST"}, 401},
		{"Envoy", "POST", extauthz.CheckPathEnvoy + "/mcp", nil, 401},
		{"Envoy, dot segments judged not redirected", "POST", extauthz.CheckPathEnvoy + "/x/../mcp", nil, 401},
		{"Envoy, encoded slash refused", "POST", extauthz.CheckPathEnvoy + "/x/..%2Fmcp", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+httpAddr+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
