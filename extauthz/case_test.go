package extauthz

import (
	"context"
	"testing"

	"github.com/passgate/passgate/internal/resource"
)

// TestLetterCaseCannotEscapeRules: Express and ASP.NET Core (the TypeScript
// and C# MCP SDKs' usual hosts) route paths without regard to letter case,
// so /mcp/ADMIN reaches the handler a /mcp/admin rule guards and
// /mcp/TENANT2/x reaches the /mcp/tenant2 server. The check used to compare
// paths byte for byte and allowed both with a plain /mcp token.
func TestLetterCaseCannotEscapeRules(t *testing.T) {
	const tenantURL = mcpURL + "/tenant2"
	db := openSQLite(t)
	c := startChecker(t, Config{
		Store:          db,
		Resources:      resource.MustParseAll(mcpURL, tenantURL),
		RequiredScopes: []ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin"}}},
	})
	plain := mint(t, db, mintOpts{})
	admin := mint(t, db, mintOpts{scope: "mcp admin"})
	tests := []struct {
		name, path, token string
		status            int
		reason            Reason
	}{
		{"exact admin path needs admin", "/mcp/admin", plain, 403, ReasonInsufficientScope},
		{"upper-case admin path needs admin", "/mcp/ADMIN", plain, 403, ReasonInsufficientScope},
		{"mixed-case admin path needs admin", "/mcp/Admin/x", plain, 403, ReasonInsufficientScope},
		{"encoded upper-case admin path needs admin", "/mcp/%41dmin", plain, 403, ReasonInsufficientScope},
		{"upper-case admin path with admin", "/mcp/ADMIN", admin, 200, ReasonToken},
		{"a case variant of another resource is refused", "/mcp/TENANT2/x", plain, 400, ReasonInvalidPath},
		{"a case variant of the resource itself is refused", "/MCP", plain, 400, ReasonInvalidPath},
		{"the plain resource path still works", "/mcp/tools", plain, 200, ReasonToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bearer(tt.token)
			r.Path = tt.path
			d, err := c.Check(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != tt.status || d.Reason != tt.reason {
				t.Errorf("Check(%s) = %d %v, want %d %v", tt.path, d.Status, d.Reason, tt.status, tt.reason)
			}
		})
	}
}
