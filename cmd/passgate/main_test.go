package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/e2e"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// binary is the passgate executable built once for the tests that run it
// as a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "passgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "passgate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build passgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// passgate runs the binary with args, env and stdin and returns its output
// and exit code.
func passgate(t *testing.T, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run passgate %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func TestServeBootstrapsAndAnswersHealth(t *testing.T) {
	dataDir := t.TempDir()
	httpAddr, grpcAddr, metricsAddr := e2e.FreeAddr(t), e2e.FreeAddr(t), e2e.FreeAddr(t)
	cmd := exec.Command(binary, "serve", "--data-dir", dataDir, "--http-listen", httpAddr, "--grpc-listen", grpcAddr, "--metrics-listen", metricsAddr, "--log-format", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	// The bootstrap password is printed once, outside the JSON log lines.
	var (
		password string
		logs     []string
		pwRE     = regexp.MustCompile(`created user "admin" with password: (\S+)`)
		sc       = bufio.NewScanner(stderr)
		lines    = make(chan string, 100000)
	)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for password == "" || !listening(httpAddr) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("passgate exited early; output:\n%s", strings.Join(logs, "\n"))
			}
			logs = append(logs, l)
			if m := pwRE.FindStringSubmatch(l); m != nil {
				password = m[1]
			}
		case <-deadline:
			t.Fatalf("no bootstrap password or listener within 20s; output:\n%s", strings.Join(logs, "\n"))
		case <-time.After(50 * time.Millisecond):
		}
	}
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("passgate exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("passgate did not stop within 20s of SIGTERM")
	}
	for l := range lines {
		logs = append(logs, l)
	}
	for _, l := range logs {
		if strings.Contains(l, password) && !pwRE.MatchString(l) {
			t.Errorf("the bootstrap password leaked into a log line: %s", l)
		}
	}

	// A second start prints no password: the user exists.
	_, errOut, _ := runBriefly(t, dataDir)
	if pwRE.MatchString(errOut) {
		t.Error("a second start printed a new bootstrap password")
	}
}

// runBriefly starts serve, waits until it listens, and stops it.
func runBriefly(t *testing.T, dataDir string) (string, string, int) {
	t.Helper()
	httpAddr := e2e.FreeAddr(t)
	cmd := exec.Command(binary, "serve", "--data-dir", dataDir, "--http-listen", httpAddr, "--grpc-listen", "", "--metrics-listen", "")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200 && !listening(httpAddr); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := passgate(t, append(tt.env, "PASSGATE_DATA_DIR="+t.TempDir()), "", tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
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
	backends := map[string][]string{
		"sqlite":   {"PASSGATE_DATA_DIR=" + t.TempDir()},
		"postgres": {"DATABASE_URL=" + pgtest.NewDatabase(t)},
	}
	for name, env := range backends {
		t.Run(name, func(t *testing.T) {
			run := func(stdin string, args ...string) string {
				t.Helper()
				stdout, stderr, code := passgate(t, env, stdin, args...)
				if code != 0 {
					t.Fatalf("passgate %v: exit %d: %s", args, code, stderr)
				}
				return stdout
			}
			fail := func(want string, args ...string) {
				t.Helper()
				_, stderr, code := passgate(t, env, "an-acceptable-passphrase\n", args...)
				if code == 0 || !strings.Contains(stderr, want) {
					t.Errorf("passgate %v: exit %d, stderr %q; want failure mentioning %q", args, code, stderr, want)
				}
				if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && !strings.Contains(stderr, "Usage") {
					t.Errorf("passgate %v: error is not one line: %q", args, stderr)
				}
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
	httpAddr := e2e.FreeAddr(t)
	// The default resource is http://localhost:8080/mcp.
	cmd := exec.Command(binary, "serve", "--data-dir", t.TempDir(), "--http-listen", httpAddr, "--grpc-listen", "", "--metrics-listen", "")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 400 && !listening(httpAddr); i++ {
		time.Sleep(50 * time.Millisecond)
	}
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
