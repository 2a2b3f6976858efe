package validtest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is a testing.TB that keeps what Check reports instead of
// failing the test that runs Check.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Fatalf records the message and stops the goroutine, as testing's does.
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// run calls f with r on a goroutine of its own, which Fatalf may stop.
func (r *recorder) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

var errOdd = errors.New("odd")

func even(n int) error {
	if n%2 != 0 {
		return fmt.Errorf("check %d: %w", n, errOdd)
	}
	return nil
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name           string
		accept, refuse []int
		err            func(int, error) error
		want           []string
	}{
		{name: "all as expected", accept: []int{0, 2}, refuse: []int{1, 3}},
		{name: "accepted input refused", accept: []int{2, 3}, refuse: []int{1},
			want: []string{"even refused 3: check 3: odd; want accepted"}},
		{name: "refused input accepted", accept: []int{2}, refuse: []int{1, 4},
			want: []string{"even accepted 4; want refused"}},
		{name: "error of the kind asked for", refuse: []int{1}, err: Is[int](errOdd)},
		{name: "error of another kind", refuse: []int{1}, err: Is[int](errors.New("negative")),
			want: []string{"even refused 1: check 1: odd; does not wrap negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, "even", even, Cases[int]{Accept: tt.accept, Refuse: tt.refuse, Err: tt.err})
			if d := cmp.Diff(r.errs, tt.want); d != "" {
				t.Errorf("reports (-got +want):\n%s", d)
			}
		})
	}
}

func TestBool(t *testing.T) {
	r := &recorder{TB: t}
	Check(r, "HasPrefix", Bool(func(s string) bool { return strings.HasPrefix(s, "a") }), Cases[string]{Accept: []string{"ab", "b"}, Refuse: []string{"ba", "a"}})
	want := []string{`HasPrefix refused "b": false; want accepted`, `HasPrefix accepted "a"; want refused`}
	if d := cmp.Diff(r.errs, want); d != "" {
		t.Errorf("reports (-got +want):\n%s", d)
	}
}

func TestMentions(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{name: "all mentioned", err: errors.New(`"a" and "b" are bad`)},
		{name: "one missing", err: errors.New(`"a" is bad`),
			want: []string{`error "\"a\" is bad" does not mention "\"b\""`}},
		{name: "no error", want: []string{`no error, want one mentioning ["\"a\"" "\"b\""]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			r.run(func(tb testing.TB) { Mentions(tb, tt.err, `"a"`, `"b"`) })
			if d := cmp.Diff(r.errs, tt.want); d != "" {
				t.Errorf("reports (-got +want):\n%s", d)
			}
		})
	}
}
