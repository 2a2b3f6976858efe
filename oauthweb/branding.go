package oauthweb

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Branding customises the look of the pages. Every field is optional; the
// zero value is passgate's own look.
type Branding struct {
	// Title replaces "passgate" in the page header and the window title.
	// Plain text, at most 60 characters.
	Title string
	// LogoURL is an image shown above the title: an absolute path on the
	// issuer's origin ("/brand/logo.svg", served by your proxy), an https
	// URL (its origin is then added to the pages' CSP img-src), or a
	// data:image/… URL. Mutually exclusive with LogoFile.
	LogoURL string
	// LogoFile is a PNG, JPEG, GIF, WebP or SVG file (at most 256 KiB)
	// read once at startup and embedded in the pages as a data: URL, so
	// the pages stay self-contained.
	LogoFile string
	// Accent is the colour of buttons, links and focus rings, as #RGB or
	// #RRGGBB. Text on it is black or white, whichever reads better; in
	// dark mode a dark accent is lightened.
	Accent string
	// Footer is a line of plain text at the bottom of every page, e.g.
	// "Example Corp · help@example.com". At most 200 characters.
	Footer string
}

// maxLogoBytes bounds an embedded logo: it is repeated in every page.
const maxLogoBytes = 256 << 10

// brand is the branding as pages use it, resolved once at startup.
type brand struct {
	// Title is Branding.Title or "passgate".
	Title string
	// Logo is the image URL, or "" for none. It is a template.URL because
	// html/template would otherwise refuse a data: URL.
	Logo template.URL
	// Footer is Branding.Footer.
	Footer string
	// imgOrigin is the logo's https origin, added to the CSP.
	imgOrigin string
	// css holds the accent overrides appended to the stylesheet.
	css string
}

// Check reports every problem with b at once, naming the passgate serve
// flag of each field. It reads LogoFile.
func (b Branding) Check() error {
	_, err := b.resolve()
	return err
}

// resolve validates b and turns it into what the pages use.
func (b Branding) resolve() (brand, error) {
	var errs []error
	out := brand{Title: "passgate", Footer: b.Footer}
	if t := strings.TrimSpace(b.Title); t != "" {
		if len(t) > 60 || strings.ContainsAny(t, "\r\n") {
			errs = append(errs, errors.New("--brand-title: at most 60 characters on one line"))
		}
		out.Title = t
	}
	if len(b.Footer) > 200 || strings.ContainsAny(b.Footer, "\r\n") {
		errs = append(errs, errors.New("--brand-footer: at most 200 characters on one line"))
	}
	switch {
	case b.LogoURL != "" && b.LogoFile != "":
		errs = append(errs, errors.New("--brand-logo-url and --brand-logo-file: set only one"))
	case b.LogoFile != "":
		data, err := os.ReadFile(b.LogoFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--brand-logo-file: %w", err))
			break
		}
		u, err := logoDataURL(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("--brand-logo-file %s: %w", b.LogoFile, err))
			break
		}
		out.Logo = template.URL(u)
	case b.LogoURL != "":
		origin, err := checkLogoURL(b.LogoURL)
		if err != nil {
			errs = append(errs, fmt.Errorf("--brand-logo-url: %w", err))
			break
		}
		out.Logo, out.imgOrigin = template.URL(b.LogoURL), origin
	}
	if b.Accent != "" {
		css, err := accentCSS(b.Accent)
		if err != nil {
			errs = append(errs, fmt.Errorf("--brand-accent: %w", err))
		}
		out.css = css
	}
	return out, errors.Join(errs...)
}

// logoDataURL embeds an image as a data: URL. The type is sniffed, never
// taken from a file name, and only image types are accepted: a data: URL
// is only ever used as an <img> source, where even SVG runs no script.
func logoDataURL(data []byte) (string, error) {
	if len(data) == 0 {
		return "", errors.New("empty file")
	}
	if len(data) > maxLogoBytes {
		return "", fmt.Errorf("%d bytes, more than %d", len(data), maxLogoBytes)
	}
	ct := http.DetectContentType(data)
	switch {
	case ct == "image/png" || ct == "image/jpeg" || ct == "image/gif" || ct == "image/webp":
	case isSVG(data):
		ct = "image/svg+xml"
	default:
		return "", fmt.Errorf("not a PNG, JPEG, GIF, WebP or SVG image (looks like %s)", ct)
	}
	return "data:" + ct + ";base64," + base64.StdEncoding.EncodeToString(data), nil
}

func isSVG(data []byte) bool {
	head := strings.ToLower(string(data[:min(len(data), 1024)]))
	return strings.Contains(head, "<svg")
}

// checkLogoURL accepts an absolute path, an https URL or a data:image URL,
// and returns the origin to allow in the CSP (https URLs only).
func checkLogoURL(raw string) (string, error) {
	if len(raw) > maxLogoBytes*2 {
		return "", errors.New("too long")
	}
	if strings.HasPrefix(raw, "data:image/") {
		if strings.ContainsAny(raw, " \t\r\n\"'") {
			return "", errors.New("data URL must not contain spaces or quotes")
		}
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q: %w", raw, err)
	}
	switch {
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(raw, "//"):
		return "", nil
	case u.Scheme == "https" && u.Host != "" && u.User == nil:
		if strings.ContainsAny(u.Host, " ;'\"") {
			return "", fmt.Errorf("%q: bad host", raw)
		}
		return "https://" + u.Host, nil
	}
	return "", fmt.Errorf("%q: want an absolute path, an https URL or a data:image/ URL", raw)
}

// accentCSS returns the stylesheet overrides for an accent colour.
func accentCSS(accent string) (string, error) {
	r, g, b, err := parseHexColor(accent)
	if err != nil {
		return "", err
	}
	light := hexColor(r, g, b)
	// In dark mode, lift a dark accent towards white until it stands out
	// against the dark background.
	dr, dg, db := r, g, b
	for i := 0; i < 10 && luminance(dr, dg, db) < 0.25; i++ {
		dr, dg, db = mix(dr, 255), mix(dg, 255), mix(db, 255)
	}
	return fmt.Sprintf(":root { --accent: %s; --accent-fg: %s; }\n"+
		"@media (prefers-color-scheme: dark) { :root { --accent: %s; --accent-fg: %s; } }\n",
		light, textOn(r, g, b), hexColor(dr, dg, db), textOn(dr, dg, db)), nil
}

// parseHexColor parses #RGB or #RRGGBB; nothing else reaches the CSS.
func parseHexColor(s string) (r, g, b uint8, err error) {
	bad := fmt.Errorf("%q: want #RGB or #RRGGBB", s)
	if !strings.HasPrefix(s, "#") {
		return 0, 0, 0, bad
	}
	h := s[1:]
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	if len(h) != 6 {
		return 0, 0, 0, bad
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return 0, 0, 0, bad
	}
	return uint8(v >> 16), uint8(v >> 8), uint8(v), nil
}

func hexColor(r, g, b uint8) string { return fmt.Sprintf("#%02x%02x%02x", r, g, b) }

func mix(c, toward uint8) uint8 { return uint8((int(c)*3 + int(toward)) / 4) }

// luminance is the WCAG relative luminance.
func luminance(r, g, b uint8) float64 {
	lin := func(c uint8) float64 {
		v := float64(c) / 255
		if v <= 0.04045 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(r) + 0.7152*lin(g) + 0.0722*lin(b)
}

// textOn picks black or white text for a background by WCAG contrast.
func textOn(r, g, b uint8) string {
	l := luminance(r, g, b)
	if (l+0.05)/0.05 >= 1.05/(l+0.05) {
		return "#0b0d10"
	}
	return "#ffffff"
}
