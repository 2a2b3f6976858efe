package extauthz

import (
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/token"
)

func TestParseBearer(t *testing.T) {
	tok := token.New(token.PrefixAccess)
	tests := []struct {
		name, header     string
		tok              string
		present, wellFmt bool
	}{
		{"empty", "", "", false, false},
		{"bearer", "Bearer " + tok, tok, true, true},
		{"lowercase scheme", "bearer " + tok, tok, true, true},
		{"mixed case scheme", "BeArEr " + tok, tok, true, true},
		{"several spaces", "Bearer   " + tok, tok, true, true},
		{"tab", "Bearer\t" + tok, tok, true, true},
		{"trailing space", "Bearer " + tok + " ", tok, true, true},
		{"token68 padding", "Bearer abc==", "abc==", true, true},
		{"basic", "Basic dXNlcjpwYXNz", "", false, false},
		{"scheme prefix of another", "Bearerx " + tok, "", false, false},
		{"scheme only", "Bearer", "", true, false},
		{"scheme and spaces", "Bearer   ", "", true, false},
		{"two tokens", "Bearer a b", "", true, false},
		{"two headers joined", "Bearer " + tok + ",Bearer " + tok, "", true, false},
		{"padding inside", "Bearer ab=c", "", true, false},
		{"only padding", "Bearer ==", "", true, false},
		{"quote", `Bearer "abc"`, "", true, false},
		{"non-ASCII", "Bearer pga_é", "", true, false},
		{"too long", "Bearer " + strings.Repeat("a", maxTokenLen+1), "", true, false},
		{"auth-param form", `Bearer token="abc"`, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, present, ok := parseBearer(tt.header)
			if tok != tt.tok || present != tt.present || ok != tt.wellFmt {
				t.Errorf("parseBearer(%q) = %q, %v, %v; want %q, %v, %v", tt.header, tok, present, ok, tt.tok, tt.present, tt.wellFmt)
			}
		})
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"", "Bearer pga_abc", "bearer  x==", "Basic abc", "Bearer", "Bearer a b", "BEARER\tz", "Bearer a,Bearer b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, present, ok := parseBearer(h)
		if ok && !present {
			t.Fatalf("well formed but not present: %q", h)
		}
		if !ok {
			if tok != "" {
				t.Fatalf("token %q returned for malformed %q", tok, h)
			}
			return
		}
		if !strings.EqualFold(h[:6], "bearer") || !strings.Contains(h, tok) {
			t.Fatalf("token %q not from a Bearer header %q", tok, h)
		}
		if tok == "" || len(tok) > maxTokenLen || strings.ContainsAny(tok, " \t,\"\\") {
			t.Fatalf("bad token %q from %q", tok, h)
		}
	})
}
