package deploy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestNginxKeepsPassgateErrors: through the shipped nginx.conf and the
// real passgate, each denial reaches the client with passgate's own status,
// error code and challenge: a path no resource matches is 403
// access_denied without a challenge, not insufficient_scope; a missing
// scope is 403 insufficient_scope with its challenge; a missing or unknown
// token is 401 invalid_token.
func TestNginxKeepsPassgateErrors(t *testing.T) {
	st := startPassgateStack(t, "sqlite", "--scopes", "mcp,admin", "--require-scopes", "/mcp/admin=admin")
	dataDir, _ := strings.CutPrefix(st.storeEnv[0], "PASSGATE_DATA_DIR=")
	good := mintAccessToken(t, e2etest.OpenStore(t, "", dataDir), st.resource, "mcp")
	tests := []struct {
		name, path, token string
		wantStatus        int
		wantError         string
		wantChallenge     string // a substring of WWW-Authenticate; "" : none
	}{
		{"no token", "/mcp", "", 401, "invalid_token", `Bearer resource_metadata="`},
		{"unknown token", "/mcp", "pga_" + strings.Repeat("x", 43), 401, "invalid_token", `error="invalid_token"`},
		{"missing scope", "/mcp/admin", good, 403, "insufficient_scope", `error="insufficient_scope", scope="admin"`},
		// nginx's "location /mcp" also takes /mcpx, which is no resource.
		{"no resource", "/mcpx", good, 403, "access_denied", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), "POST", st.ngx.URL+tt.path, strings.NewReader(mcpInitialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = mcpHeader.Clone()
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := st.ngx.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("status %d, body is not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.wantStatus || body.Error != tt.wantError || body.Description == "" {
				t.Errorf("got %d %+v, want %d %s with passgate's description", resp.StatusCode, body, tt.wantStatus, tt.wantError)
			}
			www := resp.Header.Values("WWW-Authenticate")
			switch {
			case tt.wantChallenge == "" && len(www) != 0:
				t.Errorf("WWW-Authenticate %q, want none", www)
			case tt.wantChallenge != "" && (len(www) != 1 || !strings.Contains(www[0], tt.wantChallenge)):
				t.Errorf("WWW-Authenticate %q, want one containing %q", www, tt.wantChallenge)
			}
			if resp.Header.Get(extauthz.ErrorBodyHeader) != "" {
				t.Errorf("nginx passed %s on to the client", extauthz.ErrorBodyHeader)
			}
		})
	}
}
