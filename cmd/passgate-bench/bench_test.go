package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/internal/token"
)

func TestMain(m *testing.M) { e2etest.RunMain(m) }

// TestSmoke runs the whole harness briefly against SQLite: it exercises
// seeding, passgate as a subprocess, every scenario but nginx, the flood and
// the memory measurement, and the Markdown. It asserts what ran and what
// the answers were, never how fast: numbers from a loaded CI machine mean
// nothing.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs passgate")
	}
	bin := e2etest.Binary(t)
	out := filepath.Join(t.TempDir(), "benchmarks.md")
	// Text around the generated section must survive.
	if err := os.WriteFile(out, []byte("# Title\n\nintro\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nanalysis\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-passgate", bin, "-smoke", "-ref-inprocess", "-out", out, "-label", "go test"}, &stdout, &stderr)
	t.Log(stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, stderr.String())
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := string(md)
	for _, want := range []string{
		"# Title\n\nintro\n\n" + beginMarker, endMarker + "\n\nanalysis\n",
		"| sqlite | gRPC check, cache hit |", "| sqlite | HTTP check, cache hit |",
		"| sqlite | gRPC check, cache miss |", "| sqlite | HTTP check, cache miss |",
		"| sqlite | gRPC check, invalid token |", "| sqlite | HTTP check, invalid token |",
		"### Check latency during a login flood", "### Resident memory", "| sqlite | 1000 |",
		"- Command: `go test`",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, got)
		}
	}
	// The policy rows are also measured against the reference that sends
	// passgate's identity headers: one row in each table.
	for _, row := range []string{"| sqlite | gRPC check, cache hit, 50-rule policy |", "| sqlite | HTTP check, cache hit, 50-rule policy |"} {
		if n := strings.Count(got, row); n != 2 {
			t.Errorf("%q appears %d times, want 2 (checks table and identity-header table):\n%s", row, n, got)
		}
	}
	if strings.Contains(got, "\nold\n") {
		t.Errorf("the old generated section survived:\n%s", got)
	}
	// Every measured request got the expected decision: a hit or miss that
	// passgate denied, or an invalid token it allowed, is an error.
	if strings.Contains(got, "errors)") {
		t.Errorf("unexpected decisions:\n%s", got)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    func(*Config) any
		wantVal any
	}{
		{name: "defaults", args: []string{"-passgate", "x", "-nginx", "off"},
			want: func(c *Config) any {
				return []any{c.Duration, c.Rounds, c.Backends, c.RSSTokens, c.Nginx, c.GrowthTokens, c.CleanupTokens}
			},
			wantVal: []any{5 * time.Second, 2, []string{"sqlite", "postgres"}, []int{100_000, 1_000_000}, "",
				[]int{10_000, 100_000, 1_000_000, 10_000_000}, 1_000_000}},
		{name: "quick preset", args: []string{"-passgate", "x", "-quick"},
			want:    func(c *Config) any { return []any{c.Duration, c.Rounds, c.RSSTokens} },
			wantVal: []any{2 * time.Second, 1, []int{100_000}}},
		{name: "explicit flag beats preset", args: []string{"-passgate", "x", "-quick", "-duration", "3s"},
			want:    func(c *Config) any { return c.Duration },
			wantVal: 3 * time.Second},
		{name: "smoke preset", args: []string{"-passgate", "x", "-smoke"},
			want:    func(c *Config) any { return []any{c.Backends, c.Nginx} },
			wantVal: []any{[]string{"sqlite"}, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want(c), tt.wantVal); diff != "" {
				t.Errorf("(-got +want)\n%s", diff)
			}
		})
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "passgate required", args: nil, wantErr: "-passgate is required"},
		{name: "unknown backend", args: []string{"-passgate", "x", "-backends", "mysql"}, wantErr: `unknown backend "mysql"`},
		{name: "rss must ascend", args: []string{"-passgate", "x", "-rss-tokens", "10,5"}, wantErr: "must ascend"},
		{name: "quick and smoke", args: []string{"-passgate", "x", "-quick", "-smoke"}, wantErr: "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, new(bytes.Buffer))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriteMarkdownRefusesUnmarkedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := os.WriteFile(path, []byte("hand-written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := &results{cfg: &Config{Duration: time.Second, Rounds: 1, Concurrency: 1, GRPCConns: 1}}
	if err := writeMarkdown(path, res); err == nil {
		t.Fatal("overwrote a file without markers")
	}
	b, _ := os.ReadFile(path)
	if string(b) != "hand-written\n" {
		t.Errorf("file changed: %q", b)
	}
}

func TestPhaseQuantile(t *testing.T) {
	p := phase{lat: []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	got := []time.Duration{p.quantile(.5), p.quantile(.99), p.quantile(0)}
	if diff := cmp.Diff(got, []time.Duration{5, 10, 1}); diff != "" {
		t.Errorf("(-got +want)\n%s", diff)
	}
}

func TestInvalidTokensAreWellFormedAndDistinct(t *testing.T) {
	src := newInvalidTokens(2)
	seen := map[string]bool{}
	for w := range 2 {
		for range 100 {
			tok, _ := src.next(w)
			if !token.HasPrefix(tok, token.PrefixAccess) {
				t.Fatalf("token %q is not shaped like an access token", tok)
			}
			if seen[tok] {
				t.Fatalf("duplicate %q", tok)
			}
			seen[tok] = true
		}
	}
}

// TestParseWrk reads wrk's --latency report: counts, wrong-class answers,
// socket errors and the two quantiles the table shows.
func TestParseWrk(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:1234/_passgate/check/nginx
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.35us  401.22us   9.87ms   91.02%
    Req/Sec    13.01k     1.02k   15.30k    70.00%
  Latency Distribution
     50%  520.00us
     75%  700.10us
     90%    1.01ms
     99%    2.25ms
  51880 requests in 2.00s, 5.39MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  25940.00
Transfer/sec:      2.70MB
`
	p, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.n != 51880 || p.errs != 7 || p.sockErrs != 3 || p.elapsed != 2*time.Second || p.p50 != 520*time.Microsecond || p.p99 != 2250*time.Microsecond {
		t.Errorf("parsed %+v", p)
	}
	if p.quantile(.5) != p.p50 || p.quantile(.99) != p.p99 {
		t.Errorf("quantiles %v %v", p.quantile(.5), p.quantile(.99))
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("wrk's failure parsed as a result")
	}
}

// TestTokenSet: a token is the same every time it is derived from its
// index, has passgate's access-token form, and differs from its
// neighbours; sample picks distinct indexes inside its range.
func TestTokenSet(t *testing.T) {
	s := newTokenSet()
	first := s.first(3)
	for i, tok := range first {
		if tok != s.at(i) {
			t.Errorf("at(%d) = %q, first gave %q", i, s.at(i), tok)
		}
		if !token.HasPrefix(tok, token.PrefixAccess) {
			t.Errorf("token %d = %q: not an access token", i, tok)
		}
	}
	if first[0] == first[1] || first[1] == first[2] {
		t.Errorf("neighbouring tokens equal: %q", first)
	}
	if newTokenSet().at(0) == first[0] {
		t.Errorf("two runs derived the same token 0")
	}
	for _, tt := range []struct{ lo, hi, k, want int }{{1, 10_000_000, 3000, 3000}, {1, 50, 100, 49}, {5, 6, 1, 1}} {
		got := sample(tt.lo, tt.hi, tt.k)
		seen := map[int]bool{}
		for _, v := range got {
			if v < tt.lo || v >= tt.hi || seen[v] {
				t.Fatalf("sample(%d, %d, %d): %d out of range or repeated", tt.lo, tt.hi, tt.k, v)
			}
			seen[v] = true
		}
		if len(got) != tt.want {
			t.Errorf("sample(%d, %d, %d) picked %d, want %d", tt.lo, tt.hi, tt.k, len(got), tt.want)
		}
	}
}
