// Package tracestore wraps a store.Store so that every call that takes a
// context is an OpenTelemetry span ("store.LookupToken", ...), a child of
// the span in its context, recording the error when there is one. The
// methods are generated from the interface by gen.go.
package tracestore

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/passgate/passgate/store"
)

//go:generate go run gen.go

// InstrumentationName names the tracer of the store's spans.
const InstrumentationName = "github.com/passgate/passgate/store/tracestore"

// Store is a store.Store whose calls are traced. Ping and Subscribe, and
// Close, are not: they are the embedded store's.
type Store struct {
	store.Store
	tracer trace.Tracer
}

var _ store.Store = (*Store)(nil)

// New wraps st so that its calls are spans of tp's tracer.
func New(st store.Store, tp trace.TracerProvider) *Store {
	return &Store{Store: st, tracer: tp.Tracer(InstrumentationName)}
}

func (s *Store) start(ctx context.Context, name string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
}

// end records *err, a method's error result, on span and ends it. Not
// finding a row is an answer, not a failure.
func (s *Store) end(span trace.Span, err *error) {
	if *err != nil && !errors.Is(*err, store.ErrNotFound) {
		span.RecordError(*err)
		span.SetStatus(codes.Error, (*err).Error())
	}
	span.End()
}
