package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/clocktest"
)

func newClock() *clocktest.Clock { return clocktest.New(time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)) }

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    Limit
		wantErr bool
	}{
		{in: "5/15m", want: Limit{5, 15 * time.Minute}},
		{in: " 60 / 1m ", want: Limit{60, time.Minute}},
		{in: "10/h", want: Limit{10, time.Hour}},
		{in: "3/s", want: Limit{3, time.Second}},
		{in: "10/1h30m", want: Limit{10, 90 * time.Minute}},
		{in: "0", want: Limit{}},
		{in: "off", want: Limit{}},
		{in: "OFF", want: Limit{}},
		{in: "", wantErr: true},
		{in: "5", wantErr: true},
		{in: "0/15m", wantErr: true},
		{in: "-1/15m", wantErr: true},
		{in: "x/15m", wantErr: true},
		{in: "5/", wantErr: true},
		{in: "5/0s", wantErr: true},
		{in: "5/-1m", wantErr: true},
		{in: "5/fortnight", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLimit(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ParseLimit(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLimitStringRoundTrips(t *testing.T) {
	for _, l := range []Limit{DefaultLogin, DefaultToken, DefaultAuthorize, DefaultRegister, DefaultRegisterSuccess, DefaultRevoke, DefaultIntrospect, {}} {
		got, err := ParseLimit(l.String())
		if err != nil {
			t.Fatalf("ParseLimit(%q): %v", l.String(), err)
		}
		if got != l {
			t.Errorf("round trip %v -> %q -> %v", l, l.String(), got)
		}
	}
}

func TestSixthLoginDenied(t *testing.T) {
	c := newClock()
	l := New(DefaultLogin, c.Now, 0)
	for i := range 5 {
		if ok, _ := l.Allow("203.0.113.5"); !ok {
			t.Fatalf("attempt %d denied", i+1)
		}
		c.Advance(time.Second)
	}
	ok, retry := l.Allow("203.0.113.5")
	if ok {
		t.Fatal("6th attempt within 15 minutes allowed")
	}
	// 5 per 15m refills one every 3 minutes; 5 s have passed since the
	// first attempt.
	if want := 3*time.Minute - 5*time.Second; retry != want {
		t.Errorf("retryAfter = %v, want %v", retry, want)
	}
	// Hammering while denied does not push recovery further out.
	for range 100 {
		l.Allow("203.0.113.5")
	}
	if _, again := l.Allow("203.0.113.5"); again != retry {
		t.Errorf("retryAfter after hammering = %v, want %v", again, retry)
	}

	c.Advance(retry - time.Millisecond)
	if ok, _ := l.Allow("203.0.113.5"); ok {
		t.Fatal("allowed before retryAfter elapsed")
	}
	c.Advance(time.Millisecond)
	if ok, _ := l.Allow("203.0.113.5"); !ok {
		t.Fatal("denied after retryAfter elapsed")
	}
	if ok, _ := l.Allow("203.0.113.5"); ok {
		t.Fatal("second attempt right after recovery allowed")
	}

	// A full period restores the whole burst.
	c.Advance(15 * time.Minute)
	for i := range 5 {
		if ok, _ := l.Allow("203.0.113.5"); !ok {
			t.Fatalf("after a full period, attempt %d denied", i+1)
		}
	}
	if ok, _ := l.Allow("203.0.113.5"); ok {
		t.Fatal("6th attempt after refill allowed")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	c := newClock()
	l := New(Limit{2, time.Minute}, c.Now, 0)
	for range 2 {
		l.Allow("a")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a over limit allowed")
	}
	for i := range 2 {
		if ok, _ := l.Allow("b"); !ok {
			t.Fatalf("b attempt %d denied because of a", i+1)
		}
	}
}

func TestDisabled(t *testing.T) {
	for _, lim := range []Limit{{}, {Events: 0, Per: time.Minute}, {Events: 5, Per: 0}} {
		l := New(lim, nil, 1)
		for i := range 1000 {
			if ok, _ := l.Allow(fmt.Sprint(i % 3)); !ok {
				t.Fatalf("%v: denied", lim)
			}
		}
		if l.Len() != 0 {
			t.Errorf("%v: disabled limiter tracks %d keys", lim, l.Len())
		}
	}
}

func TestKeyCap(t *testing.T) {
	c := newClock()
	l := New(Limit{2, time.Minute}, c.Now, 3)

	// The attacker's own key is exhausted…
	l.Allow("attacker")
	l.Allow("attacker")
	if ok, _ := l.Allow("attacker"); ok {
		t.Fatal("attacker over limit allowed")
	}
	// …and a flood of fresh keys must not evict it (that would reset it).
	for i := range 1000 {
		l.Allow(fmt.Sprintf("spoof-%d", i))
	}
	if got := l.Len(); got != 3 {
		t.Errorf("Len = %d, want cap 3", got)
	}
	if ok, _ := l.Allow("attacker"); ok {
		t.Fatal("attacker's bucket was reset by a key flood")
	}
	// 998 of the 1000 spoofed keys found no room; they shared one bucket
	// of 2, so they were almost all denied: fail closed, visibly.
	if got := l.Overflows(); got != 998 {
		t.Errorf("Overflows = %d, want 998", got)
	}
	if ok, _ := l.Allow("newcomer"); ok {
		t.Error("newcomer allowed through an exhausted overflow bucket")
	}

	// Once keys go idle they are forgotten and new keys are tracked again.
	c.Advance(time.Minute)
	if ok, _ := l.Allow("newcomer"); !ok {
		t.Fatal("newcomer denied after the table went idle")
	}
	if ok, _ := l.Allow("newcomer"); !ok {
		t.Fatal("newcomer has no bucket of its own")
	}
	if got := l.Len(); got > 3 {
		t.Errorf("Len = %d over cap", got)
	}
}

func TestIdleKeysAreForgotten(t *testing.T) {
	c := newClock()
	l := New(Limit{5, time.Minute}, c.Now, 0)
	for i := range 50 {
		l.Allow(fmt.Sprint(i))
	}
	if got := l.Len(); got != 50 {
		t.Fatalf("Len = %d, want 50", got)
	}
	c.Advance(time.Minute)
	// Each call sweeps a couple of idle keys.
	for range 30 {
		l.Allow("fresh")
	}
	if got := l.Len(); got != 1 {
		t.Errorf("Len after idle period = %d, want 1", got)
	}
}

func TestConcurrent(t *testing.T) {
	c := newClock()
	l := New(Limit{10, time.Hour}, c.Now, 50)
	var (
		wg      sync.WaitGroup
		allowed [4]atomic.Int64
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := (g + i) % 4
				if ok, _ := l.Allow(fmt.Sprint(k)); ok {
					allowed[k].Add(1)
				}
				if i%100 == 0 {
					l.Len()
					l.Overflows()
				}
			}
		}()
	}
	wg.Wait()
	// The clock never moved, so each key got exactly its burst.
	for k := range allowed {
		if got := allowed[k].Load(); got != 10 {
			t.Errorf("key %d: %d allowed, want 10", k, got)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int
	}{
		{0, 1},
		{time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{3 * time.Minute, 180},
	}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.in); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestSet(t *testing.T) {
	c := newClock()
	s := Set{
		"login": New(Limit{1, time.Minute}, c.Now, 0),
		"token": New(Limit{2, time.Minute}, c.Now, 0),
	}
	if ok, _ := s.Allow("login", "ip"); !ok {
		t.Fatal("first login denied")
	}
	if ok, retry := s.Allow("login", "ip"); ok || retry != time.Minute {
		t.Fatalf("second login = %v, %v; want denied for 1m", ok, retry)
	}
	// Endpoints have separate buckets for the same key.
	if ok, _ := s.Allow("token", "ip"); !ok {
		t.Fatal("token denied because of login")
	}
	for range 100 {
		if ok, _ := s.Allow("unconfigured", "ip"); !ok {
			t.Fatal("endpoint without a limiter was limited")
		}
	}
}

// TestReserveRefunds: a refunded event is as if never spent, a refund
// counts once, and a denied reservation has nothing to refund.
func TestReserveRefunds(t *testing.T) {
	c := newClock()
	l := New(Limit{Events: 2, Per: 10 * time.Minute}, c.Now, 0)
	for i := range 10 {
		ok, _, refund := l.Reserve("ip")
		if !ok {
			t.Fatalf("reservation %d denied although every earlier one was refunded", i+1)
		}
		refund()
		refund() // a second refund gives nothing more
	}
	l.Allow("ip")
	l.Allow("ip")
	ok, after, refund := l.Reserve("ip")
	if ok || after <= 0 || after > 5*time.Minute {
		t.Fatalf("Reserve after the burst = %v, %v; want denied with a wait of at most one refill (5m)", ok, after)
	}
	refund() // no-op
	if ok, _ := l.Allow("ip"); ok {
		t.Fatal("a denied reservation's refund gave an event back")
	}
	c.Advance(after)
	if ok, _, _ := l.Reserve("ip"); !ok {
		t.Errorf("Reserve still denies after the announced wait %v", after)
	}
	if ok, _, _ := New(Limit{}, c.Now, 0).Reserve("ip"); !ok {
		t.Error("a disabled limit denied")
	}
	s := Set{"token": l}
	if ok, _, _ := s.Reserve("other", "ip"); !ok {
		t.Error("Set.Reserve limited an endpoint without a limiter")
	}
}

// TestReserveHoldsUnderConcurrency: of 50 concurrent reservations against
// a limit of 10, exactly 10 succeed, and refunding all of them restores
// the whole burst.
func TestReserveHoldsUnderConcurrency(t *testing.T) {
	c := newClock()
	l := New(Limit{Events: 10, Per: time.Hour}, c.Now, 0)
	var (
		mu      sync.Mutex
		refunds []func()
		wg      sync.WaitGroup
	)
	for range 50 {
		wg.Go(func() {
			if ok, _, refund := l.Reserve("ip"); ok {
				mu.Lock()
				refunds = append(refunds, refund)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(refunds) != 10 {
		t.Fatalf("%d of 50 concurrent reservations succeeded, want 10", len(refunds))
	}
	for _, r := range refunds {
		r()
	}
	n := 0
	for range 20 {
		if ok, _ := l.Allow("ip"); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after refunding every reservation %d events were available, want 10", n)
	}
}
