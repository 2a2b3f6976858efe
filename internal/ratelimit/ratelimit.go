// Package ratelimit keeps per-key token buckets for passgate's endpoints,
// keyed by client IP or client_id. An event is spent before the work it
// pays for (a password hash) and may be refunded after it, so endpoints
// that count only failures stay atomic: of a burst, at most the limit gets
// through, however many run at once. Memory is bounded: idle
// keys are forgotten and the number of tracked keys is capped, so a flood
// of spoofed or distinct addresses cannot exhaust memory or reset the
// bucket of an attacker who is already being limited.
package ratelimit

import (
	"container/list"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is Events per Per, enforced as a token bucket: a key may spend up
// to Events at once, and regains them at Events/Per (so after a burst of
// Events, the next one is allowed after Per/Events). A Limit with
// Events <= 0 or Per <= 0 is disabled: everything is allowed.
type Limit struct {
	Events int
	Per    time.Duration
}

// Defaults, as in the seed where it had them. Treat them as constants.
var (
	DefaultLogin     = Limit{Events: 5, Per: 15 * time.Minute}
	DefaultToken     = Limit{Events: 10, Per: 15 * time.Minute}
	DefaultAuthorize = Limit{Events: 20, Per: 15 * time.Minute}
	DefaultRegister  = Limit{Events: 10, Per: time.Hour}
	// DefaultRegisterSuccess bounds successful registrations per IP:
	// hosted clients (claude.ai, ChatGPT) register from a few shared
	// egress addresses, one client per user who connects, so this is
	// high; it exists to bound how fast one address can fill the store.
	DefaultRegisterSuccess = Limit{Events: 200, Per: time.Hour}
	// DefaultClientSecret bounds failed client-secret verifications per
	// client_id, from every address together: it stops a distributed
	// guess of a weak operator-chosen secret (OAUTH_CLIENT_SECRET), and is
	// ten times the per-IP token limit so that one who knows the client_id
	// needs many addresses to hold up the real client's requests.
	DefaultClientSecret = Limit{Events: 100, Per: 15 * time.Minute}
	DefaultRevoke       = Limit{Events: 60, Per: time.Minute}
	DefaultIntrospect   = Limit{Events: 60, Per: time.Minute}
)

// Disabled reports whether l allows everything.
func (l Limit) Disabled() bool { return l.Events <= 0 || l.Per <= 0 }

// String formats l in ParseLimit's syntax ("5/15m0s" or "off").
func (l Limit) String() string {
	if l.Disabled() {
		return "off"
	}
	return fmt.Sprintf("%d/%s", l.Events, l.Per)
}

// ParseLimit parses "N/DURATION" such as "5/15m", "60/1m" or "10/h" (a
// bare unit means one of it), and "0" or "off" for a disabled limit.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "off") {
		return Limit{}, nil
	}
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("rate limit %q: want N/DURATION (e.g. 5/15m) or off", s)
	}
	events, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || events < 1 {
		return Limit{}, fmt.Errorf("rate limit %q: count must be a positive integer (use off to disable)", s)
	}
	d = strings.TrimSpace(d)
	per, err := time.ParseDuration(d)
	if err != nil {
		per, err = time.ParseDuration("1" + d)
	}
	if err != nil || per <= 0 {
		return Limit{}, fmt.Errorf("rate limit %q: period must be a positive duration like 15m or 1h", s)
	}
	return Limit{Events: events, Per: per}, nil
}

// DefaultMaxKeys is the key cap New uses when given maxKeys <= 0. A key
// costs a few hundred bytes, so this is tens of megabytes at most.
const DefaultMaxKeys = 100_000

// Limiter enforces one Limit per key. It is safe for concurrent use.
//
// Memory: a key whose bucket has refilled completely (no call for at least
// Per) is idle; forgetting it loses nothing, and idle keys are dropped as
// calls come in. At most maxKeys keys are tracked. When a new key arrives
// at capacity and no tracked key is idle, the new key is NOT tracked: it
// is charged to one shared overflow bucket with the same Limit, which
// fails closed (many distinct keys quickly exhaust it) instead of evicting
// a key that is being limited, which would fail open for an attacker who
// rotates addresses. Overflows counts these calls so operators can see it.
type Limiter struct {
	limit     Limit
	now       func() time.Time
	maxKeys   int
	mu        sync.Mutex
	keys      map[string]*list.Element // of *entry
	lru       *list.List               // front: most recently used
	overflow  *bucket
	overflows uint64
}

type entry struct {
	key  string
	lim  *bucket
	last time.Time
}

// bucket is a token bucket of capacity burst refilled at rate tokens per
// second. Its fields are guarded by the Limiter's mutex. (Not
// golang.org/x/time/rate: its reservations cannot be cancelled once their
// time has passed, and a refund comes after a slow hash.)
type bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

// refill adds what accrued since the last call, up to burst.
func (b *bucket) refill(now time.Time) {
	if b.last.IsZero() {
		b.tokens, b.last = b.burst, now
		return
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// spend takes one token at now or reports the wait for one; a denied call
// takes nothing, so a client that keeps hammering does not push its own
// recovery further out than the limit says.
func (b *bucket) spend(now time.Time) (bool, time.Duration) {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	return false, max(wait, time.Nanosecond)
}

// give returns one token, never above burst.
func (b *bucket) give(now time.Time) {
	b.refill(now)
	b.tokens = min(b.burst, b.tokens+1)
}

// New returns a Limiter for l. now defaults to time.Now; maxKeys <= 0
// means DefaultMaxKeys.
func New(l Limit, now func() time.Time, maxKeys int) *Limiter {
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	lim := &Limiter{
		limit:   l,
		now:     now,
		maxKeys: maxKeys,
		keys:    map[string]*list.Element{},
		lru:     list.New(),
	}
	if !l.Disabled() {
		lim.overflow = lim.newBucket()
	}
	return lim
}

func (l *Limiter) newBucket() *bucket {
	return &bucket{rate: float64(l.limit.Events) / l.limit.Per.Seconds(), burst: float64(l.limit.Events)}
}

// Limit returns the limit being enforced.
func (l *Limiter) Limit() Limit { return l.limit }

// Allow spends one event for key. If the key is over its limit it returns
// false and how long until one event is available again (always > 0).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	ok, retryAfter, _ = l.Reserve(key)
	return ok, retryAfter
}

// noRefund is the refund of a call that spent nothing.
func noRefund() {}

// Reserve is Allow that can be taken back: when it spends an event it also
// returns refund, which gives the event back (once, however often it is
// called; never above the bucket's capacity). Callers that count only
// failures Reserve before the work and refund on success: the spend and
// the check are one step, so concurrent requests cannot all pass a check
// made before any of them spent. A denied call returns a no-op refund.
func (l *Limiter) Reserve(key string) (ok bool, retryAfter time.Duration, refund func()) {
	if l.limit.Disabled() {
		return true, 0, noRefund
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now, 2)

	var b *bucket
	if el, found := l.keys[key]; found {
		e := el.Value.(*entry)
		e.last = now
		l.lru.MoveToFront(el)
		b = e.lim
	} else {
		if len(l.keys) >= l.maxKeys {
			l.sweep(now, 1)
		}
		if len(l.keys) >= l.maxKeys {
			l.overflows++
			b = l.overflow
		} else {
			e := &entry{key: key, lim: l.newBucket(), last: now}
			l.keys[key] = l.lru.PushFront(e)
			b = e.lim
		}
	}
	ok, retryAfter = b.spend(now)
	if !ok {
		return false, retryAfter, noRefund
	}
	refunded := false
	return true, 0, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if refunded {
			return
		}
		refunded = true
		// If the key was forgotten meanwhile, b is garbage and the key
		// starts again with a full bucket: nothing is lost either way.
		b.give(l.now())
	}
}

// sweep drops up to n idle keys from the least recently used end.
func (l *Limiter) sweep(now time.Time, n int) {
	for range n {
		el := l.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*entry)
		if now.Sub(e.last) < l.limit.Per {
			return // the oldest key is not idle, so none is
		}
		l.lru.Remove(el)
		delete(l.keys, e.key)
	}
}

// Len returns the number of keys currently tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// Overflows returns how many calls were charged to the shared overflow
// bucket because the key cap was reached with no idle key to forget.
func (l *Limiter) Overflows() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.overflows
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1, for an HTTP
// Retry-After header.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		return 1
	}
	return s
}

// Set is one Limiter per endpoint name, e.g. oauthweb's Limit* names.
// Build it once and do not modify it afterwards; Allow is then safe for
// concurrent use.
type Set map[string]*Limiter

// Reserve spends one event of endpoint's limit for key, refundable (see
// Limiter.Reserve). An endpoint with no Limiter in the set is not limited.
// Its signature fits oauthweb.Config.RateLimit.
func (s Set) Reserve(endpoint, key string) (ok bool, retryAfter time.Duration, refund func()) {
	l := s[endpoint]
	if l == nil {
		return true, 0, noRefund
	}
	return l.Reserve(key)
}

// Allow spends one event of endpoint's limit for key. An endpoint with no
// Limiter in the set is not limited.
func (s Set) Allow(endpoint, key string) (ok bool, retryAfter time.Duration) {
	l := s[endpoint]
	if l == nil {
		return true, 0
	}
	return l.Allow(key)
}
