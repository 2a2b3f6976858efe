package oauthweb

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// TestMCPGoSDKClient connects the official MCP Go SDK client to an MCP
// server guarded by passgate tokens. The client knows only the MCP URL: it
// discovers passgate from the 401, registers, gets a code through the
// login and consent pages, and exchanges it for a token bound to the
// resource.
func TestMCPGoSDKClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res resource.Resource
	e := newEnvWrapped(t, func(e *env, h http.Handler) http.Handler {
		server := mcp.NewServer(&mcp.Implementation{Name: "guarded", Version: "1.0.0"}, nil)
		mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
		mux := http.NewServeMux()
		mux.Handle("/", h)
		// A minimal bearer check standing in for the proxy.
		mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if ok {
				tk, err := e.st.GetToken(r.Context(), token.Hash(bearer), e.clock.Now())
				if err == nil && tk.Kind == store.KindAccess && tk.RevokedAt.IsZero() && tk.Resource == res.URL {
					mcpHandler.ServeHTTP(w, r)
					return
				}
			}
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+res.MetadataURL()+`"`)
			w.WriteHeader(http.StatusUnauthorized)
		}))
		return mux
	}, func(c *Config) {
		c.Resources = testResources(t, c.Issuer+"/mcp")
		res = c.Resources[0]
	})
	b := e.browser()
	e.login(b)
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{testRedirect}, TokenEndpointAuthMethod: "none", ClientName: "MCP Go SDK",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL: testRedirect,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			cb := e.authorize(b, args.URL)
			q := cb.Query()
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "sdk-client", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: res.URL, OAuthHandler: h}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	if err := session.Ping(ctx, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
	ts, err := h.TokenSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	e.secret(tok.AccessToken, tok.RefreshToken)
	at, err := e.st.GetToken(ctx, token.Hash(tok.AccessToken), e.clock.Now())
	if err != nil || at.Resource != res.URL {
		t.Errorf("token resource %q (%v), want %q", at.Resource, err, res.URL)
	}
}
