package extauthz

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
)

// outcome is what a proxy does with a check answer, normalised across the
// gRPC and HTTP front ends.
type outcome struct {
	Status    int               // 200, 401, 403; 503 for gRPC Unavailable / HTTP 503
	Set       map[string]string // allowed: headers set on the upstream request (lowercase names)
	Remove    []string          // allowed: headers removed from the upstream request
	WWWAuth   string
	Expose    string
	BodyError string // "error" of the JSON body
	Reason    string // the passgate_checks_total reason that moved
}

const metaURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

// Attacks the check table has rows for; each has a test of its own name
// that runs those rows, and TestCheck runs them all.
const (
	// A client adds the headers of another proxy family (X-Original-URI,
	// X-Original-Method: OPTIONS) to a forward-auth request; Traefik and
	// Caddy pass them on.
	attackHeaderFamily = "header-family confusion"
	// "/mcp/%61dmin" is "/mcp/admin" to every proxy and upstream.
	attackPercentEncoding = "percent-encoding escapes a scope rule"
	// nginx routes "/other/..%2Fmcp" into location /mcp.
	attackEncodedSlash = "encoded slash crosses resources"
	// The host the check is told differs from the host the proxy routed on.
	attackClientHost = "client-chosen audience host"
)

// TestCheck is the one table: every row is a real Envoy CheckRequest
// (protojson, as Envoy sends it) or a real proxy subrequest (nginx
// auth_request as captured from nginx 1.22, Traefik ForwardAuth,
// ingress-nginx auth-url, Envoy HTTP ext_authz), run through the real front
// ends over loopback against SQLite.
func TestCheck(t *testing.T) { runCheckTable(t, "") }

// TestHeaderFamilyConfusion: under forward auth, a client's X-Original-URI
// and X-Original-Method: OPTIONS are ignored, never read: they neither
// grant a preflight exemption nor move the path out of a scope rule.
func TestHeaderFamilyConfusion(t *testing.T) { runCheckTable(t, attackHeaderFamily) }

// TestPercentEncodingCannotEscapeScopeRules: "/mcp/%61dmin" is judged as
// the "/mcp/admin" proxies and upstreams serve.
func TestPercentEncodingCannotEscapeScopeRules(t *testing.T) {
	runCheckTable(t, attackPercentEncoding)
}

// TestEncodedSlashCannotCrossResources: "/other/..%2Fmcp", which nginx
// routes into /mcp, is refused rather than checked against /other.
func TestEncodedSlashCannotCrossResources(t *testing.T) { runCheckTable(t, attackEncodedSlash) }

// TestClientCannotChooseAudienceHost: an absolute-form target and a
// reported host other than the pinned one are refused.
func TestClientCannotChooseAudienceHost(t *testing.T) { runCheckTable(t, attackClientHost) }

// runCheckTable runs the rows of the check table for attack, or all of
// them when attack is "".
func runCheckTable(t *testing.T, attack string) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	c := startChecker(t, Config{
		Resources:      resource.MustParseAll(mcpURL, otherURL, sameHostURL),
		Store:          fs,
		APIKey:         testKey,
		Scopes:         []string{"mcp"},
		AllowPreflight: true,
		RequiredScopes: []ScopeRule{{Match: "https://mcp.example.com/mcp/admin", Scopes: []string{"admin"}}},
	})
	grpcClient := startGRPC(t, c)
	httpURL := startHTTP(t, c)

	ctx := context.Background()
	tokens := map[string]string{
		"valid":    mint(t, db, mintOpts{}),
		"admin":    mint(t, db, mintOpts{scope: "mcp admin"}),
		"expired":  mint(t, db, mintOpts{ttl: -time.Minute}),
		"revoked":  mint(t, db, mintOpts{}),
		"other":    mint(t, db, mintOpts{resource: otherURL}),
		"sameHost": mint(t, db, mintOpts{resource: sameHostURL}),
		"refresh":  mint(t, db, mintOpts{refreshAsAccessPrefix: true}),
		"cached":   mint(t, db, mintOpts{}),
		"uncached": mint(t, db, mintOpts{}),
		"unknown":  token.New(token.PrefixAccess),
		"apikey":   testKey,
		"garbage":  "not-a-passgate-token",
		// Named API keys (passgate apikey add).
		"key":         mintAPIKey(t, db, "ci", "mcp", mcpURL),
		"adminkey":    mintAPIKey(t, db, "ops", "mcp admin", otherURL, mcpURL),
		"otherkey":    mintAPIKey(t, db, "elsewhere", "mcp admin", otherURL),
		"revokedkey":  mintAPIKey(t, db, "gone", "mcp", mcpURL),
		"unknownkey":  token.New(token.PrefixAPIKey),
		"cachedkey":   mintAPIKey(t, db, "cached", "mcp", mcpURL),
		"uncachedkey": mintAPIKey(t, db, "uncached", "mcp", mcpURL),
	}
	if _, err := db.RevokeToken(ctx, token.Hash(tokens["revoked"]), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeAPIKey(ctx, "gone", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"cached", "cachedkey"} {
		if d, err := c.Check(ctx, bearer(tokens[tok])); err != nil || !d.Allow {
			t.Fatalf("warming the cache with %s: %+v, %v", tok, d, err)
		}
	}

	identity := []string{"x-passgate-user", "x-passgate-client-id", "x-passgate-scope"}
	allowed := func(scope string) outcome {
		return outcome{Status: 200, Reason: "token", Remove: []string{"authorization"},
			Set: map[string]string{"x-passgate-user": testUser, "x-passgate-client-id": testCli, "x-passgate-scope": scope}}
	}
	// API keys name their user; the client identity header is emptied, and
	// so is the scope header of a key without scopes.
	apiKey := func(name, scope string) outcome {
		o := outcome{Status: 200, Reason: "api_key", Remove: []string{"authorization", "x-passgate-client-id"},
			Set: map[string]string{"x-passgate-user": "apikey:" + name}}
		if scope == "" {
			o.Remove = append(o.Remove, "x-passgate-scope")
		} else {
			o.Set["x-passgate-scope"] = scope
		}
		return o
	}
	invalid := func(reason string) outcome {
		return outcome{Status: 401, Reason: reason, BodyError: "invalid_token", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="mcp", error="invalid_token"`}
	}
	noToken := outcome{Status: 401, Reason: "no_token", BodyError: "invalid_token", Expose: "WWW-Authenticate",
		WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="mcp"`}
	needAdmin := outcome{Status: 403, Reason: "insufficient_scope", BodyError: "insufficient_scope", Expose: "WWW-Authenticate",
		WWWAuth: `Bearer error="insufficient_scope", scope="admin", resource_metadata="` + metaURL + `"`}
	refused := func(reason string) outcome {
		return outcome{Status: 400, Reason: reason, BodyError: "invalid_request"}
	}
	bearerPOST := []string{"envoy_post_mcp.json", "envoy_header_map.json", "nginx_post_mcp.http", "forwardauth_post_mcp.http",
		"ingress_post_mcp.http", "envoyhttp_post_mcp.http"}
	tests := []struct {
		name     string
		attack   string
		fixtures []string
		token    string
		down     bool
		want     outcome
	}{
		{name: "valid token: identity set, spoofed copies overwritten, Authorization removed", fixtures: bearerPOST, token: "valid", want: allowed("mcp")},
		{name: "ingress-nginx: the host pinned by the resource", fixtures: []string{"ingress_resource_pin.http"}, token: "valid", want: allowed("mcp")},
		{name: "no Authorization header", fixtures: []string{"envoy_no_authorization.json", "nginx_no_authorization.http"}, want: noToken},
		{name: "malformed Authorization header: 400 invalid_request", fixtures: []string{"envoy_malformed.json", "nginx_malformed.http"}, want: outcome{
			Status: 400, Reason: "malformed", BodyError: "invalid_request", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="mcp", error="invalid_request"`}},
		{name: "unknown token", fixtures: bearerPOST, token: "unknown", want: invalid("unknown_token")},
		{name: "not a passgate token", fixtures: bearerPOST, token: "garbage", want: invalid("unknown_token")},
		// The store never returns expired rows: an expired token is unknown to it.
		{name: "expired token", fixtures: bearerPOST, token: "expired", want: invalid("unknown_token")},
		{name: "revoked token", fixtures: bearerPOST, token: "revoked", want: invalid("revoked")},
		{name: "token for another resource", fixtures: bearerPOST, token: "other", want: invalid("wrong_audience")},
		{name: "refresh token used as access token", fixtures: bearerPOST, token: "refresh", want: invalid("wrong_kind")},
		{name: "legacy API key: identity apikey:legacy, no scopes", fixtures: bearerPOST, token: "apikey", want: apiKey("legacy", "")},
		{name: "legacy API key where a scope rule applies", fixtures: []string{"envoy_admin.json", "nginx_admin.http"}, token: "apikey", want: needAdmin},
		{name: "named API key: identity apikey:NAME and its scopes", fixtures: bearerPOST, token: "key", want: apiKey("ci", "mcp")},
		{name: "named API key bound to two resources", fixtures: bearerPOST, token: "adminkey", want: apiKey("ops", "mcp admin")},
		{name: "named API key without the scope a rule requires", fixtures: []string{"envoy_admin.json", "nginx_admin.http"}, token: "key", want: needAdmin},
		{name: "named API key with the scope a rule requires", fixtures: []string{"envoy_admin.json", "nginx_admin.http"}, token: "adminkey", want: apiKey("ops", "mcp admin")},
		{name: "named API key for another resource", fixtures: bearerPOST, token: "otherkey", want: invalid("wrong_audience")},
		{name: "revoked named API key", fixtures: bearerPOST, token: "revokedkey", want: invalid("revoked")},
		{name: "unknown named API key", fixtures: bearerPOST, token: "unknownkey", want: invalid("unknown_token")},
		{name: "missing scope", fixtures: []string{"envoy_admin.json", "nginx_admin.http"}, token: "valid", want: needAdmin},
		{name: "missing scope behind dot segments", fixtures: []string{"envoy_dotdot_admin.json", "nginx_dotdot_admin.http"}, token: "valid", want: needAdmin},
		{name: "required scope present", fixtures: []string{"envoy_admin.json", "nginx_admin.http"}, token: "admin", want: allowed("mcp admin")},
		{name: "unknown resource", fixtures: []string{"envoy_unknown_host.json", "nginx_unknown_host.http"}, token: "valid", want: outcome{
			Status: 403, Reason: "unknown_resource", BodyError: "access_denied"}},
		{name: "CORS preflight: every identity header emptied", fixtures: []string{"envoy_preflight.json", "nginx_preflight.http"}, want: outcome{
			Status: 200, Reason: "preflight", Remove: append([]string{"authorization"}, identity...)}},
		{name: "store down: cached token still allowed", fixtures: bearerPOST, token: "cached", down: true, want: allowed("mcp")},
		{name: "store down: uncached token fails closed", fixtures: bearerPOST, token: "uncached", down: true, want: outcome{Status: 503, Reason: "store_unavailable"}},
		{name: "store down: bad tokens still denied without the store", fixtures: bearerPOST, token: "garbage", down: true, want: invalid("unknown_token")},
		{name: "store down: cached named API key still allowed", fixtures: bearerPOST, token: "cachedkey", down: true, want: apiKey("cached", "mcp")},
		{name: "store down: uncached named API key fails closed", fixtures: bearerPOST, token: "uncachedkey", down: true, want: outcome{Status: 503, Reason: "store_unavailable"}},
		{name: "store down: the legacy API key needs no store", fixtures: bearerPOST, token: "apikey", down: true, want: apiKey("legacy", "")},
		// The revoked row above was remembered: a refusal is final.
		{name: "store down: refused tokens stay refused", fixtures: bearerPOST, token: "revoked", down: true, want: invalid("revoked")},

		{name: "forward auth: injected X-Original-Method OPTIONS is no preflight", attack: attackHeaderFamily,
			fixtures: []string{"forwardauth_injected_preflight.http"}, want: outcome{
				Status: 401, Reason: "no_token", BodyError: "invalid_token", Expose: "WWW-Authenticate",
				WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="admin"`}},
		{name: "forward auth: injected X-Original-URI does not move the path", attack: attackHeaderFamily,
			fixtures: []string{"forwardauth_injected_uri.http"}, token: "valid", want: needAdmin},
		{name: "forward auth: a second X-Forwarded-Uri is refused", attack: attackHeaderFamily,
			fixtures: []string{"forwardauth_duplicate_uri.http"}, token: "valid", want: refused("invalid_request")},
		{name: "percent-encoded admin path needs the admin scope", attack: attackPercentEncoding,
			fixtures: []string{"envoy_encoded_admin.json", "nginx_encoded_admin.http", "forwardauth_encoded_admin.http", "ingress_encoded_admin.http", "envoyhttp_encoded_admin.http"},
			token:    "valid", want: needAdmin},
		{name: "percent-encoded admin path with the admin scope", attack: attackPercentEncoding,
			fixtures: []string{"envoy_encoded_admin.json", "nginx_encoded_admin.http"}, token: "admin", want: allowed("mcp admin")},
		{name: "encoded slash after a dot segment is refused", attack: attackEncodedSlash,
			fixtures: []string{"envoy_encoded_slash.json", "nginx_encoded_slash.http", "forwardauth_encoded_slash.http", "envoyhttp_encoded_slash.http"},
			token:    "sameHost", want: refused("invalid_path")},
		{name: "double-encoded slash is refused", attack: attackEncodedSlash,
			fixtures: []string{"envoy_double_encoded.json", "nginx_double_encoded.http"}, token: "sameHost", want: refused("invalid_path")},
		{name: "path parameter dot segment is refused", attack: attackEncodedSlash,
			fixtures: []string{"envoy_path_parameter.json", "nginx_path_parameter.http"}, token: "sameHost", want: refused("invalid_path")},
		{name: "absolute-form target is refused", attack: attackClientHost,
			fixtures: []string{"envoy_absolute_target.json", "nginx_absolute_target.http"}, token: "valid", want: refused("invalid_path")},
		{name: "ingress-nginx: a host other than the pinned one", attack: attackClientHost,
			fixtures: []string{"ingress_host_mismatch.http"}, token: "other", want: outcome{Status: 403, Reason: "host_mismatch", BodyError: "access_denied"}},
		{name: "ingress-nginx: no pinned host", attack: attackClientHost,
			fixtures: []string{"ingress_unpinned.http"}, token: "valid", want: refused("invalid_request")},
	}
	ran := 0
	for _, tt := range tests {
		if attack != "" && tt.attack != attack {
			continue
		}
		ran++
		t.Run(tt.name, func(t *testing.T) {
			fs.down.Store(tt.down)
			defer fs.down.Store(false)
			for _, fx := range tt.fixtures {
				t.Run(fx, func(t *testing.T) {
					raw, err := os.ReadFile(filepath.Join("testdata", fx))
					if err != nil {
						t.Fatal(err)
					}
					raw = fill(raw, tokens[tt.token])
					var got outcome
					if strings.HasSuffix(fx, ".json") {
						got = checkGRPC(t, c, grpcClient, raw)
					} else {
						got = checkHTTP(t, c, httpURL, raw)
					}
					want := tt.want
					if !strings.HasPrefix(fx, "envoy") {
						// Only Envoy's HTTP ext_authz honours
						// X-Envoy-Auth-Headers-To-Remove, so passgate sends it
						// only there; nginx, Traefik and Caddy remove
						// Authorization through their own configuration.
						want.Remove = nil
					}
					if diff := cmp.Diff(got, want, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("outcome (-got +want):\n%s", diff)
					}
				})
			}
		})
	}
	if ran == 0 {
		t.Fatalf("no rows for %q", attack)
	}
}

// fill puts the test's token into a fixture, also inside base64 raw header
// values.
func fill(raw []byte, tok string) []byte {
	b64 := func(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }
	raw = bytes.ReplaceAll(raw, b64("Bearer {{TOKEN}}"), b64("Bearer "+tok))
	return bytes.ReplaceAll(raw, []byte("{{TOKEN}}"), []byte(tok))
}

func startGRPC(t testing.TB, c *Checker) authv3.AuthorizationClient {
	t.Helper()
	return dialGRPC(t, NewGRPCServer(c, nil))
}

func startHTTP(t testing.TB, c *Checker) string {
	t.Helper()
	srv := httptest.NewServer(c.HTTPHandler(nil))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// reasonCounts snapshots passgate_checks_total for one front end.
func reasonCounts(c *Checker, f frontend) map[string]float64 {
	m := map[string]float64{}
	for r, ctr := range c.metrics.checks[f] {
		if ctr != nil {
			m[Reason(r).String()] = testutil.ToFloat64(ctr)
		}
	}
	return m
}

func movedReason(t *testing.T, before, after map[string]float64) string {
	t.Helper()
	var moved []string
	for r, v := range after {
		if v != before[r] {
			moved = append(moved, r)
		}
	}
	if len(moved) != 1 {
		t.Errorf("checks_total moved for %v, want exactly one reason", moved)
		return ""
	}
	return moved[0]
}

func checkGRPC(t *testing.T, c *Checker, client authv3.AuthorizationClient, raw []byte) outcome {
	t.Helper()
	req := new(authv3.CheckRequest)
	if err := protojson.Unmarshal(raw, req); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	before := reasonCounts(c, frontendGRPC)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, req)
	var o outcome
	o.Reason = movedReason(t, before, reasonCounts(c, frontendGRPC))
	if err != nil {
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Check: %v", err)
		}
		o.Status = 503
		return o
	}
	switch r := resp.HttpResponse.(type) {
	case *authv3.CheckResponse_OkResponse:
		if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
			t.Errorf("allowed with status %v", code)
		}
		o.Status = 200
		for _, h := range r.OkResponse.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s: append action %v, want OVERWRITE_IF_EXISTS_OR_ADD so client copies are replaced", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			if o.Set == nil {
				o.Set = map[string]string{}
			}
			o.Set[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
		o.Remove = r.OkResponse.GetHeadersToRemove()
		for _, name := range o.Remove {
			if _, both := o.Set[name]; both {
				t.Errorf("header %s both set and removed", name)
			}
		}
		// Every identity header is set or removed, so no client copy
		// survives.
		for _, name := range []string{"x-passgate-user", "x-passgate-client-id", "x-passgate-scope"} {
			if _, set := o.Set[name]; !set && !slices.Contains(o.Remove, name) {
				t.Errorf("identity header %s neither set nor removed", name)
			}
		}
	case *authv3.CheckResponse_DeniedResponse:
		d := r.DeniedResponse
		o.Status = int(d.GetStatus().GetCode())
		wantCode := map[int]codes.Code{400: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied}[o.Status]
		if code := codes.Code(resp.GetStatus().GetCode()); code != wantCode {
			t.Errorf("denied %d with gRPC status %v, want %v", o.Status, code, wantCode)
		}
		hs := map[string]string{}
		for _, h := range d.GetHeaders() {
			hs[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
		o.WWWAuth, o.Expose = hs["www-authenticate"], hs["access-control-expose-headers"]
		checkCORS(t, o.Expose, hs["access-control-allow-origin"], hs["vary"])
		if hs["content-type"] != "application/json" {
			t.Errorf("Content-Type %q", hs["content-type"])
		}
		o.BodyError = bodyError(t, d.GetBody())
	default:
		t.Fatalf("response without http_response: %v", resp)
	}
	return o
}

// checkCORS: a denial that exposes its challenge to a cross-origin script
// (the request had an Origin) also allows every origin to read it, as
// deploy/nginx.conf does, and varies on Origin; one that does not, neither.
func checkCORS(t *testing.T, expose, allowOrigin, vary string) {
	t.Helper()
	if expose != "" && (allowOrigin != "*" || vary != "Origin") {
		t.Errorf("denial exposes %q but Access-Control-Allow-Origin %q, Vary %q; want *, Origin", expose, allowOrigin, vary)
	}
	if expose == "" && allowOrigin != "" {
		t.Errorf("denial without Access-Control-Expose-Headers has Access-Control-Allow-Origin %q", allowOrigin)
	}
}

// checkHTTP sends the raw subrequest bytes, as the proxy would, over a real
// connection.
func checkHTTP(t *testing.T, c *Checker, addr string, raw []byte) outcome {
	t.Helper()
	raw = bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
	before := reasonCounts(c, frontendHTTP)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	o := outcome{Status: resp.StatusCode, Reason: movedReason(t, before, reasonCounts(c, frontendHTTP))}
	switch resp.StatusCode {
	case 200:
		// Every identity header is in the answer, empty when there is no
		// such identity, so a proxy copying them overwrites client copies.
		for _, name := range []string{"X-Passgate-User", "X-Passgate-Client-Id", "X-Passgate-Scope"} {
			v, ok := resp.Header[name]
			if !ok {
				t.Errorf("allowed answer without %s", name)
				continue
			}
			if len(v) != 1 {
				t.Errorf("%s: %q", name, v)
			}
			if strings.Join(v, ",") == "" {
				continue
			}
			if o.Set == nil {
				o.Set = map[string]string{}
			}
			o.Set[strings.ToLower(name)] = strings.Join(v, ",")
		}
		if rm := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); rm != "" {
			o.Remove = strings.Split(rm, ", ")
		}
		if body.Len() != 0 {
			t.Errorf("200 with a body: %q", body.String())
		}
	case 400, 401, 403:
		o.WWWAuth = resp.Header.Get("WWW-Authenticate")
		o.Expose = resp.Header.Get("Access-Control-Expose-Headers")
		checkCORS(t, o.Expose, resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Vary"))
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		o.BodyError = bodyError(t, body.String())
	case 503:
	default:
		t.Errorf("status %d: the HTTP check answers only 200, 400, 401, 403 or 503", resp.StatusCode)
	}
	return o
}

func bodyError(t *testing.T, body string) string {
	t.Helper()
	var b struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Errorf("body %q: %v", body, err)
	}
	return b.Error
}

// TestNeverFromQuery: a token in the query string is ignored (RFC 6750
// section 2.3 is not supported, and MCP forbids it).
func TestNeverFromQuery(t *testing.T) {
	db := openSQLite(t)
	c := startChecker(t, Config{Store: db})
	tok := mint(t, db, mintOpts{})
	for _, p := range []string{"/mcp?access_token=" + tok, "/mcp?authorization=Bearer%20" + tok} {
		d, err := c.Check(context.Background(), Request{Method: "GET", Host: "mcp.example.com", Path: p})
		if err != nil || d.Allow || d.Reason != ReasonNoToken {
			t.Errorf("%s: %+v, %v", p, d, err)
		}
	}
}

// FuzzCheck feeds mutated Envoy CheckRequests (protobuf wire format, seeded
// from the protojson fixtures) to the real check and holds one invariant:
// nothing is allowed without the valid token for that resource, an API key
// bound to it whose scopes satisfy the rules, or (for a credential-less
// OPTIONS with CORS headers) a preflight.
func FuzzCheck(f *testing.F) {
	db := openSQLite(f)
	c := startChecker(f, Config{
		Store: db, APIKey: testKey, Scopes: []string{"mcp"}, AllowPreflight: true, Logger: discard(),
		RequiredScopes: []ScopeRule{{Match: "/mcp/admin", Scopes: []string{"admin"}}},
	})
	valid := mint(f, db, mintOpts{})
	other := mint(f, db, mintOpts{resource: otherURL})
	named := mintAPIKey(f, db, "ci", "mcp", mcpURL)
	otherKey := mintAPIKey(f, db, "elsewhere", "mcp admin", otherURL)
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "envoy_*.json"))
	for _, fx := range fixtures {
		raw, err := os.ReadFile(fx)
		if err != nil {
			f.Fatal(err)
		}
		for _, tok := range []string{valid, other, testKey, named, otherKey, token.New(token.PrefixAccess)} {
			req := new(authv3.CheckRequest)
			if err := protojson.Unmarshal(fill(raw, tok), req); err != nil {
				f.Fatal(err)
			}
			b, err := proto.Marshal(req)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(authv3.CheckRequest)
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		r := envoyRequest(req)
		d, err := c.Check(ctx, r)
		if err != nil {
			t.Fatalf("store error from a healthy store: %v", err)
		}
		auth := r.Headers["authorization"]
		switch {
		case !d.Allow:
			if d.Status != 400 && d.Status != 401 && d.Status != 403 {
				t.Fatalf("denied with status %d", d.Status)
			}
			if d.Status == 401 && !strings.Contains(headerValue(d.Headers, "WWW-Authenticate"), "resource_metadata=") {
				t.Fatalf("401 without resource_metadata: %+v", d)
			}
		case d.Reason == ReasonToken:
			if !strings.Contains(auth, valid) {
				t.Fatalf("allowed without the valid token: %q", auth)
			}
			if !strings.Contains(strings.ToLower(r.Host), "mcp.example.com") {
				t.Fatalf("token for %s allowed on host %q", mcpURL, r.Host)
			}
			if headerValue(d.Headers, DefaultUserHeader) != testUser {
				t.Fatalf("allowed without identity: %+v", d)
			}
		case d.Reason == ReasonAPIKey:
			user := headerValue(d.Headers, DefaultUserHeader)
			switch {
			case strings.Contains(auth, named) && user == "apikey:ci":
				if !strings.Contains(strings.ToLower(r.Host), "mcp.example.com") {
					t.Fatalf("key for %s allowed on host %q", mcpURL, r.Host)
				}
			case strings.Contains(auth, testKey) && user == "apikey:legacy":
			default:
				t.Fatalf("API key allowed as %q without that key: %q", user, auth)
			}
			if p, _ := resource.CanonicalPath(r.Path); resource.HasPathPrefix(p, "/mcp/admin", true) {
				t.Fatalf("API key without the admin scope allowed on %q", r.Path)
			}
		case d.Reason == ReasonPreflight:
			if r.Method != "OPTIONS" || auth != "" {
				t.Fatalf("preflight allowed for %s with credentials %q", r.Method, auth)
			}
		default:
			t.Fatalf("allowed for reason %v", d.Reason)
		}
		if d.Allow {
			if len(d.Headers) != 3 {
				t.Fatalf("allowed without every identity header: %+v", d)
			}
			if _, err := resource.CanonicalPath(r.Path); err != nil {
				t.Fatalf("allowed an ambiguous path %q: %v", r.Path, err)
			}
		}
		if d.Allow && d.Reason != ReasonToken {
			for _, h := range d.Headers {
				keyIdentity := d.Reason == ReasonAPIKey && (h.Name == DefaultUserHeader && strings.HasPrefix(h.Value, APIKeyUserPrefix) || h.Name == DefaultScopeHeader)
				if h.Value != "" && !keyIdentity {
					t.Fatalf("identity header %s=%q without a token or key: %+v", h.Name, h.Value, d)
				}
			}
		}
	})
}
