// Package validtest states a validator's test as two lists: the inputs it
// must accept and the inputs it must refuse. A failure names the input and
// what the validator said about it. Mentions asserts what a refusal says.
package validtest

import (
	"errors"
	"strings"
	"testing"
)

// Cases are the inputs of one validator's test.
type Cases[T any] struct {
	Accept []T // the validator returns nil for each
	Refuse []T // the validator returns an error for each
	// Err, if set, runs on every error the validator returns for an input
	// of Refuse; what it returns fails the test. For asserting the kind or
	// the text of the error (see Is).
	Err func(in T, err error) error
}

// Check calls f on every input of c and fails the test (without stopping
// it) for each input of c.Accept that f refuses, each input of c.Refuse
// that f accepts, and each error c.Err finds fault with. The messages
// begin with name: f's name, or what f is ("ValidateClientIDURL with
// loopback http").
func Check[T any](t testing.TB, name string, f func(T) error, c Cases[T]) {
	t.Helper()
	for _, in := range c.Accept {
		if err := f(in); err != nil {
			t.Errorf("%s refused %#v: %v; want accepted", name, in, err)
		}
	}
	for _, in := range c.Refuse {
		err := f(in)
		if err == nil {
			t.Errorf("%s accepted %#v; want refused", name, in)
			continue
		}
		if c.Err == nil {
			continue
		}
		if cerr := c.Err(in, err); cerr != nil {
			t.Errorf("%s refused %#v: %v; %v", name, in, err, cerr)
		}
	}
}

// Bool turns a predicate into a validator for Check: an error ("false")
// where ok reports false.
func Bool[T any](ok func(T) bool) func(T) error {
	return func(in T) error {
		if !ok(in) {
			return errors.New("false")
		}
		return nil
	}
}

// Is returns a Cases.Err that wants the error to wrap target.
func Is[T any](target error) func(T, error) error {
	return func(_ T, err error) error {
		if !errors.Is(err, target) {
			return errors.New("does not wrap " + target.Error())
		}
		return nil
	}
}

// Mentions fails the test unless err is an error whose text contains each
// of want: it stops the test when err is nil and reports each missing
// string otherwise. For errors that must name every problem at once.
func Mentions(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
