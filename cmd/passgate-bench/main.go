// Command passgate-bench measures passgate's proxy checks against a no-op
// reference that allows everything without looking, on loopback and bounded
// in time (issue 9).
//
// It starts the passgate binary as a subprocess (SQLite and PostgreSQL
// variants) on a store it seeded itself with N live access tokens, starts the
// reference (an Envoy ext_authz v3 gRPC server and an HTTP handler that
// answer "allow"; by default in a subprocess of this same binary so that it
// runs in its own Go runtime like passgate, with -ref-inprocess in this
// process), and drives both with its own closed-loop load generator at a
// fixed concurrency for a fixed duration, alternating reference and passgate
// phases within one run. HTTP load comes from wrk when it is installed
// (-generator), gRPC load from pre-encoded requests (grpcraw.go); every
// phase records the generator's own CPU. Scenarios: gRPC and HTTP check on
// a cache hit (also against a reference that sends passgate's identity
// headers), a cache miss (every request a different valid token) and
// invalid tokens; the checks with a 50-rule access policy; real nginx
// auth_request in front of passgate versus in front of the reference; the
// built-in proxy versus nginx + passgate; check latency during a flood of
// wrong-password logins; passgate's resident memory with 100k and 1M
// cached tokens; and growth: start-up, miss latency, RSS and store size
// at 10k to 1M live tokens, and the cleanup of 1M expired tokens.
//
// It prints a table and writes it as Markdown (-out), replacing only the
// generated part of an existing file so that notes written around it stay.
//
// Usage:
//
//	passgate-bench -passgate ./passgate [-quick] [-out docs/benchmarks.md]
//	passgate-bench reference -grpc-listen 127.0.0.1:0 -http-listen 127.0.0.1:0
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(os.Stderr, "passgate-bench:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "passgate-bench:", err)
		os.Exit(1)
	}
}

// run dispatches to the reference server or the benchmark.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "reference" {
		return cmdReference(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	return bench(ctx, cfg, stdout, stderr)
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
