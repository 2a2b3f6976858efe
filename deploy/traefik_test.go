package deploy

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// traefikDynamicPath is deploy/traefik/passgate.yml.
const traefikDynamicPath = "traefik/passgate.yml"

// The parts of Traefik v3's dynamic configuration (the file provider's
// http section, as in github.com/traefik/traefik/v3/pkg/config/dynamic,
// whose YAML keys are these JSON names) that the shipped file may use.
// Decoding is strict: any key not declared here fails, so a misspelt option
// (which Traefik itself would silently ignore) cannot hide. Traefik does not
// build from the Go module proxy (its go.mod has replace directives, one to
// a nested module that is not published), so the tests cannot run it.
type traefikDynamic struct {
	HTTP traefikHTTP `json:"http"`
}

type traefikHTTP struct {
	Routers     map[string]traefikRouter     `json:"routers"`
	Middlewares map[string]traefikMiddleware `json:"middlewares"`
	Services    map[string]traefikService    `json:"services"`
}

type traefikRouter struct {
	EntryPoints []string          `json:"entryPoints,omitempty"`
	Middlewares []string          `json:"middlewares,omitempty"`
	Service     string            `json:"service"`
	Rule        string            `json:"rule"`
	RuleSyntax  string            `json:"ruleSyntax,omitempty"`
	Priority    int               `json:"priority,omitempty"`
	TLS         *traefikRouterTLS `json:"tls,omitempty"`
}

type traefikRouterTLS struct {
	Options      string `json:"options,omitempty"`
	CertResolver string `json:"certResolver,omitempty"`
}

type traefikMiddleware struct {
	ForwardAuth *traefikForwardAuth `json:"forwardAuth,omitempty"`
	Headers     *traefikHeaders     `json:"headers,omitempty"`
}

type traefikForwardAuth struct {
	Address             string   `json:"address"`
	TrustForwardHeader  bool     `json:"trustForwardHeader,omitempty"`
	AuthResponseHeaders []string `json:"authResponseHeaders,omitempty"`
	AuthRequestHeaders  []string `json:"authRequestHeaders,omitempty"`
}

type traefikHeaders struct {
	CustomRequestHeaders  map[string]string `json:"customRequestHeaders,omitempty"`
	CustomResponseHeaders map[string]string `json:"customResponseHeaders,omitempty"`
}

type traefikService struct {
	LoadBalancer *traefikLoadBalancer `json:"loadBalancer"`
}

type traefikLoadBalancer struct {
	Servers        []traefikServer `json:"servers"`
	PassHostHeader *bool           `json:"passHostHeader,omitempty"`
}

type traefikServer struct {
	URL string `json:"url"`
}

func decodeTraefik(b []byte) (traefikDynamic, error) {
	var d traefikDynamic
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return d, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	err = dec.Decode(&d)
	return d, err
}

func loadTraefik(t testing.TB) traefikDynamic {
	t.Helper()
	return decodeShipped(t, traefikDynamicPath, decodeTraefik)
}

// TestTraefikDynamicConfig: every router's service and middlewares exist;
// the MCP router checks with passgate's forward-auth path, trusting no
// client X-Forwarded-* header, copies exactly the identity headers, then
// removes the credentials; passgate's router wins over it on its paths.
func TestTraefikDynamicConfig(t *testing.T) {
	d := loadTraefik(t)
	h := d.HTTP
	for name, r := range h.Routers {
		if _, ok := h.Services[r.Service]; !ok {
			t.Errorf("router %s: service %q is not defined", name, r.Service)
		}
		for _, m := range r.Middlewares {
			if _, ok := h.Middlewares[m]; !ok {
				t.Errorf("router %s: middleware %q is not defined", name, m)
			}
		}
	}
	for name, s := range h.Services {
		if s.LoadBalancer == nil || len(s.LoadBalancer.Servers) == 0 {
			t.Errorf("service %s has no servers", name)
		}
	}
	mcp, pg := h.Routers["mcp"], h.Routers["passgate"]
	if mcp.Service != "mcp" || pg.Service != "passgate" {
		t.Fatalf("routers mcp and passgate go to %q and %q", mcp.Service, pg.Service)
	}
	if pg.Priority <= mcp.Priority || len(pg.Middlewares) != 0 {
		t.Errorf("passgate router: priority %d (mcp %d), middlewares %v; want above mcp and none", pg.Priority, mcp.Priority, pg.Middlewares)
	}
	var fa *traefikForwardAuth
	strip := -1
	for i, name := range mcp.Middlewares {
		m := h.Middlewares[name]
		switch {
		case m.ForwardAuth != nil:
			if strip >= 0 {
				t.Errorf("credentials are removed before the check")
			}
			fa = m.ForwardAuth
		case m.Headers != nil:
			if v, ok := m.Headers.CustomRequestHeaders["Authorization"]; ok && v == "" {
				strip = i
			}
		}
	}
	if fa == nil || strip < 0 {
		t.Fatalf("mcp router middlewares %v: want forwardAuth, then headers removing Authorization", mcp.Middlewares)
	}
	u, err := url.Parse(fa.Address)
	if err != nil || u.Path != "/_passgate/check/forward-auth" || u.Query().Get("port") == "" {
		t.Errorf("forwardAuth address %q, want passgate's /_passgate/check/forward-auth with the entry point's port pinned (?port=)", fa.Address)
	}
	if fa.TrustForwardHeader {
		t.Error("forwardAuth trusts client-sent X-Forwarded-* headers")
	}
	if diff := cmp.Diff(fa.AuthResponseHeaders, identityHeaderNames); diff != "" {
		t.Errorf("authResponseHeaders (-got +want):\n%s", diff)
	}
	hosts := regexp.MustCompile("Host\\(`([^`]*)`\\)")
	if a, b := hosts.FindAllStringSubmatch(mcp.Rule, -1), hosts.FindAllStringSubmatch(pg.Rule, -1); len(a) != 1 || len(b) != 1 || a[0][1] != b[0][1] {
		t.Errorf("routers name different hosts: %q and %q", mcp.Rule, pg.Rule)
	}
}

// TestDecodeTraefikIsStrict: a misspelt option fails. (Key case is not
// checked: Go's JSON decoder and Traefik's own loader both ignore it.)
func TestDecodeTraefikIsStrict(t *testing.T) {
	wantDecodeErrors(t, decodeTraefik,
		"http:\n  middlewares:\n    a:\n      forwardAuth:\n        address: http://x\n        authResponseHeader: [X-A]\n",
		"http:\n  middlewares:\n    a:\n      forwardAuth:\n        address: http://x\n        trustForwardHeaders: false\n",
		"http:\n  routers:\n    a:\n      rule: Host(`x`)\n      service: s\n      middleware: [m]\n",
	)
}

// passgateRouteRoots reduces route patterns to the paths they name, so
// proxies whose matchers differ in syntax can be compared: "= /token",
// "/oauth/", "/oauth/*" and PathPrefix(`/oauth/`) are all "/oauth".
func passgateRouteRoots(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		p = strings.TrimPrefix(p, "= ")
		p = strings.TrimSuffix(p, "*")
		p = strings.TrimSuffix(p, "/")
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// caddyPassgateMatcher is the @passgate path matcher of the Caddyfile.
var caddyPassgateMatcher = regexp.MustCompile(`(?m)^\s*@passgate path (.*)$`)

// caddyPassgatePaths returns the paths of the Caddyfile's @passgate
// matcher, the requests Caddy sends to passgate unchecked.
func caddyPassgatePaths(t testing.TB) []string {
	t.Helper()
	caddyfile, err := os.ReadFile(caddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	m := caddyPassgateMatcher.FindSubmatch(caddyfile)
	if m == nil {
		t.Fatal("no @passgate path matcher in the Caddyfile")
	}
	return strings.Fields(string(m[1]))
}

// TestShippedProxiesAgreeOnPassgateRoutes: Caddy, Traefik and the
// ingress-nginx manifests send the same paths to passgate unchecked as
// deploy/nginx.conf.
func TestShippedProxiesAgreeOnPassgateRoutes(t *testing.T) {
	want := passgateRouteRoots(nginxPassgateLocations(t))

	if diff := cmp.Diff(passgateRouteRoots(caddyPassgatePaths(t)), want); diff != "" {
		t.Errorf("Caddy's passgate paths (-caddy +nginx):\n%s", diff)
	}

	var fromTraefik []string
	for _, m := range regexp.MustCompile("Path(?:Prefix)?\\(`([^`]*)`\\)").FindAllStringSubmatch(loadTraefik(t).HTTP.Routers["passgate"].Rule, -1) {
		fromTraefik = append(fromTraefik, m[1])
	}
	if diff := cmp.Diff(passgateRouteRoots(fromTraefik), want); diff != "" {
		t.Errorf("Traefik's passgate paths (-traefik +nginx):\n%s", diff)
	}

	var fromIngress []string
	for _, r := range readIngressManifests(t).Passgate.Spec.Rules {
		for _, p := range r.HTTP.Paths {
			fromIngress = append(fromIngress, p.Path)
		}
	}
	if diff := cmp.Diff(passgateRouteRoots(fromIngress), want); diff != "" {
		t.Errorf("ingress-nginx's passgate paths (-ingress +nginx):\n%s", diff)
	}
}
