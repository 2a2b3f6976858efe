package e2etest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// MCPAuth is how a test runs the official MCP Go SDK client's OAuth flow:
// the SDK registers a public client dynamically (redirecting to
// RedirectURI), and Browser plays the user whenever the SDK asks for an
// authorization.
type MCPAuth struct {
	// HTTPClient is the SDK's client for discovery, registration and the
	// token endpoint.
	HTTPClient *http.Client
	// Browser plays the user with Browser.Approve. Through a proxy, give
	// its HTTP client the proxy's Transport.
	Browser            *Browser
	Username, Password string
	// ClientName is the registration's client_name.
	ClientName string
	// Scope is the registration's scope. Optional: none registered.
	Scope string
	// CheckCallback vets the redirect that carries the code (its iss, say)
	// before the code is handed to the SDK. Optional.
	CheckCallback func(callback *url.URL) error
}

// handler returns the SDK's authorization code handler for a, and a
// counter of the authorizations the user was asked for.
func (a MCPAuth) handler() (*auth.AuthorizationCodeHandler, *atomic.Int32, error) {
	fetches := &atomic.Int32{}
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{RedirectURI}, TokenEndpointAuthMethod: "none", ClientName: a.ClientName,
			GrantTypes: []string{"authorization_code", "refresh_token"}, Scope: a.Scope,
		}},
		RedirectURL: RedirectURI,
		Client:      a.HTTPClient,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			fetches.Add(1)
			cb, _, err := a.Browser.Approve(ctx, args.URL, RedirectURI, a.Username, a.Password)
			if err != nil {
				return nil, err
			}
			if a.CheckCallback != nil {
				if err := a.CheckCallback(cb); err != nil {
					return nil, err
				}
			}
			q := cb.Query()
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	return h, fetches, err
}

// MCPConn is an MCP Go SDK client session that MCPAuth.Connect opened.
type MCPConn struct {
	*mcp.ClientSession
	// Handler is the session's OAuth handler (its TokenSource shows the
	// tokens the SDK holds).
	Handler *auth.AuthorizationCodeHandler
	// Authorizations counts the authorizations the user was asked for.
	Authorizations *atomic.Int32
}

// Connect connects the SDK's client (named ClientName, with opts; nil for
// none) to the MCP server at endpoint over streamable HTTP with a's
// HTTPClient, running a's OAuth flow from the first 401. The session is
// closed when the test ends.
func (a MCPAuth) Connect(ctx context.Context, t testing.TB, endpoint string, opts *mcp.ClientOptions) (*MCPConn, error) {
	h, fetches, err := a.handler()
	if err != nil {
		return nil, err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: a.ClientName, Version: "1.0.0"}, opts)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, OAuthHandler: h, HTTPClient: a.HTTPClient}, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { session.Close() })
	return &MCPConn{ClientSession: session, Handler: h, Authorizations: fetches}, nil
}

// Whoami is the result of the example MCP server's whoami tool
// (examples/mcp-server): the identity headers its request carried.
type Whoami struct {
	User     string `json:"user"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	// AuthorizationReceived reports whether an Authorization header
	// reached the MCP server.
	AuthorizationReceived bool `json:"authorization_received"`
}

// CallWhoami calls the whoami tool on cs and returns its result, with the
// raw JSON for messages; a failed call or a tool error ends the test.
func CallWhoami(ctx context.Context, t testing.TB, cs *mcp.ClientSession) (Whoami, string) {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("tools/call whoami: %v", err)
	}
	if res.IsError {
		t.Fatalf("tools/call whoami: tool error %+v", res.Content)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var w Whoami
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatalf("whoami result %s: %v", raw, err)
	}
	return w, string(raw)
}
