package extauthz

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// denialLines returns the "check denied" lines of a JSON log.
func denialLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	all, err := proc.JSONLines(log)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, m := range all {
		if m["msg"] == "check denied" {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestDenialsAreLoggedAtDebug: every front end logs each denial at debug
// level with its front end, reason, resource and the scope rule that
// denied it; the credential and the query never appear in the log, and
// allowed checks are not logged.
func TestDenialsAreLoggedAtDebug(t *testing.T) {
	db := openSQLite(t)
	var buf proc.Buffer
	c := startChecker(t, Config{
		Store:          db,
		Logger:         slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Scopes:         []string{"mcp", "admin"},
		RequiredScopes: []ScopeRule{{Match: "https://mcp.example.com/mcp/admin", Scopes: []string{"admin"}}},
	})
	good := mint(t, db, mintOpts{})
	other := mint(t, db, mintOpts{resource: otherURL})
	client := startGRPC(t, c)
	h := c.HTTPHandler(nil)
	httpCheck := func(target string, hdr map[string]string) int {
		r := httptest.NewRequest("GET", target, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	nginx := func(path, auth string) map[string]string {
		return map[string]string{"X-Original-URI": path, "X-Original-Method": "POST", "X-Forwarded-Host": "mcp.example.com",
			"X-Forwarded-Proto": "https", "Authorization": auth}
	}
	type want struct{ Frontend, Reason, Resource, Rule string }
	tests := []struct {
		name string
		run  func() int
		want *want // nil: allowed, nothing logged
	}{
		{"nginx allowed", func() int { return httpCheck(CheckPathNginx, nginx("/mcp", "Bearer "+good)) }, nil},
		{"nginx no token", func() int { return httpCheck(CheckPathNginx, nginx("/mcp?access_token="+good, "")) },
			&want{"nginx", "no_token", mcpURL, ""}},
		{"nginx scope rule", func() int { return httpCheck(CheckPathNginx, nginx("/mcp/admin/tools", "Bearer "+good)) },
			&want{"nginx", "insufficient_scope", mcpURL, "scopes"}},
		{"forward-auth wrong audience", func() int {
			return httpCheck(CheckPathForwardAuth, map[string]string{"X-Forwarded-Uri": "/mcp", "X-Forwarded-Method": "POST",
				"X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Proto": "https", "Authorization": "Bearer " + other})
		}, &want{"forward-auth", "wrong_audience", mcpURL, ""}},
		{"ingress-nginx host mismatch", func() int {
			return httpCheck(CheckPathIngressNginx+"?host=other.example.com", map[string]string{
				"X-Original-URL": "https://mcp.example.com/mcp", "X-Original-Method": "POST", "Authorization": "Bearer " + good})
		}, &want{"ingress-nginx", "host_mismatch", "", ""}},
		{"envoy-http unknown resource", func() int {
			r := httptest.NewRequest("POST", CheckPathEnvoy+"/mcp", nil)
			r.Host = "unknown.example.com"
			r.Header.Set("Authorization", "Bearer "+good)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}, &want{"envoy-http", "unknown_resource", "", ""}},
		{"proxy no token", func() int {
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Host = "mcp.example.com"
			d, err := c.CheckReceived(r, "/mcp")
			if err != nil {
				t.Fatal(err)
			}
			return d.Status
		}, &want{"proxy", "no_token", mcpURL, ""}},
		{"grpc unknown token", func() int {
			resp, err := client.Check(context.Background(), envoyReq("pga_"+strings.Repeat("x", 43)))
			if err != nil {
				t.Fatal(err)
			}
			return int(resp.GetDeniedResponse().GetStatus().GetCode())
		}, &want{"grpc", "unknown_token", mcpURL, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(denialLines(t, buf.String()))
			status := tt.run()
			lines := denialLines(t, buf.String())[before:]
			if tt.want == nil {
				if status != http.StatusOK || len(lines) != 0 {
					t.Fatalf("status %d, denial lines %v; want allowed and none", status, lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("status %d: %d denial lines, want 1: %v", status, len(lines), lines)
			}
			l := lines[0]
			rule, _ := l["rule"].(string)
			got := want{l["frontend"].(string), l["reason"].(string), l["resource"].(string), rule}
			if diff := cmp.Diff(got, *tt.want); diff != "" {
				t.Errorf("denial log (-got +want):\n%s", diff)
			}
			if l["level"] != "DEBUG" || int(l["status"].(float64)) != status {
				t.Errorf("level %v, status %v; want DEBUG and %d", l["level"], l["status"], status)
			}
		})
	}
	log := buf.String()
	for _, secret := range []string{good, other, "access_token"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains %q:\n%s", secret, log)
		}
	}
}

// TestDenialsNotLoggedAboveDebug: at info level a denial logs nothing.
func TestDenialsNotLoggedAboveDebug(t *testing.T) {
	var buf proc.Buffer
	c := startChecker(t, Config{Store: openSQLite(t), Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if d, _ := c.Check(context.Background(), bearer("")); d.Allow {
		t.Fatal("allowed")
	}
	h := c.HTTPHandler(nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", CheckPathNginx, nil))
	if lines := denialLines(t, buf.String()); len(lines) != 0 {
		t.Errorf("denials logged at info: %v", lines)
	}
}
