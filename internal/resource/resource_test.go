package resource

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		raw      string
		wantErr  bool
		host     string
		path     string
		metadata string
	}{
		{raw: "https://mcp.example.com/mcp", host: "mcp.example.com", path: "/mcp", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{raw: "https://MCP.example.com:443/mcp/", host: "mcp.example.com", path: "/mcp/", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{raw: "https://mcp.example.com", host: "mcp.example.com", path: "/", metadata: "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{raw: "http://127.0.0.1:8000/mcp", host: "127.0.0.1:8000", path: "/mcp", metadata: "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"},
		{raw: "http://localhost/mcp", host: "localhost", path: "/mcp", metadata: "http://localhost/.well-known/oauth-protected-resource/mcp"},
		{raw: "http://mcp.example.com/mcp", wantErr: true},
		{raw: "https://mcp.example.com/mcp#x", wantErr: true},
		{raw: "https://mcp.example.com/mcp?a=b", wantErr: true},
		{raw: "https://u:p@mcp.example.com/mcp", wantErr: true},
		{raw: "mcp.example.com/mcp", wantErr: true},
		{raw: "ftp://mcp.example.com/", wantErr: true},
		{raw: "", wantErr: true},
		{raw: "https://mcp.example.com/a/../mcp", wantErr: true},
		{raw: "https://mcp.example.com/%6Dcp", wantErr: true},
		{raw: "https://mcp.example.com/a%2Fb", wantErr: true},
		{raw: "https://mcp.example.com/m;cp", wantErr: true},
	}
	for _, tt := range tests {
		r, err := Parse(tt.raw)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, wantErr %v", tt.raw, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if r.URL != tt.raw || r.Host != tt.host || r.Path != tt.path || r.MetadataURL() != tt.metadata {
			t.Errorf("Parse(%q) = %+v metadata %q; want host %q path %q metadata %q", tt.raw, r, r.MetadataURL(), tt.host, tt.path, tt.metadata)
		}
	}
}

func TestFind(t *testing.T) {
	rs, err := ParseAll([]string{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp/admin", "https://other.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path string
		want       string
	}{
		{"mcp.example.com", "/mcp", "https://mcp.example.com/mcp"},
		{"MCP.example.com:443", "/mcp/", "https://mcp.example.com/mcp"},
		{"mcp.example.com", "/mcp/admin/tools", "https://mcp.example.com/mcp/admin"},
		{"mcp.example.com", "/mcpx", ""},
		{"mcp.example.com", "/", ""},
		{"evil.example.com", "/mcp", ""},
		{"other.example.com", "/anything", "https://other.example.com/"},
	}
	for _, tt := range tests {
		r, ok := Find(rs, "https", tt.host, tt.path)
		got := ""
		if ok {
			got = r.URL
		}
		if got != tt.want {
			t.Errorf("Find(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
}

func TestParseAllReportsEveryProblem(t *testing.T) {
	_, err := ParseAll([]string{"http://evil.example/", "https://a.example/x", "https://a.example/x", "nope"})
	if err == nil {
		t.Fatal("ParseAll accepted bad input")
	}
	for _, want := range []string{"http://evil.example/", "listed twice", "nope"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
