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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

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
		Resources:      mustResources(t, mcpURL, otherURL, sameHostURL),
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
	}
	if _, err := db.RevokeToken(ctx, token.Hash(tokens["revoked"]), time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Check(ctx, bearer(tokens["cached"])); err != nil || !d.Allow {
		t.Fatalf("warming the cache: %+v, %v", d, err)
	}

	identity := []string{"x-passgate-user", "x-passgate-client-id", "x-passgate-scope"}
	allowed := func(scope string) outcome {
		return outcome{Status: 200, Reason: "token", Remove: []string{"authorization"},
			Set: map[string]string{"x-passgate-user": testUser, "x-passgate-client-id": testCli, "x-passgate-scope": scope}}
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
		{name: "API key: a named user, the other identity headers emptied", fixtures: bearerPOST, token: "apikey", want: outcome{
			Status: 200, Reason: "api_key", Set: map[string]string{"x-passgate-user": "apikey:legacy"},
			Remove: []string{"authorization", "x-passgate-client-id", "x-passgate-scope"}}},
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
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewGRPCServer(c, nil)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
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
		if hs["content-type"] != "application/json" {
			t.Errorf("Content-Type %q", hs["content-type"])
		}
		o.BodyError = bodyError(t, d.GetBody())
	default:
		t.Fatalf("response without http_response: %v", resp)
	}
	return o
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
