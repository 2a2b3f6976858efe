package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passgate/passgate/extauthz"
)

// client talks to one check server (passgate or the reference) over gRPC,
// the HTTP check, and nginx in front of it.
type client struct {
	conns    []*grpc.ClientConn
	authz    []authv3.AuthorizationClient
	checkURL string // HTTP check
	nginxURL string // /mcp through nginx; empty without nginx
	proxyURL string // /mcp through passgate's built-in proxy
	http     *http.Client
	resHost  string // host:port of the protected resource
	// mcpHeaders adds Mcp-Method and Mcp-Name (tools/call echo) to every
	// check, for --policy-rules.
	mcpHeaders bool
	// rawCodec is the call option of rawCheck, built once.
	rawCodec grpc.CallOption
}

func newClient(grpcAddr, httpAddr, nginxURL, resHost string, conns, conc int) (*client, error) {
	c := &client{
		checkURL: "http://" + httpAddr + extauthz.CheckPathNginx,
		proxyURL: "http://" + httpAddr + "/mcp",
		nginxURL: nginxURL,
		resHost:  resHost,
		rawCodec: grpc.ForceCodec(rawCodec{}),
		http: &http.Client{
			Transport: &http.Transport{
				MaxIdleConnsPerHost: conc,
				MaxConnsPerHost:     conc,
				DisableCompression:  true,
				IdleConnTimeout:     time.Minute,
			},
			Timeout: 10 * time.Second,
		},
	}
	for range conns {
		// Separate connections, as Envoy opens one per worker thread.
		cc, err := grpc.NewClient("passthrough:///"+grpcAddr,
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.close()
			return nil, fmt.Errorf("grpc client: %w", err)
		}
		c.conns = append(c.conns, cc)
		c.authz = append(c.authz, authv3.NewAuthorizationClient(cc))
	}
	return c, nil
}

func (c *client) close() {
	for _, cc := range c.conns {
		cc.Close()
	}
	c.http.CloseIdleConnections()
}

// checkRequest is what Envoy sends for an MCP POST.
func (c *client) checkRequest(tok string) *authv3.CheckRequest {
	req := c.baseCheckRequest(tok)
	if c.mcpHeaders {
		h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
		h["mcp-method"], h["mcp-name"] = "tools/call", "echo"
	}
	return req
}

func (c *client) baseCheckRequest(tok string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "POST", Scheme: "http", Host: c.resHost, Path: "/mcp", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": c.resHost, ":method": "POST", ":path": "/mcp", ":scheme": "http",
				"authorization": "Bearer " + tok, "content-type": "application/json",
				"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18",
				"x-request-id": "5f2c0c5e-8b1a-4a57-9d4e-3c7f0a1b2c3d", "user-agent": "passgate-bench",
			}}}}}
}

// outcome is the decision a scenario expects.
type outcome bool

const (
	wantAllow outcome = true
	wantDeny  outcome = false
)

var errUnexpected = errors.New("unexpected decision")

// grpcCheck sends req on worker w's connection.
func (c *client) grpcCheck(ctx context.Context, w int, req *authv3.CheckRequest, want outcome) error {
	resp, err := c.authz[w%len(c.authz)].Check(ctx, req)
	if err != nil {
		return err
	}
	allowed := resp.GetStatus().GetCode() == 0 && resp.GetOkResponse() != nil
	if outcome(allowed) != want {
		return fmt.Errorf("%w: grpc status %d", errUnexpected, resp.GetStatus().GetCode())
	}
	if !allowed && resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		return fmt.Errorf("%w: denied with %d", errUnexpected, resp.GetDeniedResponse().GetStatus().GetCode())
	}
	return nil
}

// httpCheck asks the HTTP check as nginx's auth_request subrequest does.
func (c *client) httpCheck(ctx context.Context, tok string, want outcome) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.checkURL, nil)
	if err != nil {
		return err
	}
	req.Header["X-Original-Uri"] = []string{"/mcp"}
	req.Header["X-Original-Method"] = []string{"POST"}
	req.Header["X-Forwarded-Host"] = []string{c.resHost}
	req.Header["X-Forwarded-Proto"] = []string{"http"}
	req.Header["Authorization"] = []string{"Bearer " + tok}
	if c.mcpHeaders {
		req.Header["Mcp-Method"], req.Header["Mcp-Name"] = []string{"tools/call"}, []string{"echo"}
	}
	return c.do(req, want)
}

const mcpBody = `{"jsonrpc":"2.0","id":1,"method":"ping"}`

// nginxRequest is an MCP POST through nginx.
func (c *client) nginxRequest(ctx context.Context, tok string, want outcome) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.nginxURL, strings.NewReader(mcpBody))
	if err != nil {
		return err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"application/json, text/event-stream"}
	req.Header["Authorization"] = []string{"Bearer " + tok}
	return c.do(req, want)
}

// proxyRequest is the same MCP POST sent to passgate's built-in proxy.
// passgate's HTTP listener plays the resource's host, as behind a TLS
// terminator that keeps Host: the request names the resource's authority,
// so one token (and one cache entry) serves both this and nginxRequest.
func (c *client) proxyRequest(ctx context.Context, tok string, want outcome) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.proxyURL, strings.NewReader(mcpBody))
	if err != nil {
		return err
	}
	req.Host = c.resHost
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"application/json, text/event-stream"}
	req.Header["Authorization"] = []string{"Bearer " + tok}
	return c.do(req, want)
}

func (c *client) do(req *http.Request, want outcome) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case want == wantAllow && resp.StatusCode == http.StatusOK:
	case want == wantDeny && resp.StatusCode == http.StatusUnauthorized:
	default:
		return fmt.Errorf("%w: HTTP %d", errUnexpected, resp.StatusCode)
	}
	return nil
}

// tokenSource hands out the token of each request.
type tokenSource interface {
	next(w int) (string, error)
}

// fixedToken is the cache-hit source: one token, always.
type fixedToken string

func (t fixedToken) next(int) (string, error) { return string(t), nil }

// poolTokens hands out each token of a pool once (cache misses); when the
// pool is used up it fails with errExhausted, or wraps when wrap is set
// (the reference, which caches nothing).
type poolTokens struct {
	pool []string
	i    *atomic.Int64
	wrap bool
}

func (p poolTokens) next(int) (string, error) {
	i := p.i.Add(1) - 1
	if i >= int64(len(p.pool)) {
		if !p.wrap {
			return "", errExhausted
		}
		i %= int64(len(p.pool))
	}
	return p.pool[i], nil
}

// invalidTokens makes a new, well-formed access token passgate never
// issued for every request: each one costs passgate a store lookup.
type invalidTokens struct {
	prefix string // "pga_" and 27 random characters
	ctr    []paddedCounter
}

type paddedCounter struct {
	n uint64
	_ [56]byte
}

func newInvalidTokens(conc int) *invalidTokens {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return &invalidTokens{prefix: "pga_" + base64.RawURLEncoding.EncodeToString(b[:])[:27], ctr: make([]paddedCounter, conc)}
}

func (t *invalidTokens) next(w int) (string, error) {
	t.ctr[w].n++
	// 16 hex digits complete the 43 base64url characters of a real token.
	s := strconv.FormatUint(uint64(w)<<40|t.ctr[w].n, 16)
	return t.prefix + strings.Repeat("0", 16-len(s)) + s, nil
}
