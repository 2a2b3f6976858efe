package main

import (
	"strings"
	"testing"
)

// TestConfigUpstream checks --upstream and PASSGATE_UPSTREAM against the
// resources: a bare URL for the only resource, RESOURCE=URL otherwise, and
// one clear error per mistake before anything listens.
func TestConfigUpstream(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // Upstreams, when valid
		wantErr string
	}{
		{name: "bare URL for the default resource", args: []string{"--upstream", "http://127.0.0.1:8081"},
			want: []string{"http://127.0.0.1:8081"}},
		{name: "from the environment", env: map[string]string{"PASSGATE_UPSTREAM": "http://127.0.0.1:8081"},
			want: []string{"http://127.0.0.1:8081"}},
		{name: "named resources",
			args: []string{"--resource", "https://a.example.com/mcp,https://b.example.com/mcp",
				"--upstream", "https://a.example.com/mcp=http://10.0.0.1:8000,https://b.example.com/mcp=https://mcp-b.internal"},
			want: []string{"https://a.example.com/mcp=http://10.0.0.1:8000", "https://b.example.com/mcp=https://mcp-b.internal"}},
		{name: "bare URL with two resources",
			args:    []string{"--resource", "https://a.example.com/mcp,https://b.example.com/mcp", "--upstream", "http://127.0.0.1:8081"},
			wantErr: "name the one it serves"},
		{name: "unknown resource", args: []string{"--upstream", "http://localhost:8080/other=http://127.0.0.1:8081"},
			wantErr: "not a configured resource"},
		{name: "upstream with a path", args: []string{"--upstream", "http://127.0.0.1:8081/mcp"},
			wantErr: "no path, query or userinfo"},
		{name: "upstream with userinfo", args: []string{"--upstream", "http://u:p@127.0.0.1:8081"},
			wantErr: "no path, query or userinfo"},
		{name: "not http", args: []string{"--upstream", "unix:///run/mcp.sock"},
			wantErr: "http:// or https://"},
		{name: "root resource", args: []string{"--resource", "https://mcp.example.com/", "--upstream", "http://127.0.0.1:8081"},
			wantErr: "no path of its own"},
		{name: "two upstreams for one resource",
			args:    []string{"--upstream", "http://localhost:8080/mcp=http://127.0.0.1:8081,http://localhost:8080/mcp=http://127.0.0.1:8082"},
			wantErr: "two upstreams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(t, tt.args, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "--upstream") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming --upstream and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Upstreams, " ") != strings.Join(tt.want, " ") {
				t.Errorf("upstreams %q, want %q", c.Upstreams, tt.want)
			}
		})
	}
}
