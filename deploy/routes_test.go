package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/passgate/passgate/oauthweb"
)

// publicRequestPaths are the paths a client or browser asks passgate for on
// the MCP host: every path of oauthweb.PublicPaths (which a test of
// oauthweb holds equal to passgate's routes), plus a path-suffixed form of
// each discovery document.
func publicRequestPaths() []string {
	paths := oauthweb.PublicPaths()
	for _, p := range paths {
		if strings.HasPrefix(p, "/.well-known/") {
			paths = append(paths, p+"/mcp")
		}
	}
	return paths
}

// notPassgatePaths must not be sent to passgate unchecked: they share a
// textual prefix with one of passgate's pages but are none of them, or
// are the MCP route.
var notPassgatePaths = []string{
	"/loginfoo", "/login.php", "/accountfoo", "/account.json", "/webauthnfoo",
	"/appsfoo", "/staticfoo", "/consentfoo", "/tokenfoo", "/mcp", "/mcp/", "/mcp/login", "/mcp/account",
}

// pathRoute is one path match of a proxy configuration: exact, or a
// prefix of the request path.
type pathRoute struct {
	path   string
	prefix bool
}

func (r pathRoute) matches(p string) bool {
	if r.prefix {
		return strings.HasPrefix(p, r.path)
	}
	return p == r.path
}

func anyMatches(routes []pathRoute, p string) bool {
	return slices.ContainsFunc(routes, func(r pathRoute) bool { return r.matches(p) })
}

// starRoutes reads paths where a trailing "*" marks a prefix (Caddy's path
// matcher, README's list, Istio's notPaths).
func starRoutes(patterns []string) []pathRoute {
	var out []pathRoute
	for _, p := range patterns {
		if s, ok := strings.CutSuffix(p, "*"); ok {
			out = append(out, pathRoute{s, true})
		} else {
			out = append(out, pathRoute{p, false})
		}
	}
	return out
}

// nginxAnyLocation matches every non-named location: modifier and path.
var nginxAnyLocation = regexp.MustCompile(`(?m)^\s*location\s+(=\s+)?(/\S*)\s*\{`)

// nginxToPassgate reports whether deploy/nginx.conf sends path to
// passgate's pages unchecked: nginx picks an exact location, else the
// longest prefix location (the file has no regular-expression locations),
// and passgate's are the one-line proxy_pass blocks without auth_request
// (nginxLocation).
func nginxToPassgate(t *testing.T, conf, path string) bool {
	t.Helper()
	if strings.Contains(conf, "location ~") {
		t.Fatal("nginx.conf has a regular-expression location, which the test does not model")
	}
	pg := map[string]bool{}
	for _, m := range nginxLocation.FindAllStringSubmatch(conf, -1) {
		pg[m[1]+m[2]] = true
	}
	best := ""
	for _, m := range nginxAnyLocation.FindAllStringSubmatch(conf, -1) {
		exact, p := m[1] != "", m[2]
		if exact && p == path {
			return pg[m[1]+p]
		}
		if !exact && strings.HasPrefix(path, p) && len(p) > len(best) {
			best = p
		}
	}
	return pg[best]
}

// readmeRoutes returns README "Deploying" item 2's paths.
func readmeRoutes(t *testing.T) []pathRoute {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const intro = "passgate's own paths on the MCP host reach passgate unchecked:"
	_, s, ok := strings.Cut(string(b), intro)
	if !ok {
		t.Fatalf("README.md no longer says %q", intro)
	}
	s, _, _ = strings.Cut(s, "\n3. ")
	var paths []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(s, -1) {
		paths = append(paths, m[1])
	}
	return starRoutes(paths)
}

// TestEveryConfigRoutesPassgatesPages: every path passgate serves to
// clients and browsers (oauthweb.PublicPaths, held equal to its routes) is
// sent to passgate without a check by each shipped proxy configuration and
// by README's list, which deploy/kittest holds the Kubernetes examples
// (Envoy Gateway, Istio) to; and none of them sends a look-alike path such
// as /loginfoo, or the MCP route, to passgate unchecked. A page added to
// passgate without a route in one of them fails here.
func TestEveryConfigRoutesPassgatesPages(t *testing.T) {
	nginxConf, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	caddy := starRoutes(caddyPassgatePaths(t))

	var traefik []pathRoute
	for _, m := range regexp.MustCompile("(Path|PathPrefix)\\(`([^`]*)`\\)").FindAllStringSubmatch(loadTraefik(t).HTTP.Routers["passgate"].Rule, -1) {
		traefik = append(traefik, pathRoute{m[2], m[1] == "PathPrefix"})
	}

	// Kubernetes Ingress: Exact, or Prefix by whole path segments.
	ingressMatches := func(ing k8sIngress, p string) bool {
		for _, r := range ing.Spec.Rules {
			for _, ip := range r.HTTP.Paths {
				if ip.PathType == nil {
					t.Fatalf("Ingress %s path %s has no pathType", ing.Metadata.Name, ip.Path)
				}
				switch base := strings.TrimSuffix(ip.Path, "/"); *ip.PathType {
				case "Exact":
					if p == ip.Path {
						return true
					}
				case "Prefix":
					if p == base || strings.HasPrefix(p, base+"/") {
						return true
					}
				default:
					t.Fatalf("Ingress %s path %s: pathType %s is not modelled", ing.Metadata.Name, ip.Path, *ip.PathType)
				}
			}
		}
		return false
	}
	ingresses := readIngressManifests(t)

	envoy := loadEnvoy(t)
	envoyToPassgate := func(p string) bool {
		r := envoyRouteFor(t, envoy, p)
		return r != nil && r.GetRoute().GetCluster() == "passgate_http" && extAuthzDisabled(t, r)
	}

	readme := readmeRoutes(t)

	configs := map[string]func(path string) bool{
		"deploy/nginx.conf":           func(p string) bool { return nginxToPassgate(t, string(nginxConf), p) },
		"deploy/envoy.yaml":           envoyToPassgate,
		"deploy/caddy/Caddyfile":      func(p string) bool { return anyMatches(caddy, p) },
		"deploy/traefik/passgate.yml": func(p string) bool { return anyMatches(traefik, p) },
		"deploy/ingress-nginx/passgate.yaml": func(p string) bool {
			return ingressMatches(ingresses.Passgate, p) && !ingressMatches(ingresses.MCP, p)
		},
		"README Deploying item 2": func(p string) bool { return anyMatches(readme, p) },
	}
	paths := publicRequestPaths()
	for name, toPassgate := range configs {
		t.Run(name, func(t *testing.T) {
			for _, p := range paths {
				if !toPassgate(p) {
					t.Errorf("%s does not reach passgate unchecked", p)
				}
			}
			for _, p := range notPassgatePaths {
				if toPassgate(p) {
					t.Errorf("%s reaches passgate unchecked; it is no page of passgate's", p)
				}
			}
		})
	}
}
