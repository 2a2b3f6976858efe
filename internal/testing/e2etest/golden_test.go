package e2etest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestGoldenCheckDenials pins what the shipped binary's HTTP check (the
// nginx auth_request endpoint) answers a request without a token and one
// with an unknown token: the 401, the RFC 6750 / RFC 9728
// WWW-Authenticate challenge pointing at the resource metadata, and the
// body. Rewrite with `go test ./internal/testing/e2etest/ -run Golden -update`.
func TestGoldenCheckDenials(t *testing.T) {
	srv := Start(t, Options{})
	for _, tt := range []struct{ name, token string }{
		{"check-no-token", ""},
		{"check-unknown-token", "pga_" + strings.Repeat("A", 43)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := srv.CheckHTTPRequest(ctx, tt.token)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.HTTPClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Transcript(req, resp, map[string]string{
				srv.Issuer:   "http://ISSUER",
				srv.Resource: "http://RESOURCE/mcp",
				strings.TrimSuffix(strings.TrimPrefix(srv.Resource, "http://"), "/mcp"): "RESOURCE",
			})
			if err != nil {
				t.Fatal(err)
			}
			Golden(t, tt.name+".txt", got)
		})
	}
}
