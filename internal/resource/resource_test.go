package resource

import (
	"net/url"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		raw      string
		wantErr  bool
		url      string // "" means raw
		host     string
		path     string
		metadata string
	}{
		{raw: "https://mcp.example.com/mcp", host: "mcp.example.com", path: "/mcp", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{raw: "https://MCP.example.com:443/mcp/", url: "https://mcp.example.com/mcp", host: "mcp.example.com", path: "/mcp", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{raw: "https://mcp.example.com", host: "mcp.example.com", path: "/", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{raw: "http://127.0.0.1:8000/mcp", host: "127.0.0.1:8000", path: "/mcp", metadata: "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"},
		{raw: "http://localhost/mcp", host: "localhost", path: "/mcp", metadata: "http://localhost/.well-known/oauth-protected-resource/mcp"},
		{raw: "http://mcp.example.com/mcp", wantErr: true},
		{raw: "https://mcp.example.com/mcp#x", wantErr: true},
		{raw: "https://mcp.example.com/mcp?a=b", wantErr: true},
		{raw: "https://u:p@mcp.example.com/mcp", wantErr: true},
		{raw: "mcp.example.com/mcp", wantErr: true},
		{raw: "ftp://mcp.example.com/", wantErr: true},
		{raw: "", wantErr: true},
		{raw: "https://mcp.example.com/a/../mcp", wantErr: true},
		{raw: "https://mcp.example.com/%6Dcp", wantErr: true},
		{raw: "https://mcp.example.com/a%2Fb", wantErr: true},
		{raw: "https://mcp.example.com/m;cp", wantErr: true},
		{raw: "https://mcp.example.com/", url: "https://mcp.example.com", host: "mcp.example.com", path: "/", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{raw: "HTTP://LOCALHOST:80/mcp", url: "http://localhost/mcp", host: "localhost", path: "/mcp", metadata: "http://localhost/.well-known/oauth-protected-resource/mcp"},
		{raw: "https://mcp.example.com//mcp", wantErr: true},
	}
	for _, tt := range tests {
		r, err := Parse(tt.raw)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, wantErr %v", tt.raw, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if tt.url == "" {
			tt.url = tt.raw
		}
		if r.URL != tt.url || r.Configured != tt.raw || r.Host != tt.host || r.Path != tt.path || r.MetadataURL() != tt.metadata {
			t.Errorf("Parse(%q) = %+v metadata %q; want host %q path %q metadata %q", tt.raw, r, r.MetadataURL(), tt.host, tt.path, tt.metadata)
		}
	}
}

func TestFind(t *testing.T) {
	rs, err := ParseAll([]string{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin", "https://other.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path string
		want       string
	}{
		{"mcp.example.com", "/mcp", "https://mcp.example.com/mcp"},
		{"MCP.example.com:443", "/mcp/", "https://mcp.example.com/mcp"},
		{"mcp.example.com", "/mcp/admin/tools", "https://mcp.example.com/mcp/admin"},
		{"mcp.example.com", "/mcpx", ""},
		{"mcp.example.com", "/", ""},
		{"evil.example.com", "/mcp", ""},
		{"other.example.com", "/anything", "https://other.example.com"},
	}
	for _, tt := range tests {
		r, ok := Find(rs, "https", tt.host, tt.path)
		got := ""
		if ok {
			got = r.URL
		}
		if got != tt.want {
			t.Errorf("Find(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestParseAllReportsEveryProblem(t *testing.T) {
	_, err := ParseAll([]string{"http://evil.example/", "https://a.example/x", "https://a.example/x", "nope"})
	validtest.Mentions(t, err, "http://evil.example/", "listed twice", "nope")
}

// TestCanonical: spellings of one identifier canonicalize to one string;
// what could name another server or path is refused.
func TestCanonical(t *testing.T) {
	canonicalIndicator.test(t, []canonicalCase{
		{"canonical", "https://mcp.example.com/mcp", "https://mcp.example.com/mcp"},
		{"uppercase scheme and host", "HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"},
		{"default port", "https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"},
		{"empty port", "https://mcp.example.com:/mcp", "https://mcp.example.com/mcp"},
		{"zero-padded default port", "https://mcp.example.com:0443/mcp", "https://mcp.example.com/mcp"},
		{"other port kept", "https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp"},
		{"http default port on loopback", "http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"},
		{"https port 80 kept", "https://mcp.example.com:80/mcp", "https://mcp.example.com:80/mcp"},
		{"trailing slash", "https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"},
		{"all at once", "HTTPS://MCP.example.com:443/mcp/", "https://mcp.example.com/mcp"},
		{"origin", "https://mcp.example.com", "https://mcp.example.com"},
		{"origin with slash", "https://mcp.example.com/", "https://mcp.example.com"},
		{"encoded unreserved", "https://mcp.example.com/%6Dcp", "https://mcp.example.com/mcp"},
		{"path case kept", "https://mcp.example.com/MCP", "https://mcp.example.com/MCP"},
		{"IPv6 loopback", "http://[::1]:8080/mcp", "http://[::1]:8080/mcp"},
		{"localhost uppercase", "http://LocalHost:3000/mcp", "http://localhost:3000/mcp"},

		{"empty", "", ""},
		{"fragment", "https://mcp.example.com/mcp#x", ""},
		{"empty fragment", "https://mcp.example.com/mcp#", ""},
		{"query", "https://mcp.example.com/mcp?tenant=1", ""},
		{"empty query", "https://mcp.example.com/mcp?", ""},
		{"userinfo", "https://alice@mcp.example.com/mcp", ""},
		{"empty userinfo", "https://@mcp.example.com/mcp", ""},
		{"userinfo with password", "https://a:b@mcp.example.com/mcp", ""},
		{"http off loopback", "http://mcp.example.com/mcp", ""},
		{"other scheme", "wss://mcp.example.com/mcp", ""},
		{"no scheme", "mcp.example.com/mcp", ""},
		{"relative", "/mcp", ""},
		{"scheme-relative", "//mcp.example.com/mcp", ""},
		{"opaque", "https:mcp.example.com/mcp", ""},
		{"one slash", "https:/mcp.example.com/mcp", ""},
		{"encoded slash", "https://mcp.example.com/mcp%2Fadmin", ""},
		{"encoded backslash", "https://mcp.example.com/mcp%5cadmin", ""},
		{"dot dot", "https://mcp.example.com/other/../mcp", ""},
		{"encoded dot dot", "https://mcp.example.com/other/%2e%2e/mcp", ""},
		{"dot", "https://mcp.example.com/./mcp", ""},
		{"trailing dot", "https://mcp.example.com/mcp/.", ""},
		{"double slash", "https://mcp.example.com//mcp", ""},
		{"two trailing slashes", "https://mcp.example.com/mcp//", ""},
		{"path parameter", "https://mcp.example.com/mcp;x", ""},
		{"double encoding", "https://mcp.example.com/%252e%252e/mcp", ""},
		{"NUL", "https://mcp.example.com/mcp%00", ""},
		{"port out of range", "https://mcp.example.com:65536/mcp", ""},
		{"port zero", "https://mcp.example.com:0/mcp", ""},
		{"signed port", "https://mcp.example.com:+443/mcp", ""},
		{"non-ASCII host", "https://mcp.exämple.com/mcp", ""},
		{"encoded host", "https://mcp.ex%C3%A4mple.com/mcp", ""},
		{"IPv6 zone", "http://[fe80::1%25eth0]/mcp", ""},
		{"IPv4 in brackets", "http://[127.0.0.1]/mcp", ""},
		{"backslash authority", "https://evil.example\\@mcp.example.com/mcp", ""},
		{"space", "https://mcp.example.com /mcp", ""},
	})
}

// TestLookup: indicators are compared in canonical form, and an origin
// names its only resource.
func TestLookup(t *testing.T) {
	rs, err := ParseAll([]string{"https://MCP.example.com/mcp/", "https://mcp.example.com/admin", "https://solo.example.com:8443/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp"},
		{"HTTPS://MCP.EXAMPLE.COM:443/mcp/", "https://mcp.example.com/mcp"},
		{"https://mcp.example.com/admin/", "https://mcp.example.com/admin"},
		{"https://solo.example.com:8443", "https://solo.example.com:8443/mcp"},
		{"https://SOLO.example.com:8443/", "https://solo.example.com:8443/mcp"},
		{"https://mcp.example.com", ""}, // two resources share the origin
		{"https://solo.example.com/mcp", ""},
		{"https://mcp.example.com/mcp/x", ""},
		{"https://mcp.example.com/MCP", ""},
		{"https://mcp.example.com/mcp#x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := Lookup(rs, tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Lookup(%q) = %q; want an error", tt.in, got.URL)
			}
			continue
		}
		if err != nil || got.URL != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.in, got.URL, err, tt.want)
		}
	}
	if _, err := ParseAll([]string{"https://mcp.example.com/mcp", "HTTPS://mcp.example.com:443/mcp/"}); err == nil {
		t.Error("ParseAll accepted two spellings of one resource")
	}
}

// TestAudience: a stored audience written as configured before
// canonicalization matches its canonical resource.
func TestAudience(t *testing.T) {
	for in, want := range map[string]string{
		"https://mcp.example.com/mcp":      "https://mcp.example.com/mcp",
		"https://MCP.example.com:443/mcp/": "https://mcp.example.com/mcp",
		"not a url":                        "not a url",
		"https://mcp.example.com/a/../mcp": "https://mcp.example.com/a/../mcp",
	} {
		if got := Audience(in); got != want {
			t.Errorf("Audience(%q) = %q; want %q", in, got, want)
		}
	}
}

// FuzzCanonical holds the invariants: the result is its own canonical
// form, has a lowercase scheme and host, no trailing slash, no query,
// fragment or userinfo, and Parse accepts it as the same identifier.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"https://mcp.example.com/mcp", "HTTPS://MCP.example.com:443/mcp/", "http://[::1]:80/", "https://h/%6d%63p", "https://h:/a", "https://a@h/", "https://h/a/../b", "https://h/a%2Fb", "https://h/#", "http://localhost:0080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := canonicalIndicator.fuzz(t, in)
		if !ok {
			return
		}
		if strings.HasSuffix(out, "/") || strings.ContainsAny(out, "?# ") {
			t.Fatalf("Canonical(%q) = %q", in, out)
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("Canonical(%q) = %q does not parse: %v", in, out, err)
		}
		if u.User != nil || u.Host != strings.ToLower(u.Host) || (u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80") {
			t.Fatalf("Canonical(%q) = %q: host not canonical", in, out)
		}
		r, err := Parse(out)
		if err != nil || r.URL != out {
			t.Fatalf("Parse(Canonical(%q) = %q) = %q, %v", in, out, r.URL, err)
		}
	})
}
