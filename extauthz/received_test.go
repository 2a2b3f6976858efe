package extauthz

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCheckReceived decides requests as passgate's built-in proxy received
// them: the request line and Host, never a header a client adds to describe
// another request, and counts them under frontend="proxy".
func TestCheckReceived(t *testing.T) {
	st := openSQLite(t)
	c := startChecker(t, Config{Store: st, AllowPreflight: true})
	tok := mint(t, st, mintOpts{})
	otherTok := mint(t, st, mintOpts{resource: otherURL})
	tests := []struct {
		name, method, target, host string
		header                     map[string][]string
		status                     int
		reason                     string
	}{
		{name: "token for this resource", method: "POST", target: "/mcp", host: "mcp.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + tok}}, status: 200, reason: "token"},
		{name: "absolute form names the host", method: "POST", target: "https://mcp.example.com/mcp", host: "other.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + tok}}, status: 200, reason: "token"},
		{name: "forwarding headers are not the request", method: "POST", target: "/mcp", host: "other.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + tok}, "X-Forwarded-Host": {"mcp.example.com"},
				"X-Original-Url": {"https://mcp.example.com/mcp"}}, status: 401, reason: "wrong_audience"},
		{name: "token of another resource", method: "POST", target: "/mcp", host: "mcp.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + otherTok}}, status: 401, reason: "wrong_audience"},
		{name: "no token", method: "POST", target: "/mcp", host: "mcp.example.com", status: 401, reason: "no_token"},
		{name: "repeated Authorization", method: "POST", target: "/mcp", host: "mcp.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + tok, "Bearer " + tok}}, status: 400, reason: "malformed"},
		{name: "preflight by the request line's method", method: "OPTIONS", target: "/mcp", host: "mcp.example.com",
			header: map[string][]string{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}}, status: 200, reason: "preflight"},
		{name: "method override is no preflight", method: "POST", target: "/mcp", host: "mcp.example.com",
			header: map[string][]string{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}, "X-Http-Method-Override": {"OPTIONS"},
				"X-Original-Method": {"OPTIONS"}}, status: 401, reason: "no_token"},
		{name: "encoded slash", method: "POST", target: "/mcp%2F..%2Fadmin", host: "mcp.example.com",
			header: map[string][]string{"Authorization": {"Bearer " + tok}}, status: 400, reason: "invalid_path"},
		{name: "unknown host", method: "POST", target: "/mcp", host: "evil.example",
			header: map[string][]string{"Authorization": {"Bearer " + tok}}, status: 403, reason: "unknown_resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, nil)
			if r.URL.Host == "" {
				r.Host = tt.host
			}
			for k, v := range tt.header {
				r.Header[k] = v
			}
			target := r.RequestURI
			if r.URL.Host != "" {
				target = r.URL.RequestURI()
			}
			before := reasonCounts(c, frontendProxy)
			d, err := c.CheckReceived(r, target)
			if err != nil {
				t.Fatal(err)
			}
			reason := movedReason(t, before, reasonCounts(c, frontendProxy))
			if d.Status != tt.status || reason != tt.reason || d.Reason.String() != tt.reason {
				t.Errorf("status %d, counted %q, decided %q; want %d %q", d.Status, reason, d.Reason, tt.status, tt.reason)
			}
			if tt.status == http.StatusOK && d.Reason == ReasonToken && headerValue(d.Headers, DefaultUserHeader) != testUser {
				t.Errorf("identity %v", d.Headers)
			}
		})
	}
}
