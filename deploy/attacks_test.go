package deploy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// attackStack is the real passgate binary behind real nginx with the
// shipped deploy/nginx.conf (NGINX_SERVER_NAME 127.0.0.1), in front of a
// recorder for the MCP server.
type attackStack struct {
	ngx      *nginx
	upstream *recorder
	st       storeMinter
}

type storeMinter func(resource, scope string) string

// startAttackStack starts the stack; resources maps nginx's address
// (127.0.0.1:port) to passgate's resource URLs.
func startAttackStack(t *testing.T, resources func(addr string) []string) *attackStack {
	t.Helper()
	bin := e2etest.Binary(t)
	up := startRecorder(t)
	passAddr := e2etest.FreeAddr(t)
	ngx := startNginx(t, nginxOptions{PassgateAddr: passAddr, MCPAddr: up.addr()})
	dataDir := t.TempDir()
	e2etest.StartProcess(t, passAddr, bin, []string{
		"serve", "--data-dir", dataDir, "--issuer", ngx.URL, "--resource", strings.Join(resources(ngx.Addr), ","),
		"--http-listen", passAddr, "--grpc-listen", "", "--metrics-listen", "",
	}, nil)
	st := e2etest.OpenStore(t, "", dataDir)
	return &attackStack{ngx: ngx, upstream: up, st: func(resource, scope string) string {
		return mintAccessToken(t, st, resource, scope)
	}}
}

// raw sends one request exactly as written (CRLF line ends added) over TLS
// to nginx and returns the response status.
func (a *attackStack) raw(t *testing.T, request string) int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a.ngx.Addr, a.ngx.Transport.TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, strings.ReplaceAll(request, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func post(target, host, tok string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\nHost: %s\nAuthorization: Bearer %s\nContent-Type: application/json\nContent-Length: 2\nConnection: close\n\n{}", target, host, tok)
}

// TestNginxEncodedSlashCannotCrossResources: nginx routes
// "/other/..%2Fmcp" into location /mcp (it decodes %2F before resolving
// dot segments), so a token for the resource /other on the same host must
// not open /mcp that way. passgate refuses the ambiguous path; the MCP
// server never sees the request.
func TestNginxEncodedSlashCannotCrossResources(t *testing.T) {
	a := startAttackStack(t, func(addr string) []string {
		return []string{"https://" + addr + "/mcp", "https://" + addr + "/other"}
	})
	host := a.ngx.Addr
	other := a.st("https://"+host+"/other", "mcp")
	mcp := a.st("https://"+host+"/mcp", "mcp")

	// The stack works: the right token passes, the other resource's does not.
	if got := a.raw(t, post("/mcp", host, mcp)); got != 200 {
		t.Fatalf("POST /mcp with its token = %d, want 200", got)
	}
	if got := a.raw(t, post("/mcp", host, other)); got != 401 {
		t.Errorf("POST /mcp with /other's token = %d, want 401", got)
	}
	before := len(a.upstream.received())
	for _, target := range []string{"/other/..%2Fmcp", "/other/..%2fmcp", "/other/%2e%2e%2Fmcp", "/other/..%5Cmcp", "/other/..;/mcp", "/other/..%252Fmcp"} {
		t.Run(target, func(t *testing.T) {
			if got := a.raw(t, post(target, host, other)); got >= 200 && got < 300 {
				t.Errorf("POST %s with /other's token = %d: allowed", target, got)
			}
		})
	}
	if seen := a.upstream.received()[before:]; len(seen) != 0 {
		t.Errorf("the MCP server received %+v", seen)
	}
}

// TestNginxClientCannotChooseAudienceHost: nginx routes an absolute-form
// request target on the host in it, not on the Host header. With two
// resources on two hosts, a token for one must not open the other by
// naming it in Host, and a host nginx does not serve is refused.
func TestNginxClientCannotChooseAudienceHost(t *testing.T) {
	var port string
	a := startAttackStack(t, func(addr string) []string {
		_, port, _ = net.SplitHostPort(addr)
		return []string{"https://" + addr + "/mcp", "https://localhost:" + port + "/mcp"}
	})
	served := a.ngx.Addr             // 127.0.0.1:port, NGINX_SERVER_NAME
	elsewhere := "localhost:" + port // a resource host this server block does not serve
	foreign := a.st("https://"+elsewhere+"/mcp", "mcp")
	mine := a.st("https://"+served+"/mcp", "mcp")
	if got := a.raw(t, post("/mcp", served, mine)); got != 200 {
		t.Fatalf("POST /mcp with its token = %d, want 200", got)
	}
	before := len(a.upstream.received())
	tests := []struct {
		name, target, host string
		want               int
	}{
		// Routed on 127.0.0.1 (the request line), Host names the other
		// resource: checked against 127.0.0.1, so the token is refused.
		{"absolute-form target, other resource in Host", "https://" + served + "/mcp", elsewhere, 401},
		// Routed on localhost, which this nginx does not serve.
		{"absolute-form target for another host", "https://" + elsewhere + "/mcp", served, 421},
		{"Host of another resource", "/mcp", elsewhere, 421},
		{"Host nobody serves", "/mcp", "evil.example", 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.raw(t, post(tt.target, tt.host, foreign)); got != tt.want {
				t.Errorf("POST %s with Host %s = %d, want %d", tt.target, tt.host, got, tt.want)
			}
		})
	}
	if seen := a.upstream.received()[before:]; len(seen) != 0 {
		t.Errorf("the MCP server received %+v", seen)
	}
}
