package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// TestSmokeBuiltInProxy runs the built-in proxy target briefly through real
// nginx: passgate serve --upstream against nginx asking the same passgate
// with auth_request, in front of the same upstream. It asserts that both
// sides answered every request as expected (a denial or an upstream error
// counts as an error), never how fast.
func TestSmokeBuiltInProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs passgate and nginx")
	}
	ngx := e2etest.NeedTool(t, "nginx")
	bin := e2etest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-passgate", bin, "-smoke", "-ref-inprocess", "-nginx", ngx,
		"-scenarios", "nginx-hit,proxy-hit", "-flood-concurrency", "0", "-rss-tokens", ""}, &stdout, &stderr)
	t.Log(stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
	}
	var row string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(l, "built-in proxy") && strings.HasPrefix(l, "sqlite ") {
			row = l
		}
	}
	if row == "" {
		t.Fatalf("no built-in proxy row in the results:\n%s", stdout.String())
	}
	// Each phase line names its errors (unexpected statuses included), on
	// both sides.
	if strings.Contains(stdout.String(), "errors=") {
		t.Errorf("unexpected answers:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), "built-in proxy, cache hit (reference: nginx + passgate auth_request) ref") {
		t.Errorf("the nginx side of the built-in proxy target did not run:\n%s", stdout.String())
	}
}
