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

// TestCheck is the one table: every row is a real Envoy CheckRequest
// (protojson, as Envoy sends it) or a real proxy subrequest (nginx
// auth_request as captured from nginx 1.22, Traefik ForwardAuth, Envoy HTTP
// ext_authz), run through the real front ends over loopback against SQLite.
func TestCheck(t *testing.T) {
	db := openSQLite(t)
	fs := &faultStore{Store: db}
	c := startChecker(t, Config{
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
	apiKey := func(name, scope string) outcome {
		return outcome{Status: 200, Reason: "api_key", Remove: []string{"authorization"},
			Set: map[string]string{"x-passgate-user": "apikey:" + name, "x-passgate-client-id": "", "x-passgate-scope": scope}}
	}
	insufficient := outcome{
		Status: 403, Reason: "insufficient_scope", BodyError: "insufficient_scope", Expose: "WWW-Authenticate",
		WWWAuth: `Bearer error="insufficient_scope", scope="admin", resource_metadata="` + metaURL + `"`}
	invalid := func(reason string) outcome {
		return outcome{Status: 401, Reason: reason, BodyError: "invalid_token", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="mcp", error="invalid_token"`}
	}
	bearerPOST := []string{"envoy_post_mcp.json", "envoy_header_map.json", "nginx_post_mcp.http", "traefik_post_mcp.http", "envoyhttp_post_mcp.http"}
	tests := []struct {
		name     string
		fixtures []string
		token    string
		down     bool
		want     outcome
	}{
		{"valid token: identity set, spoofed copies overwritten, Authorization removed", bearerPOST, "valid", false, allowed("mcp")},
		{"no Authorization header", []string{"envoy_no_authorization.json", "nginx_no_authorization.http"}, "", false, outcome{
			Status: 401, Reason: "no_token", BodyError: "invalid_token", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer resource_metadata="` + metaURL + `", scope="mcp"`}},
		{"malformed Authorization header", []string{"envoy_malformed.json", "nginx_malformed.http"}, "", false, invalid("malformed")},
		{"unknown token", bearerPOST, "unknown", false, invalid("unknown_token")},
		{"not a passgate token", bearerPOST, "garbage", false, invalid("unknown_token")},
		// The store never returns expired rows: an expired token is unknown to it.
		{"expired token", bearerPOST, "expired", false, invalid("unknown_token")},
		{"revoked token", bearerPOST, "revoked", false, invalid("revoked")},
		{"token for another resource", bearerPOST, "other", false, invalid("wrong_audience")},
		{"refresh token used as access token", bearerPOST, "refresh", false, invalid("wrong_kind")},
		{"legacy API key: identity apikey:legacy, no scopes", bearerPOST, "apikey", false, apiKey("legacy", "")},
		{"legacy API key where a scope rule applies", []string{"envoy_admin.json", "nginx_admin.http"}, "apikey", false, insufficient},
		{"named API key: identity apikey:NAME and its scopes", bearerPOST, "key", false, apiKey("ci", "mcp")},
		{"named API key bound to two resources", bearerPOST, "adminkey", false, apiKey("ops", "mcp admin")},
		{"named API key without the scope a rule requires", []string{"envoy_admin.json", "nginx_admin.http"}, "key", false, insufficient},
		{"named API key with the scope a rule requires", []string{"envoy_admin.json", "nginx_admin.http"}, "adminkey", false, apiKey("ops", "mcp admin")},
		{"named API key for another resource", bearerPOST, "otherkey", false, invalid("wrong_audience")},
		{"revoked named API key", bearerPOST, "revokedkey", false, invalid("revoked")},
		{"unknown named API key", bearerPOST, "unknownkey", false, invalid("unknown_token")},
		{"missing scope", []string{"envoy_admin.json", "nginx_admin.http"}, "valid", false, outcome{
			Status: 403, Reason: "insufficient_scope", BodyError: "insufficient_scope", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer error="insufficient_scope", scope="admin", resource_metadata="` + metaURL + `"`}},
		{"missing scope behind dot segments", []string{"envoy_dotdot_admin.json", "nginx_dotdot_admin.http"}, "valid", false, outcome{
			Status: 403, Reason: "insufficient_scope", BodyError: "insufficient_scope", Expose: "WWW-Authenticate",
			WWWAuth: `Bearer error="insufficient_scope", scope="admin", resource_metadata="` + metaURL + `"`}},
		{"required scope present", []string{"envoy_admin.json", "nginx_admin.http"}, "admin", false, allowed("mcp admin")},
		{"unknown resource", []string{"envoy_unknown_host.json", "nginx_unknown_host.http"}, "valid", false, outcome{
			Status: 403, Reason: "unknown_resource", BodyError: "access_denied"}},
		{"CORS preflight", []string{"envoy_preflight.json", "nginx_preflight.http"}, "", false, outcome{
			Status: 200, Reason: "preflight", Remove: append([]string{"authorization"}, identity...)}},
		{"store down: cached token still allowed", bearerPOST, "cached", true, allowed("mcp")},
		{"store down: uncached token fails closed", bearerPOST, "uncached", true, outcome{Status: 503, Reason: "store_unavailable"}},
		{"store down: bad tokens still denied without the store", bearerPOST, "garbage", true, invalid("unknown_token")},
		{"store down: cached named API key still allowed", bearerPOST, "cachedkey", true, apiKey("cached", "mcp")},
		{"store down: uncached named API key fails closed", bearerPOST, "uncachedkey", true, outcome{Status: 503, Reason: "store_unavailable"}},
		{"store down: the legacy API key needs no store", bearerPOST, "apikey", true, apiKey("legacy", "")},
		// The revoked row above was remembered: a refusal is final.
		{"store down: refused tokens stay refused", bearerPOST, "revoked", true, invalid("revoked")},
	}
	for _, tt := range tests {
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
					if strings.HasPrefix(fx, "nginx_") || strings.HasPrefix(fx, "traefik_") {
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
	mux := http.NewServeMux()
	mux.Handle(CheckPath, c.HTTPHandler())
	mux.Handle(CheckPath+"/", c.HTTPHandler())
	srv := httptest.NewServer(mux)
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
	case *authv3.CheckResponse_DeniedResponse:
		d := r.DeniedResponse
		o.Status = int(d.GetStatus().GetCode())
		wantCode := map[int]codes.Code{401: codes.Unauthenticated, 403: codes.PermissionDenied}[o.Status]
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
		for name, v := range resp.Header {
			if strings.HasPrefix(name, "X-Passgate-") {
				if o.Set == nil {
					o.Set = map[string]string{}
				}
				o.Set[strings.ToLower(name)] = strings.Join(v, ",")
			}
		}
		if rm := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); rm != "" {
			o.Remove = strings.Split(rm, ", ")
		}
		if body.Len() != 0 {
			t.Errorf("200 with a body: %q", body.String())
		}
	case 401, 403:
		o.WWWAuth = resp.Header.Get("WWW-Authenticate")
		o.Expose = resp.Header.Get("Access-Control-Expose-Headers")
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		o.BodyError = bodyError(t, body.String())
	case 503:
	default:
		t.Errorf("status %d: the HTTP check answers only 200, 401, 403 or 503", resp.StatusCode)
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
