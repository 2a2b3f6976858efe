package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// startServer serves the example on a loopback port until the test ends and
// returns its base URL.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, Config{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func connect(t *testing.T, baseURL string, header http.Header, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, opts)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             baseURL + "/mcp",
		HTTPClient:           &http.Client{Transport: e2etest.HeaderTransport{Base: http.DefaultTransport, Header: header}},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// structured decodes a tool result's structured content into out.
func structured(t *testing.T, res *mcp.CallToolResult, out any) {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %+v", res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func TestWhoami(t *testing.T) {
	base := startServer(t)
	tests := []struct {
		name   string
		header http.Header
		want   WhoamiOutput
	}{
		{
			name: "identity headers",
			header: http.Header{
				"X-Passgate-User":      {"alice"},
				"X-Passgate-Client-Id": {"https://client.example/meta.json"},
				"X-Passgate-Scope":     {"mcp"},
			},
			want: WhoamiOutput{User: "alice", ClientID: "https://client.example/meta.json", Scope: "mcp"},
		},
		{
			name:   "authorization seen",
			header: http.Header{"Authorization": {"Bearer pga_leaked"}},
			want:   WhoamiOutput{AuthorizationReceived: true},
		},
		{
			name:   "nothing",
			header: http.Header{},
			want:   WhoamiOutput{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := connect(t, base, tt.header, nil)
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			var got WhoamiOutput
			structured(t, res, &got)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("whoami (-got +want):\n%s", diff)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	cs := connect(t, startServer(t), nil, nil)
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "héllo <b>"}})
	if err != nil {
		t.Fatal(err)
	}
	var got EchoOutput
	structured(t, res, &got)
	if diff := cmp.Diff(got, EchoOutput{Text: "héllo <b>"}); diff != "" {
		t.Errorf("echo (-got +want):\n%s", diff)
	}
}

func TestListTools(t *testing.T) {
	cs := connect(t, startServer(t), nil, nil)
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	if diff := cmp.Diff(names, []string{"countdown", "echo", "whoami"}); diff != "" {
		t.Errorf("tools (-got +want):\n%s", diff)
	}
}

func TestCountdownProgress(t *testing.T) {
	var (
		mu       sync.Mutex
		progress []float64
	)
	cs := connect(t, startServer(t), nil, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, req.Params.Progress)
		},
	})
	params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"steps": 3, "interval_ms": 10}}
	params.SetProgressToken("tok")
	res, err := cs.CallTool(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	var got CountdownOutput
	structured(t, res, &got)
	if got.Steps != 3 {
		t.Errorf("steps = %d, want 3", got.Steps)
	}
	// Notifications are handled concurrently with the result: wait for the
	// last ones, and do not rely on their order.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(progress)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(progress)
	if diff := cmp.Diff(progress, []float64{1, 2, 3}); diff != "" {
		t.Errorf("progress (-got +want):\n%s", diff)
	}
}

func TestCountdownRejectsBadArguments(t *testing.T) {
	cs := connect(t, startServer(t), nil, nil)
	for _, args := range []map[string]any{
		{"steps": 0, "interval_ms": 0},
		{"steps": 21, "interval_ms": 0},
		{"steps": 1, "interval_ms": -1},
		{"steps": 1, "interval_ms": 2001},
	} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "countdown", Arguments: args})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !res.IsError {
			t.Errorf("%v: want a tool error, got %+v", args, res.StructuredContent)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	base := startServer(t)
	addr := base[len("http://"):]
	if err := run(t.Context(), []string{"healthcheck", "--listen", addr}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("healthcheck of a running server: %v", err)
	}
	// The environment variable is the fallback for --listen.
	env := func(k string) string {
		if k == "MCP_LISTEN" {
			return addr
		}
		return ""
	}
	if err := run(t.Context(), []string{"healthcheck"}, env, io.Discard); err != nil {
		t.Errorf("healthcheck with MCP_LISTEN: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if err := run(t.Context(), []string{"healthcheck", "--listen", closed}, env, io.Discard); err == nil {
		t.Error("healthcheck of a closed port succeeded")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	err := run(t.Context(), []string{"--nope"}, func(string) string { return "" }, io.Discard)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("run(--nope) = %v, want a flag error", err)
	}
}

func TestNotFoundOutsideMCP(t *testing.T) {
	base := startServer(t)
	resp, err := http.Get(base + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other = %d, want 404", resp.StatusCode)
	}
}
