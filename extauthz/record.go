package extauthz

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// frontendLogNames name the front ends in the denial log, finer than the
// metrics' frontend label: the proxy family of each HTTP check path, and
// grpc for Envoy's ext_authz gRPC service.
var frontendLogNames = [...]string{
	familyNginx:        "nginx",
	familyForwardAuth:  "forward-auth",
	familyIngressNginx: "ingress-nginx",
	familyEnvoy:        "envoy-http",
}

const (
	grpcLogName  = "grpc"
	proxyLogName = "proxy" // the built-in reverse proxy (CheckReceived)
)

// record is where every front end reports a decided check: it counts it in
// the metrics and, at debug level, logs a denial with why it was denied.
// name is the front end's log name; r is the request as the front end read
// it (partly filled when the proxy's report was refused).
func (c *Checker) record(ctx context.Context, f frontend, name string, r Request, d Decision, start time.Time) {
	c.metrics.observe(f, d.Reason, time.Since(start).Seconds())
	if !d.Allow && c.logger.Enabled(ctx, slog.LevelDebug) {
		c.logDenial(ctx, name, r, d)
	}
}

// logDenial logs a denied check at debug level: the front end, the
// resource and the reason, the scope rule when one denied it, and where
// the request was going. Never a credential: no header is logged, and the
// path goes without its query, where a client may have put a token.
// Strings are cloned because a front end's request may alias buffers that
// are reused once the check returns, and a handler may keep the record.
func (c *Checker) logDenial(ctx context.Context, name string, r Request, d Decision) {
	path, _, _ := strings.Cut(r.Path, "?")
	attrs := []slog.Attr{
		slog.String("frontend", name),
		slog.String("reason", d.Reason.String()),
		slog.Int("status", d.Status),
		slog.String("resource", d.resource),
		slog.String("method", strings.Clone(r.Method)),
		slog.String("host", strings.Clone(r.Host)),
		slog.String("path", strings.Clone(path)),
		slog.String("source", strings.Clone(r.SourceAddress)),
	}
	if d.rule != "" {
		attrs = append(attrs, slog.String("rule", d.rule))
	}
	c.logger.LogAttrs(ctx, slog.LevelDebug, "check denied", attrs...)
}
