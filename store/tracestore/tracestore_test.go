package tracestore

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/sqlite"
	"github.com/passgate/passgate/store/storetest"
)

// TestConformance: the traced store passes the storage contract's suite on
// SQLite, so the decorator changes no answer.
func TestConformance(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "passgate.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return New(db, tp)
	})
}

// TestEveryMethodTraced calls every context-taking method of store.Store
// on a Store wrapping nothing: a traced method starts its span, then
// panics calling the nil store and ends the span while unwinding; a
// method left to the embedded interface panics without a span. A method
// added to store.Store fails here until `go generate ./store/tracestore`.
func TestEveryMethodTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	s := New(nil, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	v := reflect.ValueOf(s)
	it := reflect.TypeFor[store.Store]()
	ctxType := reflect.TypeFor[context.Context]()
	for i := range it.NumMethod() {
		m := it.Method(i)
		if m.Type.NumIn() == 0 || m.Type.In(0) != ctxType || untraced[m.Name] {
			continue
		}
		before := len(rec.Ended())
		args := []reflect.Value{reflect.ValueOf(context.Background())}
		for j := 1; j < m.Type.NumIn(); j++ {
			args = append(args, reflect.Zero(m.Type.In(j)))
		}
		func() {
			defer func() { _ = recover() }()
			v.MethodByName(m.Name).Call(args)
		}()
		ended := rec.Ended()
		if len(ended) != before+1 || ended[len(ended)-1].Name() != "store."+m.Name {
			t.Errorf("%s is not traced: run go generate ./store/tracestore", m.Name)
		}
	}
}

// untraced mirrors gen.go's list.
var untraced = map[string]bool{"Ping": true, "Subscribe": true}

// TestGenerated: store.go is what gen.go writes from the interface today.
func TestGenerated(t *testing.T) {
	want, err := os.ReadFile("store.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// gen.go reads ../store.go and writes store.go in its working
	// directory: run it in a copy of this layout.
	src, err := os.ReadFile("../store.go")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "tracestore")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{filepath.Join(dir, "store.go"): src, filepath.Join(sub, "gen.go"): gen} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "run", "gen.go")
	cmd.Dir = sub
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(sub, "store.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("store.go is stale: run go generate ./store/tracestore")
	}
}
