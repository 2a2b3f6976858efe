package oauthweb

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestBrandingCheck(t *testing.T) {
	dir := t.TempDir()
	pngPath := writeFile(t, dir, "logo.png", pngBytes(t))
	svgPath := writeFile(t, dir, "logo.svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`))
	txtPath := writeFile(t, dir, "logo.txt", []byte("<html><script>alert(1)</script>"))
	bigPath := writeFile(t, dir, "big.png", append(pngBytes(t), make([]byte, maxLogoBytes)...))
	for _, tc := range []struct {
		name    string
		b       Branding
		wantErr string // substring; "" means valid
	}{
		{"zero", Branding{}, ""},
		{"all", Branding{Title: "Example Corp", LogoFile: pngPath, Accent: "#0f766e", Footer: "help@example.com"}, ""},
		{"short accent", Branding{Accent: "#abc"}, ""},
		{"svg file", Branding{LogoFile: svgPath}, ""},
		{"path logo", Branding{LogoURL: "/brand/logo.svg"}, ""},
		{"https logo", Branding{LogoURL: "https://cdn.example.com/logo.png"}, ""},
		{"data logo", Branding{LogoURL: "data:image/png;base64,iVBORw0KGgo="}, ""},
		{"named colour", Branding{Accent: "red"}, "#RGB or #RRGGBB"},
		{"css injection", Branding{Accent: "#fff; } body { display: none"}, "#RGB or #RRGGBB"},
		{"bad hex", Branding{Accent: "#ggg"}, "#RGB or #RRGGBB"},
		{"long title", Branding{Title: strings.Repeat("x", 61)}, "--brand-title"},
		{"title newline", Branding{Title: "a\nb"}, "--brand-title"},
		{"long footer", Branding{Footer: strings.Repeat("x", 201)}, "--brand-footer"},
		{"both logos", Branding{LogoURL: "/x.png", LogoFile: pngPath}, "set only one"},
		{"http logo", Branding{LogoURL: "http://example.com/logo.png"}, "--brand-logo-url"},
		{"javascript logo", Branding{LogoURL: "javascript:alert(1)"}, "--brand-logo-url"},
		{"scheme-relative logo", Branding{LogoURL: "//evil.example/logo.png"}, "--brand-logo-url"},
		{"relative logo", Branding{LogoURL: "logo.png"}, "--brand-logo-url"},
		{"data html logo", Branding{LogoURL: "data:text/html,<script>"}, "--brand-logo-url"},
		{"missing file", Branding{LogoFile: filepath.Join(dir, "nope.png")}, "--brand-logo-file"},
		{"not an image", Branding{LogoFile: txtPath}, "not a PNG"},
		{"too big", Branding{LogoFile: bigPath}, "more than"},
		{"several problems", Branding{Accent: "x", Footer: strings.Repeat("x", 201)}, "--brand-footer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.b.Check()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Check() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestAccentCSS(t *testing.T) {
	for _, tc := range []struct {
		accent, light, lightFG, dark, darkFG string
	}{
		// A light accent gets dark text and is kept in dark mode.
		{"#ffcc00", "#ffcc00", "#0b0d10", "#ffcc00", "#0b0d10"},
		// A dark accent gets white text and is lifted in dark mode.
		{"#102040", "#102040", "#ffffff", "", "#0b0d10"},
		{"#FFF", "#ffffff", "#0b0d10", "#ffffff", "#0b0d10"},
	} {
		css, err := accentCSS(tc.accent)
		if err != nil {
			t.Fatal(err)
		}
		light, dark, ok := strings.Cut(css, "@media (prefers-color-scheme: dark)")
		if !ok {
			t.Fatalf("%s: no dark block in %q", tc.accent, css)
		}
		if !strings.Contains(light, "--accent: "+tc.light+";") || !strings.Contains(light, "--accent-fg: "+tc.lightFG+";") {
			t.Errorf("%s: light %q", tc.accent, light)
		}
		if tc.dark != "" && !strings.Contains(dark, "--accent: "+tc.dark+";") {
			t.Errorf("%s: dark %q", tc.accent, dark)
		}
		if tc.dark == "" && strings.Contains(dark, "--accent: "+tc.accent+";") {
			t.Errorf("%s: dark accent not lifted: %q", tc.accent, dark)
		}
		if !strings.Contains(dark, "--accent-fg: "+tc.darkFG+";") {
			t.Errorf("%s: dark text %q", tc.accent, dark)
		}
	}
}

// TestBrandingOnPages renders the pages with every branding option and
// checks the title, logo, footer, stylesheet and CSP.
func TestBrandingOnPages(t *testing.T) {
	logo := pngBytes(t)
	p := writeFile(t, t.TempDir(), "logo.png", logo)
	e := newEnv(t, func(c *Config) {
		c.Branding = Branding{Title: "Example <Corp>", LogoFile: p, Accent: "#0f766e", Footer: "Help: help@example.com"}
	})
	resp, err := http.Get(e.url("/login"))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	for _, want := range []string{
		`<title>Sign in · Example &lt;Corp&gt;</title>`,
		`<span class="brand-title">Example &lt;Corp&gt;</span>`,
		`<img class="logo" src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(logo) + `" alt="">`,
		`<footer class="footer"><p>Help: help@example.com</p></footer>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(body, ">passgate<") {
		t.Error("the default title is still shown")
	}
	// The stylesheet URL carries a hash of the content, so a new accent is
	// not hidden by a cached stylesheet; the stylesheet has the accent.
	css := mustRE(`<link rel="stylesheet" href="(/static/passgate.css\?v=[0-9a-f]{8})">`).FindStringSubmatch(body)
	if css == nil {
		t.Fatalf("no versioned stylesheet link in %s", body)
	}
	resp, err = http.Get(e.url(css[1]))
	if err != nil {
		t.Fatal(err)
	}
	if s := readBody(t, resp); !strings.Contains(s, "--accent: #0f766e;") {
		t.Error("stylesheet lacks the accent")
	}

	// An https logo's origin, and only that, is added to img-src.
	e2 := newEnv(t, func(c *Config) { c.Branding = Branding{LogoURL: "https://cdn.example.com/brand/logo.svg"} })
	resp, err = http.Get(e2.url("/login"))
	if err != nil {
		t.Fatal(err)
	}
	body = readBody(t, resp)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' data: https://cdn.example.com;") {
		t.Errorf("CSP %q lacks the logo origin", csp)
	}
	if !strings.Contains(body, `src="https://cdn.example.com/brand/logo.svg"`) {
		t.Error("logo URL not used")
	}
}

// TestOverrideFailsWithSampleData: an override that parses but cannot run
// (a field its data does not have) stops New, naming the file.
func TestOverrideFailsWithSampleData(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cfg := e.config(func(c *Config) { c.TemplateDir = dir })
	p := writeFile(t, dir, "apps.html", []byte(`{{define "content"}}{{range .Data.Apps}}{{.Colour}}{{end}}{{end}}`))
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "sample data") {
		t.Errorf("New = %v, want an error naming %s", err, p)
	}
	writeFile(t, dir, "apps.html", []byte(`{{define "content"}}{{range .Data.Apps}}{{.Name}} {{date .LastUsedAt}}{{end}}{{end}}`))
	writeFile(t, dir, "layout.html", []byte(`<!doctype html><title>{{.Title}}</title>{{template "content" .}`))
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "layout.html")) {
		t.Errorf("broken layout: %v", err)
	}
	writeFile(t, dir, "layout.html", []byte(`<!doctype html><title>{{.Title}} {{.Brand.Title}}</title>{{template "content" .}}`))
	if _, err := New(cfg); err != nil {
		t.Errorf("valid overrides: %v", err)
	}
}

// TestErrorPageHeadings: each kind of error page names the problem and
// says what to do.
func TestErrorPageHeadings(t *testing.T) {
	e := newEnv(t)
	client := e.publicClient()
	limited := newEnv(t, func(c *Config) {
		c.RateLimit = func(endpoint, ip string) (bool, time.Duration, func()) { return false, 125 * time.Second, func() {} }
	})
	for _, tc := range []struct {
		name, url     string
		status        int
		heading, hint string
	}{
		{"unknown client", e.url("/oauth/authorize?client_id=nope"), http.StatusBadRequest, "Unknown application", "connection is old"},
		{"bad redirect", e.url("/oauth/authorize?" + url.Values{"client_id": {client}, "redirect_uri": {"https://evil.example/cb"}}.Encode()),
			http.StatusBadRequest, "Unexpected return address", "addresses the application registered"},
		{"rate limited", limited.url("/oauth/authorize?client_id=nope"), http.StatusTooManyRequests, "Too many attempts", "Try again in about 2 minutes."},
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != tc.status || !strings.Contains(body, "<h1>"+tc.heading+"</h1>") || !strings.Contains(body, tc.hint) {
			t.Errorf("%s: %d, want %d with heading %q and hint %q in\n%s", tc.name, resp.StatusCode, tc.status, tc.heading, tc.hint, body)
		}
		if !strings.Contains(body, `role="alert" aria-live="assertive"`) {
			t.Errorf("%s: no live region", tc.name)
		}
	}
}

func TestConsentDataWords(t *testing.T) {
	d := consentData{ClientID: "https://app.example.com/oauth/client.json", Resource: "https://mcp.example.com/mcp", Scopes: []string{"mcp", "files:write"}}
	if got := d.ClientIDHost(); got != "app.example.com" {
		t.Errorf("ClientIDHost = %q", got)
	}
	if got := (consentData{ClientID: "abc"}).ClientIDHost(); got != "" {
		t.Errorf("ClientIDHost of a plain ID = %q", got)
	}
	got := d.ScopeList()
	want := []scopeItem{
		{"mcp", "Use the MCP server at mcp.example.com as you: call its tools and read its resources"},
		{"files:write", "The permission “files:write” on mcp.example.com"},
	}
	diff(t, "ScopeList", got, want)
	for in, want := range map[string]string{"Claude": "C", "  ünïcode": "Ü", "": "?", "42 things": "4", "—": "—"} {
		if got := initial(in); got != want {
			t.Errorf("initial(%q) = %q, want %q", in, got, want)
		}
	}
}
