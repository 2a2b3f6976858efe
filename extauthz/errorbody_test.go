package extauthz

import (
	"net/http/httptest"
	"testing"
)

// TestNginxDenialCarriesBody: on the nginx check path a denial's JSON body
// also travels in ErrorBodyHeader (auth_request drops bodies); other
// check paths and allowed checks do not send it.
func TestNginxDenialCarriesBody(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db})
	good := mint(t, db, mintOpts{})
	h := c.HTTPHandler(nil)
	for _, tt := range []struct {
		name, target, host, auth string
		wantBody                 string // "" : no header
	}{
		{"nginx no token", CheckPathNginx, "mcp.example.com", "", bodyNoToken},
		{"nginx unknown resource", CheckPathNginx, "unknown.example.com", "Bearer " + good, bodyNoResource},
		{"nginx allowed", CheckPathNginx, "mcp.example.com", "Bearer " + good, ""},
		{"forward-auth no token", CheckPathForwardAuth, "mcp.example.com", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			for k, v := range map[string]string{"X-Original-URI": "/mcp", "X-Original-Method": "POST", "X-Forwarded-Uri": "/mcp",
				"X-Forwarded-Method": "POST", "X-Forwarded-Host": tt.host, "X-Forwarded-Proto": "https"} {
				r.Header.Set(k, v)
			}
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get(ErrorBodyHeader); got != tt.wantBody {
				t.Errorf("%s = %q, want %q", ErrorBodyHeader, got, tt.wantBody)
			}
			if tt.wantBody != "" && w.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", w.Body.String(), tt.wantBody)
			}
		})
	}
}
