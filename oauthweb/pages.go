package oauthweb

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

//go:embed templates/*.html
var embeddedTemplates embed.FS

//go:embed static/passgate.css
var stylesheet []byte

// pageNames are the templates rendered inside layout.html.
var pageNames = []string{"login", "consent", "error", "apps", "logout", "mfa", "enroll", "recovery", "account"}

// Messages of the authorization errors that get their own heading on the
// error page.
const (
	msgUnknownClient = "The application is not registered with this server. Remove and add the connection again in your application."
	msgBadRedirect   = "The redirect URI does not match the ones registered for this application."
	// msgBadClientDocument is shown when the client_id is a Client ID
	// Metadata Document URL passgate could not use; %s is the rule it
	// broke (cimd's PublicReason, never the document's contents).
	msgBadClientDocument = "This application's client metadata document cannot be used: %s. Its developer must fix it; nothing was sent to the application."
	msgNotAllowed    = "Your account may not use this server."
	// msgBadAuthorizeRequest starts the page shown instead of redirecting
	// an authorization error to a client that is not trusted before login.
	msgBadAuthorizeRequest = "The application sent a sign-in request this server cannot accept."
)

type pages struct {
	t     map[string]*template.Template
	brand brand
	// css is the embedded stylesheet plus the branding overrides; cssTag
	// is a short hash of it, appended to the stylesheet URL so a new
	// brand is not hidden by a cached stylesheet.
	css    []byte
	cssTag string
	// script and connect, when passkeys are on, are the URL of
	// passgate.js and the URL prefix of the WebAuthn ceremonies: the
	// only script and the only fetch the CSP allows.
	script, connect string
	jsTag           string
}

// readTemplate returns the override from dir when it has the file, else
// the embedded one, and where it came from (for error messages).
func readTemplate(dir, name string) ([]byte, string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err == nil {
			return b, p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, p, fmt.Errorf("read template %s: %w", p, err)
		}
	}
	b, err := embeddedTemplates.ReadFile("templates/" + name)
	if err != nil {
		return nil, "", fmt.Errorf("embedded template %s missing: %w", name, err)
	}
	return b, "built-in " + name, nil
}

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2 Jan 2006 15:04 UTC")
	},
	"initial": initial,
}

// loadPages parses layout.html with each page once, at startup, and
// renders each with sample data, so a broken override fails New instead
// of a login.
func loadPages(dir string, b Branding) (*pages, error) {
	var errs []error
	br, err := b.resolve()
	if err != nil {
		errs = append(errs, err)
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, errors.Join(append(errs, fmt.Errorf("template dir %q is not a readable directory", dir))...)
		}
	}
	css := append(append([]byte{}, stylesheet...), br.css...)
	sum := sha256.Sum256(css)
	jsSum := sha256.Sum256(script)
	p := &pages{t: map[string]*template.Template{}, brand: br, css: css, cssTag: hex.EncodeToString(sum[:4]), jsTag: hex.EncodeToString(jsSum[:4])}
	layout, layoutSrc, err := readTemplate(dir, "layout.html")
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	for _, name := range pageNames {
		body, src, err := readTemplate(dir, name+".html")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).Parse(string(layout))
		if err != nil {
			return nil, errors.Join(append(errs, fmt.Errorf("parse template %s: %w", layoutSrc, err))...)
		}
		if _, err := t.New(name + ".html").Parse(string(body)); err != nil {
			errs = append(errs, fmt.Errorf("parse template %s: %w", src, err))
			continue
		}
		if t.Lookup("content") == nil {
			errs = append(errs, fmt.Errorf("template %s does not define \"content\"", src))
			continue
		}
		// A template that parses can still fail on every request, e.g.
		// by naming a field its data does not have.
		for _, pg := range samplePages(name) {
			pg.Brand, pg.CSS, pg.Script = br, "/static/passgate.css", "/static/passgate.js"
			if pg.Status == 0 {
				pg.Status = http.StatusOK
			}
			if err := t.ExecuteTemplate(io.Discard, "layout.html", pg); err != nil {
				errs = append(errs, fmt.Errorf("template %s fails with sample data: %w", src, err))
				break
			}
		}
		p.t[name] = t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// samplePages is what loadPages renders each page with: every field set,
// and the variants a page has.
func samplePages(name string) []page {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	switch name {
	case "login":
		d := loginData{Action: "/login", CSRF: "x", ReturnTo: "/apps", Username: "alice", PasskeyOptions: "/webauthn/login/options", PasskeyFinish: "/webauthn/login"}
		return []page{{Title: "Sign in", Data: d}, {Title: "Sign in", Error: "Sign-in failed.", Status: 401, Data: loginData{}}}
	case "consent":
		d := consentData{Action: "/consent", CSRF: "x", ClientName: "App", ClientID: "https://app.example/client.json",
			RedirectHost: "app.example", Unverified: true, Scopes: []string{"mcp", "other"}, Resource: "https://mcp.example/mcp",
			Username: "alice", Params: []hiddenField{{"state", "s"}}, LogoutURL: "/logout"}
		local := d
		local.ClientID, local.RedirectHost, local.SelfDeclared, local.Local, local.AskedEveryTime = "c", "127.0.0.1:3000", true, true, true
		app := d
		app.RedirectHost, app.AppScheme, app.AskedEveryTime = "cursor:", "cursor", true
		return []page{{Title: "Allow access?", Data: d}, {Title: "Allow access?", Data: local}, {Title: "Allow access?", Data: app}}
	case "apps":
		d := appsData{Username: "alice", CSRF: "x", RevokeURL: "/apps/revoke", LogoutURL: "/logout", RevokedName: "App",
			Apps: []appRow{{ClientID: "c", Name: "App", Scope: "mcp", ApprovedAt: now, LastUsedAt: now,
				Grants: []grantRow{{Resource: "https://mcp.example/mcp", Scope: "mcp", ApprovedAt: now}, {Scope: "mcp", ApprovedAt: now}}},
				{ClientID: "d", Name: "B"}}}
		return []page{{Title: "Connected apps", Data: d}, {Title: "Connected apps", Data: appsData{}}}
	case "logout":
		return []page{{Title: "Sign out", Data: logoutData{Action: "/logout", CSRF: "x", Username: "alice", LoginURL: "/login"}},
			{Title: "Signed out", Data: logoutData{Done: true}}}
	case "error":
		return []page{{Title: "Error", Error: "m", Data: errorData{Message: "m", Heading: "h", Hint: "x"}}}
	case "mfa":
		d := mfaData{Action: "/login/second-factor", CSRF: "x", ReturnTo: "/apps", Username: "alice", LogoutURL: "/logout", TOTP: true,
			PasskeyOptions: "/webauthn/second-factor/options", PasskeyFinish: "/webauthn/second-factor"}
		keyOnly := d
		keyOnly.TOTP = false
		return []page{{Title: "Two-step verification", Data: d}, {Title: "Two-step verification", Error: "m", Status: 401, Data: keyOnly}, {Title: "Two-step verification", Data: mfaData{TOTP: true}}}
	case "enroll":
		d := enrollData{Action: "/account/totp", CSRF: "x", ReturnTo: "/apps", Username: "alice", QR: "data:image/png;base64,AA==",
			Secret: "JBSWY3DPEHPK3PXP", Enrolment: "x", LogoutURL: "/logout", AccountURL: "/account"}
		req := d
		req.Required, req.PasskeyOptions, req.PasskeyFinish = true, "/webauthn/register/options", "/webauthn/register"
		return []page{{Title: "Set up an authenticator app", Data: d}, {Title: "Set up an authenticator app", Error: "m", Data: req}}
	case "recovery":
		d := recoveryData{Username: "alice", Codes: []string{"abcd-efgh-jkmn-pqrs"}, ContinueURL: "/apps", Enrolled: true}
		return []page{{Title: "Your recovery codes", Data: d}, {Title: "Your recovery codes", Data: recoveryData{}}}
	case "account":
		d := accountData{Username: "alice", CSRF: "x", PasswordURL: "/account/password", EnrollURL: "/account/totp",
			RemoveTOTPURL: "/account/totp/remove", RecoveryURL: "/account/recovery-codes", AppsURL: "/apps", LogoutURL: "/logout",
			ReauthURL: "/login", Done: "d", SecondFactors: true, TOTP: true, TOTPCreated: now, TOTPLastUsed: now, RecoveryLeft: 3, Recent: true,
			Passkeys:         []passkeyRow{{ID: "aWQ", Name: "Phone", CreatedAt: now, LastUsedAt: now, Synced: true}},
			PasskeyRenameURL: "/account/passkeys/rename", PasskeyRemoveURL: "/account/passkeys/remove",
			PasskeyOptions: "/webauthn/register/options", PasskeyFinish: "/webauthn/register"}
		off := d
		off.TOTP, off.Required, off.Recent = false, true, false
		return []page{{Title: "Account", Data: d}, {Title: "Account", Error: "m", Data: off}, {Title: "Account", Data: accountData{}}}
	}
	return nil
}

// page is what every template receives; see docs/templates.md.
type page struct {
	// Title is the page's title, used in <title>.
	Title string
	// CSS is the stylesheet URL.
	CSS string
	// Error is shown in an aria-live region.
	Error string
	// Status is the HTTP status of the response.
	Status int
	// Brand is the configured branding.
	Brand brand
	// Data is the page's own struct.
	Data any
	// Script is the URL of passgate.js when passkeys are on, else "".
	// Only the pages with a passkey button load it.
	Script string
}

type loginData struct {
	Action   string
	CSRF     string
	ReturnTo string
	Username string
	// PasskeyOptions and PasskeyFinish are the passkey sign-in ceremony
	// for passgate.js when passkeys are on, else "".
	PasskeyOptions, PasskeyFinish string
}

type consentData struct {
	Action       string
	CSRF         string
	ClientName   string
	ClientID     string
	RedirectHost string
	Unverified   bool
	// SelfDeclared: the client registered itself (dynamic registration);
	// nobody vouches for its name.
	SelfDeclared bool
	// Local: the redirect URI is http on a loopback host, so the app runs
	// on the user's own computer.
	Local bool
	// AppScheme is the private-use scheme of the redirect URI (an app on
	// this device), or "".
	AppScheme string
	// AskedEveryTime: this client's identity is not assured, so the page
	// comes back on every sign-in.
	AskedEveryTime bool
	Scopes         []string
	Resource       string
	// ScopeText is the operator's words for a scope on Resource (the
	// access policy's scope_descriptions), "" for none.
	ScopeText func(scope string) string
	Username  string
	Params    []hiddenField
	LogoutURL string
}

// ClientIDHost is the host of a client_id that is a URL (a Client ID
// Metadata Document: the document's publisher), else "".
func (d consentData) ClientIDHost() string {
	if !strings.HasPrefix(d.ClientID, "https://") && !strings.HasPrefix(d.ClientID, "http://") {
		return ""
	}
	u, err := url.Parse(d.ClientID)
	if err != nil {
		return ""
	}
	return u.Host
}

// ResourceHost is the host of the resource the token will be good for.
func (d consentData) ResourceHost() string {
	u, err := url.Parse(d.Resource)
	if err != nil || u.Host == "" {
		return d.Resource
	}
	return u.Host
}

// scopeItem is one permission in words.
type scopeItem struct {
	Name string
	Text string
}

// ScopeList describes each requested scope in words.
func (d consentData) ScopeList() []scopeItem {
	host := d.ResourceHost()
	var out []scopeItem
	for _, s := range d.Scopes {
		var text string
		if d.ScopeText != nil {
			text = d.ScopeText(s)
		}
		switch {
		case text != "":
		case s == "mcp":
			text = "Use the MCP server at " + host + " as you: call its tools and read its resources"
		case s == "read" || s == "mcp:read":
			text = "Read your data on " + host
		case s == "write" || s == "mcp:write":
			text = "Change your data on " + host
		default:
			text = "The permission “" + s + "” on " + host
		}
		out = append(out, scopeItem{Name: s, Text: text})
	}
	return out
}

type hiddenField struct{ Name, Value string }

type appsData struct {
	Username    string
	Apps        []appRow
	CSRF        string
	RevokeURL   string
	LogoutURL   string
	RevokedName string
	// AccountURL is the account page (password, two-step verification).
	AccountURL string
}

type appRow struct {
	ClientID string
	Name     string
	// Scope is every scope approved for the client, on any resource.
	Scope string
	// ApprovedAt is the latest approval, on any resource.
	ApprovedAt time.Time
	LastUsedAt time.Time
	// Grants are the approvals, one per resource, newest first.
	Grants []grantRow
}

// grantRow is what the user approved a client for on one resource.
type grantRow struct {
	// Resource is the MCP server URL, or "" for an approval recorded
	// before passgate kept consents per resource.
	Resource   string
	Scope      string
	ApprovedAt time.Time
}

type logoutData struct {
	Action   string
	CSRF     string
	Username string
	Done     bool
	LoginURL string
}

type errorData struct {
	// Heading names the problem in a few words.
	Heading string
	// Message says what happened.
	Message string
	// Hint says what to do, or is "".
	Hint string
	// ReturnURL, when set, is the application's redirect URI with the
	// error (state and iss included), offered as a link rather than
	// followed automatically: the user has signed in but never approved
	// this application, so passgate does not vouch for where it goes.
	// ReturnHost names where it goes.
	ReturnURL, ReturnHost string
}

// initial is the first letter of a name, upper-cased, for the avatar
// beside a client's name.
func initial(name string) string {
	for _, r := range name {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return string(unicode.ToUpper(r))
		}
	}
	if r, _ := utf8.DecodeRuneInString(name); r != utf8.RuneError {
		return string(r)
	}
	return "?"
}

// render executes a page into a buffer, then writes it with status, so a
// template failure never leaves half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, pg page) {
	pg.CSS = s.endpoints.css + "?v=" + s.pages.cssTag
	if s.rp != nil {
		pg.Script = s.endpoints.js + "?v=" + s.pages.jsTag
	}
	pg.Brand = s.pages.brand
	pg.Status = status
	var buf bytes.Buffer
	if err := s.pages.t[name].ExecuteTemplate(&buf, "layout.html", pg); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows the error page; err goes to the log, message to the
// user.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, message string, err error) {
	if err != nil {
		s.log.InfoContext(r.Context(), "page error", "status", status, "path", r.URL.Path, "err", err)
	}
	s.renderErrorData(w, r, status, errorPage(w, status, message))
}

// renderErrorData shows the error page d.
func (s *Server) renderErrorData(w http.ResponseWriter, r *http.Request, status int, d errorData) {
	s.render(w, r, status, "error", page{Title: d.Heading, Error: d.Message, Data: d})
}

// errorPage is the error page's heading and hint for message, shown with
// status (w carries Retry-After for 429).
func errorPage(w http.ResponseWriter, status int, message string) errorData {
	d := errorData{Heading: "Something went wrong", Message: message}
	switch {
	case message == msgUnknownClient:
		d.Heading = "Unknown application"
		d.Hint = "This usually means the server was reset or the connection is old. If you did not start this sign-in yourself, close this window."
	case strings.HasPrefix(message, msgBadAuthorizeRequest):
		d.Heading = "Invalid sign-in request"
		d.Hint = "Go back to the application and start again. If you did not start this sign-in yourself, close this window."
	case message == msgNotAllowed:
		d.Heading = "Access not allowed"
		d.Hint = "The administrator has not given your account access to this server. Ask them to add you, or sign in with another account."
	case message == msgBadRedirect:
		d.Heading = "Unexpected return address"
		d.Hint = "Sign-in results are only sent to addresses the application registered, so nobody can redirect them elsewhere. If you did not start this sign-in yourself, close this window."
	case status == http.StatusTooManyRequests:
		d.Heading = "Too many attempts"
		if secs, err := strconv.Atoi(w.Header().Get("Retry-After")); err == nil && secs > 0 {
			d.Hint = "Try again in " + waitText(secs) + "."
		}
	case status == http.StatusServiceUnavailable:
		d.Heading = "Temporarily unavailable"
	case status == http.StatusForbidden:
		d.Heading = "This page expired"
	}
	return d
}

// waitText says how long "secs" is in words.
func waitText(secs int) string {
	switch {
	case secs <= 1:
		return "a second"
	case secs < 90:
		return strconv.Itoa(secs) + " seconds"
	default:
		return "about " + strconv.Itoa((secs+30)/60) + " minutes"
	}
}

// csp is the Content-Security-Policy of every page: styles only from our
// own stylesheet, images from us, data: URLs (an embedded logo, the TOTP
// QR code) and the configured logo's origin; no script at all, or with
// passkeys on, only passgate.js, which may only fetch the ceremonies.
func (p *pages) csp() string {
	img := "'self' data:"
	if p.brand.imgOrigin != "" {
		img += " " + p.brand.imgOrigin
	}
	// form-action is deliberately absent: Chrome applies it to the
	// redirect that follows the consent POST, which leaves our origin.
	csp := "default-src 'none'; style-src 'self'; img-src " + img + "; base-uri 'none'; frame-ancestors 'none'"
	if p.script != "" {
		// A source with a path allows that one file (CSP3 §6.7.2.9), not
		// whatever else the origin serves.
		csp += "; script-src " + p.script + "; connect-src " + p.connect
	}
	return csp
}

//go:embed static/passgate.js
var script []byte

func (s *Server) serveJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(script)
}

func (s *Server) serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(s.pages.css)
}
