package extauthz

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nginxConf is the configuration the package documentation recommends,
// plus error pages that give 401 and 403 their challenge and JSON body.
const nginxConf = `
worker_processes 1;
daemon off;
master_process off;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{DIR}}; proxy_temp_path {{DIR}}; fastcgi_temp_path {{DIR}};
  uwsgi_temp_path {{DIR}}; scgi_temp_path {{DIR}};
  server {
    listen 127.0.0.1:{{PORT}};
    server_name mcp.example.com;
    location = /_passgate/check {
      internal;
      proxy_pass http://{{PASSGATE}};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto https;
    }
    location /mcp {
      auth_request /_passgate/check;
      auth_request_set $pg_user $upstream_http_x_passgate_user;
      auth_request_set $pg_client $upstream_http_x_passgate_client_id;
      auth_request_set $pg_scope $upstream_http_x_passgate_scope;
      auth_request_set $pg_www $upstream_http_www_authenticate;
      proxy_set_header X-Passgate-User $pg_user;
      proxy_set_header X-Passgate-Client-Id $pg_client;
      proxy_set_header X-Passgate-Scope $pg_scope;
      proxy_set_header Authorization "";
      error_page 401 = @unauthorized;
      error_page 403 = @forbidden;
      proxy_pass http://{{UPSTREAM}};
    }
    location @unauthorized {
      # nginx copies WWW-Authenticate of a 401 from the subrequest itself.
      add_header Access-Control-Expose-Headers WWW-Authenticate always;
      default_type application/json;
      return 401 '{"error":"invalid_token"}';
    }
    location @forbidden {
      add_header WWW-Authenticate $pg_www always;
      add_header Access-Control-Expose-Headers WWW-Authenticate always;
      default_type application/json;
      return 403 '{"error":"insufficient_scope"}';
    }
  }
}
`

// TestNginx runs the documented nginx auth_request configuration against
// the HTTP check: identity reaches the upstream (spoofed copies replaced,
// Authorization removed), denials carry the challenge, and a store outage
// fails closed.
func TestNginx(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx not installed")
		}
		t.Skip("nginx not installed")
	}
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	c := startChecker(t, Config{Store: fs, Scopes: []string{"mcp"},
		RequiredScopes: []ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin"}}}})
	check := httptest.NewServer(c.HTTPHandler())
	t.Cleanup(check.Close)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(upstream.Close)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	dir := t.TempDir()
	conf := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", fmt.Sprint(port),
		"{{PASSGATE}}", check.Listener.Addr().String(), "{{UPSTREAM}}", upstream.Listener.Addr().String()).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}

	valid := mint(t, db, mintOpts{})
	do := func(path, auth string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Host = "mcp.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Passgate-User", "root")
		req.Header.Set("Origin", "https://inspector.example")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	resp, body := do("/mcp", "Bearer "+valid)
	var seen http.Header
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &seen) != nil {
		t.Fatalf("valid token: %d %s", resp.StatusCode, body)
	}
	if got := seen.Values("X-Passgate-User"); len(got) != 1 || got[0] != testUser {
		t.Errorf("upstream X-Passgate-User = %q, want [%s]", got, testUser)
	}
	if seen.Get("X-Passgate-Client-Id") != testCli || seen.Get("X-Passgate-Scope") != "mcp" {
		t.Errorf("upstream identity: %v", seen)
	}
	if seen.Get("Authorization") != "" {
		t.Error("Authorization reached the upstream")
	}

	meta := `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	for _, tc := range []struct {
		name, path, auth string
		status           int
		www              string
	}{
		{"no token", "/mcp", "", 401, `Bearer ` + meta + `, scope="mcp"`},
		{"bad token", "/mcp", "Bearer pga_nope", 401, `Bearer ` + meta + `, scope="mcp", error="invalid_token"`},
		{"missing scope", "/mcp/admin", "Bearer " + valid, 403, `Bearer error="insufficient_scope", scope="admin", ` + meta},
	} {
		resp, body := do(tc.path, tc.auth)
		if resp.StatusCode != tc.status || resp.Header.Values("Www-Authenticate")[0] != tc.www ||
			resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %v %s", tc.name, resp.StatusCode, resp.Header, body)
		}
		if n := len(resp.Header.Values("Www-Authenticate")); n != 1 {
			t.Errorf("%s: %d WWW-Authenticate headers", tc.name, n)
		}
	}

	fs.down.Store(true)
	if resp, _ := do("/mcp", "Bearer "+mint(t, db, mintOpts{})); resp.StatusCode != 500 {
		t.Errorf("store down, uncached token: nginx answered %d, want 500 (fail closed)", resp.StatusCode)
	}
	if resp, _ := do("/mcp", "Bearer "+valid); resp.StatusCode != 200 {
		t.Errorf("store down, cached token: %d", resp.StatusCode)
	}
}
