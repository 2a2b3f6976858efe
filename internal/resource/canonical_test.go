package resource

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

// canonicalizer is a function returning the canonical form of its input,
// or an error wrapping refused.
type canonicalizer struct {
	name    string
	canon   func(string) (string, error)
	refused error
}

var (
	canonicalPath      = canonicalizer{"CanonicalPath", CanonicalPath, ErrAmbiguousPath}
	canonicalIndicator = canonicalizer{"Canonical", Canonical, ErrInvalidIndicator}
)

// canonicalCase is an input and its canonical form; want "" means the
// input is refused.
type canonicalCase struct {
	name, in, want string
}

// test runs each case: an input canonicalizes to want, or, when want is
// "", is refused.
func (c canonicalizer) test(t *testing.T, tests []canonicalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.canon(tt.in)
			if tt.want == "" {
				if err == nil || !errors.Is(err, c.refused) {
					t.Errorf("%s(%q) = %q, %v; want an error wrapping %v", c.name, tt.in, got, err, c.refused)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("%s(%q) = %q, %v; want %q", c.name, tt.in, got, err, tt.want)
			}
		})
	}
}

// fuzz checks on in what holds for every input: a refusal wraps refused,
// and a canonical form is its own canonical form. It returns the canonical
// form, or false when in is refused.
func (c canonicalizer) fuzz(t *testing.T, in string) (string, bool) {
	t.Helper()
	out, err := c.canon(in)
	if err != nil {
		if !errors.Is(err, c.refused) {
			t.Fatalf("%s(%q): error %v does not wrap %v", c.name, in, err, c.refused)
		}
		return "", false
	}
	again, err := c.canon(out)
	if err != nil || again != out {
		t.Fatalf("%s not idempotent: %q -> %q -> %q, %v", c.name, in, out, again, err)
	}
	return out, true
}

func TestCanonicalPath(t *testing.T) {
	canonicalPath.test(t, []canonicalCase{
		{"plain", "/mcp", "/mcp"},
		{"query dropped", "/mcp?x=1&y=%2F", "/mcp"},
		{"trailing slash kept", "/mcp/", "/mcp/"},
		{"root", "/", "/"},
		{"dot dot", "/mcp/tools/../admin", "/mcp/admin"},
		{"encoded dot dot", "/mcp/tools/%2e%2e/admin", "/mcp/admin"},
		{"encoded dot dot, uppercase", "/mcp/tools/%2E%2E/admin", "/mcp/admin"},
		{"mixed dot dot", "/mcp/tools/.%2e/admin", "/mcp/admin"},
		{"dot", "/mcp/./admin", "/mcp/admin"},
		{"trailing dot", "/mcp/.", "/mcp/"},
		{"trailing dot dot", "/mcp/admin/..", "/mcp/"},
		{"to the root", "/mcp/..", "/"},
		{"merged slashes", "/mcp//admin", "/mcp/admin"},
		{"leading slashes", "//mcp", "/mcp"},
		{"crossing prefixes", "/public/../mcp", "/mcp"},
		{"encoded unreserved", "/mcp/%61dmin", "/mcp/admin"},
		{"encoded unreserved, everywhere", "/%6d%63%70/%41%7e", "/mcp/A~"},
		{"encoding normalised", "/mcp/a%2fb%20c", ""},
		{"space kept encoded", "/mcp/a%20c", "/mcp/a%20c"},
		{"lowercase hex upper-cased", "/mcp/%c3%a9", "/mcp/%C3%A9"},
		{"raw UTF-8 encoded", "/mcp/é", "/mcp/%C3%A9"},
		{"sub-delims literal", "/mcp/a!$&'()*+,=:@b", "/mcp/a!$&'()*+,=:@b"},
		{"encoded sub-delim decoded", "/mcp/%40x", "/mcp/@x"},
		{"lone percent", "/mcp/100%25", "/mcp/100%25"},
		{"percent before non-hex", "/mcp/%25zz", "/mcp/%25zz"},
		{"dots in names", "/mcp/.well-known/..x/...", "/mcp/.well-known/..x/..."},

		{"empty", "", ""},
		{"relative", "mcp", ""},
		{"query only", "?x", ""},
		{"absolute form", "https://mcp.example.com/mcp", ""},
		{"asterisk form", "*", ""},
		{"encoded slash", "/other/..%2Fmcp", ""},
		{"encoded slash lowercase", "/mcp%2fadmin", ""},
		{"encoded backslash", "/mcp%5cadmin", ""},
		{"backslash", "/mcp\\admin", ""},
		{"NUL", "/mcp%00/admin", ""},
		{"raw control", "/mcp\x01", ""},
		{"encoded DEL", "/mcp%7F", ""},
		{"encoded newline", "/mcp%0a", ""},
		{"invalid escape", "/mcp/%zz", ""},
		{"truncated escape", "/mcp/%4", ""},
		{"escape at the end", "/mcp/%", ""},
		{"double-encoded dot", "/mcp/%252e%252e/admin", ""},
		{"double-encoded slash", "/other/..%252fmcp", ""},
		{"double-encoded letter", "/mcp/%2561dmin", ""},
		{"path parameter", "/mcp/admin;x=1", ""},
		{"path parameter dot dot", "/mcp/..;/admin", ""},
		{"encoded semicolon", "/mcp%3Bx", ""},
		{"fragment", "/mcp#frag", ""},
		{"above the root", "/../mcp", ""},
		{"above the root later", "/mcp/../../mcp", ""},
	})
}

// TestCanonicalPathNoAlloc: the common, already canonical path costs no
// allocation on the check's hot path.
func TestCanonicalPathNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { CanonicalPath("/mcp/tools?x=1") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzCanonicalPath holds the invariants: the result is canonical
// (idempotent, no dot segments, no "//", no encoded unreserved character),
// and an accepted target routes where Go's net/url and path.Clean route it.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/mcp", "/mcp/%61dmin", "/other/..%2Fmcp", "/a/./b/../c//d/", "/%2e%2e/x", "/a%252e", "/a;b", "/é", "/%C3%A9?x", "/a/%25/b", "//", "/.", "/a/..", "/%7e%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := canonicalPath.fuzz(t, in)
		if !ok {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") {
			t.Fatalf("CanonicalPath(%q) = %q", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("CanonicalPath(%q) = %q has a dot segment", in, out)
			}
		}
		for i := 0; i+2 < len(out); i++ {
			if out[i] != '%' {
				continue
			}
			c := unhex(out[i+1])<<4 | unhex(out[i+2])
			if !isHex(out[i+1]) || !isHex(out[i+2]) || literal(c) || out[i+1] >= 'a' || out[i+2] >= 'a' {
				t.Fatalf("CanonicalPath(%q) = %q: escape %q is not canonical", in, out, out[i:i+3])
			}
		}
		u, err := url.ParseRequestURI(in)
		if err != nil {
			t.Fatalf("CanonicalPath accepted %q, which net/url refuses: %v", in, err)
		}
		dec, err := url.PathUnescape(out)
		if err != nil {
			t.Fatalf("CanonicalPath(%q) = %q does not unescape: %v", in, out, err)
		}
		if got, want := path.Clean(dec), path.Clean(u.Path); got != want {
			t.Fatalf("CanonicalPath(%q) = %q routes to %q; net/url + path.Clean route to %q", in, out, got, want)
		}
	})
}
