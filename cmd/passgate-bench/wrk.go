package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrk drives the HTTP scenarios when it is installed (-generator): a C
// event loop with two threads uses a fraction of the CPU per request that
// Go's net/http client does, so more of the two shared cores go to the
// servers being compared, and a slow server shows as slow.

// wrkLoad is one HTTP scenario as wrk sends it.
type wrkLoad struct {
	url     string
	method  string
	body    string
	headers [][2]string // besides Authorization; Host among them when set
	// Exactly one of fixed (every request) and tokens (one each, in
	// order, spread over wrk's threads) is set.
	fixed  string
	tokens []string
	// wrap allows reusing tokens (the reference caches nothing).
	wrap bool
	want outcome
}

// wrkThreads is wrk's thread count, as in the issue's own measurement.
const wrkThreads = 2

// wrkScript is the Lua script for l. With a token list, each thread takes
// every wrkThreads-th token of the file, starting at its own index.
func wrkScript(l wrkLoad, tokensFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %q\n", l.method)
	if l.body != "" {
		fmt.Fprintf(&b, "wrk.body = %q\n", l.body)
	}
	for _, h := range l.headers {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", h[0], h[1])
	}
	if l.tokens == nil {
		fmt.Fprintf(&b, "wrk.headers[\"Authorization\"] = %q\n", "Bearer "+l.fixed)
		return b.String()
	}
	fmt.Fprintf(&b, `local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local tokens, n, i = {}, 0, 0
local hdrs = {}
function init(args)
  for line in io.lines(%q) do
    n = n + 1
    tokens[n] = line
  end
  i = id
  for k, v in pairs(wrk.headers) do hdrs[k] = v end
end
function request()
  hdrs["Authorization"] = "Bearer " .. tokens[(i %% n) + 1]
  i = i + %d
  return wrk.format(nil, nil, hdrs)
end
`, tokensFile, wrkThreads)
	return b.String()
}

// runWrk runs wrk with conc connections for d and reads its report.
// A phase whose requests outnumber l.tokens reused some: it is marked
// exhausted, as the Go generator's would be.
func (b *benchRun) runWrk(ctx context.Context, l wrkLoad, conc int, d time.Duration) phase {
	b.wrkSeq++
	base := filepath.Join(b.dir, "wrk"+strconv.Itoa(b.wrkSeq))
	fail := func(err error) phase { return phase{generator: "wrk", errs: 1, firstErr: err, elapsed: d} }
	tokensFile := base + ".tokens"
	if l.tokens != nil {
		if err := os.WriteFile(tokensFile, []byte(strings.Join(l.tokens, "\n")+"\n"), 0o600); err != nil {
			return fail(err)
		}
		defer os.Remove(tokensFile)
	}
	script := base + ".lua"
	if err := os.WriteFile(script, []byte(wrkScript(l, tokensFile)), 0o600); err != nil {
		return fail(err)
	}
	defer os.Remove(script)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.cfg.Wrk, "-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(max(conc, wrkThreads)),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "10s", "--latency", "-s", script, l.url)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("wrk: %w: %s", err, out))
	}
	p, err := parseWrk(string(out))
	if err != nil {
		return fail(err)
	}
	p.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	total := p.n
	switch l.want {
	case wantAllow:
		p.n -= p.errs
	case wantDeny:
		// Every answer should be a refusal: the 2xx ones are the errors.
		p.errs, p.n = p.n-p.errs, p.errs
	}
	p.errs += p.sockErrs
	if p.errs > 0 && p.firstErr == nil {
		p.firstErr = fmt.Errorf("%w: %d answers of the wrong class (wrk counts non-2xx/3xx)", errUnexpected, p.errs)
	}
	if l.tokens != nil && !l.wrap && total > int64(len(l.tokens)) {
		p.exhausted = true
	}
	return p
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)\b`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkQuantile = regexp.MustCompile(`^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
)

// parseWrk reads wrk's --latency report: n is every answer, errs the
// non-2xx ones, sockErrs requests without an answer (not in n), and
// p50/p99 its quantiles.
func parseWrk(out string) (phase, error) {
	p := phase{generator: "wrk"}
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return p, fmt.Errorf("wrk: no request count in its output: %q", out)
	}
	p.n, _ = strconv.ParseInt(m[1], 10, 64)
	p.elapsed = wrkDur(m[2], m[3])
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		p.errs, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		var sum int64
		for _, s := range m[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			sum += v
		}
		if sum > 0 {
			p.firstErr = fmt.Errorf("wrk: %s", m[0])
			p.sockErrs = sum
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := wrkQuantile.FindStringSubmatch(sc.Text()); m != nil {
			v := wrkDur(m[2], m[3])
			if m[1] == "50" {
				p.p50 = v
			} else {
				p.p99 = v
			}
		}
	}
	if p.p50 == 0 || p.p99 == 0 {
		return p, fmt.Errorf("wrk: no latency distribution in its output: %q", out)
	}
	return p, nil
}

func wrkDur(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * 1e3)
	case "ms":
		return time.Duration(f * 1e6)
	case "m":
		return time.Duration(f * 60e9)
	default:
		return time.Duration(f * 1e9)
	}
}
