package extauthz

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/passgate/passgate/internal/resource"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNewCheckerValidates(t *testing.T) {
	db := openSQLite(t)
	_, err := NewChecker(Config{
		Scopes:         []string{"bad\"scope"},
		UserHeader:     "X Bad",
		RequiredScopes: []ScopeRule{{Match: "ftp://x/y", Scopes: []string{"a"}}, {Match: "/admin"}, {Match: "/a/../admin", Scopes: []string{"a"}}},
		Metrics:        prometheus.NewRegistry(),
	})
	if err == nil {
		t.Fatal("NewChecker accepted a bad config")
	}
	for _, want := range []string{"no protected resources", "no store", `scope "bad\"scope"`, `identity header "X Bad"`, "ftp://x/y", `scope rule "/admin": no scopes`, `scope rule "/a/../admin": path is not canonical`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: db}); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

// TestOptions covers the switches that change what reaches the upstream.
func TestOptions(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{
		Store: db, KeepAuthorization: true, AllowUnknownResources: true,
		UserHeader: "x-user", ClientIDHeader: "X-Client", ScopeHeader: "X-Scopes",
	})
	ctx := context.Background()
	tok := mint(t, db, mintOpts{})
	d, err := c.Check(ctx, bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{Allow: true, Status: 200, Reason: ReasonToken,
		Headers: []Header{{"X-User", testUser}, {"X-Client", testCli}, {"X-Scopes", "mcp"}}}
	if diff := cmp.Diff(d, want, cmp.AllowUnexported(Decision{})); diff != "" {
		t.Errorf("KeepAuthorization (-got +want):\n%s", diff)
	}
	r := bearer(tok)
	r.Host = "elsewhere.example.org"
	d, _ = c.Check(ctx, r)
	want = Decision{Allow: true, Status: 200, Reason: ReasonUnprotected,
		Headers:       []Header{{"X-User", ""}, {"X-Client", ""}, {"X-Scopes", ""}},
		RemoveHeaders: []string{"x-user", "x-client", "x-scopes"}}
	if diff := cmp.Diff(d, want, cmpopts.IgnoreUnexported(Decision{})); diff != "" {
		t.Errorf("unknown resource allowed (-got +want):\n%s", diff)
	}
	// Preflight is off by default.
	pre := Request{Method: "OPTIONS", Host: "mcp.example.com", Path: "/mcp",
		Headers: map[string]string{"origin": "https://x.example", "access-control-request-method": "POST"}}
	if d, _ := c.Check(ctx, pre); d.Allow {
		t.Errorf("preflight allowed without AllowPreflight: %+v", d)
	}
}
