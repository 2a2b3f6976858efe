package mfa

import (
	"bytes"
	"encoding/base64"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVerifyWindowAndSteps(t *testing.T) {
	e, err := NewEnrolment("passgate", "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_900_000_015, 0)
	cur := now.Unix() / 30
	tests := []struct {
		name     string
		at       time.Time
		wantStep int64
		wantErr  bool
	}{
		{"current", now, cur, false},
		{"previous period", now.Add(-30 * time.Second), cur - 1, false},
		{"next period", now.Add(30 * time.Second), cur + 1, false},
		{"two periods old", now.Add(-60 * time.Second), 0, true},
		{"two periods ahead", now.Add(60 * time.Second), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, err := Code(e.Secret, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			step, err := Verify(e.Secret, code, now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify = %d, %v; want error %v", step, err, tt.wantErr)
			}
			if !tt.wantErr && step != tt.wantStep {
				t.Errorf("step = %d, want %d", step, tt.wantStep)
			}
		})
	}
	code, _ := Code(e.Secret, now)
	for _, bad := range []string{"", "12345", "1234567", "abcdef", code[:3] + " " + code[3:] + "x", "١٢٣٤٥٦"} {
		if _, err := Verify(e.Secret, bad, now); err == nil {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
	if _, err := Verify(e.Secret, code[:3]+" "+code[3:], now); err != nil {
		t.Errorf("Verify with a space: %v", err)
	}
}

func TestQRDataURIIsPNG(t *testing.T) {
	e, err := NewEnrolment("My Gate", "bob@example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL, "otpauth://totp/") || !strings.Contains(e.URL, "secret="+e.Secret) {
		t.Errorf("URL = %q", e.URL)
	}
	uri, err := e.QRDataURI()
	if err != nil {
		t.Fatal(err)
	}
	b64, ok := strings.CutPrefix(uri, "data:image/png;base64,")
	if !ok {
		t.Fatalf("not a PNG data URI: %.40s", uri)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
		t.Errorf("PNG does not decode: %v", err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes := NewRecoveryCodes()
	if len(codes) != RecoveryCodeCount {
		t.Fatalf("%d codes", len(codes))
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if seen[c] {
			t.Errorf("duplicate code %s", c)
		}
		seen[c] = true
		got, ok := NormalizeRecoveryCode(" " + strings.ToUpper(strings.ReplaceAll(c, "-", " ")) + " ")
		if !ok || got != c {
			t.Errorf("NormalizeRecoveryCode(typed %s) = %q, %v", c, got, ok)
		}
	}
	for _, bad := range []string{"", "abcd-efgh-jkmn-pqr", "abcd-efgh-jkmn-pqrsi", "iiii-iiii-iiii-iiii", "ab\x00d-efgh-jkmn-pqrs"} {
		if got, ok := NormalizeRecoveryCode(bad); ok {
			t.Errorf("NormalizeRecoveryCode(%q) = %q, ok", bad, got)
		}
	}
}

func FuzzNormalizeRecoveryCode(f *testing.F) {
	f.Add("abcd-efgh-jkmn-pqrs")
	f.Add("ABCD EFGH JKMN PQRS")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := NormalizeRecoveryCode(s)
		if !ok {
			return
		}
		again, ok2 := NormalizeRecoveryCode(got)
		if !ok2 || again != got || len(got) != 19 {
			t.Errorf("not canonical: %q -> %q -> %q", s, got, again)
		}
	})
}

func TestSealer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal("alice", []byte("JBSWY3DPEHPK3PXP"))
	if bytes.Contains(sealed, []byte("JBSWY3DPEHPK3PXP")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if pt, err := s.Open("alice", sealed); err != nil || string(pt) != "JBSWY3DPEHPK3PXP" {
		t.Errorf("Open = %q, %v", pt, err)
	}
	if _, err := s.Open("bob", sealed); err == nil {
		t.Errorf("a secret sealed for alice opened for bob")
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, KeySize))
	if _, err := other.Open("alice", sealed); err == nil {
		t.Errorf("opened with another key")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open("alice", tampered); err == nil {
		t.Errorf("tampered value opened")
	}
	for _, short := range [][]byte{nil, {sealVersion}, sealed[:10]} {
		if _, err := s.Open("alice", short); err == nil {
			t.Errorf("Open(%x) succeeded", short)
		}
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Errorf("NewSealer accepted a 16-byte key")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second load = %x, %v; want the same key", k2, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(bad); err == nil {
		t.Errorf("a malformed key file was accepted")
	}
	b64 := filepath.Join(t.TempDir(), "b64.key")
	os.WriteFile(b64, []byte(base64.StdEncoding.EncodeToString(k1)+"\n"), 0o600)
	if k, err := LoadKey(b64); err != nil || !bytes.Equal(k, k1) {
		t.Errorf("base64 key = %x, %v", k, err)
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"off", Policy{Mode: PolicyOff}, false},
		{"optional", Policy{Mode: PolicyOptional}, false},
		{"all", Policy{Mode: PolicyAll}, false},
		{"group:admins", Policy{Mode: PolicyGroup, Group: "admins"}, false},
		{"group:", Policy{}, true},
		{"group:a b", Policy{}, true},
		{"group:a\x1b", Policy{}, true},
		{"ALL", Policy{}, true},
		{"", Policy{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParsePolicy(%q) = %+v, %v", tt.in, got, err)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}
