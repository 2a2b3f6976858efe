package e2etest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/passgate/passgate/extauthz"
)

// CheckHTTP asks the HTTP check, as nginx auth_request would
// (extauthz.CheckPathNginx), whether a POST to the resource with "Authorization: Bearer token" may pass, and returns
// the status (200, 401, 403, or 503 when the store cannot answer). An
// empty token sends no Authorization header. It is bounded by 5s.
func (s *Server) CheckHTTP(ctx context.Context, tok string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := s.CheckHTTPRequest(ctx, tok)
	if err != nil {
		return 0, err
	}
	return s.status(req)
}

// CheckHTTPRequest is the request CheckHTTP sends, for a test that reads
// the whole answer (such as the 401's WWW-Authenticate and body).
func (s *Server) CheckHTTPRequest(ctx context.Context, tok string) (*http.Request, error) {
	u, err := url.Parse(s.Resource)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(extauthz.CheckPathNginx), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Original-URI", u.RequestURI())
	req.Header.Set("X-Original-Method", http.MethodPost)
	req.Header.Set("X-Forwarded-Host", u.Host)
	req.Header.Set("X-Forwarded-Proto", u.Scheme)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req, nil
}

// grpcConns caches one client connection per gRPC address.
var grpcConns sync.Map // string -> *grpc.ClientConn

// GRPCConn returns a (shared, lazily connecting) client connection to the
// server's gRPC listener. It is closed when the test ends.
func (s *Server) GRPCConn() *grpc.ClientConn {
	if c, ok := grpcConns.Load(s.Opts.GRPCAddr); ok {
		return c.(*grpc.ClientConn)
	}
	// Reconnect quickly after a restart, as Envoy does: grpc-go's default
	// backoff grows to two minutes.
	c, err := grpc.NewClient(s.Opts.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		s.t.Fatalf("e2e: grpc client: %v", err)
	}
	if prev, loaded := grpcConns.LoadOrStore(s.Opts.GRPCAddr, c); loaded {
		c.Close()
		return prev.(*grpc.ClientConn)
	}
	s.t.Cleanup(func() {
		grpcConns.Delete(s.Opts.GRPCAddr)
		c.Close()
	})
	return c
}

// CheckGRPC asks the Envoy ext_authz v3 service the same question as
// CheckHTTP and returns the HTTP status Envoy would apply: 200 for an OK
// response, the denied response's status (401, 403) otherwise. A gRPC
// error is returned as err (status.Code(err) is Unavailable for a store
// outage on an uncached token), with status 0. It is bounded by 5s.
func (s *Server) CheckGRPC(ctx context.Context, tok string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := url.Parse(s.Resource)
	if err != nil {
		return 0, err
	}
	headers := map[string]string{}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: http.MethodPost, Scheme: u.Scheme, Host: u.Host, Path: u.RequestURI(), Headers: headers,
		}},
	}}
	resp, err := authv3.NewAuthorizationClient(s.GRPCConn()).Check(ctx, req)
	if err != nil {
		return 0, err
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return http.StatusOK, nil
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode()), nil
	}
	return 0, fmt.Errorf("check: status %v without a denied response", resp.GetStatus())
}

// GRPCHealth returns the grpc.health.v1 status of service ("" for the
// whole server), bounded by 2s.
func (s *Server) GRPCHealth(ctx context.Context, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.GRPCConn()).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	return resp.GetStatus(), nil
}

// IsUnavailable reports whether err is a gRPC Unavailable error.
func IsUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }
