// Package passwd hashes and verifies passwords and client secrets. New hashes
// are bcrypt; argon2id PHC strings ($argon2id$v=19$m=…,t=…,p=…$salt$hash)
// are accepted for verification so hashes made elsewhere can be imported.
//
// Verification is deliberately slow, so a Hasher bounds how many run at once
// (a login flood must not starve the proxy checks of CPU) and verifies a
// dummy hash when the account does not exist (no timing oracle).
package passwd

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the bcrypt cost of new hashes.
const DefaultCost = 12

// ErrMismatch is returned when a password does not match its hash.
var ErrMismatch = errors.New("passwd: password does not match")

// ErrUnsupported is returned for a hash in a format passgate cannot verify.
var ErrUnsupported = errors.New("passwd: unsupported hash format")

// Hasher verifies and creates hashes with bounded concurrency. The zero value
// is not usable; use NewHasher or New.
type Hasher struct {
	sem      chan struct{}
	cost     int
	priority Priority
	dummy    string
	verified atomic.Uint64
}

// Priority is how the threads that run hashes yield to the rest of the
// machine (Linux; elsewhere hashes run at normal priority): a nice value
// from 0 (normal) to 19, or idle (SCHED_IDLE). The zero value is
// DefaultPriority.
type Priority struct {
	nice int
	idle bool
	set  bool
}

// Nice returns the priority of nice value n (0 to 19).
func Nice(n int) Priority { return Priority{nice: n, set: true} }

// IdlePriority runs hashes under SCHED_IDLE: only when no other thread of
// the machine wants the CPU; a login waits for as long as the machine is
// fully busy (bounded by the request's context). Measured, it is worse for
// the checks than nice 19: the starved hashing thread still holds one of
// Go's scheduler slots (P), which nothing else can use until the kernel
// runs that thread again.
var IdlePriority = Priority{idle: true, set: true}

// DefaultPriority is nice 19: the kernel gives a nice-19 thread about
// 1/70 of a CPU that a nice-0 thread also wants, so a flood of logins
// takes almost nothing from the checks (and the rest of the machine),
// while a login still progresses on a fully busy machine. See
// docs/benchmarks.md, "Login flood", for the measurements behind it.
var DefaultPriority = Nice(19)

// ParsePriority reads "idle" or a nice value from 0 to 19.
func ParsePriority(s string) (Priority, error) {
	if s == "idle" {
		return IdlePriority, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 19 {
		return Priority{}, fmt.Errorf("passwd: priority %q is neither idle nor a nice value from 0 to 19", s)
	}
	return Nice(n), nil
}

func (p Priority) String() string {
	p = p.orDefault()
	if p.idle {
		return "idle"
	}
	return strconv.Itoa(p.nice)
}

func (p Priority) orDefault() Priority {
	if !p.set {
		return DefaultPriority
	}
	return p
}

// Options configure New. The zero value is the default.
type Options struct {
	// Concurrency bounds the hashes that run at once. Optional: default
	// half the usable CPUs, at least one: bcrypt never yields, so with one
	// verification per CPU a login flood fills every scheduler slot and
	// the proxy checks sharing the process wait for preemption (measured
	// on 2 cores: check p50 4.2 s during a flood with two slots, 1.4 ms
	// with one).
	Concurrency int
	// Cost is the bcrypt cost of new hashes. Optional: default DefaultCost.
	Cost int
	// Priority of the hashing threads. Optional: default DefaultPriority.
	Priority Priority
}

// NewHasher returns a Hasher allowing at most concurrency verifications at a
// time (the default when <= 0, see Options.Concurrency), creating bcrypt
// hashes of the given cost (DefaultCost when 0), at DefaultPriority.
func NewHasher(concurrency, cost int) (*Hasher, error) {
	return New(Options{Concurrency: concurrency, Cost: cost})
}

// New returns a Hasher configured by o.
func New(o Options) (*Hasher, error) {
	concurrency, cost, prio := o.Concurrency, o.Cost, o.Priority.orDefault()
	if concurrency <= 0 {
		concurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cost == 0 {
		cost = DefaultCost
	}
	if !prio.idle && (prio.nice < 0 || prio.nice > 19) {
		return nil, fmt.Errorf("passwd: nice value %d out of range [0, 19]", prio.nice)
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("passwd: bcrypt cost %d out of range [%d, %d]", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("passgate-dummy-password"), cost)
	if err != nil {
		return nil, fmt.Errorf("passwd: make dummy hash: %w", err)
	}
	return &Hasher{sem: make(chan struct{}, concurrency), cost: cost, priority: prio, dummy: string(dummy)}, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("passwd: wait for a verification slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// background runs f on a fresh OS thread with priority p and returns its
// result. bcrypt never yields; the semaphore keeps a CPU free for the
// proxy checks, and the lowered priority makes the kernel prefer every
// other thread when the machine is busy anyway. The goroutine exits still
// locked to its thread, so Go discards the thread and its priority with
// it.
func background[T any](p Priority, f func() T) T {
	out := make(chan T, 1)
	go func() {
		runtime.LockOSThread()
		setThreadPriority(p)
		out <- f()
	}()
	return <-out
}

// Concurrency is how many hashes may run at once. Each holds a Go
// scheduler slot (a P) for its whole run, since bcrypt never yields: the
// process needs GOMAXPROCS above this for anything else to run during a
// login flood (see the caller's use of it).
func (h *Hasher) Concurrency() int { return cap(h.sem) }

// Verifications returns how many verifications Verify has run (each a full
// hash), for tests that prove a limit bounds them.
func (h *Hasher) Verifications() uint64 { return h.verified.Load() }

// Hash returns a new bcrypt hash of password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	type result struct {
		hash string
		err  error
	}
	r := background(h.priority, func() result {
		hash, err := Hash(password, h.cost)
		return result{hash, err}
	})
	return r.hash, r.err
}

// Verify checks password against hash. An empty hash (unknown account)
// verifies against a dummy hash of the same cost and then reports
// ErrMismatch, so both cases take the same time.
func (h *Hasher) Verify(ctx context.Context, hash, password string) error {
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	h.verified.Add(1)
	return background(h.priority, func() error {
		if hash == "" {
			_ = Verify(h.dummy, password)
			return ErrMismatch
		}
		return Verify(hash, password)
	})
}

// Hash returns a bcrypt hash of password with the given cost. Passwords
// longer than bcrypt's MaxBytes are refused rather than silently truncated.
func Hash(password string, cost int) (string, error) {
	if len(password) > MaxBytes {
		return "", fmt.Errorf("passwd: password longer than %d bytes", MaxBytes)
	}
	b, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("passwd: bcrypt: %w", err)
	}
	return string(b), nil
}

// Verify checks password against a bcrypt or argon2id hash without bounding
// concurrency; servers use Hasher.Verify.
func Verify(hash, password string) error {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrMismatch
		}
		if err != nil {
			return fmt.Errorf("passwd: bcrypt: %w", err)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	default:
		return ErrUnsupported
	}
}

// CheckFormat reports whether hash is in a format Verify understands and is
// well formed, for validating configuration such as OAUTH_PASSWORD_HASH.
func CheckFormat(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("passwd: malformed bcrypt hash: %w", err)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	default:
		return ErrUnsupported
	}
}

type argon2Params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2id parses $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>.
func parseArgon2id(hash string) (argon2Params, error) {
	var p argon2Params
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" {
		return p, errors.New("passwd: malformed argon2id hash")
	}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, errors.New("passwd: malformed argon2id parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, errors.New("passwd: malformed argon2id parameters")
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > 255 {
				return p, errors.New("passwd: argon2id parallelism out of range")
			}
			p.threads = uint8(n)
		default:
			return p, errors.New("passwd: unknown argon2id parameter")
		}
	}
	// Bound the parameters so a hostile hash in the configuration cannot
	// make each login allocate gigabytes or spin for minutes.
	if p.memory == 0 || p.memory > 1<<20 || p.time == 0 || p.time > 16 || p.threads == 0 {
		return p, errors.New("passwd: argon2id parameters out of range")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return p, errors.New("passwd: malformed argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return p, errors.New("passwd: malformed argon2id key")
	}
	return p, nil
}

func verifyArgon2id(hash, password string) error {
	p, err := parseArgon2id(hash)
	if err != nil {
		return err
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	if subtle.ConstantTimeCompare(key, p.key) != 1 {
		return ErrMismatch
	}
	return nil
}
