package securitytest

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// flowArgs make every audit event reachable in a short scripted run:
// three registrations per hour (the fourth is rate limited), lockout after
// three failures, no refresh grace to speak of (so a replay is reuse), and
// a cleanup that removes clients unused for four seconds. The log format
// is left to passgate's default: JSON, since the output is not a terminal.
var flowArgs = []string{
	"--login-limit=50/15m", "--register-limit=4/1h", "--register-success-limit=4/1h", "--lockout-threshold=3",
	"--refresh-grace=1ms", "--stale-client-age=4s", "--cleanup-interval=500ms",
	"--log-format=auto", "--log-level=debug",
}

// TestAuditMatchesMetricsSQLite runs the scripted flow against the binary
// on SQLite: see scriptedFlow.
func TestAuditMatchesMetricsSQLite(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Args: flowArgs})
	scriptedFlow(t, srv)
}

// TestAuditMatchesMetricsPostgres is the same on PostgreSQL.
func TestAuditMatchesMetricsPostgres(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{DatabaseURL: pgtest.NewDatabase(t), Args: flowArgs})
	scriptedFlow(t, srv)
}

// scriptedFlow drives every audited event through the real binary over
// HTTP, then proves, event by event and result by result, that the
// increase of passgate_auth_events_total equals the number of new
// auth_logs rows; that `passgate audit --failed --json` prints exactly the
// failures; and that no secret used in the flow reached the logs, which
// are JSON with request-scoped fields.
func scriptedFlow(t *testing.T, srv *e2etest.Server) {
	ctx := e2etest.Context(t, 2*time.Minute)
	st := srv.OpenStore(t)
	const alicePW, bobPW = "alice-Secret-Passw0rd-x7", "bob-Secret-Passw0rd-q9"
	e2etest.AddUser(t, st, "alice", alicePW)
	e2etest.AddUser(t, st, "bob", bobPW)
	secrets := []string{alicePW, bobPW}

	metrics0, rows0 := eventMetrics(t, srv), auditRows(t, st)

	// Registration, a failed and a successful login, authorization,
	// consent, code exchange.
	cl := srv.RegisterClient(t)
	b := e2etest.NewBrowser()
	if resp, _ := loginAttempt(t, srv, b, "alice", "wrong-password-1"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	tok, err := cl.Login(ctx, b, "alice", alicePW)
	must(t, "login flow", err)
	secrets = append(secrets, tok.AccessToken, tok.RefreshToken)

	// A code redeemed twice: the replay fails.
	code, verifier, err := cl.Authorize(ctx, b, "alice", alicePW)
	must(t, "authorize again", err)
	secrets = append(secrets, code)
	tok2, err := cl.Exchange(ctx, code, verifier)
	must(t, "exchange", err)
	secrets = append(secrets, tok2.AccessToken, tok2.RefreshToken)
	if _, err := cl.Exchange(ctx, code, verifier); err == nil {
		t.Fatal("a replayed code was accepted")
	}

	// Refresh, then replay the rotated refresh token: reuse detection.
	tok3, err := cl.Refresh(ctx, tok.RefreshToken)
	must(t, "refresh", err)
	secrets = append(secrets, tok3.AccessToken, tok3.RefreshToken)
	time.Sleep(50 * time.Millisecond) // past the 1ms grace window
	if _, err := cl.Refresh(ctx, tok.RefreshToken); err == nil {
		t.Fatal("a reused refresh token was accepted")
	}

	// Revocation of a live token.
	tok4, err := cl.Login(ctx, b, "alice", alicePW)
	must(t, "third flow", err)
	secrets = append(secrets, tok4.AccessToken, tok4.RefreshToken)
	if resp, _ := postForm(t, srv, "/oauth/revoke", url.Values{"token": {tok4.RefreshToken}, "client_id": {cl.ClientID}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}

	// Consent denied for a second client.
	cl2 := srv.RegisterClient(t)
	_, challenge := e2etest.PKCE()
	resp, page, err := b.Get(ctx, cl2.AuthorizeURL(challenge, "st"))
	must(t, "authorize second client", err)
	action, fields, err := e2etest.Form(page)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d %v", resp.StatusCode, err)
	}
	fields.Set("decision", "deny")
	resp, _, err = b.PostForm(ctx, abs(srv, action), fields)
	must(t, "deny", err)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=access_denied") {
		t.Fatalf("deny redirected to %q", loc)
	}

	// A confidential client presents its real secret with a bad code.
	resp, reg := postJSON(t, srv, "/oauth/register", map[string]any{
		"redirect_uris": []string{e2etest.RedirectURI}, "token_endpoint_auth_method": "client_secret_basic", "client_name": "conf",
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register confidential client: %d %v", resp.StatusCode, reg)
	}
	confID, confSecret := reg["client_id"].(string), reg["client_secret"].(string)
	secrets = append(secrets, confSecret)
	resp, body := postForm(t, srv, "/oauth/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {"pgc_" + strings.Repeat("A", 43)},
		"code_verifier": {strings.Repeat("v", 43)}, "redirect_uri": {e2etest.RedirectURI},
	}, confID, confSecret)
	if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("bad code with the real secret: %d %v", resp.StatusCode, body)
	}

	// A fourth registration uses the hour's budget; the fifth is refused.
	srv.RegisterClient(t)
	resp, body = postJSON(t, srv, "/oauth/register", map[string]any{"redirect_uris": []string{e2etest.RedirectURI}, "token_endpoint_auth_method": "none"})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fifth registration: %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	// Three failures lock bob; then even his password fails.
	for i := range 3 {
		if resp, _ := loginAttempt(t, srv, e2etest.NewBrowser(), "bob", "nope-"+string(rune('a'+i))); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bob failure %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := loginAttempt(t, srv, e2etest.NewBrowser(), "bob", bobPW); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("locked bob with his password: %d", resp.StatusCode)
	}

	// Logout.
	_, page, err = b.Get(ctx, srv.URL("/logout"))
	must(t, "logout page", err)
	secrets = append(secrets, cookieValues(srv, b)...)
	action, fields, err = e2etest.Form(page)
	must(t, "logout form", err)
	if resp, _, err = b.PostForm(ctx, abs(srv, action), fields); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %v %v", resp, err)
	}

	// An operator adds and revokes a named API key from the command line;
	// the key reaches no log.
	out := srv.CLI(t, "", "apikey", "add", "flow", "--resource", "http://localhost:8080/mcp")
	key, _, _ := strings.Cut(strings.TrimPrefix(out, "api_key:"), "\n")
	if key = strings.TrimSpace(key); !strings.HasPrefix(key, "pgk_") {
		t.Fatalf("apikey add printed no key:\n%s", out)
	}
	secrets = append(secrets, key)
	srv.CLI(t, "", "apikey", "revoke", "flow")

	// The cleanup removes the clients that never completed a grant.
	if !waitFor(20*time.Second, func() bool { return len(auditOf(t, st, store.EventClientDeleted)) >= 3 }) {
		t.Errorf("stale clients were not deleted: %d client_deleted rows", len(auditOf(t, st, store.EventClientDeleted)))
	}

	// Metric deltas equal row deltas for every event and result. The
	// cleanup counts its event just after writing the row, so allow a
	// moment for the two views to meet.
	var mismatch []string
	var dm, dr map[eventKey]float64
	waitFor(5*time.Second, func() bool {
		m1, r1 := eventMetrics(t, srv), auditRows(t, st)
		dm, dr = map[eventKey]float64{}, map[eventKey]float64{}
		mismatch = nil
		for _, ev := range audit.Events {
			for _, res := range []string{"success", "failure"} {
				k := eventKey{ev, res}
				dm[k], dr[k] = m1[k]-metrics0[k], r1[k]-rows0[k]
				if dm[k] != dr[k] {
					mismatch = append(mismatch, k.String())
				}
			}
		}
		for k := range r1 {
			if !slices.Contains(audit.Events, k.event) {
				mismatch = append(mismatch, "row of unknown event "+k.String())
			}
		}
		return len(mismatch) == 0
	})
	for _, k := range mismatch {
		t.Errorf("%s: metric delta %v, new rows %v", k, dm[eventKeyOf(k)], dr[eventKeyOf(k)])
	}
	// Every event happened.
	for _, want := range []eventKey{
		{store.EventClientRegistration, "success"}, {store.EventLoginFailure, "failure"}, {store.EventLoginSuccess, "success"},
		{store.EventAuthorizeRequest, "success"}, {store.EventConsentGranted, "success"}, {store.EventTokenExchange, "success"},
		{store.EventTokenFailure, "failure"}, {store.EventTokenRefresh, "success"}, {store.EventRefreshReuseDetected, "failure"},
		{store.EventTokenRevoked, "success"}, {store.EventConsentDenied, "failure"}, {store.EventRateLimited, "failure"},
		{store.EventAccountLocked, "failure"}, {store.EventLogout, "success"}, {store.EventClientDeleted, "success"},
	} {
		if dr[want] < 1 {
			t.Errorf("the flow produced no %s row", want)
		}
	}
	// The command line's events, recorded by the CLI process.
	for _, ev := range []string{store.EventAPIKeyCreated, store.EventAPIKeyRevoked} {
		if rows := auditOf(t, st, ev); len(rows) != 1 || rows[0].IP != "cli" || rows[0].Username != "apikey:flow" || !rows[0].Success {
			t.Errorf("%s rows: %+v, want one successful row by cli for apikey:flow", ev, rows)
		}
	}
	t.Logf("event deltas: %v", dr)

	// `passgate audit --failed --json` prints exactly the failures.
	out = srv.CLI(t, "", "audit", "--failed", "--json", "--since", "1h", "--limit", "0")
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var row struct {
			Event     string    `json:"event"`
			Success   *bool     `json:"success"`
			IP        string    `json:"ip"`
			CreatedAt time.Time `json:"created_at"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("audit --json line %q: %v", sc.Text(), err)
		}
		if row.Success == nil || *row.Success || row.IP == "" || row.CreatedAt.IsZero() {
			t.Errorf("audit --failed printed %s", sc.Text())
		}
		got[row.Event]++
	}
	want := map[string]int{}
	for k, n := range dr {
		if k.result == "failure" && n > 0 {
			want[k.event] += int(n)
		}
	}
	if !mapsEqual(got, want) {
		t.Errorf("audit --failed --json: got %v, want %v", got, want)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Error("passgate audit printed a secret")
		}
	}

	// Logs: JSON lines with request-scoped fields, and no secret of the
	// flow in any of them (at debug level).
	srv.AssertNoSecrets(t, secrets...)
	checkRequestLogs(t, srv.Logs())
}

func eventKeyOf(s string) eventKey {
	ev, res, _ := strings.Cut(s, "/")
	return eventKey{ev, res}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkRequestLogs asserts the server's log lines are JSON and that
// requests were logged by internal/httplog with their fields, and that
// oauthweb's own lines for a request carry its request_id.
func checkRequestLogs(t *testing.T, logs string) {
	t.Helper()
	routes := map[string]bool{}
	jsonLines := 0
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %.200s", line)
			continue
		}
		jsonLines++
		if m["msg"] != "http request" {
			continue
		}
		for _, k := range []string{"request_id", "method", "route", "status", "duration_seconds", "bytes", "client_ip"} {
			if _, ok := m[k]; !ok {
				t.Errorf("request line without %s: %.300s", k, line)
			}
		}
		if r, ok := m["route"].(string); ok {
			routes[r] = true
		}
	}
	if jsonLines < 10 {
		t.Errorf("only %d JSON log lines; passgate should log JSON when not on a terminal", jsonLines)
	}
	for _, r := range []string{"/oauth/token", "GET /oauth/authorize", "POST /login", "POST /consent", "/oauth/register", "/oauth/revoke"} {
		if !routes[r] {
			t.Errorf("no request line for route %q (have %v)", r, routes)
		}
	}
}

// TestAuditRetention: the periodic cleanup of `passgate serve` deletes
// audit rows older than --audit-retention and keeps younger ones.
func TestAuditRetention(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Args: []string{"--audit-retention=1h", "--cleanup-interval=200ms"}})
	st := srv.OpenStore(t)
	ctx := e2etest.Context(t, time.Minute)
	now := time.Now()
	for _, ev := range []store.AuditEvent{
		{Event: store.EventLoginFailure, IP: "192.0.2.1", Username: "old", Error: "invalid_credentials", CreatedAt: now.Add(-2 * time.Hour)},
		{Event: store.EventLoginFailure, IP: "192.0.2.2", Username: "recent", Error: "invalid_credentials", CreatedAt: now.Add(-30 * time.Minute)},
	} {
		must(t, "record", st.RecordAudit(ctx, ev))
	}
	if !waitFor(15*time.Second, func() bool { return len(auditOf(t, st, store.EventLoginFailure)) == 1 }) {
		t.Fatalf("the old row was not deleted: %+v", auditOf(t, st, store.EventLoginFailure))
	}
	if rows := auditOf(t, st, store.EventLoginFailure); rows[0].Username != "recent" {
		t.Errorf("kept %+v, want the recent row", rows[0])
	}
}
