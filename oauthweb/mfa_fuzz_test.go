package oauthweb

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/passgate/passgate/internal/mfa"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// FuzzSecondFactorCode posts arbitrary codes for a pending session: the
// sign-in completes only for the current TOTP code or an unused recovery
// code, and nothing answers 5xx.
func FuzzSecondFactorCode(f *testing.F) {
	ctx := context.Background()
	now := time.Now()
	sealer, err := mfa.NewSealer(bytes.Repeat([]byte{7}, mfa.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	fs := newFuzzServer(f, func(c *Config) { c.Sealer = sealer })
	s, st, h := fs.s, fs.st, fs.h
	en, err := mfa.NewEnrolment("passgate", testUser)
	if err != nil {
		f.Fatal(err)
	}
	const recovery = "abcd-efgh-jkmn-pqrs"
	if err := st.EnrollTOTP(ctx, store.TOTP{Username: testUser, Secret: sealer.Seal(testUser, []byte(en.Secret)), CreatedAt: now},
		[]string{token.Hash(recovery)}, now, nil); err != nil {
		f.Fatal(err)
	}
	code, _ := mfa.Code(en.Secret, now)
	for _, seed := range []string{code, recovery, strings.ToUpper(recovery), "000000", "", " ", strings.Repeat("1", 70), "12 34 56", "١٢٣٤٥٦", "abcd-efgh-jkmn-pqr\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, code string) {
		id := token.New(token.PrefixSession)
		n := time.Now()
		if err := st.CreateSession(ctx, store.Session{IDHash: token.Hash(id), Username: testUser, CSRFToken: "csrf", CreatedAt: n, ExpiresAt: n.Add(time.Minute), Pending: true}); err != nil {
			t.Fatal(err)
		}
		form := url.Values{"csrf": {"csrf"}, "code": {code}, "return_to": {"/apps"}}
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9999/login/second-factor", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", formCT)
		req.AddCookie(&http.Cookie{Name: s.cookie, Value: id})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("code %q: status %d", code, w.Code)
		}
		if w.Code != http.StatusSeeOther {
			return
		}
		_, totpErr := mfa.Verify(en.Secret, code, time.Now())
		rc, isRecovery := mfa.NormalizeRecoveryCode(code)
		if totpErr != nil && (!isRecovery || rc != recovery) {
			t.Fatalf("code %q completed the sign-in", code)
		}
		if loc := w.Header().Get("Location"); loc != "http://127.0.0.1:9999/apps" {
			t.Fatalf("code %q: redirect to %q", code, loc)
		}
	})
}
