package extauthz

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
)

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"", "Bearer pga_abc", "bearer  x==", "Basic abc", "Bearer", "Bearer a b", "BEARER\tz", "Bearer a,Bearer b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, present, ok := parseBearer(h)
		if ok && !present {
			t.Fatalf("well formed but not present: %q", h)
		}
		if !ok {
			if tok != "" {
				t.Fatalf("token %q returned for malformed %q", tok, h)
			}
			return
		}
		if !strings.EqualFold(h[:6], "bearer") || !strings.Contains(h, tok) {
			t.Fatalf("token %q not from a Bearer header %q", tok, h)
		}
		if tok == "" || len(tok) > maxTokenLen || strings.ContainsAny(tok, " \t,\"\\") {
			t.Fatalf("bad token %q from %q", tok, h)
		}
	})
}

// FuzzCheck feeds mutated Envoy CheckRequests (protobuf wire format, seeded
// from the protojson fixtures) to the real check and holds one invariant:
// nothing is allowed without the valid token for that resource, the API key,
// or (for a credential-less OPTIONS with CORS headers) a preflight.
func FuzzCheck(f *testing.F) {
	db := openSQLite(f)
	c := startChecker(f, Config{
		Store: db, APIKey: testKey, Scopes: []string{"mcp"}, AllowPreflight: true, Logger: discard(),
		RequiredScopes: []ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin"}}},
	})
	valid := mint(f, db, mintOpts{})
	other := mint(f, db, mintOpts{resource: otherURL})
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "envoy_*.json"))
	for _, fx := range fixtures {
		raw, err := os.ReadFile(fx)
		if err != nil {
			f.Fatal(err)
		}
		for _, tok := range []string{valid, other, testKey, token.New(token.PrefixAccess)} {
			req := new(authv3.CheckRequest)
			if err := protojson.Unmarshal(fill(raw, tok), req); err != nil {
				f.Fatal(err)
			}
			b, err := proto.Marshal(req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(authv3.CheckRequest)
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		r := envoyRequest(req)
		d, err := c.Check(ctx, r)
		if err != nil {
			t.Fatalf("store error from a healthy store: %v", err)
		}
		auth := r.Headers["authorization"]
		switch {
		case !d.Allow:
			if d.Status != 400 && d.Status != 401 && d.Status != 403 {
				t.Fatalf("denied with status %d", d.Status)
			}
			if d.Status == 401 && !strings.Contains(headerValue(d.Headers, "WWW-Authenticate"), "resource_metadata=") {
				t.Fatalf("401 without resource_metadata: %+v", d)
			}
		case d.Reason == ReasonToken:
			if !strings.Contains(auth, valid) {
				t.Fatalf("allowed without the valid token: %q", auth)
			}
			if !strings.Contains(strings.ToLower(r.Host), "mcp.example.com") {
				t.Fatalf("token for %s allowed on host %q", mcpURL, r.Host)
			}
			if headerValue(d.Headers, DefaultUserHeader) != testUser {
				t.Fatalf("allowed without identity: %+v", d)
			}
		case d.Reason == ReasonAPIKey:
			if !strings.Contains(auth, testKey) {
				t.Fatalf("API key allowed without the key: %q", auth)
			}
		case d.Reason == ReasonPreflight:
			if r.Method != "OPTIONS" || auth != "" {
				t.Fatalf("preflight allowed for %s with credentials %q", r.Method, auth)
			}
		default:
			t.Fatalf("allowed for reason %v", d.Reason)
		}
		if d.Allow {
			if len(d.Headers) != 3 {
				t.Fatalf("allowed without every identity header: %+v", d)
			}
			if _, err := resource.CanonicalPath(r.Path); err != nil {
				t.Fatalf("allowed an ambiguous path %q: %v", r.Path, err)
			}
		}
		if d.Allow && d.Reason != ReasonToken {
			for _, h := range d.Headers {
				if h.Value != "" && !(d.Reason == ReasonAPIKey && h.Name == DefaultUserHeader && h.Value == legacyAPIKeyUser) {
					t.Fatalf("identity header %s=%q without a token: %+v", h.Name, h.Value, d)
				}
			}
		}
	})
}

func headerValue(hs []Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}
