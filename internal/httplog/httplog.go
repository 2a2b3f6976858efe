// Package httplog is passgate's request logging middleware: one slog line
// per HTTP request with a request ID, the route pattern that served it, the
// method, status, duration, response size and client IP, and a slog.Handler
// wrapper that adds the request ID to every log line a handler writes with
// a …Context method, so all lines of one request can be found together.
//
// What is never logged: the URL's query string and path (the route pattern
// stands in for them, so the label is bounded and a token someone put in a
// query cannot leak), request or response bodies (token, introspection and
// revocation bodies carry secrets), and headers (Authorization and Cookie
// carry secrets; only the User-Agent is kept, truncated).
package httplog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/clientip"
)

// Header is the request and response header carrying the request ID.
const Header = "X-Request-Id"

// maxIDLen bounds an incoming request ID; longer ones are replaced.
const maxIDLen = 128

// Config configures the middleware. Every field but Logger is optional.
type Config struct {
	// Logger receives one line per request. Required.
	Logger *slog.Logger
	// ClientIP returns the client address of a request (the trusted-proxy
	// logic of internal/clientip plugs in here). Optional; default:
	// clientip.Peer, the host of RemoteAddr.
	ClientIP func(*http.Request) string
	// Now is the clock for durations. Optional; default time.Now.
	Now func() time.Time
	// QuietPrefixes lists path prefixes (such as the proxy check and the
	// health endpoints, asked many times a second) whose requests are
	// logged at debug level instead of info. Optional.
	QuietPrefixes []string
}

type ctxKey struct{}

// RequestID returns the request ID the middleware put in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// WithRequestID returns ctx carrying id, for code outside an HTTP request
// (a gRPC call) that wants the same correlation in its logs.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// NewID returns a fresh random request ID (16 hex digits).
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether an incoming request ID is safe to adopt: 1 to
// 128 characters of letters, digits and - _ . : (no spaces, quotes or
// control characters that could forge log lines).
func ValidID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// Handler wraps next: it assigns the request ID (request context and the
// X-Request-Id response header) and logs the request when it completes.
// It panics if cfg.Logger is nil.
func Handler(cfg Config, next http.Handler) http.Handler {
	if cfg.Logger == nil {
		panic("httplog: Config.Logger is required")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	clientIP := cfg.ClientIP
	if clientIP == nil {
		clientIP = clientip.Peer
	}
	log := cfg.Logger
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		level := slog.LevelInfo
		for _, p := range cfg.QuietPrefixes {
			if strings.HasPrefix(r.URL.Path, p) {
				level = slog.LevelDebug
				break
			}
		}
		// A well-formed incoming ID (Envoy and most proxies set one) is
		// kept so proxy and passgate logs correlate; it is only a log
		// field, never trusted for anything else.
		id := r.Header.Get(Header)
		if !ValidID(id) {
			id = NewID()
		}
		w.Header().Set(Header, id)
		ctx := WithRequestID(r.Context(), id)
		// Nothing of this request could be logged (5xx go out at warn).
		if !log.Enabled(ctx, slog.LevelWarn) {
			r2 := r.WithContext(ctx)
			next.ServeHTTP(w, r2)
			r.Pattern = r2.Pattern
			return
		}
		start := now()
		rw := &recorder{ResponseWriter: w}
		r2 := r.WithContext(ctx)
		defer func() {
			// A panic propagates to net/http (which logs and closes the
			// connection); still log the request as a 500.
			p := recover()
			status := rw.status
			if status == 0 {
				status = http.StatusOK
				if p != nil {
					status = http.StatusInternalServerError
				}
			}
			lvl := level
			if status >= 500 {
				lvl = slog.LevelWarn
			}
			if log.Enabled(ctx, lvl) {
				route := r2.Pattern
				if route == "" {
					route = "unmatched"
				}
				ua := r.UserAgent()
				if len(ua) > 256 {
					ua = ua[:256]
				}
				log.LogAttrs(ctx, lvl, "http request",
					slog.String("method", r.Method),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Float64("duration_seconds", now().Sub(start).Seconds()),
					slog.Int64("bytes", rw.bytes),
					slog.String("client_ip", clientIP(r)),
					slog.String("user_agent", ua),
				)
			}
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rw, r2)
		// Hand the route back, as a ServeMux would have set it on r, for
		// a middleware outside this one (the tracing span's name).
		r.Pattern = r2.Pattern
	})
}

// recorder remembers the status and counts the bytes of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush supports streaming responses.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ContextHandler wraps h so that every record logged with a context that
// carries a request ID gets a request_id attribute.
func ContextHandler(h slog.Handler) slog.Handler { return contextHandler{h} }

type contextHandler struct{ slog.Handler }

func (c contextHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := RequestID(ctx); id != "" {
		rec = rec.Clone()
		rec.AddAttrs(slog.String("request_id", id))
	}
	return c.Handler.Handle(ctx, rec)
}

func (c contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{c.Handler.WithAttrs(as)}
}

func (c contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{c.Handler.WithGroup(name)}
}
