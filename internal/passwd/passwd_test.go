package passwd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

func argonHash(password string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func TestVerify(t *testing.T) {
	bc, err := Hash("s3cret", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		hash     string
		password string
		want     error
	}{
		{"bcrypt ok", bc, "s3cret", nil},
		{"bcrypt wrong", bc, "S3cret", ErrMismatch},
		{"argon2id ok", argonHash("s3cret"), "s3cret", nil},
		{"argon2id wrong", argonHash("s3cret"), "nope", ErrMismatch},
		{"plaintext is not a hash", "s3cret", "s3cret", ErrUnsupported},
		{"empty", "", "", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Verify(tt.hash, tt.password); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckFormat(t *testing.T) {
	bc, _ := Hash("x", bcrypt.MinCost)
	good := []string{bc, argonHash("x")}
	bad := []string{"", "x", "$2b$10$short", "$argon2id$v=19$m=99999999,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=64$x$y"}
	for _, h := range good {
		if err := CheckFormat(h); err != nil {
			t.Errorf("CheckFormat(%q) = %v, want nil", h, err)
		}
	}
	for _, h := range bad {
		if err := CheckFormat(h); err == nil {
			t.Errorf("CheckFormat(%q) = nil, want error", h)
		}
	}
}

func TestHasherUnknownAccount(t *testing.T) {
	h, err := NewHasher(1, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(context.Background(), "", "passgate-dummy-password"); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(empty hash) = %v, want ErrMismatch even for the dummy's password", err)
	}
	hash, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(context.Background(), hash, "pw"); err != nil {
		t.Errorf("Verify = %v", err)
	}
}

func TestHasherBoundsConcurrency(t *testing.T) {
	h, err := NewHasher(1, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h.sem <- struct{}{} // occupy the only slot
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Verify(ctx, "", "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with full semaphore and cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestHashRefusesLongPasswords(t *testing.T) {
	long := string(make([]byte, 73))
	if _, err := Hash(long, bcrypt.MinCost); err == nil {
		t.Error("Hash accepted a 73-byte password that bcrypt would truncate")
	}
}

// TestBackgroundPriority: hashes run on a thread the kernel deprioritises
// as configured (Linux: nice value, or SCHED_IDLE), and that priority does
// not leak to other goroutines' threads.
func TestBackgroundPriority(t *testing.T) {
	// stat returns the thread's nice value (field 19) and scheduling
	// policy (field 41).
	stat := func() (nice, policy int) {
		b, err := os.ReadFile("/proc/thread-self/stat")
		if err != nil {
			t.Skipf("no /proc/thread-self: %v", err)
		}
		// Fields after the parenthesised command name start at field 3.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		n, err1 := strconv.Atoi(f[16])
		p, err2 := strconv.Atoi(f[38])
		if err1 != nil || err2 != nil {
			t.Fatalf("parse nice and policy from %q", b)
		}
		return n, p
	}
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priority is Linux-only")
	}
	// The process may itself run under nice (a CI script started with
	// `nice`): a thread the hasher leaves alone keeps that inherited value.
	runtime.LockOSThread()
	base, _ := stat()
	runtime.UnlockOSThread()
	type got struct{ nice, policy int }
	for _, tt := range []struct {
		p    Priority
		want got
	}{
		{Priority{}, got{19, 0}}, // the default
		{Nice(5), got{5, 0}},
		{Nice(0), got{base, 0}},      // 0 leaves the thread as it is
		{IdlePriority, got{base, 5}}, // SCHED_IDLE
	} {
		g := background(tt.p, func() got { n, p := stat(); return got{n, p} })
		if g != tt.want {
			t.Errorf("priority %v: hashing thread has %+v; want %+v", tt.p, g, tt.want)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if n, p := stat(); n != base || p != 0 {
		t.Errorf("the caller's thread got nice %d, policy %d", n, p)
	}
}

func TestParsePriority(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Priority
		ok   bool
	}{
		{"idle", IdlePriority, true}, {"19", Nice(19), true}, {"0", Nice(0), true},
		{"20", Priority{}, false}, {"-1", Priority{}, false}, {"", Priority{}, false}, {"IDLE", Priority{}, false}, {"5x", Priority{}, false},
	} {
		got, err := ParsePriority(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePriority(%q) = %v, %v", tt.in, got, err)
		}
	}
	if _, err := New(Options{Cost: 4, Priority: Nice(25)}); err == nil {
		t.Error("New accepted nice 25")
	}
}
