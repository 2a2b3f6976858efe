package extauthz

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/health"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/passgate/passgate/internal/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestEnvoyRequest(t *testing.T) {
	for _, fx := range []string{"envoy_post_mcp.json", "envoy_header_map.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", fx))
		if err != nil {
			t.Fatal(err)
		}
		raw = fill(raw, "pga_x")
		req := new(authv3.CheckRequest)
		if err := protojson.Unmarshal(raw, req); err != nil {
			t.Fatal(err)
		}
		r := envoyRequest(req)
		got := []string{r.Method, r.Scheme, r.Host, r.Path, r.SourceAddress, r.Headers["authorization"], r.Headers["origin"]}
		want := []string{"POST", "https", "mcp.example.com", "/mcp", "203.0.113.7", "Bearer pga_x", "https://inspector.example"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", fx, diff)
		}
	}
	// Nil-safe: an empty request (no path) is refused, not a panic.
	c, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: openSQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := grpcServer{c: c}.Check(context.Background(), &authv3.CheckRequest{})
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
		t.Errorf("empty CheckRequest: %v, %v", resp, err)
	}
	if _, err := (grpcServer{c: c}).Check(context.Background(), nil); err != nil {
		t.Errorf("nil CheckRequest: %v", err)
	}
}

// TestGRPCHealth: SetServing drives grpc.health.v1, and reflection is
// registered.
func TestGRPCHealth(t *testing.T) {
	c, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: openSQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	s := NewGRPCServer(c, hs)
	go s.Serve(lis)
	defer s.Stop()
	SetServing(hs, true)
	if _, ok := s.GetServiceInfo()["grpc.reflection.v1.ServerReflection"]; !ok {
		t.Error("reflection not registered")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: AuthorizationService})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	if got := check(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", got)
	}
	SetServing(hs, false)
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SetServing(false) = %v", got)
	}
}

// dialGRPC serves s on a loopback port until the test ends and returns an
// Authorization client connected to it, as Envoy connects.
func dialGRPC(t testing.TB, s *grpc.Server) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkStatus sends req through client and returns the HTTP status Envoy
// would answer with (200 when allowed) and the response; a gRPC error
// fails the test.
func checkStatus(t *testing.T, client authv3.AuthorizationClient, req *authv3.CheckRequest) (int32, *authv3.CheckResponse) {
	t.Helper()
	resp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if dr := resp.GetDeniedResponse(); dr != nil {
		return int32(dr.GetStatus().GetCode()), resp
	}
	return 200, resp
}

// TestGRPCRoutePins: Envoy reports the client's :authority whatever virtual
// host routed the request, so a route pins the port (or the resource) its
// MCP server is for in the ext_authz context_extensions, and the gRPC check
// refuses an authority that names another: two resources on one name and
// different ports, one Envoy listener with domains ["*"], and a token for
// the one on 8443 must not open the route for the one on 443.
func TestGRPCRoutePins(t *testing.T) {
	const onPort = "https://mcp.example.com:8443/mcp"
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db, Resources: resource.MustParseAll(mcpURL, onPort, otherURL)})
	client := startGRPC(t, c)
	tok8443 := mint(t, db, mintOpts{resource: onPort})
	tok443 := mint(t, db, mintOpts{})
	tests := []struct {
		name      string
		authority string
		ext       map[string]string
		tok       string
		want      int32 // HTTP status of the denial, or 200
	}{
		{"no pin: the authority chooses the resource", "mcp.example.com:8443", nil, tok8443, 200},
		{"port pinned, authority names it", "mcp.example.com:8443", map[string]string{"port": "8443"}, tok8443, 200},
		{"port pinned, authority names the default port", "mcp.example.com", map[string]string{"port": "8443"}, tok443, 403},
		{"port 443 pinned, authority names 8443", "mcp.example.com:8443", map[string]string{"port": "443"}, tok8443, 403},
		{"port 443 pinned, authority without a port", "mcp.example.com", map[string]string{"port": "443"}, tok443, 200},
		{"port pin not a number", "mcp.example.com", map[string]string{"port": "https"}, tok443, 400},
		{"resource pinned, authority matches", "mcp.example.com", map[string]string{"resource": mcpURL}, tok443, 200},
		{"resource pinned, authority names another port", "mcp.example.com:8443", map[string]string{"resource": mcpURL}, tok8443, 403},
		{"resource pinned, authority names another host", "other.example.com", map[string]string{"resource": mcpURL}, mint(t, db, mintOpts{resource: otherURL}), 403},
		{"resource pin names no configured resource", "mcp.example.com", map[string]string{"resource": "https://nowhere.example.com/mcp"}, tok443, 400},
		{"other filters' keys are ignored", "mcp.example.com:8443", map[string]string{"tenant": "a"}, tok8443, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := envoyReq(tt.tok)
			h := req.Attributes.Request.Http
			h.Host, h.Headers[":authority"] = tt.authority, tt.authority
			req.Attributes.ContextExtensions = tt.ext
			if got, _ := checkStatus(t, client, req); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}
