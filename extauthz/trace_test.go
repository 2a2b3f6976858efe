package extauthz

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/passgate/passgate/store/tracestore"
)

// parentContext is a context carrying a remote span, as a traceparent
// header from the proxy would give.
func parentContext(t testing.TB) (context.Context, trace.SpanContext) {
	t.Helper()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(context.Background(), sc), sc
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// TestCheckSpans: with a TracerProvider, each check is a passgate.check
// span, a child of the caller's span, saying whether the credential came
// from the cache or the store (whose traced lookup is its child), and the
// decision; without one, nothing is recorded.
func TestCheckSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	db := openSQLite(t)
	c := startChecker(t, Config{Store: tracestore.New(db, tp), TracerProvider: tp})
	tok := mint(t, db, mintOpts{})
	ctx, parent := parentContext(t)

	type span struct {
		Name, Parent string
		Attrs        map[string]string
	}
	check := func(r Request) []span {
		before := len(rec.Ended())
		if _, err := c.Check(ctx, r); err != nil {
			t.Fatal(err)
		}
		var got []span
		for _, s := range rec.Ended()[before:] {
			if s.SpanContext().TraceID() != parent.TraceID() {
				t.Errorf("span %s has trace %s, want the caller's %s", s.Name(), s.SpanContext().TraceID(), parent.TraceID())
			}
			p := "caller"
			if s.Parent().SpanID() != parent.SpanID() {
				p = "other"
			}
			got = append(got, span{s.Name(), p, spanAttrs(s)})
		}
		return got
	}
	store := map[string]string{"passgate.check.cache": "store", "passgate.check.decision": "allow", "passgate.check.reason": "token"}
	// First check: a store lookup, traced as a child of the check.
	got := check(bearer(tok))
	want := []span{{"store.LookupToken", "other", map[string]string{}}, {"passgate.check", "caller", store}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("store lookup spans (-got +want):\n%s", diff)
	}
	// Second: a cache hit, no store span.
	got = check(bearer(tok))
	want = []span{{"passgate.check", "caller", map[string]string{"passgate.check.cache": "hit", "passgate.check.decision": "allow", "passgate.check.reason": "token"}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("cache hit spans (-got +want):\n%s", diff)
	}
	// A denial with a malformed credential: nothing looked up.
	got = check(bearer(""))
	want = []span{{"passgate.check", "caller", map[string]string{"passgate.check.cache": "none", "passgate.check.decision": "deny",
		"passgate.check.reason": "malformed", "passgate.check.resource": mcpURL}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("denial spans (-got +want):\n%s", diff)
	}

	// No TracerProvider: no span, even with a recording provider elsewhere.
	plain := startChecker(t, Config{Store: db})
	before := len(rec.Ended())
	plain.HTTPHandler(nil).ServeHTTP(httptest.NewRecorder(), nginxReq(tok))
	if n := len(rec.Ended()) - before; n != 0 {
		t.Errorf("a Checker without a TracerProvider recorded %d spans", n)
	}
}
