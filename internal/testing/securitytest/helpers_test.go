package securitytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/store"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

// scrape parses the metrics listener's exposition.
func scrape(t *testing.T, srv *e2etest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	text, err := srv.Metrics(context.Background())
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return mfs
}

// eventKey is an (event, result) pair of passgate_auth_events_total.
type eventKey struct{ event, result string }

func (k eventKey) String() string { return k.event + "/" + k.result }

func result(success bool) string {
	if success {
		return "success"
	}
	return "failure"
}

// eventMetrics returns passgate_auth_events_total by event and result.
func eventMetrics(t *testing.T, srv *e2etest.Server) map[eventKey]float64 {
	t.Helper()
	out := map[eventKey]float64{}
	mf := scrape(t, srv)["passgate_auth_events_total"]
	if mf == nil {
		t.Fatal("no passgate_auth_events_total family")
	}
	for _, m := range mf.GetMetric() {
		var k eventKey
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "event":
				k.event = l.GetValue()
			case "result":
				k.result = l.GetValue()
			}
		}
		out[k] = m.GetCounter().GetValue()
	}
	return out
}

// auditRows counts the server's auth_logs rows by event and result. Rows
// written by command-line processes (IP "cli", such as `passgate apikey
// add`) are left out: each CLI process counts its own events in its own
// metric, which no one scrapes, so the server's metric never sees them.
func auditRows(t *testing.T, st store.Store) map[eventKey]float64 {
	t.Helper()
	rows, err := st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatalf("list audit: %v", err)
	}
	out := map[eventKey]float64{}
	for _, r := range rows {
		if r.IP == "cli" {
			continue
		}
		out[eventKey{r.Event, result(r.Success)}]++
	}
	return out
}

// auditOf returns the rows of one event, newest first.
func auditOf(t *testing.T, st store.Store, event string) []store.AuditEvent {
	t.Helper()
	rows, err := st.ListAudit(context.Background(), store.AuditFilter{Event: event})
	if err != nil {
		t.Fatalf("list audit: %v", err)
	}
	return rows
}

// newBrowser returns an e2etest.Browser whose requests come from localIP (""
// for the default) and carry header.
func newBrowser(localIP string, header http.Header) *e2etest.Browser {
	b := e2etest.NewBrowser()
	tr := &http.Transport{DisableKeepAlives: true}
	if localIP != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
		tr.DialContext = d.DialContext
	}
	b.HTTP.Transport = e2etest.HeaderTransport{Header: header, Base: tr}
	return b
}

func xff(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// loginAttempt opens the login page with b and posts the form; it returns
// the POST's response (body read).
func loginAttempt(t *testing.T, srv *e2etest.Server, b *e2etest.Browser, username, password string) (*http.Response, string) {
	t.Helper()
	ctx := e2etest.Context(t, 30*time.Second)
	resp, body, err := b.Get(ctx, srv.URL("/login"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: %d", resp.StatusCode)
	}
	action, fields, err := e2etest.Form(body)
	if err != nil {
		t.Fatal(err)
	}
	fields.Set("username", username)
	fields.Set("password", password)
	resp, body, err = b.PostForm(ctx, abs(srv, action), fields)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// abs makes a form action absolute.
func abs(srv *e2etest.Server, action string) string {
	if strings.HasPrefix(action, "/") {
		return srv.URL(action)
	}
	return action
}

// postForm posts v to path with optional HTTP Basic credentials.
func postForm(t *testing.T, srv *e2etest.Server, path string, v url.Values, basic ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(e2etest.Context(t, 30*time.Second), http.MethodPost, srv.URL(path), strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return doJSON(t, srv, req)
}

func postJSON(t *testing.T, srv *e2etest.Server, path string, v any) (*http.Response, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(v)
	req, err := http.NewRequestWithContext(e2etest.Context(t, 30*time.Second), http.MethodPost, srv.URL(path), strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(t, srv, req)
}

func doJSON(t *testing.T, srv *e2etest.Server, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// cookieValues returns the values of every cookie b holds for srv.
func cookieValues(srv *e2etest.Server, b *e2etest.Browser) []string {
	u, _ := url.Parse(srv.Issuer)
	var out []string
	for _, c := range b.HTTP.Jar.Cookies(u) {
		out = append(out, c.Value)
	}
	return out
}

// waitFor polls cond every 50ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	return proc.WaitFor(d, 50*time.Millisecond, cond)
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var _ = fmt.Sprint
