package oauthweb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"

	"github.com/passgate/passgate/internal/ratelimit"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// TestClientMetadataDocument: a client_id that is an https URL goes
// through the configured resolver, is advertised in metadata, and
// completes the flow as a public client.
func TestClientMetadataDocument(t *testing.T) {
	const docID = "https://app.example.com/oauth/client.json"
	e := newEnv(t, func(c *Config) {
		c.ResolveClient = func(_ context.Context, id string) (store.Client, error) {
			if id != docID {
				return store.Client{}, fmt.Errorf("fetch: %w", store.ErrNotFound)
			}
			return store.Client{ID: id, Name: "Example App", RedirectURIs: []string{testRedirect}}, nil
		}
	})
	resp, err := http.Get(e.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `"client_id_metadata_document_supported":true`) {
		t.Errorf("metadata does not advertise CIMD: %s", body)
	}
	conf := e.oauth2Config(docID, "")
	b := e.browser()
	e.login(b)
	v := oauth2.GenerateVerifier()
	resp, err = b.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, "Example App") || !strings.Contains(body, "has not verified") {
		t.Error("consent page lacks the document's name or the unverified note")
	}
	// The document's client completes the flow.
	e.codeFlow(b, conf)
	// Another URL is an unknown client: error page, no redirect.
	resp, _ = noFollow(b).Get(e.url("/oauth/authorize?client_id=" + url.QueryEscape("https://evil.example/c.json") + "&redirect_uri=" + url.QueryEscape(testRedirect)))
	readBody(t, resp)
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("unknown document: %d", resp.StatusCode)
	}
}

func TestRateLimitAndMetrics(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.Metrics = reg
		c.RateLimit = func(endpoint, ip string) (bool, time.Duration, func()) {
			mu.Lock()
			defer mu.Unlock()
			counts[endpoint+" "+ip]++
			return counts[endpoint+" "+ip] <= 2, 90 * time.Second, func() {}
		}
	})
	var last *http.Response
	for range 3 {
		resp, err := http.PostForm(e.url("/oauth/token"), url.Values{"grant_type": {"refresh_token"}, "client_id": {"x"}, "refresh_token": {"y"}})
		if err != nil {
			t.Fatal(err)
		}
		last = resp
		readBody(t, resp)
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") != "90" {
		t.Errorf("third token request: %d, Retry-After %q", last.StatusCode, last.Header.Get("Retry-After"))
	}
	b := e.browser()
	for range 3 {
		resp, _ := b.Get(e.url("/login"))
		f := formFields(readBody(t, resp))
		f.Set("username", testUser)
		f.Set("password", "wrong")
		last = postForm(t, b, e.url("/login"), f)
		readBody(t, last)
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third login: %d", last.StatusCode)
	}
	evs := e.auditEvents(store.EventRateLimited)
	if len(evs) != 2 || evs[0].IP != "127.0.0.1" {
		t.Errorf("rate_limited audit: %+v", evs)
	}
	if n := testutil.CollectAndCount(reg, "passgate_http_requests_total"); n == 0 {
		t.Error("no request metrics")
	}
	var tokenTotal float64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "handler" && l.GetValue() == "token" {
					tokenTotal += m.GetCounter().GetValue()
				}
			}
		}
	}
	if tokenTotal != 3 {
		t.Errorf("token requests counted %v, want 3", tokenTotal)
	}
}

// TestAuditContext: failure events carry ip, user agent, client id and an
// error code, never a secret.
func TestAuditContext(t *testing.T) {
	e := newEnv(t)
	id := e.publicClient()
	e.send(t, hreq{path: "/oauth/token", ctype: formCT, header: http.Header{"User-Agent": {"audit-test/1.0"}},
		body: form("grant_type", "authorization_code", "client_id", id, "code", "pgc_"+strings.Repeat("Z", 43), "code_verifier", strings.Repeat("v", 43))}, nil)
	evs := e.auditEvents(store.EventTokenFailure)
	if len(evs) != 1 {
		t.Fatalf("token_failure events: %d", len(evs))
	}
	ev := evs[0]
	if ev.IP != "127.0.0.1" || ev.UserAgent != "audit-test/1.0" || ev.ClientID != id || ev.Error != "invalid_grant" || ev.Success {
		t.Errorf("audit event %+v", ev)
	}
	b, _ := json.Marshal(ev)
	if strings.Contains(string(b), "pgc_") {
		t.Error("audit row contains the code")
	}
}

// TestTokenLimitCountsFailuresOnly: the token endpoint refunds its limit
// for successful requests, so a client refreshing successfully is never
// throttled while guessing is.
func TestTokenLimitCountsFailuresOnly(t *testing.T) {
	limits := ratelimit.Set{LimitToken: ratelimit.New(ratelimit.Limit{Events: 3, Per: 15 * time.Minute}, nil, 0)}
	e := newEnv(t, func(c *Config) {
		c.RateLimit = limits.Reserve
	})
	conf, tok := e.grant()
	rt := tok.RefreshToken
	// Ten successful refreshes: more than the limit, none counted.
	for i := range 10 {
		status, body := e.refreshRaw(conf.ClientID, rt)
		if status != http.StatusOK {
			t.Fatalf("successful refresh %d: %d %s", i+1, status, body)
		}
		var r tokenResponse
		_ = json.Unmarshal([]byte(body), &r)
		e.secret(r.AccessToken, r.RefreshToken)
		rt = r.RefreshToken
	}
	// Three failures spend the limit; the fourth request is refused
	// before it is even looked at, success or not.
	for i := range 3 {
		if status, body := e.refreshRaw(conf.ClientID, "pgr_guess"); status != http.StatusBadRequest {
			t.Fatalf("failed refresh %d: %d %s", i+1, status, body)
		}
	}
	status, body := e.refreshRaw(conf.ClientID, rt)
	if status != http.StatusTooManyRequests {
		t.Fatalf("request after three failures: %d %s, want 429", status, body)
	}
	if evs := e.auditEvents(store.EventRateLimited); len(evs) != 1 || evs[0].Error != LimitToken {
		t.Errorf("rate_limited audit: %+v", evs)
	}
	// Nothing was rotated by the refused request: rt still works later.
	tk, err := e.st.GetToken(context.Background(), token.Hash(rt), e.clock.Now())
	if err != nil || !tk.RotatedAt.IsZero() {
		t.Errorf("the refused request rotated the refresh token (err %v)", err)
	}
}
