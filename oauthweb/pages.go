package oauthweb

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

//go:embed templates/*.html
var embeddedTemplates embed.FS

//go:embed static/passgate.css
var stylesheet []byte

// pageNames are the templates rendered inside layout.html.
var pageNames = []string{"login", "consent", "error", "apps", "logout"}

type pages struct {
	t map[string]*template.Template
}

// readTemplate returns the override from dir when it has the file, else
// the embedded one.
func readTemplate(dir, name string) ([]byte, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read template %s: %w", name, err)
		}
	}
	b, err := embeddedTemplates.ReadFile("templates/" + name)
	if err != nil {
		return nil, fmt.Errorf("embedded template %s missing: %w", name, err)
	}
	return b, nil
}

// loadPages parses layout.html with each page once, at startup, so a
// broken override fails New instead of a login.
func loadPages(dir string) (*pages, error) {
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("template dir %q is not a readable directory", dir)
		}
	}
	layout, err := readTemplate(dir, "layout.html")
	if err != nil {
		return nil, err
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		body, err := readTemplate(dir, name+".html")
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout.html").Funcs(template.FuncMap{
			"date": func(t time.Time) string {
				if t.IsZero() {
					return "never"
				}
				return t.UTC().Format("2006-01-02 15:04 UTC")
			},
		}).Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("parse template layout.html: %w", err)
		}
		if _, err := t.New(name + ".html").Parse(string(body)); err != nil {
			return nil, fmt.Errorf("parse template %s.html: %w", name, err)
		}
		if t.Lookup("content") == nil {
			return nil, fmt.Errorf("template %s.html does not define \"content\"", name)
		}
		p.t[name] = t
	}
	return p, nil
}

// page is what every template receives.
type page struct {
	Title string
	CSS   string
	// Error is shown in an aria-live region.
	Error string
	// Data is the page's own struct.
	Data any
}

type loginData struct {
	Action   string
	CSRF     string
	ReturnTo string
	Username string
}

type consentData struct {
	Action       string
	CSRF         string
	ClientName   string
	ClientID     string
	RedirectHost string
	Unverified   bool
	Scopes       []string
	Resource     string
	Username     string
	Params       []hiddenField
	LogoutURL    string
}

type hiddenField struct{ Name, Value string }

type appsData struct {
	Username    string
	Apps        []appRow
	CSRF        string
	RevokeURL   string
	LogoutURL   string
	RevokedName string
}

type appRow struct {
	ClientID   string
	Name       string
	Scope      string
	ApprovedAt time.Time
	LastUsedAt time.Time
}

type logoutData struct {
	Action   string
	CSRF     string
	Username string
	Done     bool
	LoginURL string
}

type errorData struct {
	Message string
}

// render executes a page into a buffer, then writes it with status, so a
// template failure never leaves half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, pg page) {
	pg.CSS = s.endpoints.css
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
	s.render(w, r, status, "error", page{Title: "Error", Error: message, Data: errorData{Message: message}})
}

func serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(stylesheet)
}
