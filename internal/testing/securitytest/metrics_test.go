package securitytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// metricsServer starts passgate, runs one flow and a few checks on both
// front ends so every family has samples, and returns the scrape.
func metricsServer(t *testing.T) (*e2etest.Server, map[string]*dto.MetricFamily) {
	t.Helper()
	srv := e2etest.Start(t, e2etest.Options{})
	e2etest.AddUser(t, srv.OpenStore(t), "alice", "alice-password-123")
	ctx := e2etest.Context(t, time.Minute)
	tok, err := srv.RegisterClient(t).Login(ctx, e2etest.NewBrowser(), "alice", "alice-password-123")
	must(t, "flow", err)
	for _, bearer := range []string{tok.AccessToken, tok.AccessToken, "pga_" + strings.Repeat("x", 43), ""} {
		if _, err := srv.CheckHTTP(ctx, bearer); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.CheckGRPC(ctx, bearer); err != nil {
			t.Fatal(err)
		}
	}
	return srv, scrape(t, srv)
}

// TestMetricsListener: the metrics listener serves the families issue 6
// names, with their types, labels and real HELP text; labels are bounded
// (never a user, client or IP); and the public listener does not serve
// metrics.
func TestMetricsListener(t *testing.T) {
	srv, mfs := metricsServer(t)
	tests := []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"passgate_auth_events_total", dto.MetricType_COUNTER, []string{"event", "result"}},
		{"passgate_checks_total", dto.MetricType_COUNTER, []string{"decision", "frontend", "reason"}},
		{"passgate_check_duration_seconds", dto.MetricType_HISTOGRAM, []string{"frontend"}},
		{"passgate_check_cache_hits_total", dto.MetricType_COUNTER, nil},
		{"passgate_check_cache_misses_total", dto.MetricType_COUNTER, nil},
		{"passgate_check_cache_evictions_total", dto.MetricType_COUNTER, nil},
		{"passgate_check_store_errors_total", dto.MetricType_COUNTER, nil},
		{"passgate_build_info", dto.MetricType_GAUGE, []string{"backend", "goversion", "version"}},
		{"passgate_store_up", dto.MetricType_GAUGE, nil},
		{"passgate_ready", dto.MetricType_GAUGE, nil},
		{"passgate_http_requests_total", dto.MetricType_COUNTER, []string{"code", "handler", "method"}},
		{"go_goroutines", dto.MetricType_GAUGE, nil},
		{"go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE, nil},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER, nil},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, nil},
	}
	for _, tt := range tests {
		mf := mfs[tt.name]
		if mf == nil {
			t.Errorf("%s: missing", tt.name)
			continue
		}
		if mf.GetType() != tt.typ {
			t.Errorf("%s: type %v, want %v", tt.name, mf.GetType(), tt.typ)
		}
		if help := mf.GetHelp(); len(help) < 15 || strings.Contains(help, tt.name) {
			t.Errorf("%s: HELP %q is not a description", tt.name, help)
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.labels) {
				t.Errorf("%s: labels %v, want %v", tt.name, got, tt.labels)
				break
			}
		}
	}
	// Bounded labels everywhere.
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "user", "username", "client_id", "client", "ip", "client_ip", "token":
					t.Errorf("%s has an unbounded label %s", name, l.GetName())
				}
			}
		}
	}
	// Checks on both front ends, all three decisions, were counted and
	// timed.
	seen := map[string]float64{}
	for _, m := range mfs["passgate_checks_total"].GetMetric() {
		var fe, dec string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "frontend":
				fe = l.GetValue()
			case "decision":
				dec = l.GetValue()
			}
		}
		seen[fe+"/"+dec] += m.GetCounter().GetValue()
	}
	for _, k := range []string{"envoy_grpc/allow", "envoy_grpc/deny", "http/allow", "http/deny"} {
		if seen[k] < 2 && strings.HasSuffix(k, "allow") || seen[k] < 1 {
			t.Errorf("checks_total %s = %v", k, seen[k])
		}
	}
	if _, ok := seen["http/error"]; !ok {
		t.Error("the error decision is not pre-created (dashboards would see gaps)")
	}
	for _, m := range mfs["passgate_check_duration_seconds"].GetMetric() {
		// The built-in proxy's series exist from the start (no gaps) but
		// this server runs without --upstream.
		if labelValue(m, "frontend") == "proxy" {
			continue
		}
		if m.GetHistogram().GetSampleCount() < 4 {
			t.Errorf("check latency histogram %v has %d samples", m.GetLabel(), m.GetHistogram().GetSampleCount())
		}
	}
	for _, name := range []string{"passgate_store_up", "passgate_ready"} {
		if ms := mfs[name].GetMetric(); len(ms) != 1 || ms[0].GetGauge().GetValue() != 1 {
			t.Errorf("%s = %v on a serving replica, want 1", name, ms)
		}
	}
	if v := sum(mfs["passgate_check_cache_hits_total"]); v < 1 {
		t.Errorf("cache hits %v after a repeated check", v)
	}
	// The public listener has no /metrics.
	resp, err := srv.HTTPClient.Get(srv.URL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404", resp.StatusCode)
	}
}

func sum(mf *dto.MetricFamily) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		v += m.GetCounter().GetValue()
	}
	return v
}

// metricRE finds metric names in PromQL; selectorRE finds label matchers
// with = in selectors.
var (
	metricRE   = regexp.MustCompile(`\b((?:passgate|go|process)_[a-zA-Z0-9_]+)\b`)
	selectorRE = regexp.MustCompile(`\b((?:passgate|go|process)_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"`)
	// upRE finds Prometheus's own per-target series, which the
	// passgate-down alert reads since a dead passgate exposes nothing.
	upRE = regexp.MustCompile(`\bup\{job="[^"]+"\}`)
)

// checkExpr verifies that every metric an expression queries exists in
// the scrape (histogram series by their family), that every equality
// matcher names a label value passgate exposes (the job label aside, which
// Prometheus adds), and that parentheses and braces balance.
func checkExpr(t *testing.T, where, expr string, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	for _, p := range exprProblems(expr, mfs) {
		t.Errorf("%s: %s", where, p)
	}
}

func exprProblems(expr string, mfs map[string]*dto.MetricFamily) []string {
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	family := func(name string) *dto.MetricFamily {
		if mf := mfs[name]; mf != nil {
			return mf
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && mfs[base].GetType() == dto.MetricType_HISTOGRAM {
				return mfs[base]
			}
		}
		return nil
	}
	names := metricRE.FindAllStringSubmatch(expr, -1)
	if len(names) == 0 && !upRE.MatchString(expr) {
		errorf("expression queries no passgate metric: %s", expr)
	}
	for _, m := range names {
		if family(m[1]) == nil {
			errorf("metric %s is not in passgate's registry", m[1])
		}
	}
	for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
		mf := family(sel[1])
		if mf == nil {
			continue
		}
		for _, mt := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
			label, op, value := mt[1], mt[2], mt[3]
			if label == "job" || label == "instance" {
				continue
			}
			found, hasLabel := false, false
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label {
						hasLabel = true
						found = found || l.GetValue() == value
					}
				}
			}
			if !hasLabel || (op == "=" && !found) {
				errorf("%s{%s%s%q} matches no series passgate exposes", sel[1], label, op, value)
			}
		}
	}
	depth := map[rune]int{}
	for _, r := range expr {
		switch r {
		case '(', '{', '[':
			depth[r]++
		case ')':
			depth['(']--
		case '}':
			depth['{']--
		case ']':
			depth['[']--
		}
	}
	for r, d := range depth {
		if d != 0 {
			errorf("unbalanced %q in %s", r, expr)
		}
	}
	return problems
}

// TestOperatorsKit validates deploy/grafana-dashboard.json and
// deploy/prometheus-alerts.yml against the registry of the real binary:
// the dashboard parses and has the panels issue 6 asks for, the alert
// rules have the fields Prometheus requires, and every metric and label
// value either queries exists.
func TestOperatorsKit(t *testing.T) {
	_, mfs := metricsServer(t)
	root, err := e2etest.ModuleRoot()
	must(t, "module root", err)

	// The dashboard.
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana-dashboard.json"))
	must(t, "read dashboard", err)
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, want := range []string{"job", "instance"} {
		if !slices.Contains(vars, want) {
			t.Errorf("dashboard has no $%s variable (have %v)", want, vars)
		}
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard lacks a title, uid or panels")
	}
	ids := map[int]bool{}
	var titles []string
	all := ""
	for _, p := range dash.Panels {
		if ids[p.ID] || p.Type == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: duplicate id, no type or no targets", p.Title)
		}
		ids[p.ID] = true
		titles = append(titles, strings.ToLower(p.Title))
		for _, tg := range p.Targets {
			checkExpr(t, "dashboard panel "+p.Title, tg.Expr, mfs)
			for _, sel := range unfilteredSelectors(tg.Expr) {
				t.Errorf("dashboard panel %q: %s is not filtered by $job and $instance", p.Title, sel)
			}
			all += tg.Expr + "\n"
		}
	}
	for _, want := range []string{"logins", "failures", "lockouts", "checks by decision", "check latency", "cache hit ratio"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("dashboard has no %q panel (have %q)", want, titles)
		}
	}
	for _, want := range []string{`histogram_quantile(0.99`, `passgate_check_cache_hits_total`, `event="account_locked"`, `sum by (decision`} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard queries lack %s", want)
		}
	}

	// The alert rules.
	raw, err = os.ReadFile(filepath.Join(root, "deploy", "prometheus-alerts.yml"))
	must(t, "read alerts", err)
	var rules struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert       string            `json:"alert"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	must(t, "read operations.md", err)
	anchors := markdownAnchors(string(ops))
	var alerts []string
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Record != "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("rule %q: an alert needs alert and expr", r.Alert)
			}
			if !model.LegacyValidation.IsValidMetricName(r.Alert) {
				t.Errorf("alert name %q is not a valid identifier", r.Alert)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("rule %q: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q: needs labels.severity and annotations summary and description", r.Alert)
			}
			checkExpr(t, "alert "+r.Alert, r.Expr, mfs)
			if anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase); !ok || !anchors[anchor] {
				t.Errorf("rule %q: runbook_url %q is not %s followed by an anchor of docs/operations.md", r.Alert, r.Annotations["runbook_url"], runbookBase)
			}
		}
	}
	for _, want := range []string{"PassgateBruteForceInProgress", "PassgateCheckErrors", "PassgateRefreshTokenReuse",
		"PassgateDown", "PassgateStoreUnreachable", "PassgateTokenEndpointErrors"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s (have %v)", want, alerts)
		}
	}
}

// runbookBase is where every alert's runbook_url points, followed by the
// anchor of a section of docs/operations.md.
const runbookBase = "https://github.com/passgate/passgate/blob/main/docs/operations.md#"

// markdownAnchors returns the anchors GitHub gives the headings of a
// Markdown document: lowercased, punctuation other than - and _ dropped,
// spaces turned into hyphens.
func markdownAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

// unfilteredSelectors returns the metric selectors of a dashboard query
// that do not filter on the dashboard's $job and $instance variables.
func unfilteredSelectors(expr string) []string {
	var bad []string
	for _, loc := range metricRE.FindAllStringIndex(expr, -1) {
		sel := expr[loc[0]:loc[1]]
		rest := expr[loc[1]:]
		if !strings.HasPrefix(rest, "{") {
			bad = append(bad, sel)
			continue
		}
		inner := rest[1:strings.IndexByte(rest, '}')]
		if !strings.Contains(inner, `job=~"$job"`) || !strings.Contains(inner, `instance=~"$instance"`) {
			bad = append(bad, sel+"{"+inner+"}")
		}
	}
	return bad
}

// TestCheckExprCatchesMistakes: the validator above fails on an unknown
// metric and an unknown label value, so TestOperatorsKit can fail.
func TestCheckExprCatchesMistakes(t *testing.T) {
	mfs := map[string]*dto.MetricFamily{
		"passgate_auth_events_total": {
			Name: ptr("passgate_auth_events_total"), Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: ptr("event"), Value: ptr("login_failure")}}}},
		},
	}
	for _, expr := range []string{
		`rate(passgate_logins_total[5m])`,
		`rate(passgate_auth_events_total{event="login_failed"}[5m])`,
		`rate(passgate_auth_events_total{evnt="login_failure"}[5m])`,
		`sum(rate(passgate_auth_events_total[5m])`,
	} {
		if len(exprProblems(expr, mfs)) == 0 {
			t.Errorf("exprProblems accepted %s", expr)
		}
	}
	if p := exprProblems(`sum(rate(passgate_auth_events_total{event="login_failure",job=~".*"}[5m]))`, mfs); len(p) != 0 {
		t.Errorf("exprProblems rejected a good expression: %v", p)
	}
	for expr, want := range map[string]int{
		`sum(rate(passgate_auth_events_total[5m]))`:                                    1,
		`sum(rate(passgate_auth_events_total{job=~"$job"}[5m]))`:                       1,
		`sum(rate(passgate_auth_events_total{job=~"$job",instance=~"$instance"}[5m]))`: 0,
	} {
		if got := len(unfilteredSelectors(expr)); got != want {
			t.Errorf("unfilteredSelectors(%s) found %d, want %d", expr, got, want)
		}
	}
	anchors := markdownAnchors("# Operating passgate: faults\n```sh\n# not a heading\n```\n### PassgateDown\n")
	if !anchors["operating-passgate-faults"] || !anchors["passgatedown"] || anchors["not-a-heading"] {
		t.Errorf("markdownAnchors = %v", anchors)
	}
}

func ptr[T any](v T) *T { return &v }

// labelValue is the value of m's label name, or "".
func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
