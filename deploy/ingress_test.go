package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// ingressManifestPath is deploy/ingress-nginx/passgate.yaml.
const ingressManifestPath = "ingress-nginx/passgate.yaml"

// The Ingress fields the shipped manifests may use, as in k8s.io/api
// networking/v1 (the JSON names of its Go types). Decoding is strict: a
// field not declared here fails, so a typo (or a field of another API
// version) cannot hide. (k8s.io/api itself would pull apimachinery and a
// dozen modules into go.mod for this one test.)
type k8sIngress struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   k8sObjectMeta  `json:"metadata"`
	Spec       k8sIngressSpec `json:"spec"`
}

type k8sObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type k8sIngressSpec struct {
	IngressClassName *string          `json:"ingressClassName,omitempty"`
	DefaultBackend   *k8sBackend      `json:"defaultBackend,omitempty"`
	TLS              []k8sIngressTLS  `json:"tls,omitempty"`
	Rules            []k8sIngressRule `json:"rules,omitempty"`
}

type k8sIngressTLS struct {
	Hosts      []string `json:"hosts,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
}

type k8sIngressRule struct {
	Host string               `json:"host,omitempty"`
	HTTP *k8sHTTPIngressValue `json:"http,omitempty"`
}

type k8sHTTPIngressValue struct {
	Paths []k8sHTTPIngressPath `json:"paths"`
}

type k8sHTTPIngressPath struct {
	Path     string     `json:"path,omitempty"`
	PathType *string    `json:"pathType"`
	Backend  k8sBackend `json:"backend"`
}

type k8sBackend struct {
	Service *k8sServiceBackend `json:"service,omitempty"`
}

type k8sServiceBackend struct {
	Name string         `json:"name"`
	Port k8sServicePort `json:"port,omitempty"`
}

type k8sServicePort struct {
	Name   string `json:"name,omitempty"`
	Number int32  `json:"number,omitempty"`
}

// ingressManifests are the decoded deploy/ingress-nginx/passgate.yaml.
type ingressManifests struct {
	MCP, Passgate k8sIngress
}

// readIngressManifests decodes the shipped manifests strictly.
func readIngressManifests(t testing.TB) ingressManifests {
	t.Helper()
	docs := decodeShipped(t, ingressManifestPath, decodeIngresses)
	var m ingressManifests
	for _, d := range docs {
		switch d.Metadata.Name {
		case "mcp":
			m.MCP = d
		case "passgate":
			m.Passgate = d
		default:
			t.Fatalf("%s: unexpected Ingress %q", ingressManifestPath, d.Metadata.Name)
		}
	}
	if len(docs) != 2 || m.MCP.Metadata.Name == "" || m.Passgate.Metadata.Name == "" {
		t.Fatalf("%s: want the Ingresses mcp and passgate, got %d documents", ingressManifestPath, len(docs))
	}
	return m
}

// decodeIngresses decodes a multi-document YAML stream of Ingresses,
// refusing unknown fields and other kinds.
func decodeIngresses(b []byte) ([]k8sIngress, error) {
	var out []k8sIngress
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripYAMLComments(doc)) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		var ing k8sIngress
		if err := dec.Decode(&ing); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("document %d: trailing data", i)
		}
		if ing.APIVersion != "networking.k8s.io/v1" || ing.Kind != "Ingress" {
			return nil, fmt.Errorf("document %d: %s %s, want networking.k8s.io/v1 Ingress", i, ing.APIVersion, ing.Kind)
		}
		out = append(out, ing)
	}
	return out, nil
}

func stripYAMLComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

const ingressAnnotation = "nginx.ingress.kubernetes.io/"

// authURL returns the mcp Ingress's auth-url with its Service host:port
// replaced by passgateAddr and its pinned host by host.
func (m ingressManifests) authURL(t testing.TB, passgateAddr, host string) string {
	t.Helper()
	u, err := url.Parse(m.MCP.Metadata.Annotations[ingressAnnotation+"auth-url"])
	if err != nil {
		t.Fatal(err)
	}
	u.Host = passgateAddr
	q := u.Query()
	q.Set("host", host)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestIngressManifests: the shipped Ingresses decode strictly; the MCP one
// calls passgate's ingress-nginx check with the host pinned to its own host,
// copies every identity header (and Authorization, so the client's is
// dropped), and uses no snippet annotation; passgate's own Ingress routes
// its paths to passgate without auth.
func TestIngressManifests(t *testing.T) {
	m := readIngressManifests(t)
	ann := m.MCP.Metadata.Annotations
	for _, ing := range []k8sIngress{m.MCP, m.Passgate} {
		for k := range ing.Metadata.Annotations {
			if strings.Contains(k, "snippet") {
				t.Errorf("Ingress %s uses the snippet annotation %s", ing.Metadata.Name, k)
			}
		}
	}
	if len(m.MCP.Spec.Rules) != 1 {
		t.Fatalf("mcp Ingress: %d rules, want 1", len(m.MCP.Spec.Rules))
	}
	host := m.MCP.Spec.Rules[0].Host
	u, err := url.Parse(ann[ingressAnnotation+"auth-url"])
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/_passgate/check/ingress-nginx" || u.Query().Get("host") != host || len(u.Query()) != 1 {
		t.Errorf("auth-url = %s, want .../_passgate/check/ingress-nginx?host=%s", u, host)
	}
	if got := ann[ingressAnnotation+"auth-method"]; got != "GET" {
		t.Errorf("auth-method = %q, want GET", got)
	}
	if diff := cmp.Diff(authResponseHeaders(ann), append(append([]string(nil), identityHeaderNames...), "Authorization")); diff != "" {
		t.Errorf("auth-response-headers (-got +want):\n%s", diff)
	}
	for _, p := range m.MCP.Spec.Rules[0].HTTP.Paths {
		if p.Backend.Service == nil || p.Backend.Service.Name == "passgate" {
			t.Errorf("mcp Ingress path %s goes to %+v", p.Path, p.Backend.Service)
		}
	}

	if len(m.Passgate.Metadata.Annotations) != 0 {
		t.Errorf("passgate Ingress has annotations %v; its paths need none", m.Passgate.Metadata.Annotations)
	}
	var paths []string
	for _, r := range m.Passgate.Spec.Rules {
		if r.Host != host {
			t.Errorf("passgate Ingress host %q, want %q", r.Host, host)
		}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service == nil || p.Backend.Service.Name != "passgate" || p.Backend.Service.Port.Number != 8080 {
				t.Errorf("passgate Ingress path %s goes to %+v", p.Path, p.Backend.Service)
			}
			paths = append(paths, p.Path)
		}
	}
	if len(paths) == 0 {
		t.Error("passgate Ingress routes no path")
	}
}

// identityHeaderNames are passgate's default identity headers.
var identityHeaderNames = []string{"X-Passgate-User", "X-Passgate-Client-Id", "X-Passgate-Scope"}

func authResponseHeaders(ann map[string]string) []string {
	var hs []string
	for _, h := range strings.Split(ann[ingressAnnotation+"auth-response-headers"], ",") {
		hs = append(hs, strings.TrimSpace(h))
	}
	return hs
}

// TestIngressNginxFixtureMatchesManifests: the controller-rendered nginx
// configuration the tests run is the one the controller's template gives
// for the shipped annotations: an auth location per location of the /mcp
// Prefix path, named as buildAuthLocation names it, with proxy_method from
// auth-method, proxy_pass to auth-url, and the auth_request_set and
// proxy_set_header pair buildAuthResponseHeaders writes for each
// auth-response-headers entry.
func TestIngressNginxFixtureMatchesManifests(t *testing.T) {
	m := readIngressManifests(t)
	b, err := os.ReadFile(ingressNginxFixture)
	if err != nil {
		t.Fatal(err)
	}
	fixture := string(b)
	p := m.MCP.Spec.Rules[0].HTTP.Paths[0]
	if p.PathType == nil || *p.PathType != "Prefix" || p.Path != "/mcp" {
		t.Fatalf("the fixture is rendered for the Prefix path /mcp; the manifest has %+v", p)
	}
	// The controller turns a Prefix path into an Exact location for it and a
	// prefix location for path + "/".
	for _, loc := range []struct{ location, path, pathType string }{
		{"location = /mcp {", "/mcp", "Exact"},
		{"location /mcp/ {", "/mcp/", "Prefix"},
	} {
		authPath := "/_external-auth-" + strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(loc.path)), "=") + "-" + loc.pathType
		block := nginxBlock(t, fixture, loc.location)
		if !strings.Contains(block, "auth_request        "+authPath+";") {
			t.Errorf("%s does not use auth_request %s", loc.location, authPath)
		}
		for i, h := range authResponseHeaders(m.MCP.Metadata.Annotations) {
			v := strings.NewReplacer("-", "_").Replace(strings.ToLower(h))
			for _, line := range []string{
				fmt.Sprintf("auth_request_set $authHeader%d $upstream_http_%s;", i, v),
				fmt.Sprintf("proxy_set_header '%s' $authHeader%d;", h, i),
			} {
				if !strings.Contains(block, line) {
					t.Errorf("%s lacks %q", loc.location, line)
				}
			}
		}
		auth := nginxBlock(t, fixture, "location = "+authPath+" {")
		for _, line := range []string{
			"proxy_method                " + m.MCP.Metadata.Annotations[ingressAnnotation+"auth-method"] + ";",
			"proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;",
			"proxy_set_header            X-Original-Method       $request_method;",
			"proxy_set_header            Host                    ${NGINX_AUTH_HOST};",
			"set $target ${NGINX_AUTH_URL};",
			"proxy_pass_request_headers  on;",
		} {
			if !strings.Contains(auth, line) {
				t.Errorf("%s lacks %q", authPath, line)
			}
		}
	}
}

// nginxBlock returns the text of the block that opens with the line head,
// up to its closing brace.
func nginxBlock(t testing.TB, conf, head string) string {
	t.Helper()
	i := strings.Index(conf, head)
	if i < 0 {
		t.Fatalf("no %q in the fixture", head)
	}
	depth := 0
	for j := i; j < len(conf); j++ {
		switch conf[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return conf[i : j+1]
			}
		}
	}
	t.Fatalf("%q is not closed", head)
	return ""
}

// TestDecodeIngressesIsStrict: a misspelt or unknown field fails.
func TestDecodeIngressesIsStrict(t *testing.T) {
	wantDecodeErrors(t, decodeIngresses,
		"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n  anotations: {}\n",
		"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\nspec:\n  rules:\n  - host: a\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          serviceName: x\n",
		"apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: x\n",
	)
}
