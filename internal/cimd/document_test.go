package cimd

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestValidateClientIDURL(t *testing.T) {
	strict := validtest.Cases[string]{
		Accept: []string{
			"https://client.example/cimd.json",
			"https://client.example:8443/oauth/client",
			"https://client.example/c?v=1",        // a query is allowed
			"https://192.0.2.1/c",                 // an IP literal is syntactically fine
			"https://client.example/a/..b/c.json", // dots inside a name are fine
		},
		Refuse: []string{
			"http://client.example/c",
			"HTTPS://client.example/c", // uppercase scheme
			"https://client.example",   // no path
			"https://client.example/",  // root path
			"https://client.example/a/./c",
			"https://client.example/a/../c",
			"https://client.example/a/..",
			"https://client.example/a/%2e%2E/c", // encoded dotdot
			"https://client.example/c#x",
			"https://client.example/c#", // empty fragment
			"https://user@client.example/c",
			"https://u:p@client.example/c",
			"https://client.example/a b",
			"https://client.example\\@evil.example/c",
			"https://client.example/c\n",
			"https://clïent.example/c",
			"https:///c", // empty host
			"https://client.example:0/c",
			"https://client.example:70000/c",
			"https://client.example:x/c",
			"https://client%2eexample/c",
			"https:client.example/c", // opaque
			"https://client.example/" + strings.Repeat("a", 2000),
			"",
			"http://127.0.0.1:8080/c", // loopback http is refused by default
		},
		Err: validtest.Is[string](ErrInvalidURL),
	}
	validtest.Check(t, "ValidateClientIDURL", func(s string) error { return ValidateClientIDURL(s, false) }, strict)
	validtest.Check(t, "IsClientIDURL", validtest.Bool(IsClientIDURL), validtest.Cases[string]{Accept: strict.Accept, Refuse: strict.Refuse})
	validtest.Check(t, "ValidateClientIDURL with loopback http", func(s string) error { return ValidateClientIDURL(s, true) }, validtest.Cases[string]{
		Accept: []string{
			"http://127.0.0.1:8080/c",
			"http://localhost:8080/c",
			"http://[::1]:8080/c",
			"https://client.example/c", // https is still fine
		},
		Refuse: []string{"http://client.example/c"}, // public http even with the option
		Err:    validtest.Is[string](ErrInvalidURL),
	})
}

const testID = "https://client.example/cimd.json"

// minimalDocument is what Parse makes of a document that gives only
// client_id, client_name and redirect_uris: the rest defaulted.
func minimalDocument(id, name string, redirectURIs ...string) Document {
	return Document{
		ClientID:                id,
		ClientName:              name,
		RedirectURIs:            redirectURIs,
		GrantTypes:              []string{"authorization_code"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: "none",
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		policy  oauth.PrivateSchemes
		want    Document
		wantErr string // substring of the error; "" means success
	}{
		{
			name: "minimal gets defaults",
			body: `{"client_id":"https://client.example/cimd.json","client_name":"Example","redirect_uris":["https://client.example/cb"]}`,
			want: minimalDocument(testID, "Example", "https://client.example/cb"),
		},
		{
			name: "full",
			body: `{"client_id":"https://client.example/cimd.json","client_name":"Claude ✓","client_uri":"https://client.example/",
				"logo_uri":"https://client.example/logo.png","redirect_uris":["https://client.example/cb","http://127.0.0.1/cb"],
				"grant_types":["authorization_code","refresh_token"],"response_types":["code"],
				"token_endpoint_auth_method":"none","scope":"mcp offline_access","unknown":{"x":[1,2]},
				"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}}`,
			want: Document{
				ClientID:                testID,
				ClientName:              "Claude ✓",
				ClientURI:               "https://client.example/",
				LogoURI:                 "https://client.example/logo.png",
				RedirectURIs:            []string{"https://client.example/cb", "http://127.0.0.1/cb"},
				GrantTypes:              []string{"authorization_code", "refresh_token"},
				ResponseTypes:           []string{"code"},
				TokenEndpointAuthMethod: "none",
				Scope:                   "mcp offline_access",
			},
		},
		{
			name: "known private scheme by default",
			body: `{"client_id":"https://client.example/cimd.json","client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"]}`,
			want: minimalDocument(testID, "Cursor", "cursor://anysphere.cursor-mcp/oauth/callback"),
		},
		{name: "private scheme when off", body: `{"client_id":"https://client.example/cimd.json","client_name":"Cursor","redirect_uris":["cursor://x/cb"]}`, policy: oauth.PrivateSchemesOff, wantErr: "redirect_uris[0]"},
		{name: "unknown private scheme by default", body: `{"client_id":"https://client.example/cimd.json","client_name":"X","redirect_uris":["myapp://x/cb"]}`, wantErr: "redirect_uris[0]"},
		{name: "client_name missing", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_name is missing"},
		{name: "client_name blank", body: `{"client_id":"https://client.example/cimd.json","client_name":"  ","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_name is missing"},
		{name: "client_name null", body: `{"client_id":"https://client.example/cimd.json","client_name":null,"redirect_uris":["https://client.example/cb"]}`, wantErr: "client_name is missing"},
		{name: "client_id mismatch", body: `{"client_id":"https://evil.example/cimd.json","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "client_id trailing slash", body: `{"client_id":"https://client.example/cimd.json/","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "client_id default port is not equal", body: `{"client_id":"https://client.example:443/cimd.json","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "client_id case", body: `{"client_id":"https://CLIENT.example/cimd.json","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "case-insensitive twin ignored", body: `{"client_id":"https://evil.example/cimd.json","CLIENT_ID":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "redirect_uris twin ignored", body: `{"client_id":"https://client.example/cimd.json","Redirect_URIs":["https://client.example/cb"]}`, wantErr: "redirect_uris is missing"},
		{name: "client_id missing", body: `{"redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id is missing"},
		{name: "client_id null", body: `{"client_id":null,"redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id does not match"},
		{name: "client_id number", body: `{"client_id":1,"redirect_uris":["https://client.example/cb"]}`, wantErr: "client_id has the wrong type"},
		{name: "redirect_uris missing", body: `{"client_id":"https://client.example/cimd.json"}`, wantErr: "redirect_uris is missing"},
		{name: "redirect_uris empty", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":[]}`, wantErr: "redirect_uris is empty"},
		{name: "redirect_uris null", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":null}`, wantErr: "redirect_uris is empty"},
		{name: "redirect_uris string", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":"https://client.example/cb"}`, wantErr: "redirect_uris has the wrong type"},
		{name: "redirect fragment", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb#x"]}`, wantErr: "redirect_uris[0]"},
		{name: "redirect relative", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["/cb"]}`, wantErr: "redirect_uris[0]"},
		{name: "redirect javascript", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["javascript:alert(1)"]}`, policy: oauth.PrivateSchemesAny, wantErr: "redirect_uris[0]"},
		{name: "redirect http public", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb","http://evil.example/cb"]}`, wantErr: "redirect_uris[1]"},
		{name: "client_secret", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_secret":"s3cret"}`, wantErr: "client_secret must not"},
		{name: "client_secret_expires_at", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_secret_expires_at":0}`, wantErr: "client_secret_expires_at must not"},
		{name: "client_secret_basic", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, wantErr: "shared secret"},
		{name: "client_secret_post", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"client_secret_post"}`, wantErr: "shared secret"},
		{name: "client_secret_jwt", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"client_secret_jwt"}`, wantErr: "shared secret"},
		{name: "private_key_jwt", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, wantErr: "private_key_jwt is not supported"},
		{name: "unknown auth method", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"tls_client_auth"}`, wantErr: "not supported"},
		{name: "private jwk", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"jwks":{"keys":[{"kty":"EC","d":"secret"}]}}`, wantErr: "private or symmetric"},
		{name: "symmetric jwk", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"jwks":{"keys":[{"kty":"oct","k":"secret"}]}}`, wantErr: "private or symmetric"},
		{name: "jwks not a set", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"jwks":[1]}`, wantErr: "not a JWK set"},
		{name: "no authorization_code", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"grant_types":["client_credentials"]}`, wantErr: "grant_types"},
		{name: "empty grant_types", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"grant_types":[]}`, wantErr: "grant_types"},
		{name: "no code response", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"response_types":["token"]}`, wantErr: "response_types"},
		{name: "http client_uri", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_uri":"http://client.example/"}`, wantErr: "client_uri"},
		{name: "javascript logo_uri", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"logo_uri":"javascript:alert(1)"}`, wantErr: "logo_uri"},
		{name: "bidi name", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_name":"evil\u202egoogle"}`, wantErr: "client_name"},
		{name: "control name", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_name":"a\nb"}`, wantErr: "client_name"},
		{name: "long name", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, wantErr: "client_name"},
		{name: "bad scope", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"scope":"a\"b"}`, wantErr: "scope"},
		{name: "array", body: `[{"client_id":"https://client.example/cimd.json"}]`, wantErr: "not a JSON object"},
		{name: "null", body: `null`, wantErr: "not a JSON object"},
		{name: "string", body: `"https://client.example/cimd.json"`, wantErr: "not a JSON object"},
		{name: "empty", body: ``, wantErr: "not a JSON object"},
		{name: "truncated", body: `{"client_id":"https://client.example/cimd.json"`, wantErr: "not a JSON object"},
		{name: "trailing data", body: `{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"]} {}`, wantErr: "data after"},
		{name: "html", body: `<html>hi</html>`, wantErr: "not a JSON object"},
		{name: "invalid utf8", body: "{\"client_id\":\"https://client.example/cimd.json\",\"redirect_uris\":[\"https://client.example/cb\"],\"client_name\":\"\xff\"}", wantErr: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(testID, []byte(tt.body), tt.policy)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse accepted: %+v", got)
				}
				if !errors.Is(err, ErrInvalidDocument) {
					t.Errorf("error %v does not wrap ErrInvalidDocument", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret\"") || strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q leaks document contents", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDocumentHost(t *testing.T) {
	d := Document{ClientID: "https://client.example:8443/cimd.json"}
	if got := d.Host(); got != "client.example:8443" {
		t.Errorf("Host = %q", got)
	}
}

// FuzzParse checks that an accepted document always has client_id equal to
// the URL, at least one valid redirect URI, and no shared-secret method.
func FuzzParse(f *testing.F) {
	f.Add(`{"client_id":"https://client.example/cimd.json","client_name":"x","redirect_uris":["https://client.example/cb"]}`, false)
	f.Add(`{"client_id":"https://client.example/cimd.json","redirect_uris":["cursor://x/cb","http://localhost:3/cb"],"grant_types":["authorization_code"],"scope":"mcp"}`, true)
	f.Add(`{"client_id":"https://client.example/cimd.json","redirect_uris":[],"client_secret":"x"}`, false)
	f.Add(`{"client_id":"https://client.example/cimd.json","client_id":"https://evil.example/","redirect_uris":["https://a/"]}`, false)
	f.Add(`{"client_id":"https://client.example/cimd.json","redirect_uris":["https://client.example/cb"],"token_endpoint_auth_method":"client_secret_basic","jwks":{"keys":[{"d":1}]}}`, false)
	f.Fuzz(func(t *testing.T, body string, private bool) {
		policy := oauth.PrivateSchemesDefault
		if private {
			policy = oauth.PrivateSchemesAny
		}
		doc, err := Parse(testID, []byte(body), policy)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v does not wrap ErrInvalidDocument", err)
			}
			return
		}
		if doc.ClientID != testID {
			t.Fatalf("accepted client_id %q for %q", doc.ClientID, testID)
		}
		if len(doc.RedirectURIs) == 0 {
			t.Fatal("accepted a document without redirect URIs")
		}
		for _, r := range doc.RedirectURIs {
			if err := oauth.ValidateRedirectURI(r, policy); err != nil {
				t.Fatalf("accepted redirect URI %q: %v", r, err)
			}
		}
		if strings.TrimSpace(doc.ClientName) == "" {
			t.Fatal("accepted a document without client_name")
		}
		if doc.TokenEndpointAuthMethod != "none" {
			t.Fatalf("accepted token_endpoint_auth_method %q", doc.TokenEndpointAuthMethod)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("accepted a body that does not decode: %v", err)
		}
		if _, ok := m["client_secret"]; ok {
			t.Fatal("accepted a document with client_secret")
		}
	})
}
