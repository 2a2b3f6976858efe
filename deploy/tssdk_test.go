package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// tsSDK returns node and the absolute path of interop/ts-sdk: the official
// MCP TypeScript SDK clients (@modelcontextprotocol/sdk and /client,
// pinned in its package-lock.json) and the scripted users that drive them.
// Without node, or without the npm package pkg in its node_modules
// (scripts/test.sh runs npm ci there), the test is skipped, or fails with
// CI=true.
func tsSDK(t *testing.T, pkg string) (node, dir string) {
	t.Helper()
	node = e2etest.NeedTool(t, "node")
	root, err := e2etest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, "interop", "ts-sdk")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(pkg), "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("e2e: interop/ts-sdk/node_modules lacks %s (scripts/test.sh runs npm ci there; CI=true, not skipping)", pkg)
		}
		t.Skipf("e2e: interop/ts-sdk/node_modules lacks %s: run npm ci there", pkg)
	}
	return node, dir
}

// TestTypeScriptSDKThroughNginx runs interop/ts-sdk's scenarios (see its
// README) against the real passgate binary behind real nginx with the
// shipped deploy/nginx.conf (HTTPS, a throwaway certificate node trusts
// through NODE_EXTRA_CA_CERTS) and the example MCP server, on both stores:
// discovery from the 401, dynamic registration (public,
// client_secret_basic, client_secret_post) or a Client ID Metadata
// Document, login, consent, the code exchange, tool calls, refresh and
// its replay, reauthorization, tampered requests, and the SDK's reading of
// passgate's OAuth errors. Each scenario gets a fresh passgate, since the
// default --token-limit (10 per 15 minutes per client IP) is kept.
//
// It needs node and interop/ts-sdk/node_modules (scripts/test.sh runs npm
// ci there): without them it is skipped, or fails with CI=true.
func TestTypeScriptSDKThroughNginx(t *testing.T) {
	node, dir := tsSDK(t, "@modelcontextprotocol/sdk")
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st := startPassgateStack(t, backend)
			cert, key := st.ngx.Vars["NGINX_TLS_CERT"], st.ngx.Vars["NGINX_TLS_KEY"]
			// The SDK accepts only an https clientMetadataUrl: the
			// document is served over https on loopback with nginx's
			// certificate, which passgate trusts through SSL_CERT_FILE.
			cimdAddr := e2etest.FreeAddr(t)
			_, cimdPort, _ := strings.Cut(cimdAddr, ":")
			e2etest.StartProcess(t, cimdAddr, node, []string{filepath.Join(dir, "cimd-server.mjs"), cimdPort, cert, key}, nil)
			cimdURL := "https://" + cimdAddr + "/client.json"

			for _, sc := range []struct {
				name     string
				passgate []string // extra serve flags
				script   string
				args     []string
			}{
				{name: "public-client", script: "client.mjs"},
				{name: "client-secret-basic", script: "client.mjs", args: []string{"--auth", "client_secret_basic"}},
				{name: "client-secret-post", script: "client.mjs", args: []string{"--auth", "client_secret_post"}},
				{name: "cimd", passgate: []string{"--cimd-allow-loopback-http"}, script: "client.mjs", args: []string{"--cimd", cimdURL}},
				{name: "errors", script: "errors.mjs", args: []string{"--exhaust-token-limit"}},
			} {
				t.Run(sc.name, func(t *testing.T) {
					st.restart(t, []string{"SSL_CERT_FILE=" + cert}, sc.passgate...)
					args := []string{filepath.Join(dir, sc.script), st.resource}
					if sc.script == "client.mjs" {
						args = append(args, "alice", "correct horse battery")
					}
					out, err := runNode(t, node, dir, []string{"NODE_EXTRA_CA_CERTS=" + cert}, append(args, sc.args...)...)
					passed := len(passLine.FindAllString(out, -1))
					fails := failLine.FindAllString(out, -1)
					if err != nil || len(fails) > 0 || passed == 0 {
						t.Errorf("node %s: %v; %d checks passed, failed:\n%s\nfull transcript:\n%s", sc.script, err, passed, strings.Join(fails, "\n"), out)
						return
					}
					t.Logf("%s: %d checks passed", sc.name, passed)
				})
			}
		})
	}
}

var (
	passLine = regexp.MustCompile(`(?m)^PASS\b.*$`)
	failLine = regexp.MustCompile(`(?m)^FAIL\b.*$`)
)

// runNode runs node with args (a script of interop/ts-sdk first) in dir,
// with env added to the environment, for at most two minutes, and returns
// its output.
func runNode(t *testing.T, node, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
