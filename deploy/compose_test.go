package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// composePath is deploy/docker-compose.yml, relative to this package.
const composePath = "docker-compose.yml"

// compose is the part of the Compose specification docker-compose.yml
// uses. It is decoded strictly, so a key outside it (a typo, or a feature
// this test does not check) fails the test.
type compose struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeService struct {
	Image       string                       `json:"image"`
	Build       *composeBuild                `json:"build"`
	Restart     string                       `json:"restart"`
	Ports       []string                     `json:"ports"`
	Environment map[string]string            `json:"environment"`
	Volumes     []string                     `json:"volumes"`
	DependsOn   map[string]composeDependency `json:"depends_on"`
	Healthcheck *composeHealthcheck          `json:"healthcheck"`
}

// resolvedEnvironment returns the service's environment with its Compose
// variables resolved from env.
func (s composeService) resolvedEnvironment(env map[string]string) map[string]string {
	resolved := map[string]string{}
	for k, v := range s.Environment {
		resolved[k] = interpolate(v, env)
	}
	return resolved
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
	Target     string `json:"target"`
}

type composeDependency struct {
	Condition string `json:"condition"`
}

type composeHealthcheck struct {
	Test        []string `json:"test"`
	Interval    string   `json:"interval"`
	Timeout     string   `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod string   `json:"start_period"`
}

func loadCompose(t *testing.T) (compose, string) {
	t.Helper()
	raw, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("decode %s: %v", composePath, err)
	}
	return c, string(raw)
}

// composeVar matches Compose interpolation: ${NAME}, ${NAME:-default},
// ${NAME:?error}; $$ escapes a dollar.
var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}`)

// interpolate resolves Compose variables from env, as `docker compose`
// does with deploy/.env.
func interpolate(s string, env map[string]string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := composeVar.FindStringSubmatch(m)[1]
		return env[name]
	})
}

// envExample reads deploy/.env.example into a map.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf(".env.example:%d: not NAME=value: %q", i+1, line)
		}
		env[k] = strings.Trim(v, `'"`)
	}
	return env
}

// portOf returns the port of a Go-style listen address such as ":8080".
func portOf(t *testing.T, listen string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("listen address %q: %v", listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", listen, err)
	}
	return n
}

// mountTarget returns the container path that volume spec mounts host path
// src at ("./x:/y:ro" → "/y"), or "".
func mountTarget(volumes []string, src string) string {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == src {
			return parts[1]
		}
	}
	return ""
}

// underMount reports whether file is inside a directory mounted from the
// host.
func underMount(volumes []string, file string) bool {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") && strings.HasPrefix(file, strings.TrimSuffix(parts[1], "/")+"/") {
			return true
		}
	}
	return false
}

func TestComposeServices(t *testing.T) {
	c, _ := loadCompose(t)
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	if diff := cmp.Diff(names, []string{"envoy", "mcp", "nginx", "passgate", "postgres"}); diff != "" {
		t.Fatalf("services (-got +want):\n%s", diff)
	}
	for name, s := range c.Services {
		if s.Restart == "" || s.Restart == "no" {
			t.Errorf("%s: no restart policy", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no health check", name)
		}
		// Nothing but the proxies is reachable from outside.
		public := name == "nginx" || name == "envoy"
		if public != (len(s.Ports) > 0) {
			t.Errorf("%s publishes ports %v", name, s.Ports)
		}
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on undefined service %s", name, dep)
			}
			if d.Condition != "service_healthy" {
				t.Errorf("%s waits for %s to be %q, want service_healthy", name, dep, d.Condition)
			}
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				continue
			}
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: named volume %s is not declared", name, src)
			}
		}
	}
	for _, name := range []string{"passgate", "mcp"} {
		b := c.Services[name].Build
		if b == nil || b.Context != ".." || b.Dockerfile != "Dockerfile" {
			t.Errorf("%s is not built from the repository's Dockerfile: %+v", name, b)
		}
	}
	if mountTarget(c.Services["postgres"].Volumes, "postgres-data") != "/var/lib/postgresql/data" {
		t.Error("postgres data is not on a named volume")
	}
}

// TestComposeDockerfileTargets: the build targets compose names exist.
// pinnedRelease reports whether image names one release: name:VERSION with
// an optional variant (-alpine) and digest, VERSION having all the parts
// its project's releases have: PostgreSQL's are MAJOR.MINOR (17.6), the
// others' MAJOR.MINOR.PATCH. A floating tag (17-alpine, 1.28-alpine,
// v1.35-latest) names whatever was pushed last.
func pinnedRelease(image string) bool {
	name, tag, ok := strings.Cut(image, ":")
	if !ok {
		return false
	}
	version := `\d+\.\d+\.\d+`
	if name == "postgres" {
		version = `\d+\.\d+`
	}
	return regexp.MustCompile(`^v?` + version + `(-[a-z][a-z0-9.]*)?(@sha256:[0-9a-f]{64})?$`).MatchString(tag)
}

// TestComposeImagesPinned: every image compose pulls names an explicit
// release, so `docker compose pull` next month runs what was reviewed; only
// the images compose builds itself carry a local tag.
func TestComposeImagesPinned(t *testing.T) {
	c, _ := loadCompose(t)
	for name, s := range c.Services {
		switch {
		case s.Build != nil:
			if !strings.HasSuffix(s.Image, ":local") {
				t.Errorf("service %s builds %q: want a :local tag, not a registry's name", name, s.Image)
			}
		case !pinnedRelease(s.Image):
			t.Errorf("service %s: image %q is not pinned to an explicit release", name, s.Image)
		}
	}
	for _, floating := range []string{"postgres:17-alpine", "postgres:17", "nginx:1.28-alpine", "envoyproxy/envoy:v1.35-latest", "nginx:latest", "nginx"} {
		if pinnedRelease(floating) {
			t.Errorf("the pin rule accepts the floating tag %q", floating)
		}
	}
}

func TestComposeDockerfileTargets(t *testing.T) {
	c, _ := loadCompose(t)
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"passgate", "mcp"} {
		target := c.Services[name].Build.Target
		if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(target) + `$`).Match(df) {
			t.Errorf("%s: Dockerfile has no stage %q", name, target)
		}
	}
}

func TestComposeEnvFile(t *testing.T) {
	_, raw := loadCompose(t)
	env := envExample(t)
	used := map[string]bool{}
	for _, m := range composeVar.FindAllStringSubmatch(raw, -1) {
		if m[1] != "" {
			used[m[1]] = true
		}
	}
	for name := range used {
		if _, ok := env[name]; !ok {
			t.Errorf("docker-compose.yml uses ${%s}, which .env.example does not set", name)
		}
	}
	for name := range env {
		if !used[name] {
			t.Errorf(".env.example sets %s, which docker-compose.yml does not use", name)
		}
	}
}

func TestComposeNginx(t *testing.T) {
	c, _ := loadCompose(t)
	env := envExample(t)
	ngx := c.Services["nginx"]
	nenv := ngx.resolvedEnvironment(env)

	// The official image renders /etc/nginx/templates/*.template into
	// conf.d with the variables that match NGINX_ENVSUBST_FILTER.
	target := mountTarget(ngx.Volumes, "./nginx.conf")
	if dir, file := path.Split(target); dir != "/etc/nginx/templates/" || !strings.HasSuffix(file, ".conf.template") {
		t.Errorf("nginx.conf is mounted at %q, want /etc/nginx/templates/*.conf.template", target)
	}
	tmpl, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	filter, err := regexp.Compile(nenv["NGINX_ENVSUBST_FILTER"])
	if err != nil || nenv["NGINX_ENVSUBST_FILTER"] == "" {
		t.Fatalf("NGINX_ENVSUBST_FILTER %q: %v", nenv["NGINX_ENVSUBST_FILTER"], err)
	}
	vars := map[string]string{}
	for _, name := range templateVars(string(tmpl)) {
		v, ok := nenv[name]
		if !ok || v == "" {
			t.Errorf("nginx.conf uses %s, which the nginx service does not set", name)
		}
		if !filter.MatchString(name) {
			t.Errorf("NGINX_ENVSUBST_FILTER leaves %s unrendered", name)
		}
		vars[name] = v
	}
	for _, name := range []string{"HOME", "PATH", "HOSTNAME", "host", "scheme"} {
		if filter.MatchString(name) {
			t.Errorf("NGINX_ENVSUBST_FILTER lets envsubst replace $%s", name)
		}
	}
	if t.Failed() {
		return
	}
	// The rendered file must be what the rest of the stack expects.
	if _, err := renderTemplate(string(tmpl), vars); err != nil {
		t.Error(err)
	}
	passgate := c.Services["passgate"].Environment
	mcpEnv := c.Services["mcp"].Environment
	wantAddr := map[string]string{
		"NGINX_PASSGATE_ADDR": fmt.Sprintf("passgate:%d", portOf(t, passgate["PASSGATE_HTTP_LISTEN"])),
		"NGINX_MCP_ADDR":      fmt.Sprintf("mcp:%d", portOf(t, mcpEnv["MCP_LISTEN"])),
	}
	for k, want := range wantAddr {
		if vars[k] != want {
			t.Errorf("%s = %q, want %q", k, vars[k], want)
		}
	}
	for _, k := range []string{"NGINX_TLS_CERT", "NGINX_TLS_KEY"} {
		if !underMount(ngx.Volumes, vars[k]) {
			t.Errorf("%s = %q is not in a mounted directory", k, vars[k])
		}
	}
	listen := strings.Fields(vars["NGINX_LISTEN"])
	if !slices.Contains(listen, "ssl") {
		t.Errorf("NGINX_LISTEN %q is not TLS", vars["NGINX_LISTEN"])
	}
	_, port, ok := strings.Cut(listen[0], ":")
	if !ok {
		port = listen[0]
	}
	if !slices.ContainsFunc(ngx.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		t.Errorf("nginx listens on %s but publishes %v", port, ngx.Ports)
	}
	if vars["NGINX_SERVER_NAME"] != env["PUBLIC_HOST"] {
		t.Errorf("NGINX_SERVER_NAME = %q, want PUBLIC_HOST", vars["NGINX_SERVER_NAME"])
	}
}

func TestComposeEnvoy(t *testing.T) {
	c, _ := loadCompose(t)
	ev := c.Services["envoy"]
	if mountTarget(ev.Volumes, "./envoy.yaml") != "/etc/envoy/envoy.yaml" {
		t.Errorf("envoy.yaml is not mounted where the image reads it: %v", ev.Volumes)
	}
	b := loadEnvoy(t)
	passgate := c.Services["passgate"].Environment
	mcpEnv := c.Services["mcp"].Environment
	want := map[string][]string{
		"passgate_grpc": {fmt.Sprintf("passgate:%d", portOf(t, passgate["PASSGATE_GRPC_LISTEN"]))},
		"passgate_http": {fmt.Sprintf("passgate:%d", portOf(t, passgate["PASSGATE_HTTP_LISTEN"]))},
		"mcp":           {fmt.Sprintf("mcp:%d", portOf(t, mcpEnv["MCP_LISTEN"]))},
	}
	got := map[string][]string{}
	for _, cl := range b.GetStaticResources().GetClusters() {
		got[cl.GetName()] = clusterAddrs(cl)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("envoy clusters vs compose services (-got +want):\n%s", diff)
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		if !slices.ContainsFunc(ev.Ports, func(p string) bool { return strings.HasSuffix(p, fmt.Sprintf(":%d", port)) }) {
			t.Errorf("envoy listens on %d but publishes %v", port, ev.Ports)
		}
		for _, fc := range l.GetFilterChains() {
			ts := fc.GetTransportSocket()
			if ts == nil {
				t.Errorf("listener %s is not TLS", l.GetName())
				continue
			}
			// The certificate files must be in a mounted directory.
			for _, f := range []string{"/etc/envoy/certs/fullchain.pem", "/etc/envoy/certs/privkey.pem"} {
				if !underMount(ev.Volumes, f) {
					t.Errorf("%s is not mounted", f)
				}
			}
		}
	}
	// The admin interface stays on loopback.
	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("envoy admin listens on %q", a)
	}
}

func TestComposePassgate(t *testing.T) {
	c, _ := loadCompose(t)
	env := envExample(t)
	pg := c.Services["passgate"]
	penv := pg.resolvedEnvironment(env)
	if portOf(t, penv["PASSGATE_GRPC_LISTEN"]) != passgateGRPCPort || portOf(t, penv["PASSGATE_HTTP_LISTEN"]) != passgateHTTPPort {
		t.Errorf("passgate listens on %s and %s, the proxies expect %d and %d",
			penv["PASSGATE_HTTP_LISTEN"], penv["PASSGATE_GRPC_LISTEN"], passgateHTTPPort, passgateGRPCPort)
	}
	// The health check asks the port passgate serves on.
	if hc := strings.Join(pg.Healthcheck.Test, " "); !strings.Contains(hc, fmt.Sprintf(":%d/healthz", portOf(t, penv["PASSGATE_HTTP_LISTEN"]))) {
		t.Errorf("passgate health check %q does not ask its HTTP listener", hc)
	}

	// DATABASE_URL points at the postgres service with its credentials.
	u, err := url.Parse(penv["DATABASE_URL"])
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	pgEnv := c.Services["postgres"].Environment
	pw, _ := u.User.Password()
	got := []string{u.Scheme, u.Hostname(), u.Port(), u.User.Username(), pw, strings.TrimPrefix(u.Path, "/")}
	want := []string{"postgres", "postgres", "5432", pgEnv["POSTGRES_USER"], env["POSTGRES_PASSWORD"], pgEnv["POSTGRES_DB"]}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("DATABASE_URL [scheme host port user password db] (-got +want):\n%s", diff)
	}
	if pg.DependsOn["postgres"].Condition != "service_healthy" {
		t.Error("passgate does not wait for postgres")
	}

	// Each proxy's public URL (published port) is one of passgate's
	// resources.
	host := env["PUBLIC_HOST"]
	resources := strings.Split(penv["PASSGATE_RESOURCES"], ",")
	for _, proxy := range []string{"nginx", "envoy"} {
		for _, p := range c.Services[proxy].Ports {
			published, _, _ := strings.Cut(p, ":")
			want := "https://" + host + ":" + published + "/mcp"
			if published == "443" {
				want = "https://" + host + "/mcp"
			}
			if !slices.Contains(resources, want) {
				t.Errorf("PASSGATE_RESOURCES %q lacks %s, %s's public URL", penv["PASSGATE_RESOURCES"], want, proxy)
			}
		}
	}
	if penv["PASSGATE_ISSUER"] != "https://"+host {
		t.Errorf("PASSGATE_ISSUER = %q", penv["PASSGATE_ISSUER"])
	}
}
