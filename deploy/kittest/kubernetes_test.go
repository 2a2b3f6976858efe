package kittest

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// readmePaths returns passgate's own paths as README "Deploying" lists
// them (item 2: the paths that must reach passgate unchecked), in Istio's
// notation: an exact path, or a prefix ending in "*". It is the one list
// the examples are held to.
func readmePaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	const intro = "passgate's own paths on the MCP host reach passgate unchecked:"
	i := strings.Index(s, intro)
	if i < 0 {
		t.Fatalf("README.md no longer says %q", intro)
	}
	s = s[i+len(intro):]
	if j := strings.Index(s, "\n3. "); j >= 0 {
		s = s[:j]
	}
	var paths []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(s, -1) {
		paths = append(paths, m[1])
	}
	if len(paths) < 5 {
		t.Fatalf("found only %q in README's list of passgate's paths", paths)
	}
	return paths
}

// prefixOrExact splits a README path: "/apps*" and "/oauth/*" are
// prefixes, anything else exact.
func prefixOrExact(p string) (path string, prefix bool) {
	if s, ok := strings.CutSuffix(p, "*"); ok {
		return s, true
	}
	return p, false
}

func readManifests(t *testing.T, rel string) []any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(string(b))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return objs
}

// chartService renders the chart with default values and returns its
// Service, the backend the examples point at.
func chartService(t *testing.T) *corev1.Service {
	t.Helper()
	out, err := helmTemplate(t, base())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return one[*corev1.Service](t, objs)
}

func servicePort(svc *corev1.Service, name string) int32 {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	return -1
}

// TestEnvoyGateway: deploy/kubernetes/envoy-gateway.yaml decodes strictly
// into Envoy Gateway's and the Gateway API's Go types; the SecurityPolicy
// checks the MCP route against passgate's gRPC port and fails closed;
// passgate's own route carries exactly README's paths with no check; both
// point at the chart's Service.
func TestEnvoyGateway(t *testing.T) {
	objs := readManifests(t, "deploy/kubernetes/envoy-gateway.yaml")
	svc := chartService(t)

	routes := map[string]*gwapiv1.HTTPRoute{}
	for _, r := range only[*gwapiv1.HTTPRoute](objs) {
		routes[r.Name] = r
	}
	mcp, pg := routes["mcp"], routes["passgate"]
	if mcp == nil || pg == nil || len(routes) != 2 {
		t.Fatalf("want HTTPRoutes mcp and passgate, got %v", slices.Sorted(maps.Keys(routes)))
	}

	// Exactly one SecurityPolicy, on the MCP route only.
	sp := one[*egv1a1.SecurityPolicy](t, objs)
	//lint:ignore SA1019 the deprecated targetRef must be unset: it would attach the policy elsewhere.
	if len(sp.Spec.TargetRefs) != 1 || sp.Spec.TargetRef != nil || len(sp.Spec.TargetSelectors) != 0 {
		t.Fatalf("SecurityPolicy targets %+v, want the MCP route alone", sp.Spec.TargetRefs)
	}
	ref := sp.Spec.TargetRefs[0]
	if ref.Kind != "HTTPRoute" || ref.Group != gwapiv1.GroupName || ref.Name != gwapiv1.ObjectName(mcp.Name) || sp.Namespace != mcp.Namespace {
		t.Errorf("SecurityPolicy targets %s %s, want HTTPRoute mcp", ref.Kind, ref.Name)
	}
	ea := sp.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
		t.Fatal("SecurityPolicy has no extAuth.grpc")
	}
	if ea.FailOpen == nil || *ea.FailOpen {
		t.Error("extAuth fails open")
	}
	if ea.StatusOnError == nil || *ea.StatusOnError != 503 {
		t.Error("extAuth's error status is not 503")
	}
	if len(ea.HeadersToExtAuth) != 0 {
		t.Errorf("headersToExtAuth %v: passgate needs every header (Authorization, Host, the method)", ea.HeadersToExtAuth)
	}
	if brs := ea.GRPC.BackendRefs; len(brs) != 1 || string(brs[0].Name) != svc.Name || brs[0].Port == nil ||
		int32(*brs[0].Port) != servicePort(svc, "grpc") || brs[0].Namespace != nil {
		t.Errorf("extAuth.grpc backend %+v, want the chart's Service %s port grpc (%d)", brs, svc.Name, servicePort(svc, "grpc"))
	}

	// passgate's route: README's paths, to the chart's http port,
	// unchecked; the MCP route: /mcp.
	var got []string
	for _, rule := range pg.Spec.Rules {
		for _, m := range rule.Matches {
			p := *m.Path.Value
			if *m.Path.Type == gwapiv1.PathMatchPathPrefix {
				p += "*"
			}
			got = append(got, p)
		}
		for _, br := range rule.BackendRefs {
			if string(br.Name) != svc.Name || br.Port == nil || int32(*br.Port) != servicePort(svc, "http") {
				t.Errorf("passgate route backend %s:%v, want %s:%d", br.Name, br.Port, svc.Name, servicePort(svc, "http"))
			}
		}
	}
	// The Gateway API's PathPrefix matches whole segments: /oauth covers
	// /oauth/*, so README's "/oauth/*" is "/oauth*" here, and README's
	// pair "/login" and "/login/*" is the one PathPrefix /login.
	var converted, want []string
	for _, p := range readmePaths(t) {
		converted = append(converted, strings.Replace(p, "/*", "*", 1))
	}
	for _, p := range converted {
		if strings.HasSuffix(p, "*") || !slices.Contains(converted, p+"*") {
			want = append(want, p)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("passgate route paths differ from README's (-README +route):\n%s", diff)
	}
	if len(mcp.Spec.Rules) != 1 || len(mcp.Spec.Rules[0].Matches) != 1 || *mcp.Spec.Rules[0].Matches[0].Path.Value != "/mcp" {
		t.Errorf("mcp route rules %+v, want /mcp", mcp.Spec.Rules)
	}
	if !slices.Equal(mcp.Spec.Hostnames, pg.Spec.Hostnames) {
		t.Error("the two routes serve different hosts: passgate's metadata would not be on the MCP host")
	}

	// Client-sent identity headers are removed before the check runs.
	ctp := one[*egv1a1.ClientTrafficPolicy](t, objs)
	if ctp.Spec.Headers == nil || ctp.Spec.Headers.EarlyRequestHeaders == nil {
		t.Fatal("ClientTrafficPolicy does not drop client-sent identity headers early")
	}
	removed := strings.ToLower(strings.Join(ctp.Spec.Headers.EarlyRequestHeaders.Remove, ","))
	for _, h := range []string{"x-passgate-user", "x-passgate-client-id", "x-passgate-scope"} {
		if !strings.Contains(removed, h) {
			t.Errorf("%s is not removed before the check", h)
		}
	}
	if ctp.Spec.Path == nil || ctp.Spec.Path.EscapedSlashesAction == nil || *ctp.Spec.Path.EscapedSlashesAction != egv1a1.RejectRequestAction {
		t.Error("escaped slashes are not rejected")
	}
}

// TestIstio: deploy/kubernetes/istio decodes strictly into istio.io/api's
// types; the mesh's extension provider is passgate's gRPC port, failing
// closed; the CUSTOM AuthorizationPolicy checks everything on the MCP host
// but README's paths, which the VirtualService sends to passgate.
func TestIstio(t *testing.T) {
	svc := chartService(t)
	paths := readmePaths(t)

	// meshConfig: Helm values for istiod, the meshConfig part decoded into
	// MeshConfig.
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/kubernetes/istio/mesh-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		MeshConfig jsonRaw `json:"meshConfig"`
	}
	if err := yaml.UnmarshalStrict(raw, &values); err != nil {
		t.Fatalf("mesh-config.yaml: %v", err)
	}
	var mesh meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(values.MeshConfig, &mesh); err != nil {
		t.Fatalf("mesh-config.yaml meshConfig: %v", err)
	}
	if len(mesh.ExtensionProviders) != 1 {
		t.Fatalf("want one extension provider, got %d", len(mesh.ExtensionProviders))
	}
	ep := mesh.ExtensionProviders[0]
	g := ep.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("extension provider %s is not envoyExtAuthzGrpc", ep.Name)
	}
	if want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"; g.Service != want || int32(g.Port) != servicePort(svc, "grpc") {
		t.Errorf("provider %s:%d, want the chart's %s:%d", g.Service, g.Port, want, servicePort(svc, "grpc"))
	}
	if g.FailOpen {
		t.Error("the provider fails open")
	}
	if g.StatusOnError != "503" {
		t.Errorf("statusOnError %q, want 503", g.StatusOnError)
	}
	if g.GetTimeout().AsDuration() <= 0 {
		t.Error("no check timeout")
	}

	// The CUSTOM policy: provider passgate, notPaths README's, on the MCP
	// host with and without a port.
	objs := readManifests(t, "deploy/kubernetes/istio/authorization-policy.yaml")
	ap := one[*istioObject](t, objs)
	pol, ok := ap.Spec.(*securityv1beta1.AuthorizationPolicy)
	if !ok {
		t.Fatalf("%T is not an AuthorizationPolicy", ap.Spec)
	}
	if pol.Action != securityv1beta1.AuthorizationPolicy_CUSTOM || pol.GetProvider().GetName() != ep.Name {
		t.Errorf("action %s provider %q, want CUSTOM %q", pol.Action, pol.GetProvider().GetName(), ep.Name)
	}
	if len(pol.Rules) != 1 || len(pol.Rules[0].To) != 1 || len(pol.Rules[0].From) != 0 || len(pol.Rules[0].When) != 0 {
		t.Fatalf("want one rule with one `to`, nothing else, got %v", pol.Rules)
	}
	op := pol.Rules[0].To[0].Operation
	if len(op.Paths) != 0 {
		t.Errorf("paths %v: list the exceptions (notPaths), so an unlisted path is checked", op.Paths)
	}
	if diff := cmp.Diff(paths, op.NotPaths); diff != "" {
		t.Errorf("notPaths differ from README's (-README +policy):\n%s", diff)
	}

	// The gateway's routes: README's paths to passgate's http port, /mcp to
	// the MCP server, on the policy's host.
	objs = readManifests(t, "deploy/kubernetes/istio/gateway.yaml")
	var vs *networkingv1alpha3.VirtualService
	for _, o := range only[*istioObject](objs) {
		if v, ok := o.Spec.(*networkingv1alpha3.VirtualService); ok {
			vs = v
		}
	}
	if vs == nil {
		t.Fatal("no VirtualService")
	}
	for _, h := range vs.Hosts {
		if !slices.Contains(op.Hosts, h) || !slices.Contains(op.Hosts, h+":*") {
			t.Errorf("VirtualService host %s is not checked by the policy (with and without a port)", h)
		}
	}
	var routed []string
	mcpRouted := false
	for _, r := range vs.Http {
		for _, m := range r.Match {
			u := m.GetUri()
			p := u.GetExact()
			if pre := u.GetPrefix(); pre != "" {
				p = pre + "*"
			}
			switch r.Name {
			case "passgate":
				routed = append(routed, p)
			case "mcp":
				mcpRouted = p == "/mcp*"
			}
		}
		for _, d := range r.Route {
			isPassgate := strings.HasPrefix(d.Destination.Host, svc.Name+"."+svc.Namespace+".")
			if (r.Name == "passgate") != isPassgate {
				t.Errorf("route %s goes to %s", r.Name, d.Destination.Host)
			}
			if isPassgate && int32(d.Destination.GetPort().GetNumber()) != servicePort(svc, "http") {
				t.Errorf("route %s: port %d, want passgate's http %d", r.Name, d.Destination.GetPort().GetNumber(), servicePort(svc, "http"))
			}
		}
	}
	want := slices.Clone(paths)
	slices.Sort(want)
	slices.Sort(routed)
	if diff := cmp.Diff(want, routed); diff != "" {
		t.Errorf("passgate's routed paths differ from README's (-README +VirtualService):\n%s", diff)
	}
	if !mcpRouted {
		t.Error("/mcp is not routed")
	}
	for _, p := range paths {
		if path, prefix := prefixOrExact(p); prefix && strings.HasPrefix("/mcp", path) {
			t.Errorf("exempt path %s covers /mcp", p)
		}
	}
}

// jsonRaw keeps a YAML subtree as JSON for protojson.
type jsonRaw []byte

func (r *jsonRaw) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}
