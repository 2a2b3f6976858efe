package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

var apiKeyRE = regexp.MustCompile(`api_key:\s+(pgk_\S+)`)

// TestAPIKeyCommands drives `passgate apikey add|list|revoke` on both
// backends: the key is printed once and stored only as a hash, names are
// unique, resources and scopes must be ones passgate serves, and both
// changes are audited.
func TestAPIKeyCommands(t *testing.T) {
	const served = "https://mcp.example.com/mcp,https://other.example.com/mcp"
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			env := append(b.env, "PASSGATE_RESOURCES="+served, "PASSGATE_SCOPES=mcp admin")
			run := func(args ...string) string {
				t.Helper()
				return passgateOK(t, env, "", args...)
			}
			fail := func(wantCode int, want string, args ...string) {
				t.Helper()
				_, stderr, code := passgate(t, env, "", args...)
				if code != wantCode || !strings.Contains(stderr, want) {
					t.Errorf("passgate %v: exit %d, stderr %q; want exit %d mentioning %q", args, code, stderr, wantCode, want)
				}
				if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
					t.Errorf("passgate %v: error is not one line: %q", args, stderr)
				}
			}
			out := run("apikey", "add", "ci", "--resource", "https://mcp.example.com/mcp", "--scope", "mcp", "--scope", "admin mcp")
			m := apiKeyRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("apikey add printed no key:\n%s", out)
			}
			key := m[1]
			if !strings.Contains(out, "scope:     mcp admin\n") || !strings.Contains(out, "apikey:ci") {
				t.Errorf("apikey add output:\n%s", out)
			}
			run("apikey", "add", "two", "--resource", "https://other.example.com/mcp", "--resource", "https://mcp.example.com/mcp")

			fail(1, "already exists", "apikey", "add", "ci", "--resource", "https://mcp.example.com/mcp")
			fail(2, "not a configured resource", "apikey", "add", "x", "--resource", "https://evil.example.com/mcp")
			fail(2, "not a configured resource", "apikey", "add", "x", "--resource", "https://mcp.example.com/MCP")
			fail(2, "at least one --resource", "apikey", "add", "x")
			fail(2, "not a scope passgate grants", "apikey", "add", "x", "--resource", "https://mcp.example.com/mcp", "--scope", "root")
			fail(2, "reserved", "apikey", "add", "legacy", "--resource", "https://mcp.example.com/mcp")
			fail(2, "only letters", "apikey", "add", "bad\x1b[31mname", "--resource", "https://mcp.example.com/mcp")
			fail(2, "exactly one NAME", "apikey", "add", "--resource", "https://mcp.example.com/mcp")

			list := run("apikey", "list")
			for _, want := range []string{"ci", "two", "mcp admin", "https://other.example.com/mcp https://mcp.example.com/mcp"} {
				if !strings.Contains(list, want) {
					t.Errorf("apikey list lacks %q:\n%s", want, list)
				}
			}
			if strings.Contains(list, key) || strings.Contains(list, "pgk_") {
				t.Errorf("apikey list shows a key:\n%s", list)
			}

			run("apikey", "revoke", "ci")
			fail(1, "already revoked", "apikey", "revoke", "ci")
			fail(1, "no api key", "apikey", "revoke", "nobody")
			fail(2, "static key", "apikey", "revoke", "legacy")
			if list := run("apikey", "list"); !regexp.MustCompile(`(?m)^ci\s+\S+\s+20\d\d-`).MatchString(list) {
				t.Errorf("apikey list does not show ci revoked:\n%s", list)
			}

			for ev, n := range map[string]int{"api_key_created": 2, "api_key_revoked": 1} {
				out := run("audit", "--json", "--event", ev)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != n {
					t.Errorf("audit %s: %d rows, want %d:\n%s", ev, len(lines), n, out)
					continue
				}
				var row map[string]any
				if err := json.Unmarshal([]byte(lines[len(lines)-1]), &row); err != nil || row["username"] == "" || row["ip"] != "cli" {
					t.Errorf("audit %s row %q (%v)", ev, lines[0], err)
				}
			}
			if out := run("audit", "--json"); strings.Contains(out, key) {
				t.Error("the audit log holds the key")
			}
			if b.dataDir != "" {
				for _, f := range []string{"passgate.db", "passgate.db-wal"} {
					db, err := os.ReadFile(filepath.Join(b.dataDir, f))
					if err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
					if bytes.Contains(db, []byte(key)) {
						t.Errorf("the key is stored in clear in %s", f)
					}
				}
			}
		})
	}
}

// TestServeRefusesAPIKeyOutsideToken68: a static key no client can send as
// a Bearer credential stops serve at start with exit 2, reported together
// with every other configuration problem; before, it validated and then
// never matched.
func TestServeRefusesAPIKeyOutsideToken68(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("key, with; separators\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"API_KEY with spaces", []string{"serve", "--registration", "sometimes"}, []string{"API_KEY=my api key with spaces"},
			[]string{"$API_KEY", "Bearer token characters", "--registration"}},
		{"--api-key-file with commas", []string{"serve", "--api-key-file", keyFile}, nil,
			[]string{"--api-key-file", "Bearer token characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := wantUsageError(t, tt.env, tt.args, tt.want...)
			if strings.Contains(stderr, "my api key") || strings.Contains(stderr, "separators") {
				t.Errorf("the error repeats the key:\n%s", stderr)
			}
		})
	}
}

// TestAPIKeyThroughTheBinary: the real binary with the seed's API_KEY warns
// at start and names the replacement; a key made with `passgate apikey add`
// passes both checks (gRPC and HTTP) for its resource, and `apikey revoke`,
// run as another process, reaches the server's check cache within a
// second. Neither key reaches the logs.
func TestAPIKeyThroughTheBinary(t *testing.T) {
	const legacy = "legacy-seed-api-key-0123456789"
	resource := "http://" + e2etest.FreeAddr(t) + "/mcp"
	srv := e2etest.Start(t, e2etest.Options{Resource: resource, Env: []string{"API_KEY=" + legacy, "PASSGATE_RESOURCES=" + resource}})
	if !srv.WaitLog("passgate apikey add", 5*time.Second) {
		t.Error("no warning at start naming `passgate apikey add`")
	}
	ctx := context.Background()
	out := srv.CLI(t, "", "apikey", "add", "ci", "--resource", resource)
	m := apiKeyRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("apikey add printed no key:\n%s", out)
	}
	key := m[1]
	for name, tok := range map[string]string{"named": key, "legacy": legacy} {
		if code, err := srv.CheckGRPC(ctx, tok); err != nil || code != 200 {
			t.Errorf("%s key over gRPC: %d, %v; want 200", name, code, err)
		}
		if code, err := srv.CheckHTTP(ctx, tok); err != nil || code != 200 {
			t.Errorf("%s key over HTTP: %d, %v; want 200", name, code, err)
		}
	}
	srv.CLI(t, "", "apikey", "revoke", "ci")
	start := time.Now()
	for {
		code, err := srv.CheckGRPC(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if code == 401 {
			t.Logf("refused %v after `apikey revoke`", time.Since(start))
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the server still accepts a revoked key 1s after `apikey revoke` (status %d)", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.AssertNoSecrets(t, key, legacy)
}

func TestAPIKeyHelp(t *testing.T) {
	for _, args := range [][]string{{"apikey", "--help"}, {"apikey", "add", "--help"}, {"apikey", "list", "--help"}} {
		stdout, stderr, code := passgate(t, []string{"PASSGATE_DATA_DIR=" + t.TempDir()}, "", args...)
		if code != 0 || !strings.Contains(stdout+stderr, "Usage: passgate apikey") {
			t.Errorf("passgate %v: exit %d, output %q", args, code, stdout+stderr)
		}
	}
	if _, stderr, code := passgate(t, nil, "", "apikey"); code != 2 || !strings.Contains(stderr, "missing subcommand") {
		t.Errorf("passgate apikey: exit %d, %q", code, stderr)
	}
	if _, stderr, code := passgate(t, nil, "", "apikey", "rotate"); code != 2 || !strings.Contains(stderr, "unknown subcommand") {
		t.Errorf("passgate apikey rotate: exit %d, %q", code, stderr)
	}
}
