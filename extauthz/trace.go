package extauthz

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName names the tracer of the check's spans.
const InstrumentationName = "github.com/passgate/passgate/extauthz"

// The attributes of a check span.
const (
	attrDecision = attribute.Key("passgate.check.decision") // allow, deny, error
	attrReason   = attribute.Key("passgate.check.reason")   // Reason.String
	attrResource = attribute.Key("passgate.check.resource") // the resource URL of a denial
	attrCache    = attribute.Key("passgate.check.cache")    // cacheHit, cacheStore or cacheNone
)

// Where a check's credential was judged, the passgate.check.cache
// attribute.
var (
	cacheHit   = attrCache.String("hit")   // from the token cache (positive or negative)
	cacheStore = attrCache.String("store") // looked up in the store (its span is a child)
	cacheNone  = attrCache.String("none")  // no credential to look up
)

// checkTraced is Check as a span "passgate.check": lookup overwrites the
// cache attribute when the credential is looked up, and the decision and
// reason are set when it is made. A store failure is the span's error.
func (c *Checker) checkTraced(ctx context.Context, r Request) (Decision, error) {
	ctx, span := c.tracer.Start(ctx, "passgate.check", trace.WithAttributes(cacheNone))
	defer span.End()
	d, err := c.check(ctx, r)
	span.SetAttributes(attrDecision.String(d.Reason.label()), attrReason.String(d.Reason.String()))
	if d.resource != "" {
		span.SetAttributes(attrResource.String(d.resource))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "token store unavailable")
	}
	return d, err
}

// traceCache sets the cache attribute of the check span in ctx.
func traceCache(ctx context.Context, kv attribute.KeyValue) {
	trace.SpanFromContext(ctx).SetAttributes(kv)
}
