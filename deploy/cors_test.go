package deploy

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestDenialReadableCrossOrigin: a browser-based MCP client (MCP
// Inspector) can read the check's 401 challenge behind Envoy (passgate's
// real gRPC check, asked as Envoy asks it) and behind real Caddy with the
// shipped Caddyfile, which both send the denial's headers to the client:
// with an Origin, the denial allows any origin and exposes
// WWW-Authenticate, as deploy/nginx.conf does; without one, no CORS
// headers.
func TestDenialReadableCrossOrigin(t *testing.T) {
	const origin = "http://localhost:6274" // MCP Inspector's default
	want := map[string]string{
		"access-control-allow-origin":   "*",
		"access-control-expose-headers": "WWW-Authenticate",
		"vary":                          "Origin",
	}

	t.Run("envoy grpc", func(t *testing.T) {
		srv := e2etest.Start(t, e2etest.Options{Resource: "https://mcp.example.com/mcp"})
		conn, err := grpc.NewClient(srv.Opts.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, withOrigin := range []bool{true, false} {
			headers := map[string]string{":authority": "mcp.example.com", ":path": "/mcp", ":method": "POST"}
			if withOrigin {
				headers["origin"] = origin
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "POST", Host: "mcp.example.com", Path: "/mcp", Scheme: "https", Headers: headers,
				}},
			}})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if d.GetStatus().GetCode() != 401 {
				t.Fatalf("no token: %v, want a 401 denial", resp)
			}
			got := map[string]string{}
			for _, h := range d.GetHeaders() {
				got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			checkCORSHeaders(t, "gRPC denial", withOrigin, func(k string) string {
				for name, v := range got {
					if http.CanonicalHeaderKey(name) == http.CanonicalHeaderKey(k) {
						return v
					}
				}
				return ""
			}, want)
		}
	})

	t.Run("caddy", func(t *testing.T) {
		e2etest.NeedTool(t, "caddy")
		rec := startRecorder(t)
		passAddr := e2etest.FreeAddr(t)
		addr := startCaddy(t, caddyOptions{Hosts: []string{nameA}, PassgateAddr: passAddr, UpstreamAddr: rec.addr()})
		host := net.JoinHostPort(nameA, port(t, addr))
		e2etest.Start(t, e2etest.Options{HTTPAddr: passAddr, Resource: "http://" + host + "/mcp"})
		for _, withOrigin := range []bool{true, false} {
			req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+addr+"/mcp", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			if withOrigin {
				req.Header.Set("Origin", origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("no token through Caddy: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			checkCORSHeaders(t, "Caddy's 401", withOrigin, resp.Header.Get, want)
		}
	})
}

func checkCORSHeaders(t *testing.T, what string, withOrigin bool, get func(string) string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got := get(k)
		if withOrigin && got != v {
			t.Errorf("%s with Origin: %s = %q, want %q", what, k, got, v)
		}
		if !withOrigin && k == "access-control-allow-origin" && got != "" {
			t.Errorf("%s without Origin: %s = %q, want none", what, k, got)
		}
	}
}
