package extauthz

import (
	"context"
	"testing"

	"github.com/passgate/passgate/internal/resource"
)

// TestAudienceCanonical: the check compares a credential's audience with
// the resource in canonical form, so tokens and API keys stored with the
// URL exactly as an older passgate configured it ("HTTPS://MCP.example.com:443/mcp/")
// keep working, while a token for another resource stays wrong_audience.
func TestAudienceCanonical(t *testing.T) {
	const configured = "HTTPS://MCP.example.com:443/mcp/"
	db := openSQLite(t)
	c := startChecker(t, Config{Resources: resource.MustParseAll(configured, otherURL), Store: db, Scopes: []string{"mcp"}})
	for _, tt := range []struct {
		name, tok string
		allow     bool
	}{
		{"token as configured", mint(t, db, mintOpts{resource: configured}), true},
		{"token canonical", mint(t, db, mintOpts{resource: mcpURL}), true},
		{"token trailing slash", mint(t, db, mintOpts{resource: mcpURL + "/"}), true},
		{"token for a sub-path", mint(t, db, mintOpts{resource: mcpURL + "/x"}), false},
		{"token for another scheme", mint(t, db, mintOpts{resource: "http://mcp.example.com/mcp"}), false},
		{"token for another resource", mint(t, db, mintOpts{resource: otherURL}), false},
		{"token with userinfo", mint(t, db, mintOpts{resource: "https://u@mcp.example.com/mcp"}), false},
		{"key as configured", mintAPIKey(t, db, "old", "mcp", otherURL, configured), true},
		{"key elsewhere", mintAPIKey(t, db, "elsewhere", "mcp", otherURL), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := c.Check(context.Background(), bearer(tt.tok))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow || (!tt.allow && d.Reason != ReasonWrongAudience) {
				t.Errorf("Check: allow %v reason %v; want allow %v (or wrong_audience)", d.Allow, d.Reason, tt.allow)
			}
		})
	}
}

// TestAudienceShortcut: audience answers as resource.Audience does, for
// configured URLs (matched without parsing) and everything else.
func TestAudienceShortcut(t *testing.T) {
	c := startChecker(t, Config{Resources: resource.MustParseAll("HTTPS://MCP.example.com:443/mcp/", otherURL), Store: openSQLite(t)})
	for _, stored := range []string{
		mcpURL, otherURL, "HTTPS://MCP.example.com:443/mcp/", mcpURL + "/", mcpURL + "/x",
		"http://mcp.example.com/mcp", "https://u@mcp.example.com/mcp", "not a url", "",
	} {
		if got, want := c.audience(stored), resource.Audience(stored); got != want {
			t.Errorf("audience(%q) = %q, want %q", stored, got, want)
		}
	}
}
