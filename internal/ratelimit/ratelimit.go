// Package ratelimit keeps per-key token buckets (golang.org/x/time/rate)
// for passgate's endpoints, keyed by client IP. Memory is bounded: idle
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

	"golang.org/x/time/rate"
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
	DefaultLogin      = Limit{Events: 5, Per: 15 * time.Minute}
	DefaultToken      = Limit{Events: 10, Per: 15 * time.Minute}
	DefaultAuthorize  = Limit{Events: 20, Per: 15 * time.Minute}
	DefaultRegister   = Limit{Events: 10, Per: time.Hour}
	DefaultRevoke     = Limit{Events: 60, Per: time.Minute}
	DefaultIntrospect = Limit{Events: 60, Per: time.Minute}
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
	overflow  *rate.Limiter
	overflows uint64
}

type entry struct {
	key  string
	lim  *rate.Limiter
	last time.Time
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

func (l *Limiter) newBucket() *rate.Limiter {
	every := rate.Limit(float64(l.limit.Events) / l.limit.Per.Seconds())
	return rate.NewLimiter(every, l.limit.Events)
}

// Limit returns the limit being enforced.
func (l *Limiter) Limit() Limit { return l.limit }

// Allow spends one event for key. If the key is over its limit it returns
// false and how long until one event is available again (always > 0).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l.limit.Disabled() {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now, 2)

	var b *rate.Limiter
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
	return spend(b, now)
}

// Check reports, without spending anything, whether key could spend an
// event now, and if not how long until it could. Callers that count only
// failures Check first and Allow after a failure.
func (l *Limiter) Check(key string) (ok bool, retryAfter time.Duration) {
	if l.limit.Disabled() {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.overflow
	if el, found := l.keys[key]; found {
		b = el.Value.(*entry).lim
	} else if len(l.keys) < l.maxKeys {
		return true, 0 // a new key starts with a full bucket
	}
	if tokens := b.TokensAt(now); tokens < 1 {
		return false, time.Duration((1 - tokens) / float64(b.Limit()) * float64(time.Second))
	}
	return true, 0
}

// spend takes one token at now or reports the wait for one.
func spend(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := b.ReserveN(now, 1)
	if !r.OK() {
		// Only possible with a burst below 1, which New never builds.
		return false, time.Hour
	}
	d := r.DelayFrom(now)
	if d == 0 {
		return true, 0
	}
	// Denied: give the token back so a client that keeps hammering does
	// not push its own recovery further out than the limit says.
	r.CancelAt(now)
	return false, d
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

// Check reports whether key could spend an event of endpoint's limit now,
// without spending it (see Limiter.Check).
func (s Set) Check(endpoint, key string) (ok bool, retryAfter time.Duration) {
	l := s[endpoint]
	if l == nil {
		return true, 0
	}
	return l.Check(key)
}

// Allow spends one event of endpoint's limit for key. An endpoint with no
// Limiter in the set is not limited. Its signature fits
// oauthweb.Config.RateLimit.
func (s Set) Allow(endpoint, key string) (ok bool, retryAfter time.Duration) {
	l := s[endpoint]
	if l == nil {
		return true, 0
	}
	return l.Allow(key)
}
