package e2etest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// update rewrites golden files instead of comparing with them:
// go test ./oauthweb/ -run Golden -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/ instead of comparing")

// unstableHeaders vary between runs or say nothing about the protocol.
var unstableHeaders = []string{"Date", "Content-Length", "X-Request-Id"}

// Transcript renders one HTTP exchange the way a reader checks it against
// the RFCs, in the style of cespare/webtest scripts: the request line and
// body (when req has GetBody, as http.NewRequest sets for a
// strings.Reader), the status, the response headers (sorted; Date,
// Content-Length and the random X-Request-Id left out) and the body, JSON
// indented. Every occurrence of each replacement's key
// (such as a test server's random issuer URL) becomes its value, so the
// transcript is the same on every run. It reads and closes resp.Body.
func Transcript(req *http.Request, resp *http.Response, replace map[string]string) (string, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL.RequestURI())
	if req.GetBody != nil {
		rb, err := req.GetBody()
		if err != nil {
			return "", fmt.Errorf("request body: %w", err)
		}
		reqBody, err := io.ReadAll(rb)
		if err != nil {
			return "", fmt.Errorf("request body: %w", err)
		}
		if len(reqBody) > 0 {
			fmt.Fprintf(&b, "Content-Type: %s\n\n%s\n", req.Header.Get("Content-Type"), reqBody)
		}
	}
	fmt.Fprintf(&b, "-> %d\n", resp.StatusCode)
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if !slices.Contains(unstableHeaders, k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	var indented bytes.Buffer
	if json.Valid(body) && json.Indent(&indented, body, "", "  ") == nil {
		body = indented.Bytes()
	}
	b.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		b.WriteString("\n")
	}
	out := b.String()
	// Longest key first, so a key that contains another wins.
	keys := make([]string, 0, len(replace))
	for k := range replace {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) })
	for _, k := range keys {
		out = strings.ReplaceAll(out, k, replace[k])
	}
	return out, nil
}

// Golden compares got with the file testdata/name of the test's package,
// and fails the test with a diff when they differ. With -update it writes
// got to the file instead.
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s differs (-got +want); if the change is intended, run with -update:\n%s", path, diff)
	}
}
