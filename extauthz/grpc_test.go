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
