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
// (Linux), and that priority does not leak to other goroutines' threads.
func TestBackgroundPriority(t *testing.T) {
	nice := func() int {
		b, err := os.ReadFile("/proc/thread-self/stat")
		if err != nil {
			t.Skipf("no /proc/thread-self: %v", err)
		}
		// Fields after the parenthesised command name; nice is field 19.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		n, err := strconv.Atoi(f[16])
		if err != nil {
			t.Fatalf("parse nice from %q: %v", b, err)
		}
		return n
	}
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priority is Linux-only")
	}
	if got := background(nice); got != backgroundNice {
		t.Errorf("nice on the hashing thread = %d, want %d", got, backgroundNice)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if got := nice(); got == backgroundNice {
		t.Errorf("the caller's thread got the background priority too")
	}
}
