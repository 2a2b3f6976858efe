package proxy

import (
	"net/http"
	"testing"
)

func TestRequestTarget(t *testing.T) {
	tests := []struct {
		name, method, target string
		want                 string
		ok                   bool
	}{
		{"origin form", "GET", "/mcp/a%2Fb?x=1", "/mcp/a%2Fb?x=1", true},
		{"absolute form", "GET", "http://h.example/mcp/%61?x=%2F", "/mcp/%61?x=%2F", true},
		{"absolute form without path", "GET", "http://h.example", "/", true},
		{"asterisk", "OPTIONS", "*", "", false},
		{"authority form", "CONNECT", "h.example:443", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(tt.method, tt.target, nil)
			if err != nil {
				// NewRequest refuses the authority form: build it as the
				// server would.
				r = &http.Request{Method: tt.method, URL: nil}
			}
			r.RequestURI = tt.target
			got, ok := requestTarget(r)
			if got != tt.want || ok != tt.ok {
				t.Errorf("requestTarget(%s %s) = %q, %v; want %q, %v", tt.method, tt.target, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDropHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X_passgate_user": true, "X-Passgate_user": true, "Cookie": true, "Forwarded": true, "X-Real-Ip": true,
		"X-Forwarded-For": true, "X-Forwarded-Prefix": true, "X-Original-Url": true, "x-original-uri": true,
		"X-Passgate-User": false, "Content-Type": false, "Accept": false, "Mcp-Session-Id": false, "Authorization": false,
	} {
		if got := dropHeader(name); got != want {
			t.Errorf("dropHeader(%q) = %v, want %v", name, got, want)
		}
	}
}
