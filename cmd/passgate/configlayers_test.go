package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// writeFile writes content to name in a new temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// problemLines are the problems of a failed run's stderr: the one line
// after "passgate: ", or the indented lines under "invalid configuration:".
func problemLines(stderr string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if !strings.HasPrefix(l, "warning: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 1 {
		return []string{strings.TrimPrefix(lines[0], "passgate: ")}
	}
	var out []string
	for _, l := range lines[1:] {
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

// TestMisconfigurationGetsOneClearLine: each kind of mistake an operator
// makes is reported as exactly one line that names where the mistake is
// (the flag, variable, or file and line) and what to do, with the exit
// code of a usage error (2), or of a failed check (1) for `config check`.
func TestMisconfigurationGetsOneClearLine(t *testing.T) {
	secret := writeFile(t, "secret", "0123456789abcdef0123456789abcdef\n")
	empty := writeFile(t, "empty", "\n")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string // the one problem line
	}{
		{"duration flag in days", nil, []string{"serve", "--access-token-ttl", "1d"}, 2,
			`--access-token-ttl: "1d" is not a duration: use 24h (units h, m, s, ms; no days or weeks) (see passgate serve --help)`},
		{"duration flag in weeks", nil, []string{"serve", "--session-ttl=2w"}, 2,
			`--session-ttl: "2w" is not a duration: use 336h (units h, m, s, ms; no days or weeks) (see passgate serve --help)`},
		{"duration flag without unit", nil, []string{"serve", "--refresh-grace", "5"}, 2,
			`--refresh-grace: "5" is not a duration: add a unit, such as 5s or 5m (units h, m, s, ms; no days or weeks) (see passgate serve --help)`},
		{"boolean flag", nil, []string{"serve", "--cimd=maybe"}, 2,
			`--cimd: "maybe" is not a boolean: use true or false (see passgate serve --help)`},
		{"unknown flag", nil, []string{"serve", "--acess-token-ttl", "1h"}, 2,
			`serve: unknown flag --acess-token-ttl (see passgate serve --help)`},
		{"a boolean flag's value as a separate word", nil, []string{"serve", "--tracing", "off"}, 2,
			`serve: unexpected argument "off" (flags take their value as --flag=value; see passgate serve --help)`},
		{"stray argument to version", nil, []string{"version", "x"}, 2,
			`version: unexpected argument "x" (flags take their value as --flag=value; see passgate version --help)`},
		{"flag without value", nil, []string{"serve", "--issuer"}, 2,
			`--issuer needs a value (see passgate serve --help)`},
		{"limit flag keeps its own explanation", nil, []string{"serve", "--login-limit", "lots"}, 2,
			`--login-limit: "lots": `},
		{"duration from the environment, and no second error", []string{"PASSGATE_ACCESS_TOKEN_TTL=1d"}, []string{"serve"}, 2,
			`$PASSGATE_ACCESS_TOKEN_TTL: "1d" is not a duration: use 24h (units h, m, s, ms; no days or weeks)`},
		{"integer from the environment, and no second error", []string{"PASSGATE_CHECK_CACHE_SIZE=lots"}, []string{"serve"}, 2,
			`$PASSGATE_CHECK_CACHE_SIZE: "lots" is not a whole number`},
		{"misspelt variable", []string{"PASSGATE_ACESS_TOKEN_TTL=1h"}, []string{"serve"}, 2,
			`$PASSGATE_ACESS_TOKEN_TTL: unknown variable (did you mean $PASSGATE_ACCESS_TOKEN_TTL?)`},
		{"unknown variable far from any", []string{"PASSGATE_FROBNICATE=1"}, []string{"serve"}, 2,
			`$PASSGATE_FROBNICATE: unknown variable`},
		{"unknown variable in a store command", []string{"PASSGATE_DATADIR=x"}, []string{"user", "list"}, 2,
			`$PASSGATE_DATADIR: unknown variable (did you mean $PASSGATE_DATA_DIR?)`},
		{"secret and its file", []string{"DATABASE_URL=postgres://u:pw@db/x", "DATABASE_URL_FILE=" + secret}, []string{"serve"}, 2,
			`$DATABASE_URL and $DATABASE_URL_FILE are both set: set only one`},
		{"missing secret file", []string{"OAUTH_CLIENT_ID=c", "OAUTH_CLIENT_SECRET_FILE=" + missing}, []string{"serve"}, 2,
			`$OAUTH_CLIENT_SECRET_FILE: read secret: open ` + missing + `: no such file or directory`},
		{"empty secret file", []string{"OAUTH_PASSWORD_HASH_FILE=" + empty}, []string{"serve"}, 2,
			`$OAUTH_PASSWORD_HASH_FILE: ` + empty + ` is empty`},
		{"bad secret from a file is judged like the variable", []string{"OAUTH_PASSWORD_HASH_FILE=" + secret}, []string{"serve"}, 2,
			`$OAUTH_PASSWORD_HASH: `},
		{"missing config file", nil, []string{"serve", "--config", missing}, 2,
			`--config: open ` + missing + `: no such file or directory`},
		{"unknown config key", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "issuer: http://localhost:8080\nacess-token-ttl: 1h\n")}, 2,
			`pg.yaml:2: unknown key "acess-token-ttl" (did you mean access-token-ttl?)`},
		{"duration in the config file", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "\n\naccess-token-ttl: 1d\n")}, 2,
			`pg.yaml:3: access-token-ttl: "1d" is not a duration: use 24h (units h, m, s, ms; no days or weeks)`},
		{"config key set twice", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "issuer: http://localhost:8080\nissuer: http://localhost:8081\n")}, 2,
			`pg.yaml:2: issuer: set twice`},
		{"config file naming another", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "config: other.yaml\n")}, 2,
			`pg.yaml:1: config: a configuration file cannot name another`},
		{"config file not a mapping", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "- issuer\n")}, 2,
			`pg.yaml:1: want a mapping of setting: value, one per line`},
		{"config file nested value", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "issuer:\n  url: x\n")}, 2,
			`pg.yaml:2: issuer: want a value or a list of values`},
		{"config file syntax", nil, []string{"serve", "--config", writeFile(t, "pg.yaml", "issuer: [\n")}, 2,
			`pg.yaml: yaml: `},
		{"missing data directory", nil, []string{"user", "list", "--data-dir", missing}, 2,
			`--data-dir ` + missing + ` does not exist: check the path, or pass --create to start a new database there (serve creates it)`},
		{"config check of an invalid configuration", nil, []string{"config", "check", "--issuer", "http://auth.example.com"}, 1,
			`--issuer: "http://auth.example.com": `},
		{"unknown config subcommand", nil, []string{"config", "lint"}, 2,
			`config: unknown subcommand "lint" (want check)`},
		{"bad flag of config check", nil, []string{"config", "check", "--startup-wait", "1d"}, 1,
			`--startup-wait: "1d" is not a duration: use 24h`},
		{"misspelt command", nil, []string{"users"}, 2,
			`unknown command "users" (did you mean user? see passgate --help)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"PASSGATE_DATA_DIR=" + t.TempDir()}, tt.env...)
			stdout, stderr, code := passgate(t, env, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if stdout != "" {
				t.Errorf("printed on stdout: %q", stdout)
			}
			got := problemLines(stderr)
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("problems %q, want exactly one starting with %q", got, tt.want)
			}
			if strings.Contains(stderr, "Usage") || strings.Contains(stderr, "0123456789abcdef") || strings.Contains(stderr, ":pw@") {
				t.Errorf("stderr has the usage or a secret:\n%s", stderr)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("%s was created", missing)
	}
}

// TestConfigPrecedence: flag > environment > configuration file >
// default, for each setting, with the file from --config or
// $PASSGATE_CONFIG; lists may be YAML sequences and `off` stays "off".
func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "passgate.yaml", `# every layer sets some of these
issuer: https://file.example.com
http-listen: "127.0.0.1:1001"
grpc-listen: "127.0.0.1:1002"
metrics-listen: ""
resource:
  - https://mcp.example.com/a
  - https://mcp.example.com/b
scopes: [mcp, admin]
login-limit: off
access-token-ttl: 2h
require-scopes:
  - /admin=admin
  - https://mcp.example.com/b=mcp admin
cimd: false
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // issuer, http, grpc, metrics, resources, scopes, login limit, access ttl, rules, cimd
	}{
		{"file over default", []string{"--config", file}, nil,
			[]string{"https://file.example.com", "127.0.0.1:1001", "127.0.0.1:1002", "", "https://mcp.example.com/a https://mcp.example.com/b", "mcp admin", "off", "2h0m0s", "/admin=admin https://mcp.example.com/b=mcp,admin", "false"}},
		{"file from the environment", nil, map[string]string{"PASSGATE_CONFIG": file},
			[]string{"https://file.example.com", "127.0.0.1:1001", "127.0.0.1:1002", "", "https://mcp.example.com/a https://mcp.example.com/b", "mcp admin", "off", "2h0m0s", "/admin=admin https://mcp.example.com/b=mcp,admin", "false"}},
		{"environment over file, flag over both", []string{"--config", file, "--http-listen", "127.0.0.1:3001", "--cimd"},
			map[string]string{"PASSGATE_ISSUER": "https://env.example.com", "PASSGATE_HTTP_LISTEN": "127.0.0.1:2001", "PASSGATE_LOGIN_LIMIT": "3/1m"},
			[]string{"https://env.example.com", "127.0.0.1:3001", "127.0.0.1:1002", "", "https://mcp.example.com/a https://mcp.example.com/b", "mcp admin", "3/1m0s", "2h0m0s", "/admin=admin https://mcp.example.com/b=mcp,admin", "true"}},
		{"defaults without a file", nil, nil,
			[]string{"http://localhost:8080", ":8080", ":9191", "127.0.0.1:9464", "http://localhost:8080/mcp", "mcp", "5/15m0s", "1h0m0s", "", "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, r := range c.RequireScopes {
				rules = append(rules, r.Match+"="+strings.Join(r.Scopes, ","))
			}
			got := []string{c.Issuer, c.HTTPListen, c.GRPCListen, c.MetricsListen, strings.Join(c.Resources, " "), strings.Join(c.Scopes, " "),
				c.LoginLimit.String(), c.AccessTokenTTL.String(), strings.Join(rules, " "), map[bool]string{true: "true", false: "false"}[c.CIMD]}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("config (-got +want):\n%s", diff)
			}
		})
	}
}

// TestSecretsFromFiles: each secret-bearing variable can come from the
// file its _FILE variant names, trimmed, with the same meaning.
func TestSecretsFromFiles(t *testing.T) {
	const (
		dbURL  = "postgres://passgate:s3cret@db.example/passgate"
		secret = "0123456789abcdef0123456789abcdef"
		apiKey = "a-long-enough-api-key"
		hash   = "$2a$04$T6UFbHRSPBJBQrGafwTVxOj5nb.cq4tgBUWhX9ecQqZR3hj3EE5um"
	)
	env := map[string]string{
		"DATABASE_URL_FILE":        writeFile(t, "db", dbURL+"\n"),
		"OAUTH_CLIENT_ID":          "seed-client",
		"OAUTH_CLIENT_SECRET_FILE": writeFile(t, "secret", "  "+secret+"\n"),
		"OAUTH_PASSWORD_HASH_FILE": writeFile(t, "hash", hash+"\n"),
		"API_KEY_FILE":             writeFile(t, "key", apiKey),
	}
	c, err := parseConfig(t, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.DatabaseURL, c.SeedClientSecret, c.SeedPasswordHash, c.SeedAPIKey}
	if diff := cmp.Diff(got, []string{dbURL, secret, hash, apiKey}); diff != "" {
		t.Errorf("secrets (-got +want):\n%s", diff)
	}
}

// TestHelpAtEveryLevel: --help (and -h, help) at every command and
// subcommand level prints the usage on stdout and exits 0, without
// touching a store.
func TestHelpAtEveryLevel(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"serve", "--help"}, {"serve", "-h"},
		{"user", "--help"}, {"user", "help"}, {"user", "add", "--help"}, {"user", "list", "-h"},
		{"client", "--help"}, {"client", "add", "--help"}, {"token", "--help"}, {"token", "revoke", "--help"},
		{"apikey", "--help"}, {"apikey", "add", "--help"}, {"session", "--help"}, {"session", "list", "--help"},
		{"audit", "--help"}, {"hash-password", "--help"}, {"migrate", "--help"}, {"healthcheck", "--help"},
		{"config", "--help"}, {"config", "check", "--help"}, {"version", "--help"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		stdout, stderr, code := passgate(t, []string{"PASSGATE_DATA_DIR=" + dir}, "", args...)
		if code != 0 || !strings.Contains(stdout, "Usage") || stderr != "" {
			t.Errorf("passgate %v: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", args, code, stdout, stderr)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("passgate %v created the data directory", args)
		}
	}
}

// TestStoreCommandsRefuseMissingDataDir: a mistyped --data-dir is an
// error, not a new empty database; --create makes it.
func TestStoreCommandsRefuseMissingDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	if _, stderr, code := passgate(t, nil, "", "user", "list", "--data-dir", dir); code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("user list: exit %d, stderr %q; want 2 and does not exist", code, stderr)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the missing data directory was created")
	}
	if _, stderr, code := passgate(t, []string{"PASSGATE_DATA_DIR=" + dir}, "", "migrate", "--create"); code != 0 {
		t.Fatalf("migrate --create: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "passgate.db")); err != nil {
		t.Errorf("migrate --create made no database: %v", err)
	}
	// The configuration file names the directory for store commands too.
	cfg := writeFile(t, "passgate.yaml", "data-dir: "+dir+"\n")
	if stdout, stderr, code := passgate(t, nil, "", "user", "list", "--config", cfg); code != 0 || !strings.Contains(stdout, "USERNAME") {
		t.Errorf("user list --config: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestConfigCheck: `config check` validates, opens each backend read-only
// and says what serve would do with it, creating nothing.
func TestConfigCheck(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		env := []string{"PASSGATE_DATA_DIR=" + dir}
		stdout, stderr, code := passgate(t, env, "", "config", "check", "--http-listen", "127.0.0.1:8080")
		if code != 0 || !strings.Contains(stdout, "does not exist yet: serve will create it") || stderr != "" {
			t.Errorf("fresh: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Fatal("config check created the data directory")
		}
		if _, stderr, code := passgate(t, env, "", "migrate", "--create"); code != 0 {
			t.Fatal(stderr)
		}
		stdout, _, code = passgate(t, env, "", "config", "check")
		if code != 0 || !strings.Contains(stdout, "configuration OK; SQLite "+filepath.Join(dir, "passgate.db")+" answers, schema version") || !strings.Contains(stdout, "is current") {
			t.Errorf("migrated: exit %d, stdout %q", code, stdout)
		}
		// Not a database: one line, exit 1.
		if err := os.WriteFile(filepath.Join(dir, "passgate.db"), []byte("not sqlite, but long enough to have a header of one hundred bytes......................................"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code = passgate(t, env, "", "config", "check")
		if code != 1 || len(problemLines(stderr)) != 1 || !strings.Contains(stderr, "cannot use the store: ") {
			t.Errorf("corrupt: exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		env := []string{"DATABASE_URL=" + url}
		stdout, stderr, code := passgate(t, env, "", "config", "check")
		if code != 0 || !strings.Contains(stdout, "serve will migrate its schema from version 0 to") {
			t.Errorf("fresh: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		// Read-only: the check created no schema_migrations table, so the
		// second check still sees version 0.
		if stdout, _, _ := passgate(t, env, "", "config", "check"); !strings.Contains(stdout, "from version 0") {
			t.Errorf("config check wrote to the database: %q", stdout)
		}
		if _, stderr, code := passgate(t, env, "", "migrate"); code != 0 {
			t.Fatal(stderr)
		}
		if stdout, _, code := passgate(t, env, "", "config", "check"); code != 0 || !strings.Contains(stdout, "is current") {
			t.Errorf("migrated: exit %d, stdout %q", code, stdout)
		}
		// Unreachable: one line, exit 1, without the password.
		env = []string{"DATABASE_URL=postgres://u:hunter2@" + e2etest.FreeAddr(t) + "/x?connect_timeout=2"}
		_, stderr, code = passgate(t, env, "", "config", "check")
		if code != 1 || len(problemLines(stderr)) != 1 || !strings.Contains(stderr, "cannot use the store: ") || strings.Contains(stderr, "hunter2") {
			t.Errorf("unreachable: exit %d, stderr %q", code, stderr)
		}
	})
}

// TestExposureWarnings: loopback issuer or resources draw a warning only
// when the HTTP listener is reachable from other hosts.
func TestExposureWarnings(t *testing.T) {
	tests := []struct {
		listen, issuer string
		resources      []string
		want           int
	}{
		{":8080", "http://localhost:8080", []string{"http://localhost:8080/mcp"}, 2},
		{"0.0.0.0:8080", "http://127.0.0.1:8080", []string{"https://mcp.example.com/mcp"}, 1},
		{"[::]:8080", "https://auth.example.com", []string{"http://[::1]:8080/mcp", "http://app.localhost/mcp"}, 2},
		{"10.1.2.3:8080", "https://auth.example.com", []string{"https://mcp.example.com/mcp"}, 0},
		{"127.0.0.1:8080", "http://localhost:8080", []string{"http://localhost:8080/mcp"}, 0},
		{"localhost:8080", "http://localhost:8080", []string{"http://localhost:8080/mcp"}, 0},
		{"[::1]:8080", "http://localhost:8080", []string{"http://localhost:8080/mcp"}, 0},
	}
	for _, tt := range tests {
		c := Config{HTTPListen: tt.listen, Issuer: tt.issuer, Resources: tt.resources}
		if got := c.exposureWarnings(); len(got) != tt.want {
			t.Errorf("listen %s issuer %s resources %v: warnings %q, want %d", tt.listen, tt.issuer, tt.resources, got, tt.want)
		}
	}
	// serve logs them at start, and config check prints them.
	addr := e2etest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	stop := serveInProcess(t, addr, "--data-dir", t.TempDir(), "--grpc-listen", "", "--metrics-listen", "", "--http-listen", ":"+port)
	if stderr, _ := stop(); !strings.Contains(stderr, "--issuer is http://localhost:8080, a loopback URL, but --http-listen :"+port+" accepts connections from other hosts") {
		t.Errorf("serve did not warn:\n%s", stderr)
	}
	_, stderr, code := passgate(t, []string{"PASSGATE_DATA_DIR=" + t.TempDir()}, "", "config", "check")
	if code != 0 || strings.Count(stderr, "warning: ") != 2 {
		t.Errorf("config check: exit %d, stderr %q; want 0 and two warnings", code, stderr)
	}
}

// TestHealthcheckUsesConfiguredListener: without a URL, healthcheck asks
// /healthz on --http-listen as configured (here through the environment),
// on loopback when it listens on every interface.
func TestHealthcheckUsesConfiguredListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, env := range [][]string{
		{"PASSGATE_HTTP_LISTEN=" + ln.Addr().String()},
		{"PASSGATE_HTTP_LISTEN=:" + port},
		{"PASSGATE_CONFIG=" + writeFile(t, "pg.yaml", "http-listen: \"0.0.0.0:"+port+"\"\n")},
	} {
		if _, stderr, code := passgate(t, env, "", "healthcheck"); code != 0 {
			t.Errorf("healthcheck with %v: exit %d: %s", env, code, stderr)
		}
	}
	if _, stderr, code := passgate(t, nil, "", "healthcheck", "--http-listen", ln.Addr().String()); code != 0 {
		t.Errorf("healthcheck --http-listen: exit %d: %s", code, stderr)
	}
}

// TestVersionStamp: the release build's -ldflags -X main.version reaches
// `passgate version`; without it the version is the module's, or devel.
func TestVersionStamp(t *testing.T) {
	stdout, _, code := passgate(t, nil, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "passgate devel\n") {
		t.Errorf("version without a stamp: exit %d, %q", code, stdout)
	}
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := e2etest.BuildWith(t, "./cmd/passgate", proc.BuildOptions{LDFlags: "-X main.version=v9.8.7-test"})
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "passgate v9.8.7-test\ngo1.") {
		t.Errorf("stamped version: %q, %v", out, err)
	}
}

// FuzzConfigFile: any file contents give settings or errors, never a
// panic, and every error is one line naming the file.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"issuer: https://auth.example.com\nresource: [https://mcp.example.com/mcp]\n",
		"login-limit: off\naccess-token-ttl: 1d\n",
		"require-scopes:\n  - /a=b c\n",
		"- a\n", "a: {b: c}\n", "&a x: *a\n", "issuer: !!binary aGk=\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, _ := serveSettings()
		_, err := applyConfigYAML(fs, "pg.yaml", b)
		for _, p := range problems(err) {
			if !strings.HasPrefix(p, "pg.yaml") {
				t.Errorf("problem %q does not name the file", p)
			}
		}
	})
}
