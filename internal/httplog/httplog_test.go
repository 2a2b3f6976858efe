package httplog

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"

	"github.com/google/go-cmp/cmp"
)

// syncBuffer is the harness's locked buffer with a JSON-lines reader.
type syncBuffer struct{ proc.Buffer }

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	out, err := proc.JSONLines(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newServer serves a small mux through Handler and a logger whose
// ContextHandler adds request IDs to the handlers' own lines.
func newServer(t *testing.T, level slog.Level) (*httptest.Server, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	logger := slog.New(ContextHandler(slog.NewJSONHandler(io.MultiWriter(buf, t.Output()), &slog.HandlerOptions{Level: level})))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "handler line")
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant"}`)
	})
	mux.HandleFunc("GET /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login", http.StatusFound)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the recorder: %v", err)
		}
	})
	h := Handler(Config{Logger: logger, QuietPrefixes: []string{"/healthz"}}, mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, buf
}

func TestRequestLine(t *testing.T) {
	srv, buf := newServer(t, slog.LevelInfo)
	const secret = "pgr_SECRETREFRESHTOKEN"
	req, _ := http.NewRequest("POST", srv.URL+"/oauth/token?access_token=pga_QUERYSECRET", strings.NewReader("grant_type=refresh_token&refresh_token="+secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Basic c2VjcmV0OnNlY3JldA==")
	req.Header.Set("Cookie", "passgate_session=pgs_COOKIESECRET")
	req.Header.Set("User-Agent", "httplog-test/1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	id := resp.Header.Get(Header)
	if len(id) != 16 {
		t.Errorf("generated request ID %q, want 16 hex digits", id)
	}
	lines := buf.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want the handler's and the request's:\n%s", len(lines), buf)
	}
	if lines[0]["request_id"] != id || lines[0]["msg"] != "handler line" {
		t.Errorf("handler line %v lacks request_id %q", lines[0], id)
	}
	got := lines[1]
	if d, ok := got["duration_seconds"].(float64); !ok || d < 0 || d > 10 {
		t.Errorf("duration_seconds %v", got["duration_seconds"])
	}
	for _, k := range []string{"time", "duration_seconds"} {
		delete(got, k)
	}
	want := map[string]any{
		"level": "INFO", "msg": "http request", "request_id": id, "method": "POST", "route": "POST /oauth/token",
		"status": float64(400), "bytes": float64(len(`{"error":"invalid_grant"}`)), "client_ip": "127.0.0.1", "user_agent": "httplog-test/1",
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("request line (-got +want):\n%s", d)
	}
	for _, s := range []string{"pgr_", "pga_", "pgs_", "c2VjcmV0", "access_token", "refresh_token"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("log contains %q (query, body or a header)", s)
		}
	}
}

func TestIncomingRequestID(t *testing.T) {
	srv, buf := newServer(t, slog.LevelInfo)
	tests := []struct {
		name, in string
		kept     bool
	}{
		{"envoy uuid", "0f8b1c9e-7a2d-4c1e-9b3a-2f6d8e4c1a7b", true},
		{"dotted", "req.42:a_b", true},
		{"empty", "", false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
		{"newline", "a\nb", false},
		{"too long", strings.Repeat("a", 129), false},
		{"longest", strings.Repeat("a", 128), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/oauth/authorize", nil)
			if tt.in != "" {
				req.Header[Header] = []string{tt.in}
			}
			resp, err := (&http.Transport{}).RoundTrip(req)
			if err != nil {
				if tt.name == "newline" {
					return // the client refuses to send it; nothing to test
				}
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get(Header)
			if (got == tt.in) != tt.kept || got == "" || !ValidID(got) {
				t.Errorf("incoming %q: response ID %q, kept=%v", tt.in, got, tt.kept)
			}
		})
	}
	if strings.Contains(buf.String(), `a\"b`) {
		t.Error("a malformed request ID reached the log")
	}
}

func TestLevels(t *testing.T) {
	get := func(srv *httptest.Server, path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// At info: quiet routes are not logged, server errors are (at warn),
	// unknown paths are logged with a bounded route.
	srv, buf := newServer(t, slog.LevelInfo)
	get(srv, "/healthz")
	get(srv, "/boom")
	get(srv, "/nope?x=secret")
	get(srv, "/stream")
	var got []string
	for _, l := range buf.lines(t) {
		got = append(got, l["level"].(string)+" "+l["route"].(string)+" "+strings.TrimSuffix(strings.TrimSuffix(l["msg"].(string), "http request"), " "))
	}
	want := []string{"WARN GET /boom ", "INFO unmatched ", "INFO GET /stream "}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("lines at info (-got +want):\n%s", d)
	}
	if strings.Contains(buf.String(), "secret") || strings.Contains(buf.String(), "/nope") {
		t.Error("the unmatched path or its query was logged")
	}
	// At debug the quiet route appears too.
	srv, buf = newServer(t, slog.LevelDebug)
	get(srv, "/healthz")
	if l := buf.lines(t); len(l) != 1 || l[0]["level"] != "DEBUG" || l[0]["route"] != "GET /healthz" {
		t.Errorf("quiet route at debug: %v", l)
	}
	// At error nothing is logged, and the ID is still set.
	srv, buf = newServer(t, slog.LevelError)
	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if buf.String() != "" || resp.Header.Get(Header) == "" {
		t.Errorf("at error level: log %q, id %q", buf, resp.Header.Get(Header))
	}
}

func TestPanicIsLogged(t *testing.T) {
	buf := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(buf, nil))
	h := Handler(Config{Logger: logger, Now: func() time.Time { return time.Unix(0, 0) }}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if recover() != http.ErrAbortHandler {
				t.Error("the panic did not propagate")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	}()
	if l := buf.lines(t); len(l) != 1 || l[0]["status"] != float64(500) || l[0]["duration_seconds"] != float64(0) {
		t.Errorf("panic line: %v", l)
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"abc", "", "a b", "0f8b1c9e-7a2d-4c1e-9b3a-2f6d8e4c1a7b", "x\r\ny", `"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !ValidID(id) {
			return
		}
		// An accepted ID is printable, quote-free and bounded, so it can
		// neither break a text log line nor a JSON one.
		if len(id) > maxIDLen || strings.ContainsAny(id, " \"'\\\r\n\t=") {
			t.Fatalf("ValidID accepted %q", id)
		}
		b, _ := json.Marshal(id)
		if string(b) != `"`+id+`"` {
			t.Fatalf("ValidID accepted %q which JSON escapes", id)
		}
	})
}
