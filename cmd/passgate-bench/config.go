package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
)

// Config is the benchmark's whole configuration; each field is a flag.
type Config struct {
	// Passgate is the passgate binary to run. Required.
	Passgate string
	// Out is the Markdown file to write. Optional: nothing is written when
	// empty. When the file exists and has the generated-section markers,
	// only the text between them is replaced.
	Out string
	// Backends lists the stores to run passgate on: sqlite, postgres.
	// Default both.
	Backends []string
	// PostgresURL is an administrative URL of the PostgreSQL server; the
	// benchmark creates its own database there and drops it at the end.
	// Default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	PostgresURL string
	// Nginx is the nginx binary; empty or "off" skips the nginx scenario.
	// Default: nginx from $PATH or /usr/sbin/nginx.
	Nginx string
	// Duration is the length of one measured phase. Default 5s.
	Duration time.Duration
	// Warmup runs before each scenario's first phase on each target,
	// unmeasured. Default 500ms.
	Warmup time.Duration
	// Rounds is how many reference/passgate phase pairs each scenario runs;
	// the best round of each side (by throughput) is reported. Default 2.
	Rounds int
	// Concurrency is the number of closed-loop clients. Default 16.
	Concurrency int
	// GRPCConns is the number of HTTP/2 connections the gRPC clients share
	// (Envoy opens one per worker thread). Default 2.
	GRPCConns int
	// Pool is the number of valid tokens seeded for cache misses per
	// backend. Default 400000 (wrk's HTTP misses use them up fast).
	Pool int
	// RSSTokens are the cache sizes at which passgate's resident memory is
	// measured, ascending. Default 100000,1000000. Empty skips.
	RSSTokens []int
	// RSSTimeout bounds the warm-up of each memory step. Default 5m.
	RSSTimeout time.Duration
	// RSSBackend is the backend of the memory measurement. Default sqlite.
	RSSBackend string
	// FloodConcurrency is the number of concurrent wrong-password logins.
	// Default 32; 0 skips the flood scenario.
	FloodConcurrency int
	// PolicyRules is the number of per-tool rules of the access policy
	// of the policy scenarios (grpc-policy, http-policy), run on a second
	// passgate on the first backend; the last rule decides the
	// benchmark's call, and every check of those scenarios (the
	// reference's too) carries Mcp-Method and Mcp-Name. Default 50; 0
	// skips the policy scenarios.
	PolicyRules int
	// FloodRate is the paced (open-loop) check rate whose latency is
	// compared idle and during the flood. Default 1000/s.
	FloodRate float64
	// FloodRounds is the number of idle/flood pairs; the median is
	// reported. Default 3.
	FloodRounds int
	// RefInProcess runs the reference in this process (sharing the load
	// generator's Go runtime) instead of a subprocess.
	RefInProcess bool
	// CPUProfile writes this process's CPU profile (load generator and, with
	// RefInProcess, the reference). Optional.
	CPUProfile string
	// Scenarios limits the run to these scenarios (transport-kind:
	// grpc-hit, http-miss, nginx-hit, ...). Default all.
	Scenarios []string
	// Perf records passgate's CPU with Linux perf into this directory
	// during the first passgate phase of every scenario. Optional.
	Perf string
	// Label names the run in the Markdown (e.g. the command line).
	Label string
	// Generator is the HTTP load generator: "wrk" (the wrk binary, two
	// threads), "go" (this process's net/http closed loop) or "auto" (wrk
	// when installed). gRPC load always comes from this process, with
	// requests encoded once (see rawCodec). Default auto.
	Generator string
	// Wrk is the wrk binary when it generates the HTTP load, else "".
	Wrk string
	// GrowthTokens are the live-token counts of the growth table: for
	// each, a fresh store of every backend with that many tokens, then
	// passgate's start-up time, paced check-miss latency, RSS and the
	// store's size. Ascending. Default 10000,100000,1000000,10000000.
	// Empty skips.
	GrowthTokens []int
	// PassgateArgs are extra arguments to every `passgate serve` (e.g.
	// "--check-batch-wait 0" to compare settings). Optional.
	PassgateArgs []string
	// PinPassgate and PinSelf, when set, are CPU lists (taskset -c) for
	// every passgate, and for this process and its children (the
	// reference, wrk), to show what the two processes take from each
	// other; PostgreSQL and nginx stay unpinned. Optional.
	PinPassgate, PinSelf string
	// CleanupTokens is the number of expired tokens whose cleanup
	// (store.DeleteExpired) is timed on every backend. Default 1000000;
	// 0 skips.
	CleanupTokens int
}

// profiles are the -quick and -smoke presets; explicit flags win.
var profiles = map[string]map[string]string{
	"quick": {"duration": "2s", "warmup": "300ms", "rounds": "1", "pool": "100000", "rss-tokens": "100000", "flood-rounds": "1", "rss-timeout": "40s",
		"growth-tokens": "10000,100000", "cleanup-tokens": "100000"},
	"smoke": {"duration": "250ms", "warmup": "50ms", "rounds": "1", "pool": "10000", "rss-tokens": "1000", "flood-rounds": "1",
		"backends": "sqlite", "nginx": "off", "concurrency": "4", "flood-concurrency": "4", "flood-rate": "200", "generator": "go",
		"growth-tokens": "1000", "cleanup-tokens": "1000"},
}

func parseConfig(args []string, stderr io.Writer) (*Config, error) {
	var c Config
	fs := flag.NewFlagSet("passgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Passgate, "passgate", "", "passgate binary to benchmark (required)")
	fs.StringVar(&c.Out, "out", "", "Markdown file to write (generated section only, if it has the markers)")
	backends := fs.String("backends", "sqlite,postgres", "stores to run passgate on: sqlite, postgres")
	fs.StringVar(&c.PostgresURL, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "administrative PostgreSQL URL (a database is created and dropped)")
	fs.StringVar(&c.Nginx, "nginx", "", "nginx binary (default from $PATH or /usr/sbin/nginx; off skips)")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "length of one measured phase")
	fs.DurationVar(&c.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up per scenario and target")
	fs.IntVar(&c.Rounds, "rounds", 2, "reference/passgate phase pairs per scenario (best reported)")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "closed-loop clients")
	fs.IntVar(&c.GRPCConns, "grpc-conns", 2, "HTTP/2 connections shared by the gRPC clients")
	fs.IntVar(&c.Pool, "pool", 400_000, "valid tokens seeded per backend for cache misses")
	rss := fs.String("rss-tokens", "100000,1000000", "cached token counts at which RSS is measured (empty skips)")
	fs.DurationVar(&c.RSSTimeout, "rss-timeout", 5*time.Minute, "bound on warming the cache for each memory step")
	fs.StringVar(&c.RSSBackend, "rss-backend", "sqlite", "backend of the memory measurement")
	fs.IntVar(&c.FloodConcurrency, "flood-concurrency", 32, "concurrent wrong-password logins (0 skips the flood)")
	fs.Float64Var(&c.FloodRate, "flood-rate", 1000, "paced check rate measured idle and during the flood (req/s)")
	fs.IntVar(&c.FloodRounds, "flood-rounds", 5, "idle/flood phase pairs (median reported)")
	fs.BoolVar(&c.RefInProcess, "ref-inprocess", false, "run the reference in this process instead of a subprocess")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write this process's CPU profile to the file")
	scen := fs.String("scenarios", "", "only these scenarios, e.g. grpc-hit,http-miss (default all)")
	fs.StringVar(&c.Perf, "perf", "", "record passgate with Linux perf into this directory (one file per scenario)")
	fs.StringVar(&c.Label, "label", "", "how the run was started, for the Markdown")
	fs.IntVar(&c.PolicyRules, "policy-rules", 50, "per-tool rules of the policy scenarios' access policy (0 skips them)")
	fs.StringVar(&c.PinPassgate, "pin-passgate", "", "run passgate under taskset -c with this CPU list")
	fs.StringVar(&c.PinSelf, "pin-self", "", "pin passgate-bench and its children (reference, wrk) to this CPU list")
	pgArgs := fs.String("passgate-args", "", "extra arguments to every passgate serve, space-separated")
	growth := fs.String("growth-tokens", "10000,100000,1000000,10000000", "live-token counts of the growth table, ascending (empty skips)")
	fs.IntVar(&c.CleanupTokens, "cleanup-tokens", 1_000_000, "expired tokens whose cleanup is timed (0 skips)")
	fs.StringVar(&c.Generator, "generator", "auto", "HTTP load generator: wrk, go, or auto (wrk when installed)")
	quick := fs.Bool("quick", false, "short run (about 4 minutes): 2s phases, one round, RSS at 100k, growth to 100k")
	smoke := fs.Bool("smoke", false, "a few seconds on SQLite only, for tests; numbers are meaningless")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	preset := ""
	switch {
	case *quick && *smoke:
		return nil, usageError{"-quick and -smoke exclude each other"}
	case *quick:
		preset = "quick"
	case *smoke:
		preset = "smoke"
	}
	for name, v := range profiles[preset] {
		if !given[name] {
			if err := fs.Set(name, v); err != nil {
				return nil, fmt.Errorf("preset %s: %w", preset, err)
			}
		}
	}
	c.Backends = splitList(*backends)
	c.PassgateArgs = strings.Fields(*pgArgs)
	c.Scenarios = splitList(*scen)
	var errs []error
	for _, s := range splitList(*rss) {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("-rss-tokens: %q is not a positive count", s))
			continue
		}
		if len(c.RSSTokens) > 0 && n <= c.RSSTokens[len(c.RSSTokens)-1] {
			errs = append(errs, errors.New("-rss-tokens must ascend"))
		}
		c.RSSTokens = append(c.RSSTokens, n)
	}
	for _, s := range splitList(*growth) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			errs = append(errs, fmt.Errorf("-growth-tokens: %q is not a count of at least 10", s))
			continue
		}
		if len(c.GrowthTokens) > 0 && n <= c.GrowthTokens[len(c.GrowthTokens)-1] {
			errs = append(errs, errors.New("-growth-tokens must ascend"))
		}
		c.GrowthTokens = append(c.GrowthTokens, n)
	}
	if c.Nginx == "" {
		if p, err := proc.LookTool("nginx"); err == nil {
			c.Nginx = p
		}
	}
	switch c.Generator {
	case "auto", "wrk":
		if p, err := exec.LookPath("wrk"); err == nil {
			c.Wrk = p
		} else if c.Generator == "wrk" {
			errs = append(errs, fmt.Errorf("-generator wrk: %w", err))
		}
	case "go":
	default:
		errs = append(errs, fmt.Errorf("-generator: unknown generator %q", c.Generator))
	}
	if c.Nginx == "off" {
		c.Nginx = ""
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{err.Error()}
	}
	return &c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Passgate == "" {
		errs = append(errs, errors.New("-passgate is required"))
	}
	for _, b := range c.Backends {
		if b != "sqlite" && b != "postgres" {
			errs = append(errs, fmt.Errorf("-backends: unknown backend %q", b))
		}
	}
	if len(c.Backends) == 0 {
		errs = append(errs, errors.New("-backends is empty"))
	}
	if c.RSSBackend != "sqlite" && c.RSSBackend != "postgres" {
		errs = append(errs, fmt.Errorf("-rss-backend: unknown backend %q", c.RSSBackend))
	}
	if c.Duration <= 0 || c.Duration > 5*time.Minute {
		errs = append(errs, errors.New("-duration must be in (0, 5m]"))
	}
	if c.Rounds < 1 || c.FloodRounds < 1 {
		errs = append(errs, errors.New("-rounds and -flood-rounds must be at least 1"))
	}
	if c.Concurrency < 1 || c.GRPCConns < 1 {
		errs = append(errs, errors.New("-concurrency and -grpc-conns must be at least 1"))
	}
	if c.CleanupTokens < 0 {
		errs = append(errs, errors.New("-cleanup-tokens must not be negative"))
	}
	if c.Pool < 10 {
		errs = append(errs, errors.New("-pool must be at least 10"))
	}
	if c.FloodConcurrency < 0 || c.FloodRate <= 0 {
		errs = append(errs, errors.New("-flood-concurrency must not be negative and -flood-rate must be positive"))
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
