package extauthz

import (
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/passgate/passgate/internal/resource"
)

// familyHeaders are the headers a request-describing proxy may send, of
// every family.
var familyHeaders = []string{
	"X-Original-Uri", "X-Original-Method", "X-Original-Url",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host", "X-Forwarded-Proto",
}

// declared is what each family reads; everything else in familyHeaders
// must be ignored.
var declared = map[family][]string{
	familyNginx:        {"X-Original-Uri", "X-Original-Method", "X-Forwarded-Host", "X-Forwarded-Proto"},
	familyForwardAuth:  {"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host", "X-Forwarded-Proto"},
	familyIngressNginx: {"X-Original-Url", "X-Original-Method"},
	familyEnvoy:        nil,
}

var familyTargets = map[family]string{
	familyNginx:        CheckPathNginx,
	familyForwardAuth:  CheckPathForwardAuth,
	familyIngressNginx: CheckPathIngressNginx + "?host=mcp.example.com",
	familyEnvoy:        CheckPathEnvoy + "/mcp/x?y=1",
}

// TestHTTPRequestFamilies: each check path reads its own family's headers,
// each exactly once, and nothing of the others.
func TestHTTPRequestFamilies(t *testing.T) {
	c := startChecker(t, Config{Store: openSQLite(t)})
	all := map[string]string{
		"X-Original-Uri": "/mcp/nginx", "X-Original-Method": "PUT", "X-Original-Url": "https://mcp.example.com/mcp/ingress",
		"X-Forwarded-Uri": "/mcp/forward", "X-Forwarded-Method": "PATCH", "X-Forwarded-Host": "mcp.example.com:443", "X-Forwarded-Proto": "https",
	}
	type result struct {
		Method, Scheme, Host, Path string
		Reason                     string
	}
	tests := []struct {
		name   string
		f      family
		header map[string]string // nil: all
		dup    string            // a header sent twice
		query  string            // appended to the check path
		want   result
	}{
		{name: "nginx", f: familyNginx, want: result{"PUT", "https", "mcp.example.com:443", "/mcp/nginx", "token"}},
		{name: "forward auth", f: familyForwardAuth, want: result{"PATCH", "https", "mcp.example.com:443", "/mcp/forward", "token"}},
		{name: "ingress-nginx", f: familyIngressNginx, want: result{"PUT", "https", "mcp.example.com", "/mcp/ingress", "token"}},
		{name: "envoy", f: familyEnvoy, want: result{"GET", "", "check.internal", "/mcp/x?y=1", "token"}},
		{name: "nginx without X-Original-URI", f: familyNginx, header: map[string]string{"X-Original-Method": "POST", "X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Uri": "/mcp"},
			want: result{Reason: "invalid_request"}},
		{name: "nginx without X-Forwarded-Host", f: familyNginx, header: map[string]string{"X-Original-Uri": "/mcp", "X-Original-Method": "POST"},
			want: result{Reason: "invalid_request"}},
		{name: "forward auth without X-Forwarded-Method", f: familyForwardAuth, header: map[string]string{"X-Forwarded-Uri": "/mcp", "X-Forwarded-Host": "mcp.example.com", "X-Original-Method": "OPTIONS"},
			want: result{Reason: "invalid_request"}},
		{name: "forward auth, X-Forwarded-Host twice", f: familyForwardAuth, dup: "X-Forwarded-Host", want: result{Reason: "invalid_request"}},
		{name: "nginx, X-Original-Method twice", f: familyNginx, dup: "X-Original-Method", want: result{Reason: "invalid_request"}},
		{name: "nginx, X-Forwarded-Proto twice", f: familyNginx, dup: "X-Forwarded-Proto", want: result{Reason: "invalid_request"}},
		{name: "ingress-nginx, relative X-Original-URL", f: familyIngressNginx, header: map[string]string{"X-Original-Url": "/mcp", "X-Original-Method": "POST"},
			want: result{Reason: "invalid_request"}},
		{name: "ingress-nginx, userinfo in X-Original-URL", f: familyIngressNginx, header: map[string]string{"X-Original-Url": "https://a@mcp.example.com/mcp", "X-Original-Method": "POST"},
			want: result{Reason: "invalid_request"}},
		{name: "ingress-nginx, other host", f: familyIngressNginx, header: map[string]string{"X-Original-Url": "https://other.example.com/mcp", "X-Original-Method": "POST"},
			want: result{Reason: "host_mismatch"}},
		// TestCaddyClientCannotChooseThePort runs the attack through Caddy.
		{name: "forward auth, pinned port matches", f: familyForwardAuth, query: "?port=443", want: result{"PATCH", "https", "mcp.example.com:443", "/mcp/forward", "token"}},
		{name: "forward auth, Host names another port than the pinned one", f: familyForwardAuth, query: "?port=8443", want: result{Reason: "host_mismatch"}},
		{name: "forward auth, Host without a port is the scheme's default", f: familyForwardAuth, query: "?port=8443",
			header: map[string]string{"X-Forwarded-Uri": "/mcp", "X-Forwarded-Method": "POST", "X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Proto": "https"}, want: result{Reason: "host_mismatch"}},
		{name: "forward auth, port pinned twice", f: familyForwardAuth, query: "?port=443&port=8443", want: result{Reason: "invalid_request"}},
		{name: "forward auth, port not a number", f: familyForwardAuth, query: "?port=https", want: result{Reason: "invalid_request"}},
		{name: "forward auth, port with a leading zero", f: familyForwardAuth, query: "?port=0443", want: result{Reason: "invalid_request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", familyTargets[tt.f]+tt.query, nil)
			r.Host = "check.internal"
			h := tt.header
			if h == nil {
				h = all
			}
			for k, v := range h {
				r.Header.Set(k, v)
			}
			if tt.dup != "" {
				r.Header.Add(tt.dup, r.Header.Get(tt.dup))
			}
			req, reason := c.httpRequest(r, tt.f, map[string]string{})
			got := result{Reason: reason.String()}
			if reason == ReasonToken {
				got = result{req.Method, req.Scheme, req.Host, req.Path, reason.String()}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// FuzzHTTPRequestIgnoresOtherFamilies: whatever a client adds, the request
// a family reports depends only on that family's declared headers.
func FuzzHTTPRequestIgnoresOtherFamilies(f *testing.F) {
	f.Add(uint8(0), "/mcp", "POST", "https://mcp.example.com/mcp", "/admin", "OPTIONS", "mcp.example.com", "https")
	f.Add(uint8(1), "/mcp", "OPTIONS", "http://evil/x", "/mcp/admin", "POST", "mcp.example.com", "http")
	f.Add(uint8(2), "/x", "GET", "https://mcp.example.com/mcp/%61dmin", "", "", "", "")
	f.Add(uint8(3), "/mcp", "OPTIONS", "", "/mcp", "OPTIONS", "evil.example", "https")
	c, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: openSQLite(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fam uint8, v0, v1, v2, v3, v4, v5, v6 string) {
		fm := family(fam % 4)
		vals := []string{v0, v1, v2, v3, v4, v5, v6}
		for _, v := range vals {
			if !validHeaderValue(v) {
				return
			}
		}
		build := func(only []string) *http.Request {
			r := httptest.NewRequest("GET", familyTargets[fm], nil)
			for i, name := range familyHeaders {
				if only != nil && !slices.Contains(only, name) {
					continue
				}
				if vals[i] != "" {
					r.Header.Set(name, vals[i])
				}
			}
			return r
		}
		own := declared[fm]
		if own == nil {
			own = []string{} // Envoy's form reads none of them
		}
		gotAll, reasonAll := c.httpRequest(build(nil), fm, map[string]string{})
		gotOwn, reasonOwn := c.httpRequest(build(own), fm, map[string]string{})
		if reasonAll != reasonOwn || gotAll.Method != gotOwn.Method || gotAll.Host != gotOwn.Host ||
			gotAll.Path != gotOwn.Path || gotAll.Scheme != gotOwn.Scheme {
			t.Fatalf("family %d read another family's header: %+v %v vs %+v %v", fm, gotAll, reasonAll, gotOwn, reasonOwn)
		}
	})
}

// validHeaderValue: what net/http would put in a header (no CTLs but tab).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// TestPinnedPortAgreesWithCanonicalHost: pinnedPort compares in place; it
// must accept exactly the authorities whose canonical host
// (resource.CanonicalHost) is the pinned port's.
func TestPinnedPortAgreesWithCanonicalHost(t *testing.T) {
	hosts := []string{"mcp.example.com", "mcp.example.com:443", "mcp.example.com:0443", "mcp.example.com:", "MCP.example.com:8443",
		"mcp.example.com:8443", "mcp.example.com:08443", "mcp.example.com:80", "[::1]", "[::1]:8443", "[::1]:443", "127.0.0.1:8443",
		"mcp.example.com:84a3", "a:b:c", "[::1", "[::1]x", ":8443", ""}
	for _, scheme := range []string{"https", "http", "HTTPS"} {
		for _, pin := range []string{"443", "8443", "80"} {
			for _, h := range hosts {
				req := Request{Scheme: scheme, Host: h}
				got := pinnedPort(req, []string{pin}) == ReasonToken
				name, _, _, ok := splitAuthority(h)
				want := ok && name != "" && resource.CanonicalHost(scheme, h) == resource.CanonicalHost(scheme, net.JoinHostPort(name, pin))
				if got != want {
					t.Errorf("%s %q pinned to %s: accepted %v, want %v", scheme, h, pin, got, want)
				}
			}
		}
	}
}
