package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	// Write and rename, as an editor or a ConfigMap update does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const cliPolicy = `
resources:
  - url: https://mcp.example.com/mcp
    allow: [group:eng, user:bob]
    scopes: {admin: [mcp]}
    rules:
      - {method: tools/call, name: "deploy_*", scope: admin}
      - {method: tools/call, name: shell, allow: [group:ops]}
`

// TestPolicyCheckCommand: policy check validates against the configured
// resources and scopes, lists every problem and exits 1 for a bad file.
func TestPolicyCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	writePolicy(t, good, cliPolicy)
	writePolicy(t, bad, `
resources:
  - url: https://other.example.com/mcp
    allow: [group:Eng, nobody]
    rules: [{method: tools/call, scope: root}]
`)
	env := []string{"PASSGATE_RESOURCES=https://mcp.example.com/mcp", "PASSGATE_SCOPES=mcp admin", "PASSGATE_DATA_DIR=" + dir}
	if out, stderr, code := passgate(t, env, "", "policy", "check", good); code != 0 || !strings.Contains(out, "valid") {
		t.Errorf("check good: exit %d, %q %q", code, out, stderr)
	}
	_, stderr, code := passgate(t, env, "", "policy", "check", bad)
	if code != 1 {
		t.Errorf("check bad: exit %d, want 1", code)
	}
	for _, want := range []string{
		`resources[0]: scope "root" is not in --scopes`,
		`resources[0]: "https://other.example.com/mcp" is not a configured resource`,
		`resources[0].allow: "group:Eng": not a valid group name`,
		`resources[0].allow: "nobody": write user:NAME, group:NAME or *`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check bad: stderr lacks %q:\n%s", want, stderr)
		}
	}
	// serve refuses the same file at start with exit 2 and every error.
	wantUsageError(t, env, []string{"serve", "--policy", bad}, "--policy: resources[0]: scope \"root\"", "--policy: resources[0].allow: \"nobody\"", "not a configured resource")
}

// TestPolicyExplainCommand: explain reads the user's groups from the store
// and prints the decision and the rule that made it.
func TestPolicyExplainCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writePolicy(t, file, cliPolicy)
	env := []string{"PASSGATE_DATA_DIR=" + dir, "PASSGATE_POLICY=" + file}
	for _, u := range [][]string{{"alice", "eng"}, {"dan", "eng,ops"}, {"carol", "sales"}} {
		if _, stderr, code := passgate(t, env, "an-acceptable-passphrase\n", "user", "add", u[0], "--groups", u[1], "--password-stdin"); code != 0 {
			t.Fatalf("user add: %s", stderr)
		}
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--user", "alice", "--resource", "https://mcp.example.com/mcp", "--method", "tools/call", "--name", "echo", "--scope", "mcp"},
			[]string{"decision: allow", "(groups: eng)"}},
		{[]string{"--user", "alice", "--resource", "https://mcp.example.com/mcp", "--method", "tools/call", "--name", "shell", "--scope", "mcp"},
			[]string{"decision: deny: 403 rule_denied", `rules[1] {method: tools/call, name: "shell", allow: [group:ops]}`}},
		{[]string{"--user", "dan", "--resource", "https://mcp.example.com/mcp", "--method", "tools/call", "--name", "shell", "--scope", "mcp"},
			[]string{"decision: allow", "rules[1]"}},
		{[]string{"--user", "alice", "--resource", "https://mcp.example.com/mcp", "--method", "tools/call", "--name", "deploy_prod", "--scope", "mcp"},
			[]string{`decision: deny: 403 insufficient_scope, scope="admin"`, "rules[0]"}},
		{[]string{"--user", "carol", "--resource", "https://mcp.example.com/mcp"},
			[]string{"decision: deny: 403 user_not_allowed", "allow: [group:eng, user:bob]"}},
		{[]string{"--user", "alice", "--resource", "https://mcp.example.com/mcp", "--method", "tools/call"},
			[]string{"decision: deny: 400, the Mcp-Name header is required"}},
		{[]string{"--user", "carol", "--resource", "https://elsewhere.example.com/mcp"},
			[]string{"decision: allow", "the policy names no rule for this resource"}},
	}
	for _, tt := range tests {
		out, stderr, code := passgate(t, env, "", append([]string{"policy", "explain"}, tt.args...)...)
		if code != 0 {
			t.Errorf("explain %v: exit %d: %s", tt.args, code, stderr)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("explain %v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
	if _, _, code := passgate(t, env, "", "policy", "explain", "--user", "alice"); code != 2 {
		t.Errorf("explain without --resource: exit %d, want 2", code)
	}
}

// TestServeReloadsPolicy: the real binary reloads its policy when the file
// changes and on SIGHUP; an invalid file keeps the policy in force, logs
// the errors and sets the metric.
func TestServeReloadsPolicy(t *testing.T) {
	resource := "http://" + e2etest.FreeAddr(t) + "/mcp"
	file := filepath.Join(t.TempDir(), "policy.yaml")
	policyFor := func(allow string) string {
		return fmt.Sprintf("resources:\n  - url: %s\n    allow: [%s]\n", resource, allow)
	}
	writePolicy(t, file, policyFor("user:apikey:ci"))
	srv := e2etest.Start(t, e2etest.Options{Resource: resource, Env: []string{"PASSGATE_RESOURCES=" + resource}, Args: []string{"--policy", file}})
	m := apiKeyRE.FindStringSubmatch(srv.CLI(t, "", "apikey", "add", "ci", "--resource", resource))
	if m == nil {
		t.Fatal("apikey add printed no key")
	}
	key := m[1]
	ctx := context.Background()
	waitStatus := func(want int, within time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			code, err := srv.CheckGRPC(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if code == want {
				t.Logf("status %d after %v", want, time.Since(start))
				return
			}
			if time.Since(start) > within {
				t.Fatalf("status %d, want %d within %v", code, want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus(200, time.Second)
	writePolicy(t, file, policyFor(""))
	waitStatus(403, 3*time.Second)

	writePolicy(t, file, "resources:\n  - url: "+resource+"\n    alow: []\n")
	if !srv.WaitLog("policy reload failed", 5*time.Second) {
		t.Fatal("no log line for an invalid reload")
	}
	if !srv.WaitLog("alow", time.Second) {
		t.Error("the reload error does not name the problem")
	}
	metrics, err := srv.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"passgate_policy_last_reload_ok 0", `passgate_policy_reloads_total{result="error"} 1`, `passgate_policy_reloads_total{result="ok"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	waitStatus(403, 0) // the previous policy is still in force

	// SIGHUP reloads at once (the poll would too, a second later).
	if err := os.WriteFile(file, []byte(policyFor("user:apikey:ci")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitStatus(200, 3*time.Second)
	if !srv.WaitLog("policy reloaded", time.Second) {
		t.Error("no log line for the reload")
	}
	metrics, _ = srv.Metrics(ctx)
	if !strings.Contains(metrics, "passgate_policy_last_reload_ok 1") {
		t.Errorf("passgate_policy_last_reload_ok is not back to 1")
	}
	srv.AssertNoSecrets(t, key)
}
