// Command mcp-server is an example MCP server for trying passgate: it speaks
// MCP Streamable HTTP at /mcp and has tools that show what the proxy in
// front of it forwarded.
//
// It trusts the X-Passgate-User, X-Passgate-Client-Id and X-Passgate-Scope
// request headers, so it must only be reachable through a proxy that checks
// every request with passgate and overwrites those headers (deploy/nginx.conf,
// deploy/envoy.yaml and `passgate serve --upstream` do both). It keeps no
// state beyond MCP sessions.
//
// Usage:
//
//	mcp-server [--listen ADDR]   serve (ADDR defaults to $MCP_LISTEN, then :8000)
//	mcp-server healthcheck       GET /healthz on the listen address; exit 0 if 200
//
// Tools:
//   - whoami: the identity headers the request carried, and whether an
//     Authorization header reached the server (behind passgate it must not);
//   - echo: returns its text argument;
//   - countdown: sends one progress notification per step (when the client
//     asked for progress), so the response streams as server-sent events.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-server:", err)
		os.Exit(1)
	}
}

// Config configures the example server.
type Config struct {
	// Listen is the TCP address of the HTTP listener. Optional: defaults
	// to $MCP_LISTEN, then ":8000".
	Listen string
	// Logger receives request errors. Optional: defaults to discarding.
	Logger *slog.Logger
}

// defaultListen is the listen address when neither --listen nor
// $MCP_LISTEN is set.
const defaultListen = ":8000"

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	healthcheck := len(args) > 0 && args[0] == "healthcheck"
	if healthcheck {
		args = args[1:]
	}
	fs := flag.NewFlagSet("mcp-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "TCP address to listen on (default $MCP_LISTEN, then "+defaultListen+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := Config{Listen: *listen, Logger: slog.New(slog.NewJSONHandler(stderr, nil))}
	if cfg.Listen == "" {
		cfg.Listen = getenv("MCP_LISTEN")
	}
	if cfg.Listen == "" {
		cfg.Listen = defaultListen
	}
	if healthcheck {
		return checkHealth(ctx, cfg.Listen)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cfg.Logger.Info("serving MCP", "addr", ln.Addr().String(), "path", "/mcp")
	return serve(ctx, ln, cfg)
}

// serve serves the MCP handler on ln until ctx is done.
func serve(ctx context.Context, ln net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler: newHandler(cfg),
		// No WriteTimeout: Streamable HTTP responses are long-lived
		// server-sent event streams.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(loggerOrDiscard(cfg.Logger).Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Open SSE streams never end by themselves: close what is left after
	// the grace period.
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// newHandler returns the HTTP handler: MCP at /mcp, liveness at /healthz.
func newHandler(cfg Config) http.Handler {
	server := newServer()
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Logger: cfg.Logger,
		// Clients that vanish without DELETE would otherwise keep their
		// session forever.
		SessionTimeout: 30 * time.Minute,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpHandler)
	mux.Handle("/mcp/", mcpHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return mux
}

// The identity headers set by the proxy from passgate's decision.
const (
	headerUser     = "X-Passgate-User"
	headerClientID = "X-Passgate-Client-Id"
	headerScope    = "X-Passgate-Scope"
)

// WhoamiOutput is the result of the whoami tool.
type WhoamiOutput struct {
	User     string `json:"user" jsonschema:"the X-Passgate-User header, empty if absent"`
	ClientID string `json:"client_id" jsonschema:"the X-Passgate-Client-Id header, empty if absent"`
	Scope    string `json:"scope" jsonschema:"the X-Passgate-Scope header, empty if absent"`
	// AuthorizationReceived reports whether an Authorization header reached
	// this server. The proxy strips it, so the access token never leaves it.
	AuthorizationReceived bool `json:"authorization_received" jsonschema:"whether an Authorization header reached the MCP server"`
}

// EchoInput is the argument of the echo tool.
type EchoInput struct {
	Text string `json:"text" jsonschema:"the text to echo"`
}

// EchoOutput is the result of the echo tool.
type EchoOutput struct {
	Text string `json:"text"`
}

// CountdownInput is the argument of the countdown tool.
type CountdownInput struct {
	Steps      int `json:"steps" jsonschema:"number of steps, 1 to 20"`
	IntervalMS int `json:"interval_ms" jsonschema:"pause before each step in milliseconds, 0 to 2000"`
}

// CountdownOutput is the result of the countdown tool.
type CountdownOutput struct {
	Steps int `json:"steps"`
}

// Bounds of the countdown tool, so one call cannot hold a stream forever.
const (
	maxCountdownSteps    = 20
	maxCountdownInterval = 2000
)

// newServer returns the MCP server with its tools.
func newServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "passgate-example", Version: "v0.1.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "whoami",
		Description: "Show the identity passgate forwarded for this request.",
	}, whoami)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "echo",
		Description: "Echo the given text.",
	}, func(_ context.Context, _ *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, EchoOutput, error) {
		return nil, EchoOutput(in), nil
	})
	mcp.AddTool(s, &mcp.Tool{
		Name:        "countdown",
		Description: "Count down, sending a progress notification per step.",
	}, countdown)
	return s
}

func whoami(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoamiOutput, error) {
	// Extra.Header is the header of the HTTP request that carried this
	// call; other transports (stdio) have none.
	var h http.Header
	if req.Extra != nil {
		h = req.Extra.Header
	}
	return nil, WhoamiOutput{
		User:                  h.Get(headerUser),
		ClientID:              h.Get(headerClientID),
		Scope:                 h.Get(headerScope),
		AuthorizationReceived: len(h.Values("Authorization")) > 0,
	}, nil
}

func countdown(ctx context.Context, req *mcp.CallToolRequest, in CountdownInput) (*mcp.CallToolResult, CountdownOutput, error) {
	if in.Steps < 1 || in.Steps > maxCountdownSteps {
		return nil, CountdownOutput{}, fmt.Errorf("steps must be between 1 and %d", maxCountdownSteps)
	}
	if in.IntervalMS < 0 || in.IntervalMS > maxCountdownInterval {
		return nil, CountdownOutput{}, fmt.Errorf("interval_ms must be between 0 and %d", maxCountdownInterval)
	}
	token := req.Params.GetProgressToken()
	for i := 1; i <= in.Steps; i++ {
		select {
		case <-ctx.Done():
			return nil, CountdownOutput{}, ctx.Err()
		case <-time.After(time.Duration(in.IntervalMS) * time.Millisecond):
		}
		if token == nil {
			continue
		}
		err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token,
			Progress:      float64(i),
			Total:         float64(in.Steps),
			Message:       fmt.Sprintf("step %d of %d", i, in.Steps),
		})
		if err != nil {
			return nil, CountdownOutput{}, fmt.Errorf("notify progress: %w", err)
		}
	}
	return nil, CountdownOutput{Steps: in.Steps}, nil
}

// checkHealth implements the healthcheck subcommand for container images
// without curl.
func checkHealth(ctx context.Context, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("healthcheck: parse listen address: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %s", strings.TrimSpace(resp.Status))
	}
	return nil
}
