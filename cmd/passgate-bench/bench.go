package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// scenario is one comparison between passgate and the reference.
type scenario struct {
	name      string
	transport string // grpc, http, nginx, proxy
	kind      string // hit, miss, invalid
	// Targets from issue 9; zero means none stated.
	minThroughput float64
	maxP99        float64
	pgOnly        bool // the throughput target applies on PostgreSQL only
}

var scenarios = []scenario{
	{name: "gRPC check, cache hit", transport: "grpc", kind: "hit", minThroughput: 0.85, maxP99: 1.5},
	{name: "HTTP check, cache hit", transport: "http", kind: "hit", minThroughput: 0.85, maxP99: 1.5},
	{name: "gRPC check, cache miss", transport: "grpc", kind: "miss", minThroughput: 0.5, pgOnly: true},
	{name: "HTTP check, cache miss", transport: "http", kind: "miss", minThroughput: 0.5, pgOnly: true},
	{name: "gRPC check, invalid token", transport: "grpc", kind: "invalid"},
	{name: "HTTP check, invalid token", transport: "http", kind: "invalid"},
	{name: "nginx auth_request, cache hit", transport: "nginx", kind: "hit", minThroughput: 0.85},
	// A second passgate with an access policy of -policy-rules per-tool
	// rules (N below), the last one deciding; both sides get Mcp-Method
	// and Mcp-Name. First backend only.
	{name: "gRPC check, cache hit, N-rule policy", transport: "grpc", kind: "policy", minThroughput: 0.85},
	{name: "HTTP check, cache hit, N-rule policy", transport: "http", kind: "policy", minThroughput: 0.85},
	// Not against the no-op reference: passgate's built-in proxy
	// (serve --upstream) against nginx asking passgate with auth_request,
	// both in front of the same upstream (see compare).
	{name: "built-in proxy, cache hit (reference: nginx + passgate auth_request)", transport: "proxy", kind: "hit", minThroughput: 0.9},
}

// row is one line of the results table.
type row struct {
	backend string
	sc      scenario
	ref, pg phase
	// lookups is passgate's store lookups per measured request, from its
	// metrics: ~0 for hits, ~1 for misses and invalid tokens.
	lookups float64
	// refID is the reference answering with passgate's identity headers
	// (gRPC and HTTP cache hits only; zero otherwise).
	refID phase
}

func (r row) idRatio() float64 {
	if r.refID.rps() == 0 {
		return 0
	}
	return r.pg.rps() / r.refID.rps()
}

func (r row) thrRatio() float64 {
	if r.ref.rps() == 0 {
		return 0
	}
	return r.pg.rps() / r.ref.rps()
}

func (r row) p99Ratio() float64 {
	if r.ref.quantile(.99) == 0 {
		return 0
	}
	return float64(r.pg.quantile(.99)) / float64(r.ref.quantile(.99))
}

func (r row) target() string {
	var t []string
	if r.sc.minThroughput > 0 && (!r.sc.pgOnly || r.backend == "postgres") {
		t = append(t, fmt.Sprintf("≥ %.2f", r.sc.minThroughput))
	}
	if r.sc.maxP99 > 0 {
		t = append(t, fmt.Sprintf("p99 ≤ %.1f×", r.sc.maxP99))
	}
	return strings.Join(t, ", ")
}

// met is "yes", "no", or "" without a target.
func (r row) met() string {
	if r.target() == "" {
		return ""
	}
	if r.pg.errs > 0 || r.pg.exhausted || r.pg.n == 0 {
		return "no"
	}
	ok := true
	if r.sc.minThroughput > 0 && (!r.sc.pgOnly || r.backend == "postgres") {
		ok = ok && r.thrRatio() >= r.sc.minThroughput
	}
	if r.sc.maxP99 > 0 {
		ok = ok && r.p99Ratio() <= r.sc.maxP99
	}
	if ok {
		return "yes"
	}
	return "no"
}

// floodResult compares paced check latency idle and during a login flood.
type floodResult struct {
	backend      string
	idle, flood  []phase // per round
	logins       int64   // wrong-password logins answered 401 during flood phases
	loginOther   int64   // any other answer
	floodSeconds float64
}

func medianP(ps []phase, q float64) time.Duration {
	v := make([]time.Duration, len(ps))
	for i, p := range ps {
		v[i] = p.quantile(q)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (f floodResult) ratio() float64 {
	idle := medianP(f.idle, .99)
	if idle == 0 {
		return 0
	}
	return float64(medianP(f.flood, .99)) / float64(idle)
}

// rssResult is passgate's memory with n cached tokens.
type rssResult struct {
	backend  string
	tokens   int
	entries  float64 // the cache's own count
	mem      memStatus
	heap     float64 // go_memstats_heap_inuse_bytes: RSS minus this is GC headroom, stacks, SQLite
	warmRate float64 // checks/s while warming (all misses)
}

// results is everything a run measured.
type results struct {
	cfg      *Config
	started  time.Time
	finished time.Time
	rows     []row
	floods   []floodResult
	rss      []rssResult
	growth   []growthResult
	cleanups []cleanupResult
	notes    []string
	// loads are 1-minute load averages sampled before every phase: other
	// work on the machine shows up here.
	loads []float64
}

// benchRun holds what the scenarios share.
type benchRun struct {
	cfg      *Config
	out      io.Writer
	dir      string
	set      tokenSet // every token of the run, by index
	tokens   []string // set's first tokens: [0] is the hit token; the rest the miss pool
	resHost  string   // 127.0.0.1:nginxPassgatePort, the resource's authority
	resURL   string
	httpPort int // passgate's HTTP port, fixed for nginx's sake
	ref      *reference
	refCl    *client
	nginx    *nginxProc
	ngPG     string // nginx front URL asking passgate
	ngRef    string // nginx front URL asking the reference
	res      *results
	policy   string // the access policy file (--policy-rules), or ""
	wrkSeq   int    // names wrk's script files
	// refID answers as passgate does for the hit token (identity
	// headers), started once passgate's answer is known; refIDCl asks it.
	refID   *reference
	refIDCl *client
	// refIDMCP asks refID with Mcp-Method and Mcp-Name, as the policy
	// scenarios ask passgate.
	refIDMCP *client
	refMCP   *client // the reference, with Mcp-Method and Mcp-Name
}

func bench(ctx context.Context, cfg *Config, stdout, stderr io.Writer) (err error) {
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.PinSelf != "" {
		// -a: every thread of this process; children inherit it.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cfg.PinSelf, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("pin to %s: %w: %s", cfg.PinSelf, err, out)
		}
	}
	dir, err := os.MkdirTemp("", "passgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &benchRun{cfg: cfg, out: stdout, dir: dir, res: &results{cfg: cfg, started: time.Now()}}
	if cfg.PinSelf != "" || cfg.PinPassgate != "" {
		b.note(fmt.Sprintf("pinned with taskset: passgate to CPUs %q, passgate-bench with the reference and wrk to CPUs %q (empty: unpinned); PostgreSQL and nginx unpinned", cfg.PinPassgate, cfg.PinSelf))
	}
	ngPort, err := freePort()
	if err != nil {
		return err
	}
	ngRefPort, err := freePort()
	if err != nil {
		return err
	}
	if b.httpPort, err = freePort(); err != nil {
		return err
	}
	b.resHost = "127.0.0.1:" + strconv.Itoa(ngPort)
	b.resURL = "http://" + b.resHost + "/mcp"
	if cfg.PolicyRules > 0 {
		b.policy = filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(b.policy, []byte(benchPolicy(b.resURL, cfg.PolicyRules)), 0o600); err != nil {
			return err
		}
	}

	n := cfg.Pool + 1
	if len(cfg.RSSTokens) > 0 {
		n = max(n, cfg.RSSTokens[len(cfg.RSSTokens)-1])
	}
	// The growth and cleanup stores take their tokens from b.set as they
	// seed: only the scenarios' pool is kept as strings.
	b.set = newTokenSet()
	b.logf("deriving %d access tokens", n)
	b.tokens = b.set.first(n)

	if b.ref, err = startReference(ctx, cfg.RefInProcess, refAnswer{}); err != nil {
		return err
	}
	defer b.ref.stop()
	defer func() {
		for _, c := range []*client{b.refIDCl, b.refIDMCP} {
			if c != nil {
				c.close()
			}
		}
		if b.refID != nil {
			b.refID.stop()
		}
	}()
	if cfg.Nginx != "" {
		ngDir := filepath.Join(dir, "nginx")
		if b.nginx, err = startNginx(ctx, cfg.Nginx, ngDir, ngPort, ngRefPort, "127.0.0.1:"+strconv.Itoa(b.httpPort), b.ref.httpAddr); err != nil {
			return err
		}
		defer b.nginx.stop()
		b.ngPG = "http://127.0.0.1:" + strconv.Itoa(ngPort) + "/mcp"
		b.ngRef = "http://127.0.0.1:" + strconv.Itoa(ngRefPort) + "/mcp"
	} else {
		b.note("nginx not found or disabled: the nginx scenario was skipped")
	}
	if b.refCl, err = newClient(b.ref.grpcAddr, b.ref.httpAddr, b.ngRef, b.resHost, cfg.GRPCConns, cfg.Concurrency); err != nil {
		return err
	}
	defer b.refCl.close()
	// The policy scenarios' reference gets the same Mcp-Method and
	// Mcp-Name headers as the passgate with the policy.
	if b.refMCP, err = newClient(b.ref.grpcAddr, b.ref.httpAddr, "", b.resHost, cfg.GRPCConns, cfg.Concurrency); err != nil {
		return err
	}
	b.refMCP.mcpHeaders = true
	defer b.refMCP.close()

	for i, backend := range cfg.Backends {
		if err := b.runBackend(ctx, backend, i == 0); err != nil {
			return fmt.Errorf("%s: %w", backend, err)
		}
	}
	b.res.finished = time.Now()
	printTable(stdout, b.res)
	if cfg.Out != "" {
		if err := writeMarkdown(cfg.Out, b.res); err != nil {
			return err
		}
		b.logf("wrote %s", cfg.Out)
	}
	return nil
}

func (b *benchRun) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *benchRun) note(s string) {
	b.res.notes = append(b.res.notes, s)
	b.logf("note: %s", s)
}

// runBackend seeds one store, then runs every scenario, the flood (first
// backend only) and the memory measurement (RSSBackend) against passgate
// on it.
func (b *benchRun) runBackend(ctx context.Context, backend string, first bool) error {
	cfg := b.cfg
	seedN := cfg.Pool + 1
	if backend == cfg.RSSBackend && len(cfg.RSSTokens) > 0 {
		seedN = max(seedN, cfg.RSSTokens[len(cfg.RSSTokens)-1])
	}
	seedN = min(seedN, len(b.tokens))
	tokens := b.tokens[:seedN]
	var backendArgs []string
	start := time.Now()
	b.logf("%s: seeding %d tokens", backend, seedN)
	switch backend {
	case "sqlite":
		dataDir := filepath.Join(b.dir, "sqlite")
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return err
		}
		if err := seedSQLite(ctx, filepath.Join(dataDir, "passgate.db"), b.set, seedN, b.resURL, false); err != nil {
			return err
		}
		backendArgs = []string{"--data-dir", dataDir}
	case "postgres":
		dbURL, drop, err := createPostgresDB(ctx, cfg.PostgresURL)
		if err != nil {
			return err
		}
		defer drop()
		if err := seedPostgres(ctx, dbURL, b.set, seedN, b.resURL, false); err != nil {
			return err
		}
		backendArgs = []string{"--database", dbURL}
	}
	b.logf("%s: seeded in %s", backend, time.Since(start).Round(time.Millisecond))

	upstream := ""
	if first && b.nginx != nil {
		// The built-in proxy sends the resource to the upstream nginx's
		// /mcp front sends it to.
		upstream = "http://127.0.0.1:" + strconv.Itoa(b.nginx.appPort)
	}
	ngURL := ""
	if first {
		ngURL = b.ngPG
	}
	p, pc, err := b.startCached(ctx, passgateOpts{httpPort: b.httpPort, backendArgs: backendArgs, cacheSize: 2 * cfg.Pool, upstream: upstream}, ngURL, false)
	if err != nil {
		return err
	}
	defer p.stop()
	defer pc.close()
	if b.refID == nil {
		if err := b.startIdentityReference(ctx, pc); err != nil {
			return err
		}
	}

	missCursor := new(atomic.Int64)
	missCursor.Store(1)
	var polP *passgateProc // passgate with the access policy, for its scenarios
	var polPC *client
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if (sc.transport == "nginx" || sc.transport == "proxy") && ngURL == "" {
			continue
		}
		if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, sc.transport+"-"+sc.kind) {
			continue
		}
		if sc.kind == "policy" {
			if !first || b.policy == "" {
				continue
			}
			if polPC == nil {
				if polP, polPC, err = b.startPolicyPassgate(ctx, backendArgs); err != nil {
					return err
				}
				defer polP.stop()
				defer polPC.close()
			}
			sc.name = strings.Replace(sc.name, "N-rule", strconv.Itoa(cfg.PolicyRules)+"-rule", 1)
			r, err := b.compare(ctx, backend, sc, polP, polPC, tokens, missCursor)
			if err != nil {
				return err
			}
			b.res.rows = append(b.res.rows, r)
			continue
		}
		r, err := b.compare(ctx, backend, sc, p, pc, tokens, missCursor)
		if err != nil {
			return err
		}
		b.res.rows = append(b.res.rows, r)
	}
	if cfg.FloodConcurrency > 0 {
		f, err := b.flood(ctx, backend, p, pc)
		if err != nil {
			return err
		}
		b.res.floods = append(b.res.floods, f)
	}
	p.stop()

	if backend == cfg.RSSBackend && len(cfg.RSSTokens) > 0 {
		if err := b.measureRSS(ctx, backend, backendArgs, tokens); err != nil {
			return err
		}
	}
	return b.measureGrowth(ctx, backend)
}

// awaitCache waits until passgate caches the hit token: the cache is armed
// only once the store's invalidation subscription is live.
func (b *benchRun) awaitCache(ctx context.Context, p *passgateProc, pc *client) error {
	req := pc.checkRequest(b.tokens[0])
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := pc.grpcCheck(ctx, 0, req, wantAllow); err != nil {
			return fmt.Errorf("first check: %w (passgate log: %s)", err, p.logs)
		}
		if n, err := p.metric("passgate_check_cache_entries"); err == nil && n >= 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("passgate never cached the hit token")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startPolicyPassgate starts a second passgate on the same store, with
// the benchmark's access policy, and waits until it caches the hit token.
func (b *benchRun) startPolicyPassgate(ctx context.Context, backendArgs []string) (*passgateProc, *client, error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	return b.startCached(ctx, passgateOpts{httpPort: port, backendArgs: backendArgs, cacheSize: 1024, policyFile: b.policy}, "", true)
}

// startCached starts passgate with o (the run's binary, CPU pin, extra
// arguments and resource filled in) and a client of it (nginx front ngURL,
// Mcp-* headers if mcpHeaders), and waits until passgate caches the hit
// token. On an error nothing is left running.
func (b *benchRun) startCached(ctx context.Context, o passgateOpts, ngURL string, mcpHeaders bool) (*passgateProc, *client, error) {
	o.bin, o.pin, o.extra, o.resourceURL = b.cfg.Passgate, b.cfg.PinPassgate, b.cfg.PassgateArgs, b.resURL
	p, err := startPassgate(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	pc, err := newClient(p.grpcAddr, p.httpAddr, ngURL, b.resHost, b.cfg.GRPCConns, b.cfg.Concurrency)
	if err != nil {
		p.stop()
		return nil, nil, err
	}
	pc.mcpHeaders = mcpHeaders
	if err := b.awaitCache(ctx, p, pc); err != nil {
		pc.close()
		p.stop()
		return nil, nil, err
	}
	return p, pc, nil
}

// startIdentityReference captures passgate's answers to the hit token
// (gRPC CheckResponse, HTTP check headers) and starts a reference that
// gives them to every request without looking at it: the cost of writing
// and parsing identity headers, with no check behind it.
func (b *benchRun) startIdentityReference(ctx context.Context, pc *client) error {
	resp, err := pc.authz[0].Check(ctx, pc.checkRequest(b.tokens[0]))
	if err != nil {
		return fmt.Errorf("capture gRPC answer: %w", err)
	}
	var a refAnswer
	if a.grpc, err = proto.Marshal(resp); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pc.checkURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Original-Uri", "/mcp")
	req.Header.Set("X-Original-Method", "POST")
	req.Header.Set("X-Forwarded-Host", pc.resHost)
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Set("Authorization", "Bearer "+b.tokens[0])
	hr, err := pc.http.Do(req)
	if err != nil {
		return fmt.Errorf("capture HTTP answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return fmt.Errorf("capture HTTP answer: status %d", hr.StatusCode)
	}
	a.header = hr.Header.Clone()
	a.header.Del("Date")
	a.header.Del("Content-Length")
	if b.refID, err = startReference(ctx, b.cfg.RefInProcess, a); err != nil {
		return err
	}
	if b.refIDCl, err = newClient(b.refID.grpcAddr, b.refID.httpAddr, "", b.resHost, b.cfg.GRPCConns, b.cfg.Concurrency); err != nil {
		return err
	}
	if b.refIDMCP, err = newClient(b.refID.grpcAddr, b.refID.httpAddr, "", b.resHost, b.cfg.GRPCConns, b.cfg.Concurrency); err != nil {
		return err
	}
	b.refIDMCP.mcpHeaders = true
	return nil
}

// doer builds the request function of a scenario for one target.
func (b *benchRun) doer(sc scenario, cl *client, isRef bool, tokens []string, missCursor *atomic.Int64) doFunc {
	conc := b.cfg.Concurrency
	var src tokenSource
	want := wantAllow
	switch sc.kind {
	case "hit", "policy":
		src = fixedToken(tokens[0])
	case "miss":
		if isRef {
			src = poolTokens{pool: tokens[1:], i: new(atomic.Int64), wrap: true}
		} else {
			src = poolTokens{pool: tokens, i: missCursor}
		}
	case "invalid":
		src = newInvalidTokens(conc)
		if !isRef {
			want = wantDeny
		}
	}
	var check func(ctx context.Context, w int, tok string) error
	switch sc.transport {
	case "grpc":
		// Requests encoded once per worker and copied into (rawWorkers).
		rw, err := newRawWorkers(cl, conc)
		if err != nil {
			return func(context.Context, int) error { return err }
		}
		check = func(ctx context.Context, w int, tok string) error { return rw.check(ctx, cl, w, tok, want) }
	case "http":
		check = func(ctx context.Context, _ int, tok string) error { return cl.httpCheck(ctx, tok, want) }
	case "proxy":
		check = func(ctx context.Context, _ int, tok string) error { return cl.proxyRequest(ctx, tok, want) }
	default:
		check = func(ctx context.Context, _ int, tok string) error { return cl.nginxRequest(ctx, tok, want) }
	}
	return func(ctx context.Context, w int) error {
		tok, err := src.next(w)
		if err != nil {
			return err
		}
		return check(ctx, w, tok)
	}
}

// runFunc runs one load phase of length d.
type runFunc func(ctx context.Context, d time.Duration) phase

// runner is how a scenario loads one target: wrk for the HTTP transports
// when it is the generator, else this process's closed loop.
func (b *benchRun) runner(sc scenario, cl *client, isRef bool, tokens []string, missCursor *atomic.Int64) runFunc {
	if b.cfg.Wrk == "" || sc.transport == "grpc" {
		do := b.doer(sc, cl, isRef, tokens, missCursor)
		return func(ctx context.Context, d time.Duration) phase { return runClosed(ctx, b.cfg.Concurrency, d, do) }
	}
	return func(ctx context.Context, d time.Duration) phase {
		l := wrkLoad{want: wantAllow}
		switch sc.transport {
		case "http":
			l.url, l.method = cl.checkURL, "GET"
			l.headers = [][2]string{{"X-Original-Uri", "/mcp"}, {"X-Original-Method", "POST"}, {"X-Forwarded-Host", cl.resHost}, {"X-Forwarded-Proto", "http"}}
			if cl.mcpHeaders {
				l.headers = append(l.headers, [2]string{"Mcp-Method", "tools/call"}, [2]string{"Mcp-Name", "echo"})
			}
		case "nginx", "proxy":
			l.url, l.method, l.body = cl.nginxURL, "POST", mcpBody
			l.headers = [][2]string{{"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"}}
			if sc.transport == "proxy" {
				l.url = cl.proxyURL
				l.headers = append(l.headers, [2]string{"Host", cl.resHost})
			}
		}
		// Enough distinct tokens for the fastest rate this machine
		// reaches, bounded.
		need := min(int(60000*d.Seconds())+1000, 400_000)
		switch sc.kind {
		case "hit", "policy":
			l.fixed = tokens[0]
		case "miss":
			if isRef {
				pool := tokens[1:]
				l.tokens, l.wrap = pool[:min(need, len(pool))], true
			} else {
				from := min(int(missCursor.Load()), len(tokens))
				l.tokens = tokens[from:min(from+need, len(tokens))]
			}
		case "invalid":
			src := newInvalidTokens(1)
			l.tokens = make([]string, need)
			for i := range l.tokens {
				l.tokens[i], _ = src.next(0)
			}
			if !isRef {
				l.want = wantDeny
			}
			l.wrap = true // passgate caches refusals: the next run makes new ones
		}
		if l.tokens != nil && len(l.tokens) == 0 {
			return phase{generator: "wrk", exhausted: true, elapsed: d}
		}
		p := b.runWrk(ctx, l, b.cfg.Concurrency, d)
		if sc.kind == "miss" && !isRef {
			missCursor.Add(p.n + p.errs)
		}
		return p
	}
}

// compare runs a scenario: warm-up on both sides, then Rounds pairs of
// (reference, passgate) phases; the best phase of each side is kept.
func (b *benchRun) compare(ctx context.Context, backend string, sc scenario, p *passgateProc, pc *client, tokens []string, missCursor *atomic.Int64) (row, error) {
	cfg := b.cfg
	refCl := b.refCl
	if sc.kind == "policy" {
		refCl = b.refMCP
	}
	refRun := b.runner(sc, refCl, true, tokens, missCursor)
	pgRun := b.runner(sc, pc, false, tokens, missCursor)
	if sc.transport == "proxy" {
		// The reference side is nginx asking this same passgate
		// (auth_request), in front of the same upstream.
		refRun = b.runner(scenario{transport: "nginx", kind: sc.kind}, pc, false, tokens, missCursor)
	}
	var idRun runFunc
	if (sc.transport == "grpc" || sc.transport == "http") && b.refIDCl != nil {
		switch sc.kind {
		case "hit":
			idRun = b.runner(sc, b.refIDCl, true, tokens, missCursor)
		case "policy":
			// The allowed tool's answer carries the same identity.
			idRun = b.runner(sc, b.refIDMCP, true, tokens, missCursor)
		}
	}
	if cfg.Warmup > 0 {
		refRun(ctx, cfg.Warmup)
		if idRun != nil {
			idRun(ctx, cfg.Warmup)
		}
		pgRun(ctx, cfg.Warmup)
	}
	r := row{backend: backend, sc: sc}
	var lookups, requests float64
	for round := range cfg.Rounds {
		b.res.sampleLoad()
		ref := refRun(ctx, cfg.Duration)
		b.logf("%-8s %-30s ref      %s", backend, sc.name, ref)
		if idRun != nil {
			id := idRun(ctx, cfg.Duration)
			b.logf("%-8s %-30s ref+id   %s", backend, sc.name, id)
			if round == 0 || id.rps() > r.refID.rps() {
				r.refID = id
			}
		}
		before, err1 := p.metric("passgate_check_cache_misses_total")
		var perfDone func()
		if round == 0 {
			perfDone = b.perf(p, backend+"-"+sc.transport+"-"+sc.kind)
		}
		pg := pgRun(ctx, cfg.Duration)
		if perfDone != nil {
			perfDone()
		}
		after, err2 := p.metric("passgate_check_cache_misses_total")
		b.logf("%-8s %-30s passgate %s", backend, sc.name, pg)
		if err1 == nil && err2 == nil {
			lookups += after - before
			requests += float64(pg.n + pg.errs)
		}
		if round == 0 || ref.rps() > r.ref.rps() {
			r.ref = ref
		}
		if round == 0 || pg.rps() > r.pg.rps() {
			r.pg = pg
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
	}
	if requests > 0 {
		r.lookups = lookups / requests
	}
	if r.pg.exhausted {
		b.note(fmt.Sprintf("%s, %s: the pool of %d valid tokens ran out; raise -pool", backend, sc.name, len(tokens)-1))
	}
	return r, nil
}

// flood measures paced gRPC cache-hit checks idle and while many clients
// post wrong passwords to /login, alternating.
func (b *benchRun) flood(ctx context.Context, backend string, p *passgateProc, pc *client) (floodResult, error) {
	cfg := b.cfg
	f := floodResult{backend: backend}
	reqs := make([]*authv3.CheckRequest, 8)
	for i := range reqs {
		reqs[i] = pc.checkRequest(b.tokens[0])
	}
	checks := func(ctx context.Context, w int) error { return pc.grpcCheck(ctx, w, reqs[w], wantAllow) }
	login := newLoginFlood("http://"+p.httpAddr+"/login", cfg.FloodConcurrency)
	defer login.http.CloseIdleConnections()
	// Make sure the flood really costs password verifications.
	if code, err := login.once(ctx); err != nil || code != http.StatusUnauthorized {
		return f, fmt.Errorf("login flood: a wrong-password login answered %d, %v; want 401 (log: %s)", code, err, p.logs)
	}
	for range cfg.FloodRounds {
		b.res.sampleLoad()
		idle := runPaced(ctx, len(reqs), cfg.Duration, cfg.FloodRate, checks)
		b.logf("%-8s %-30s idle     %s", backend, "paced gRPC check", idle)
		stop := login.start(ctx)
		time.Sleep(min(cfg.Duration/4, time.Second)) // let the flood reach full strength
		t0 := time.Now()
		l0, o0 := login.ok.Load(), login.other.Load()
		perfDone := b.perf(p, backend+"-flood")
		fl := runPaced(ctx, len(reqs), cfg.Duration, cfg.FloodRate, checks)
		if perfDone != nil {
			perfDone()
		}
		l1, o1 := login.ok.Load(), login.other.Load()
		f.floodSeconds += time.Since(t0).Seconds()
		stop()
		f.logins += l1 - l0
		f.loginOther += o1 - o0
		// Verifications already running finish after their clients left;
		// keep them out of the next idle phase.
		time.Sleep(2 * time.Second)
		b.logf("%-8s %-30s flood    %s  (%d logins/s)", backend, "paced gRPC check", fl, int(float64(l1-l0)/time.Since(t0).Seconds()))
		f.idle = append(f.idle, idle)
		f.flood = append(f.flood, fl)
		if ctx.Err() != nil {
			return f, ctx.Err()
		}
	}
	if f.loginOther > 0 {
		b.note(fmt.Sprintf("login flood: %d answers other than 401 (first: %v)", f.loginOther, login.firstErr()))
	}
	return f, nil
}

// loginFlood posts wrong passwords for the bench user with a valid login
// CSRF pair (passgate's login form is double-submit: the cookie and the form
// field must match), so each post costs a real password verification.
type loginFlood struct {
	url       string
	conc      int
	http      *http.Client
	ok, other atomic.Int64
	mu        sync.Mutex
	first     error
}

func newLoginFlood(u string, conc int) *loginFlood {
	return &loginFlood{url: u, conc: conc, http: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc},
		Timeout:   30 * time.Second,
		// A successful login would redirect; a flood never succeeds.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

const floodCSRF = "benchcsrfbenchcsrfbenchcsrfbenchcsrfbenchcs"

func (l *loginFlood) once(ctx context.Context) (int, error) {
	form := url.Values{"csrf": {floodCSRF}, "username": {benchUser}, "password": {"not-the-password"}, "return_to": {""}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "passgate_login", Value: floodCSRF})
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// start runs the flood until the returned function is called.
func (l *loginFlood) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range l.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, err := l.once(ctx)
				switch {
				case ctx.Err() != nil:
				case err == nil && code == http.StatusUnauthorized:
					l.ok.Add(1)
				default:
					l.other.Add(1)
					l.mu.Lock()
					if l.first == nil {
						l.first = fmt.Errorf("status %d, %v", code, err)
					}
					l.mu.Unlock()
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func (l *loginFlood) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// measureRSS starts a fresh passgate, checks each of the first n tokens
// once (every one a miss that fills the cache) for each n of RSSTokens, and
// reads VmRSS.
func (b *benchRun) measureRSS(ctx context.Context, backend string, backendArgs []string, tokens []string) error {
	cfg := b.cfg
	maxN := cfg.RSSTokens[len(cfg.RSSTokens)-1]
	p, pc, err := b.startCached(ctx, passgateOpts{httpPort: b.httpPort, backendArgs: backendArgs, cacheSize: maxN + maxN/5 + 64*64}, "", false)
	if err != nil {
		return err
	}
	defer p.stop()
	defer pc.close()
	time.Sleep(500 * time.Millisecond)
	m, err := readMem(p.pid())
	if err != nil {
		return err
	}
	b.res.rss = append(b.res.rss, rssResult{backend: backend, tokens: 1, entries: 1, mem: m})
	b.logf("%-8s RSS with %8d cached tokens: %6.1f MB", backend, 1, float64(m.rss)/1e6)
	cursor := new(atomic.Int64)
	cursor.Store(1)
	retries := new(atomic.Int64)
	for _, n := range cfg.RSSTokens {
		src := poolTokens{pool: tokens[:n], i: cursor}
		do := func(ctx context.Context, w int) error {
			tok, err := src.next(w)
			if err != nil {
				return err
			}
			// A lookup that overran --store-timeout on the loaded machine
			// fails closed and caches nothing: ask again, as a proxy's
			// client would, so that every token ends up cached. This
			// phase measures memory, not latency.
			for attempt := 0; ; attempt++ {
				err = pc.grpcCheck(ctx, w, pc.checkRequest(tok), wantAllow)
				if err == nil || attempt == 4 || ctx.Err() != nil || status.Code(err) != codes.Unavailable {
					return err
				}
				retries.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}
		b.res.sampleLoad()
		ph := runClosed(ctx, cfg.Concurrency, cfg.RSSTimeout, do)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !ph.exhausted {
			b.note(fmt.Sprintf("warming %d tokens took longer than -rss-timeout %s; measured with %d checked", n, cfg.RSSTimeout, cursor.Load()))
		}
		if ph.errs > 0 {
			return fmt.Errorf("warming %d tokens: %d errors (%v)", n, ph.errs, ph.firstErr)
		}
		if r := retries.Swap(0); r > 0 {
			b.note(fmt.Sprintf("warming %d tokens: %d checks failed closed (store lookup over its budget) and were retried", n, r))
		}
		entries, err := p.metric("passgate_check_cache_entries")
		if err != nil {
			return err
		}
		// Let the process settle: RSS right after a burst includes garbage
		// the next GC would free.
		time.Sleep(2 * time.Second)
		m, err := readMem(p.pid())
		if err != nil {
			return err
		}
		heap, _ := p.metric("go_memstats_heap_inuse_bytes")
		b.res.rss = append(b.res.rss, rssResult{backend: backend, tokens: n, entries: entries, mem: m, heap: heap, warmRate: ph.rps()})
		b.logf("%-8s RSS with %8d cached tokens: %6.1f MB (peak %6.1f MB, cache entries %.0f, warmed at %.0f checks/s)",
			backend, n, float64(m.rss)/1e6, float64(m.hwm)/1e6, entries, ph.rps())
	}
	return nil
}

// sampleLoad records the 1-minute load average.
func (r *results) sampleLoad() {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return
	}
	if v, err := strconv.ParseFloat(f[0], 64); err == nil {
		r.loads = append(r.loads, v)
	}
}

// perf records passgate's CPU with Linux perf for one phase when -perf is
// set (passgate has no pprof endpoint; perf needs none). The returned
// function waits for the recording to end.
func (b *benchRun) perf(p *passgateProc, name string) func() {
	if b.cfg.Perf == "" {
		return nil
	}
	if err := os.MkdirAll(b.cfg.Perf, 0o755); err != nil {
		b.note("perf: " + err.Error())
		return nil
	}
	secs := strconv.FormatFloat(b.cfg.Duration.Seconds(), 'f', 2, 64)
	cmd := exec.Command("perf", "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(p.pid()),
		"-o", filepath.Join(b.cfg.Perf, name+".perf.data"), "--", "sleep", secs)
	logs := newLog()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.note("perf: " + err.Error())
		return nil
	}
	return func() {
		if err := cmd.Wait(); err != nil {
			b.note(fmt.Sprintf("perf %s: %v %s", name, err, logs.String()))
		}
	}
}

// benchPolicy is an access policy for resource with n per-tool rules:
// n-1 that the benchmark's call (tools/call echo) does not match, then one
// that allows it, so every check walks them all.
func benchPolicy(resource string, n int) string {
	var sb strings.Builder
	sb.WriteString("resources:\n  - url: " + resource + "\n    allow: [\"*\"]\n    rules:\n")
	for i := range n - 1 {
		fmt.Fprintf(&sb, "      - {method: tools/call, name: \"tool_%d_*\", allow: [group:ops]}\n", i)
	}
	sb.WriteString("      - {method: tools/call, name: echo}\n")
	return sb.String()
}
