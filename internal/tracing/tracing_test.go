package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestNewRefusesUnknownProtocol(t *testing.T) {
	for _, proto := range []string{"http/json", "udp"} {
		getenv := func(k string) string {
			if k == "OTEL_EXPORTER_OTLP_PROTOCOL" {
				return proto
			}
			return ""
		}
		if _, err := New(context.Background(), "v1", getenv); err == nil {
			t.Errorf("protocol %q accepted", proto)
		}
	}
}

// TestHTTPHandler: a request with a traceparent is a server span of that
// trace, a child of the caller's span, named by its route or by spanName;
// health probes are not traced; OTEL_SERVICE_NAME overrides the service.
func TestHTTPHandler(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "edge-auth")
	exp := tracetest.NewInMemoryExporter()
	tr, err := NewWithExporter(context.Background(), "v1.2.3", exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/any", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	h := tr.HTTPHandler(mux, func(r *http.Request) string { return Method(r) + " unrouted" })
	for _, req := range []struct{ method, path string }{
		{"POST", "/oauth/token"}, {"GET", "/any"}, {"BREW", "/any"}, {"GET", "/nowhere"}, {"GET", "/healthz"},
	} {
		r := httptest.NewRequest(req.method, req.path, nil)
		r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if err := tr.tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
		if s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("%s: trace %s parent %s, want the traceparent's", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID())
		}
		attrs := map[string]string{}
		for _, kv := range s.Resource.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if attrs["service.name"] != "edge-auth" || attrs["service.version"] != "v1.2.3" {
			t.Errorf("%s: resource %v", s.Name, attrs)
		}
	}
	want := []string{"POST /oauth/token", "GET /any", "HTTP /any", "GET unrouted"}
	if diff := cmp.Diff(names, want); diff != "" {
		t.Errorf("span names (-got +want):\n%s", diff)
	}
}
