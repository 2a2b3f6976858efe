package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// otlpReceiver is an in-process OTLP/HTTP trace receiver: it keeps every
// span passgate exports.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Write(b)
}

// trace returns the spans of trace id (hex), waiting up to 10s for one
// named name.
func (o *otlpReceiver) trace(t *testing.T, id, name string) []*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		var got []*tracepb.Span
		found := false
		for _, s := range o.spans {
			if hex.EncodeToString(s.GetTraceId()) == id {
				got = append(got, s)
				found = found || s.GetName() == name
			}
		}
		o.mu.Unlock()
		if found || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantChildren checks that trace has a span named server whose parent is
// the caller's span, and spans named each of children below it.
func wantChildren(t *testing.T, spans []*tracepb.Span, callerSpan, server string, children ...string) {
	t.Helper()
	byID := map[string]*tracepb.Span{}
	var names []string
	for _, s := range spans {
		byID[hex.EncodeToString(s.GetSpanId())] = s
		names = append(names, s.GetName())
	}
	var root *tracepb.Span
	for _, s := range spans {
		if s.GetName() == server && hex.EncodeToString(s.GetParentSpanId()) == callerSpan {
			root = s
		}
	}
	if root == nil {
		t.Fatalf("no span %q child of the caller's span %s; spans of the trace: %q", server, callerSpan, names)
	}
	for _, want := range children {
		found := false
		for _, s := range spans {
			if s.GetName() != want {
				continue
			}
			// Walk up to the server span.
			for p := s; p != nil; p = byID[hex.EncodeToString(p.GetParentSpanId())] {
				if p == root {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("no span %q below %q; spans of the trace: %q", want, server, names)
		}
	}
}

// TestTracingContinuesTraceparent runs the binary with --tracing and an
// OTLP endpoint in the test: a check (HTTP and gRPC) and a token request
// carrying a traceparent produce spans of that trace, children of the
// caller's span, with the check's and the store's spans below them.
// Without --tracing nothing is exported.
func TestTracingContinuesTraceparent(t *testing.T) {
	var rcv otlpReceiver
	collector := httptest.NewServer(&rcv)
	t.Cleanup(collector.Close)
	env := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=50",
	}
	srv := e2etest.Start(t, e2etest.Options{Args: []string{"--tracing"}, Env: env})
	e2etest.AddUser(t, srv.OpenStore(t), "alice", "alice-password-123")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := srv.RegisterClient(t)
	tok, err := cl.Login(ctx, e2etest.NewBrowser(), "alice", "alice-password-123")
	if err != nil {
		t.Fatal(err)
	}
	const caller = "00f067aa0ba902b7"
	traceparent := func(traceID string) string { return "00-" + traceID + "-" + caller + "-01" }

	t.Run("nginx check", func(t *testing.T) {
		const id = "4bf92f3577b34da6a3ce929d0e0e4701"
		req, err := srv.CheckHTTPRequest(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Traceparent", traceparent(id))
		resp, err := srv.HTTPClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("check: %v %v", resp, err)
		}
		resp.Body.Close()
		wantChildren(t, rcv.trace(t, id, "store.LookupToken"), caller, "GET /_passgate/check/nginx", "passgate.check", "store.LookupToken")
	})
	t.Run("grpc check", func(t *testing.T) {
		const id = "4bf92f3577b34da6a3ce929d0e0e4702"
		client := authv3.NewAuthorizationClient(srv.GRPCConn())
		u, _ := url.Parse(srv.Resource)
		gctx := metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(id))
		resp, err := client.Check(gctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Scheme: u.Scheme, Host: u.Host, Path: u.Path,
				Headers: map[string]string{"authorization": "Bearer " + tok.AccessToken}}}}})
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("check: %v %v", resp, err)
		}
		// The token is cached by now: no store span.
		wantChildren(t, rcv.trace(t, id, "passgate.check"), caller, "envoy.service.auth.v3.Authorization/Check", "passgate.check")
	})
	t.Run("token endpoint", func(t *testing.T) {
		const id = "4bf92f3577b34da6a3ce929d0e0e4703"
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {cl.ClientID}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL("/oauth/token"), strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Traceparent", traceparent(id))
		resp, err := srv.HTTPClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh: %v %v", resp, err)
		}
		resp.Body.Close()
		wantChildren(t, rcv.trace(t, id, "POST /oauth/token"), caller, "POST /oauth/token", "store.RotateRefresh")
	})
	// No credential leaves in a span: not the tokens, not the password.
	rcv.mu.Lock()
	raw, _ := proto.Marshal(&tracepb.ScopeSpans{Spans: rcv.spans})
	rcv.mu.Unlock()
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken, "alice-password-123"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("an exported span contains a secret")
		}
	}
}

// TestTracingOffByDefault: without --tracing, passgate exports nothing even
// with an OTLP endpoint in its environment.
func TestTracingOffByDefault(t *testing.T) {
	var rcv otlpReceiver
	collector := httptest.NewServer(&rcv)
	t.Cleanup(collector.Close)
	srv := e2etest.Start(t, e2etest.Options{Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=50"}})
	req, err := srv.CheckHTTPRequest(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4704-00f067aa0ba902b7-01")
	if _, err := srv.HTTPClient.Do(req); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.spans) != 0 {
		t.Errorf("exported %d spans without --tracing", len(rcv.spans))
	}
}
