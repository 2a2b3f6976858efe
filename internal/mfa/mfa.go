// Package mfa holds the rules of passgate's second factors without HTTP or
// storage: time-based one-time passwords (RFC 6238) and their QR code,
// single-use recovery codes, the sealing of TOTP secrets at rest, and the
// --require-second-factor policy.
package mfa

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/passgate/passgate/internal/textsafe"
)

// TOTP parameters: the ones every authenticator app supports (RFC 6238
// defaults). Period is also the unit of the replay check.
const (
	Period     = 30 * time.Second
	Digits     = 6
	secretSize = 20 // 160 bits, RFC 4226's recommendation
	// Skew accepts the previous and the next period too, for clocks a
	// little off; the replay check still allows each step once.
	Skew = 1
)

// validateOpts are the TOTP parameters above as the library takes them
// for computing a code.
func validateOpts() totp.ValidateOpts {
	return totp.ValidateOpts{Period: uint(Period / time.Second), Digits: otp.Digits(Digits), Algorithm: otp.AlgorithmSHA1}
}

// generateOpts are the same parameters for an enrolment of account at
// issuer: a new secret of secretSize bytes, or secret when given.
func generateOpts(issuer, account string, secret []byte) totp.GenerateOpts {
	o := validateOpts()
	return totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: o.Period, SecretSize: secretSize, Secret: secret,
		Digits: o.Digits, Algorithm: o.Algorithm}
}

// RecoveryCodeCount is how many recovery codes an enrolment hands out.
const RecoveryCodeCount = 10

// KeySize is the length of the sealing key in bytes (AES-256).
const KeySize = 32

// Enrolment is a freshly generated TOTP secret, not yet stored.
type Enrolment struct {
	// Secret is the base32 secret without padding, for manual entry.
	Secret string
	// URL is the otpauth:// URL authenticator apps scan.
	URL string
}

// NewEnrolment generates a secret for account at issuer (the name an
// authenticator app shows).
func NewEnrolment(issuer, account string) (Enrolment, error) {
	k, err := totp.Generate(generateOpts(issuer, account, nil))
	if err != nil {
		return Enrolment{}, fmt.Errorf("generate totp secret: %w", err)
	}
	return Enrolment{Secret: k.Secret(), URL: k.URL()}, nil
}

// QRDataURI renders an enrolment's otpauth URL as a PNG QR code in a
// data: URL, which the pages' CSP allows as an image; nothing leaves the
// server and no script runs.
func (e Enrolment) QRDataURI() (string, error) {
	k, err := otp.NewKeyFromURL(e.URL)
	if err != nil {
		return "", fmt.Errorf("parse otpauth url: %w", err)
	}
	img, err := k.Image(240, 240)
	if err != nil {
		return "", fmt.Errorf("render qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("encode qr code: %w", err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// ErrInvalidCode is returned by Verify for a code that matches no step in
// the window.
var ErrInvalidCode = errors.New("mfa: invalid code")

// NormalizeCode removes the spaces and dashes people type in codes.
func NormalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, code)
}

// Verify checks code against secret (base32) at now within ±Skew periods
// and returns the time step it matched, which the caller must record so
// the code cannot be used twice (store.UseTOTPStep). Every step is
// compared in constant time.
func Verify(secret, code string, now time.Time) (step int64, err error) {
	code = NormalizeCode(code)
	if len(code) != Digits || strings.Trim(code, "0123456789") != "" {
		return 0, ErrInvalidCode
	}
	cur := now.Unix() / int64(Period/time.Second)
	matched := int64(-1)
	for d := int64(-Skew); d <= Skew; d++ {
		step := cur + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*int64(Period/time.Second), 0), validateOpts())
		if err != nil {
			return 0, fmt.Errorf("compute totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && matched < 0 {
			matched = step
		}
	}
	if matched < 0 {
		return 0, ErrInvalidCode
	}
	return matched, nil
}

// Code returns the code for secret at t (tests and the CLI use it to act
// as an authenticator app).
func Code(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, validateOpts())
}

// recoveryAlphabet is Crockford-like base32 without letters people
// confuse (no I, L, O, U), lower case.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var recoveryEncoding = base32.NewEncoding(recoveryAlphabet).WithPadding(base32.NoPadding)

// NewRecoveryCodes returns RecoveryCodeCount fresh codes of 80 random bits
// each, written as four groups of four characters. 80 bits make a plain
// SHA-256 hash (internal/token) a safe way to store them, as for tokens.
func NewRecoveryCodes() []string {
	codes := make([]string, RecoveryCodeCount)
	for i := range codes {
		b := make([]byte, 10)
		_, _ = rand.Read(b)
		s := recoveryEncoding.EncodeToString(b)
		codes[i] = s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
	}
	return codes
}

// NormalizeRecoveryCode maps what someone typed to the canonical form of
// NewRecoveryCodes (lower case, dashes placed), so a hash of it matches;
// ok is false for anything that cannot be a recovery code.
func NormalizeRecoveryCode(s string) (string, bool) {
	s = strings.ToLower(NormalizeCode(s))
	if len(s) != 16 {
		return "", false
	}
	for _, r := range s {
		if !strings.ContainsRune(recoveryAlphabet, r) {
			return "", false
		}
	}
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16], true
}

// Sealer encrypts TOTP secrets at rest with AES-256-GCM, bound to the
// account they belong to (a sealed secret copied onto another row does
// not open).
type Sealer struct {
	aead   cipher.AEAD
	handle []byte // HMAC key for UserHandle, derived from the key
}

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("passgate webauthn user handle"))
	return &Sealer{aead: aead, handle: m.Sum(nil)}, nil
}

// UserHandle is the WebAuthn user handle of username: stable, 32 bytes,
// and meaningless without the key, so an authenticator's list of
// accounts does not carry the username in the handle (WebAuthn §14.6.1)
// and nobody can make a handle for another user.
func (s *Sealer) UserHandle(username string) []byte {
	m := hmac.New(sha256.New, s.handle)
	m.Write([]byte(username))
	return m.Sum(nil)
}

const sealVersion = 1

// Seal encrypts plaintext for username.
func (s *Sealer) Seal(username string, plaintext []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	_, _ = rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte("passgate totp\x00"+username))
}

// ErrUnseal means a sealed value does not open with this key for this
// user: the key changed, or the value was tampered with or moved.
var ErrUnseal = errors.New("mfa: sealed secret does not open with this key")

// Open decrypts a value sealed for username.
func (s *Sealer) Open(username string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, ErrUnseal
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte("passgate totp\x00"+username))
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}

// LoadKey reads a sealing key file: KeySize bytes as 64 hex digits or
// base64 text (surrounding white space ignored), or KeySize raw bytes.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	return parseKey(b)
}

func parseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return b, nil
	}
	s := strings.TrimSpace(string(b))
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := base64.RawURLEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("secret key must be %d bytes: 64 hex digits, base64, or raw", KeySize)
}

// LoadOrCreateKey reads the key at path, creating it (mode 0600, random)
// if it does not exist. The data directory keeps it when no
// --secret-key-file is given; replicas sharing a database must share the
// key through --secret-key-file instead.
func LoadOrCreateKey(path string) ([]byte, error) {
	k, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	k = make([]byte, KeySize)
	_, _ = rand.Read(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first: use theirs.
		return LoadKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%x\n", k)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("write secret key: %w", werr)
	}
	return k, nil
}

// Policy modes of --require-second-factor.
const (
	PolicyOff      = "off"      // no second factor, even for enrolled users
	PolicyOptional = "optional" // enrolled users must use theirs
	PolicyAll      = "all"      // everyone must enrol before consent
	PolicyGroup    = "group"    // members of Group must enrol
)

// Policy is a parsed --require-second-factor value.
type Policy struct {
	Mode  string // one of the Policy* constants
	Group string // for PolicyGroup
}

// ParsePolicy parses off, optional, all or group:NAME.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case PolicyOff, PolicyOptional, PolicyAll:
		return Policy{Mode: s}, nil
	}
	if g, ok := strings.CutPrefix(s, "group:"); ok {
		if g == "" || !textsafe.Printable(g) || strings.ContainsAny(g, " ,") {
			return Policy{}, fmt.Errorf("require second factor %q: group name must be printable, without spaces or commas", s)
		}
		return Policy{Mode: PolicyGroup, Group: g}, nil
	}
	return Policy{}, fmt.Errorf("require second factor %q: want off, optional, all or group:NAME", s)
}

// String returns the flag form of p.
func (p Policy) String() string {
	if p.Mode == PolicyGroup {
		return "group:" + p.Group
	}
	if p.Mode == "" {
		return PolicyOptional
	}
	return p.Mode
}

// EnrolmentFor rebuilds the enrolment of an existing secret (base32), to
// show the same QR code again after a mistyped confirmation code.
func EnrolmentFor(issuer, account, secret string) (Enrolment, error) {
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil || len(raw) == 0 {
		return Enrolment{}, errors.New("mfa: malformed secret")
	}
	k, err := totp.Generate(generateOpts(issuer, account, raw))
	if err != nil {
		return Enrolment{}, fmt.Errorf("rebuild totp enrolment: %w", err)
	}
	return Enrolment{Secret: k.Secret(), URL: k.URL()}, nil
}
