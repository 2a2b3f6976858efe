// Command passgate is a password-based OAuth 2.1 authorization server for
// MCP servers, and the check that Envoy (ext_authz gRPC) or nginx
// (auth_request) asks on every request to them.
//
// Usage: passgate serve | user | client | token | apikey | session | audit |
// hash-password | migrate | healthcheck | version. Run `passgate help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv, environ: os.Environ})
	stop()
	os.Exit(code)
}
