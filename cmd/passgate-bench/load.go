package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"
)

// errExhausted stops a worker whose token source ran dry.
var errExhausted = errors.New("token pool exhausted")

// doFunc performs one request for worker w and reports whether the answer
// was the expected one. errExhausted ends the phase early.
type doFunc func(ctx context.Context, w int) error

// phase is the result of one load phase against one target.
type phase struct {
	n         int64 // completed requests, expected answers
	errs      int64 // completed requests with an unexpected answer or error
	elapsed   time.Duration
	lat       []time.Duration // sorted, expected answers only
	exhausted bool
	firstErr  error
	// clientCPU is the CPU time the load generator used during the phase
	// (this process, or wrk), so that its share of the cores is reported
	// rather than hidden.
	clientCPU time.Duration
	// generator names what produced the load: "go" (this process) or
	// "wrk".
	generator string
	// p50, p99, when set, are the generator's own quantiles (wrk reports
	// no samples).
	p50, p99 time.Duration
	sockErrs int64 // wrk's socket errors
}

// cpuPerReq is the generator's CPU per completed request.
func (p phase) cpuPerReq() time.Duration {
	if p.n+p.errs == 0 {
		return 0
	}
	return p.clientCPU / time.Duration(p.n+p.errs)
}

func (p phase) rps() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.n) / p.elapsed.Seconds()
}

// quantile returns the q-quantile of the latencies (nearest rank).
func (p phase) quantile(q float64) time.Duration {
	switch {
	case q == .5 && p.p50 > 0:
		return p.p50
	case q == .99 && p.p99 > 0:
		return p.p99
	}
	if len(p.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(p.lat))+0.5) - 1
	i = min(max(i, 0), len(p.lat)-1)
	return p.lat[i]
}

// runClosed drives do with conc clients back to back (closed loop) for d.
// Latency is from the start of a request to its answer.
func runClosed(ctx context.Context, conc int, d time.Duration, do doFunc) phase {
	return runLoad(ctx, conc, d, 0, do)
}

// runPaced sends rate requests per second in total, spread evenly over
// conc clients (open loop). Latency is measured from when a request was
// due, not when it was sent, so a stalled server is not excused by clients
// that waited for it (coordinated omission).
func runPaced(ctx context.Context, conc int, d time.Duration, rate float64, do doFunc) phase {
	return runLoad(ctx, conc, d, rate, do)
}

func runLoad(ctx context.Context, conc int, d time.Duration, rate float64, do doFunc) phase {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type acc struct {
		n, errs   int64
		lat       []time.Duration
		exhausted bool
		firstErr  error
	}
	accs := make([]acc, conc)
	// A generous guess avoids regrowing latency slices during the phase.
	capHint := 4096
	if rate > 0 {
		capHint = int(rate*d.Seconds())/conc + 16
	}
	var wg sync.WaitGroup
	cpu0 := selfCPU()
	start := time.Now()
	deadline := start.Add(d)
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(conc) / rate * float64(time.Second))
	}
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &accs[w]
			a.lat = make([]time.Duration, 0, capHint)
			due := start
			if interval > 0 {
				due = start.Add(interval * time.Duration(w) / time.Duration(conc))
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if interval > 0 {
					if due.After(deadline) {
						return
					}
					if wait := due.Sub(t0); wait > 0 {
						time.Sleep(wait)
					}
					t0 = due
					due = due.Add(interval)
				} else if !t0.Before(deadline) {
					return
				}
				err := do(ctx, w)
				lat := time.Since(t0)
				switch {
				case errors.Is(err, errExhausted):
					a.exhausted = true
					cancel()
					return
				case err != nil:
					if ctx.Err() != nil {
						return // cut off by the end of the phase
					}
					a.errs++
					if a.firstErr == nil {
						a.firstErr = err
					}
				default:
					a.n++
					a.lat = append(a.lat, lat)
				}
			}
		}()
	}
	// The phase ends at the deadline even if a request hangs.
	timer := time.AfterFunc(d+5*time.Second, cancel)
	wg.Wait()
	timer.Stop()
	// Requests in flight at the deadline are counted, so is their time.
	elapsed := time.Since(start)
	p := phase{generator: "go", clientCPU: selfCPU() - cpu0}
	total := 0
	for i := range accs {
		total += len(accs[i].lat)
	}
	p.lat = make([]time.Duration, 0, total)
	for i := range accs {
		a := &accs[i]
		p.n += a.n
		p.errs += a.errs
		p.lat = append(p.lat, a.lat...)
		p.exhausted = p.exhausted || a.exhausted
		if p.firstErr == nil {
			p.firstErr = a.firstErr
		}
	}
	p.elapsed = elapsed
	slices.Sort(p.lat)
	return p
}

func (p phase) String() string {
	s := fmt.Sprintf("%8.0f req/s  p50 %8s  p99 %8s  n=%d  %s %s CPU/req", p.rps(), fmtDur(p.quantile(.5)), fmtDur(p.quantile(.99)), p.n, p.generator, fmtDur(p.cpuPerReq()))
	if p.errs > 0 {
		s += fmt.Sprintf("  errors=%d (%v)", p.errs, p.firstErr)
	}
	if p.exhausted {
		s += "  POOL EXHAUSTED"
	}
	return s
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
}
