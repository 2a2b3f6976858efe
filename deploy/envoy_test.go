package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/passgate/passgate/extauthz"
)

// envoyPath is deploy/envoy.yaml, relative to this package.
const envoyPath = "envoy.yaml"

// Passgate's ports as envoy.yaml and docker-compose.yml must use them.
const (
	passgateHTTPPort    = 8080
	passgateGRPCPort    = 9191
	passgateMetricsPort = 9464
)

// envoyTypes resolves the typed_config and typed_per_filter_config types
// envoy.yaml uses, and only those: a type not listed here makes decoding fail,
// so a new extension in the file needs a deliberate entry.
func envoyTypes(t testing.TB) *protoregistry.Types {
	t.Helper()
	reg := new(protoregistry.Types)
	for _, m := range []proto.Message{
		&hcmv3.HttpConnectionManager{},
		&extauthzv3.ExtAuthz{},
		&extauthzv3.ExtAuthzPerRoute{},
		&headermutationv3.HeaderMutation{},
		&routerv3.Router{},
		&tlsv3.DownstreamTlsContext{},
		&upstreamhttpv3.HttpProtocolOptions{},
	} {
		if err := reg.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// decodeEnvoy decodes an Envoy YAML bootstrap strictly: unknown fields and
// unknown Any types are errors, as they are for Envoy.
func decodeEnvoy(t testing.TB, y []byte) (*bootstrapv3.Bootstrap, *protoregistry.Types, error) {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, nil, fmt.Errorf("yaml: %w", err)
	}
	reg := envoyTypes(t)
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: reg}).Unmarshal(js, &b); err != nil {
		return nil, nil, fmt.Errorf("protojson: %w", err)
	}
	return &b, reg, nil
}

// loadEnvoy decodes deploy/envoy.yaml (see decodeEnvoy) and validates it
// and every embedded typed config against Envoy's constraints.
func loadEnvoy(t testing.TB) *bootstrapv3.Bootstrap {
	t.Helper()
	y, err := os.ReadFile(envoyPath)
	if err != nil {
		t.Fatal(err)
	}
	b, reg, err := decodeEnvoy(t, y)
	if err != nil {
		t.Fatalf("decode %s: %v", envoyPath, err)
	}
	if err := validateDeep(b, reg); err != nil {
		t.Fatalf("validate %s: %v", envoyPath, err)
	}
	return b
}

// validateDeep runs the protoc-gen-validate rules on m and, since ValidateAll
// does not look inside Any fields, on every message packed in one.
func validateDeep(m proto.Message, reg *protoregistry.Types) error {
	var errs []string
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", m.Descriptor().FullName(), err))
			}
		}
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: reg})
			if err == nil {
				walk(inner.ProtoReflect())
			} else {
				errs = append(errs, fmt.Sprintf("unpack %s: %v", a.GetTypeUrl(), err))
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap() && !fd.IsList():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// unpack returns the message in a.
func unpack[M proto.Message](t testing.TB, a *anypb.Any, m M) M {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

// envoyHCMs returns every HTTP connection manager of every listener.
func envoyHCMs(t testing.TB, b *bootstrapv3.Bootstrap) []*hcmv3.HttpConnectionManager {
	t.Helper()
	var out []*hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() == "envoy.filters.network.http_connection_manager" {
					out = append(out, unpack(t, f.GetTypedConfig(), &hcmv3.HttpConnectionManager{}))
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no http_connection_manager")
	}
	return out
}

// envoyRoutes returns every route of every virtual host of every HCM.
func envoyRoutes(t testing.TB, b *bootstrapv3.Bootstrap) []*routev3.Route {
	t.Helper()
	var out []*routev3.Route
	for _, h := range envoyHCMs(t, b) {
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			out = append(out, vh.GetRoutes()...)
		}
	}
	return out
}

// envoyRouteFor returns the route Envoy picks for path (first match, as
// Envoy does), considering path and prefix matches, which are all envoy.yaml
// uses; nil if none matches.
func envoyRouteFor(t testing.TB, b *bootstrapv3.Bootstrap, path string) *routev3.Route {
	t.Helper()
	for _, r := range envoyRoutes(t, b) {
		m := r.GetMatch()
		switch {
		case m.GetPath() != "":
			if path == m.GetPath() {
				return r
			}
		case m.GetPrefix() != "":
			if strings.HasPrefix(path, m.GetPrefix()) {
				return r
			}
		default:
			t.Fatalf("route %v uses a match the test does not model", m)
		}
	}
	return nil
}

// envoyRouteTo returns the route Envoy picks for path, reporting an error
// when there is none (and returning nil) or when it goes to a cluster other
// than cluster.
func envoyRouteTo(t testing.TB, b *bootstrapv3.Bootstrap, path, cluster string) *routev3.Route {
	t.Helper()
	r := envoyRouteFor(t, b, path)
	if r == nil {
		t.Errorf("%s: no route", path)
		return nil
	}
	if got := r.GetRoute().GetCluster(); got != cluster {
		t.Errorf("%s goes to %q, want %s", path, got, cluster)
	}
	return r
}

// envoyCluster returns the named static cluster, or nil.
func envoyCluster(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// clusterAddrs returns host:port of every endpoint of c.
func clusterAddrs(c *clusterv3.Cluster) []string {
	var out []string
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}

// extAuthzDisabled reports whether r turns the ext_authz filter off.
func extAuthzDisabled(t testing.TB, r *routev3.Route) bool {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
	if !ok {
		return false
	}
	return unpack(t, a, &extauthzv3.ExtAuthzPerRoute{}).GetDisabled()
}

// passgatePaths are requests that must reach passgate unchecked: every
// page and endpoint it serves to clients (publicRequestPaths, from
// oauthweb.PublicPaths) and its health endpoints.
func passgatePaths() []string {
	return append(publicRequestPaths(), "/healthz", "/readyz")
}

func TestEnvoyDecodesStrictly(t *testing.T) {
	y, err := os.ReadFile(envoyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decodeEnvoy(t, y); err != nil {
		t.Fatal(err)
	}
	// The decoder must be able to fail, or the checks above prove nothing.
	for name, mutate := range map[string]func(string) string{
		"unknown field": func(s string) string {
			return strings.Replace(s, "failure_mode_allow: false", "failure_mode_allow: false\n              failure_mode_alow: true", 1)
		},
		"unknown type": func(s string) string {
			return strings.Replace(s, "extensions.filters.http.router.v3.Router", "extensions.filters.http.router.v3.Routr", 1)
		},
	} {
		bad := mutate(string(y))
		if bad == string(y) {
			t.Fatalf("%s: mutation did not apply", name)
		}
		if _, _, err := decodeEnvoy(t, []byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	// Validation must be able to fail too: a route to a cluster named "".
	b, reg, err := decodeEnvoy(t, []byte(strings.Replace(string(y), "route: { cluster: passgate_http }", "route: { cluster: \"\" }", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateDeep(b, reg); err == nil {
		t.Error("a route without a cluster validated")
	}
}

func TestEnvoyRoutesUseDefinedClusters(t *testing.T) {
	b := loadEnvoy(t)
	routes := envoyRoutes(t, b)
	if len(routes) == 0 {
		t.Fatal("no routes")
	}
	for _, r := range routes {
		name := r.GetRoute().GetCluster()
		if name == "" {
			t.Errorf("route %v does not name a cluster", r.GetMatch())
			continue
		}
		if envoyCluster(b, name) == nil {
			t.Errorf("route %v: cluster %q is not defined", r.GetMatch(), name)
		}
	}
}

// TestEnvoyNormalizesPaths: Envoy routes, checks and forwards the
// normalized path, and refuses encoded slashes, so passgate (which refuses
// them too, see resource.CanonicalPath) judges the path the MCP server
// serves.
func TestEnvoyNormalizesPaths(t *testing.T) {
	for _, h := range envoyHCMs(t, loadEnvoy(t)) {
		if !h.GetNormalizePath().GetValue() {
			t.Error("normalize_path is not true")
		}
		if !h.GetMergeSlashes() {
			t.Error("merge_slashes is not true")
		}
		if got := h.GetPathWithEscapedSlashesAction(); got != hcmv3.HttpConnectionManager_REJECT_REQUEST {
			t.Errorf("path_with_escaped_slashes_action = %v, want REJECT_REQUEST", got)
		}
	}
}

func TestEnvoyExtAuthzFilter(t *testing.T) {
	b := loadEnvoy(t)
	for _, h := range envoyHCMs(t, b) {
		var names []string
		var authz *extauthzv3.ExtAuthz
		for _, f := range h.GetHttpFilters() {
			names = append(names, f.GetName())
			if f.GetName() == "envoy.filters.http.ext_authz" {
				authz = unpack(t, f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
			}
		}
		// Forged identity headers are removed before the check adds the
		// real ones, and the router comes last.
		want := []string{"envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}
		if diff := cmp.Diff(names, want); diff != "" {
			t.Errorf("http_filters (-got +want):\n%s", diff)
		}
		if authz == nil {
			t.Fatal("no ext_authz filter")
		}
		if authz.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("transport_api_version = %v, want V3", authz.GetTransportApiVersion())
		}
		if authz.GetFailureModeAllow() {
			t.Error("failure_mode_allow is true: an unreachable passgate would let everyone in")
		}
		// Envoy sends the check every request header unless allowed_headers
		// narrows them: Authorization, and Origin, on which the check's
		// denials carry the CORS headers a browser client (MCP Inspector)
		// needs to read the challenge; the denial's headers reach the
		// client as they are (grpc_service has no allowed_client_headers).
		if authz.GetAllowedHeaders() != nil {
			t.Error("allowed_headers is set: the check must see Authorization and Origin")
		}
		if authz.GetWithRequestBody() != nil {
			t.Error("with_request_body is set: MCP bodies must not be buffered for the check")
		}
		gs := authz.GetGrpcService()
		if gs == nil {
			t.Fatal("ext_authz does not use a gRPC service")
		}
		if d := gs.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
			t.Errorf("ext_authz timeout = %v, want (0, 1s]", d)
		}
		cl := envoyCluster(b, gs.GetEnvoyGrpc().GetClusterName())
		if cl == nil {
			t.Fatalf("ext_authz cluster %q is not defined", gs.GetEnvoyGrpc().GetClusterName())
		}
		if diff := cmp.Diff(clusterAddrs(cl), []string{fmt.Sprintf("passgate:%d", passgateGRPCPort)}); diff != "" {
			t.Errorf("ext_authz cluster endpoints (-got +want):\n%s", diff)
		}
		// gRPC needs HTTP/2 to the cluster.
		opts, ok := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if !ok {
			t.Fatal("the gRPC cluster has no HttpProtocolOptions")
		}
		if unpack(t, opts, &upstreamhttpv3.HttpProtocolOptions{}).GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Error("the gRPC cluster does not speak HTTP/2")
		}
		hasGRPCHealth := slices.ContainsFunc(cl.GetHealthChecks(), func(hc *corev3.HealthCheck) bool { return hc.GetGrpcHealthCheck() != nil })
		if !hasGRPCHealth {
			t.Error("the gRPC cluster has no gRPC health check")
		}
	}
}

func TestEnvoyRoutePolicy(t *testing.T) {
	b := loadEnvoy(t)
	httpCluster := envoyCluster(b, "passgate_http")
	if httpCluster == nil {
		t.Fatal("no passgate_http cluster")
	}
	if diff := cmp.Diff(clusterAddrs(httpCluster), []string{fmt.Sprintf("passgate:%d", passgateHTTPPort)}); diff != "" {
		t.Errorf("passgate_http endpoints (-got +want):\n%s", diff)
	}
	for _, path := range passgatePaths() {
		r := envoyRouteTo(t, b, path, "passgate_http")
		if r == nil {
			continue
		}
		if !extAuthzDisabled(t, r) {
			t.Errorf("%s: ext_authz is not disabled on passgate's own route", path)
		}
	}
	for _, path := range []string{"/mcp", "/mcp/", "/mcp/sub"} {
		r := envoyRouteTo(t, b, path, "mcp")
		if r == nil {
			continue
		}
		if extAuthzDisabled(t, r) {
			t.Errorf("%s: ext_authz is disabled on an MCP route", path)
		}
		ra := r.GetRoute()
		if ra.GetTimeout() == nil || ra.GetTimeout().AsDuration() != 0 {
			t.Errorf("%s: timeout = %v, want 0s (event streams)", path, ra.GetTimeout())
		}
		if d := ra.GetIdleTimeout().AsDuration(); d < 10*time.Minute {
			t.Errorf("%s: idle_timeout = %v, want at least 10m", path, d)
		}
		for _, h := range []string{"authorization", "cookie"} {
			if !slices.Contains(r.GetRequestHeadersToRemove(), h) {
				t.Errorf("%s: %s is forwarded to the MCP server", path, h)
			}
		}
		// The check is told the port clients use for this route (the
		// listener's, as docker-compose.yml publishes it), so a client's
		// :authority cannot name another resource's port (extauthz
		// TestGRPCRoutePins).
		var per extauthzv3.ExtAuthzPerRoute
		if a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; ok {
			unpack(t, a, &per)
		}
		listenerPort := b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
		if got, want := per.GetCheckSettings().GetContextExtensions()["port"], fmt.Sprint(listenerPort); got != want {
			t.Errorf("%s: context_extensions port = %q, want the listener's %q", path, got, want)
		}
	}
	// The check endpoint and the metrics are never routed, nor paths that
	// only look like passgate's pages.
	for _, path := range []string{"/_passgate/check", "/_passgate/check/mcp", extauthz.CheckPathNginx, extauthz.CheckPathEnvoy + "/mcp", "/metrics", "/",
		"/loginfoo", "/accountfoo", "/appsfoo", "/webauthnfoo", "/webauthn"} {
		if r := envoyRouteFor(t, b, path); r != nil {
			t.Errorf("%s is routed to %q", path, r.GetRoute().GetCluster())
		}
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		for _, a := range clusterAddrs(c) {
			if strings.HasSuffix(a, fmt.Sprintf(":%d", passgateMetricsPort)) {
				t.Errorf("cluster %s reaches passgate's metrics at %s", c.GetName(), a)
			}
		}
	}
}

func TestEnvoyStripsForgedIdentity(t *testing.T) {
	removed := slices.Clone(loadEnvoyEdge(t).BeforeCheck)
	slices.Sort(removed)
	want := []string{"x-passgate-client-id", "x-passgate-scope", "x-passgate-user"}
	if diff := cmp.Diff(removed, want); diff != "" {
		t.Errorf("headers removed before the check (-got +want):\n%s", diff)
	}
}

// nginxLocation matches a location directive: modifier and path.
var nginxLocation = regexp.MustCompile(`(?m)^\s*location\s+(=\s+)?(\S+)\s*\{\s*proxy_pass\s+http://passgate_http;`)

// nginxPassgateLocations returns the locations deploy/nginx.conf sends to
// passgate unchecked, sorted: a prefix as its path, an exact one as
// "= PATH".
func nginxPassgateLocations(t testing.TB) []string {
	t.Helper()
	tmpl, err := os.ReadFile(nginxTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range nginxLocation.FindAllStringSubmatch(string(tmpl), -1) {
		if m[1] != "" {
			out = append(out, "= "+m[2])
		} else {
			out = append(out, m[2])
		}
	}
	if len(out) == 0 {
		t.Fatal("found no passgate locations in nginx.conf")
	}
	slices.Sort(out)
	return out
}

// TestProxiesAgreeOnPassgateRoutes: nginx.conf and envoy.yaml route the same
// paths to passgate, with the same exact/prefix kind.
func TestProxiesAgreeOnPassgateRoutes(t *testing.T) {
	b := loadEnvoy(t)
	var fromEnvoy []string
	for _, r := range envoyRoutes(t, b) {
		if r.GetRoute().GetCluster() != "passgate_http" {
			continue
		}
		if p := r.GetMatch().GetPath(); p != "" {
			fromEnvoy = append(fromEnvoy, "= "+p)
		} else {
			fromEnvoy = append(fromEnvoy, r.GetMatch().GetPrefix())
		}
	}
	slices.Sort(fromEnvoy)
	if diff := cmp.Diff(fromEnvoy, nginxPassgateLocations(t)); diff != "" {
		t.Errorf("passgate routes (-envoy +nginx):\n%s", diff)
	}
}
