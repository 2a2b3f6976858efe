// Package tracing sets up OpenTelemetry tracing for passgate: a tracer
// provider exporting over OTLP as the standard OTEL_* variables say, the
// W3C trace context propagator (so passgate's spans continue the trace of
// the proxy's traceparent), and the HTTP and gRPC server instrumentation.
// Nothing here is global: the provider and propagator are passed to each
// instrumented component.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// ServiceName is the service.name of passgate's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const ServiceName = "passgate"

// Tracing is an OpenTelemetry tracer provider and propagator.
type Tracing struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// New returns tracing that exports spans over OTLP. The exporter is
// configured by the standard variables, read from getenv for the protocol
// and by the OTLP exporter itself for the rest:
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL ("http/protobuf", the default, or
// "grpc"), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT,
// _INSECURE, _CERTIFICATE. The sampler is OTEL_TRACES_SAMPLER (default
// parentbased_always_on: passgate records what the proxy sampled), the
// resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, batching
// OTEL_BSP_*. Nothing is sent until a span ends; an unreachable collector
// never fails a request (spans are dropped).
func New(ctx context.Context, version string, getenv func(string) string) (*Tracing, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: passgate exports http/protobuf or grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	return NewWithExporter(ctx, version, exp)
}

// NewWithExporter is New with a given exporter (tests pass an in-memory
// one).
func NewWithExporter(ctx context.Context, version string, exp sdktrace.SpanExporter) (*Tracing, error) {
	// Later sources win: the environment overrides passgate's defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.version", version),
		),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return &Tracing{
		tp:   sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)),
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// TracerProvider is the provider the instrumented components take their
// tracers from.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.tp }

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// HTTPHandler traces every request to h as a server span continuing the
// request's traceparent, except the health probes. spanName names a
// request that no ServeMux pattern routed (when one did, the span is
// named "METHOD pattern" once h returns); it must return a bounded set of
// names.
func (t *Tracing) HTTPHandler(h http.Handler, spanName func(*http.Request) string) http.Handler {
	return otelhttp.NewHandler(h, ServiceName,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(t.prop),
		// passgate's metrics are Prometheus's; no OpenTelemetry metrics.
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool {
			return r.URL.Path != "/healthz" && r.URL.Path != "/readyz"
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				// Already "METHOD /path" or just "/path".
				if strings.Contains(r.Pattern, " ") {
					return r.Pattern
				}
				return Method(r) + " " + r.Pattern
			}
			return spanName(r)
		}),
	)
}

// GRPCServerOption traces every gRPC call but the health checks as a
// server span continuing the caller's traceparent.
func (t *Tracing) GRPCServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.prop),
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))
}

// Method is r's method for a span name: one of the standard methods, or
// "HTTP" for any other (a client chooses it, and span names must stay a
// small set).
func Method(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return r.Method
	}
	return "HTTP"
}
