package oauthweb

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestGoldenTranscripts pins, byte for byte, what a client reads from the
// documents and errors other implementations parse: the RFC 8414
// authorization server metadata, the RFC 9728 protected resource metadata,
// an RFC 6749 token endpoint error and an RFC 7591 registration error,
// with their status and headers (Cache-Control: no-store on errors, CORS
// on metadata). A change shows up as a diff of testdata/*.txt in review;
// rewrite them with `go test ./oauthweb/ -run Golden -update`.
func TestGoldenTranscripts(t *testing.T) {
	e := newEnv(t)
	form := func(v url.Values) (string, string) {
		return "application/x-www-form-urlencoded", v.Encode()
	}
	tests := []struct {
		name, method, path string
		contentType, body  string
		header             http.Header
	}{
		{name: "as-metadata", method: "GET", path: "/.well-known/oauth-authorization-server",
			header: http.Header{"Origin": {"https://client.example"}}},
		{name: "protected-resource-metadata", method: "GET", path: "/.well-known/oauth-protected-resource/mcp",
			header: http.Header{"Origin": {"https://client.example"}}},
		{name: "token-unsupported-grant", method: "POST", path: "/oauth/token"},
		{name: "token-invalid-grant", method: "POST", path: "/oauth/token"},
		{name: "register-javascript-redirect", method: "POST", path: "/oauth/register", contentType: "application/json",
			body: `{"client_name":"x","redirect_uris":["javascript:alert(1)"],"token_endpoint_auth_method":"none"}`},
		{name: "unknown-path", method: "GET", path: "/oauth/nope"},
		// RFC 9728 §3.3: the root document describes the origin.
		{name: "protected-resource-metadata-root", method: "GET", path: "/.well-known/oauth-protected-resource"},
	}
	client := e.publicClient()
	tests[2].contentType, tests[2].body = form(url.Values{"grant_type": {"password"}, "client_id": {client}, "username": {testUser}, "password": {"wrong"}})
	tests[3].contentType, tests[3].body = form(url.Values{"grant_type": {"authorization_code"}, "client_id": {client},
		"code": {"pgc_not-a-code"}, "redirect_uri": {testRedirect}, "code_verifier": {strings.Repeat("v", 43)}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, e.url(tt.path), strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e2etest.Transcript(req, resp, map[string]string{e.issuer: "http://ISSUER", client: "CLIENT_ID"})
			if err != nil {
				t.Fatal(err)
			}
			e2etest.Golden(t, tt.name+".txt", got)
		})
	}
}
