package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/passgate/passgate/store"
)

func enrolled(t *testing.T, s store.Store, user string, codes ...string) store.TOTP {
	t.Helper()
	ctx := t.Context()
	if _, err := s.GetUser(ctx, user); errors.Is(err, store.ErrNotFound) {
		must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: user, PasswordHash: "x", CreatedAt: base}))
	}
	tt := store.TOTP{Username: user, Secret: []byte("sealed\x00\xffsecret of " + user), CreatedAt: base}
	hashes := make([]string, len(codes))
	for i, c := range codes {
		hashes[i] = h(c)
	}
	must(t, "EnrollTOTP", s.EnrollTOTP(ctx, tt, hashes, base, nil))
	return tt
}

func testTOTP(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetTOTP(ctx, "alice")
	wantErr(t, "GetTOTP before enrolment", err, store.ErrNotFound)
	before := auditCount(t, s)
	wantErr(t, "EnrollTOTP unknown user", s.EnrollTOTP(ctx, store.TOTP{Username: "ghost", Secret: []byte("x"), CreatedAt: base}, []string{h("g1")}, base,
		&store.AuditEvent{Event: store.EventMFAEnrolled, Success: true, Username: "ghost", CreatedAt: base}), store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "ghost"); n != 0 || auditCount(t, s) != before {
		t.Errorf("EnrollTOTP for an unknown user wrote %d codes / %d audit rows", n, auditCount(t, s)-before)
	}

	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x", CreatedAt: base}))
	ev := store.AuditEvent{Event: store.EventMFAEnrolled, Success: true, Username: "alice", CreatedAt: base}
	first := store.TOTP{Username: "alice", Secret: []byte{0, 1, 2, 0xff}, CreatedAt: base}
	must(t, "EnrollTOTP", s.EnrollTOTP(ctx, first, []string{h("a1"), h("a2")}, base, &ev))
	got, err := s.GetTOTP(ctx, "alice")
	must(t, "GetTOTP", err)
	diff(t, "GetTOTP", got, utc(first))
	if rows, _ := s.ListAudit(ctx, store.AuditFilter{Event: store.EventMFAEnrolled}); len(rows) != 1 {
		t.Errorf("mfa_enrolled rows = %d, want 1", len(rows))
	}

	// Steps: only increasing steps are accepted.
	must(t, "UseTOTPStep 100", s.UseTOTPStep(ctx, "alice", 100, at(time.Minute)))
	for _, step := range []int64{100, 99, 0} {
		wantErr(t, "UseTOTPStep replay", s.UseTOTPStep(ctx, "alice", step, at(time.Minute)), store.ErrConflict)
	}
	must(t, "UseTOTPStep 101", s.UseTOTPStep(ctx, "alice", 101, at(2*time.Minute)))
	wantErr(t, "UseTOTPStep without secret", s.UseTOTPStep(ctx, "bob", 5, base), store.ErrNotFound)
	got, err = s.GetTOTP(ctx, "alice")
	must(t, "GetTOTP", err)
	if got.LastStep != 101 || !got.LastUsedAt.Equal(at(2*time.Minute)) {
		t.Errorf("after use: LastStep %d LastUsedAt %v, want 101 %v", got.LastStep, got.LastUsedAt, at(2*time.Minute))
	}

	// Enrolling again replaces the secret and every recovery code.
	second := store.TOTP{Username: "alice", Secret: []byte("new"), CreatedAt: at(time.Hour)}
	must(t, "EnrollTOTP again", s.EnrollTOTP(ctx, second, []string{h("b1")}, at(time.Hour), nil))
	got, err = s.GetTOTP(ctx, "alice")
	must(t, "GetTOTP", err)
	diff(t, "GetTOTP after re-enrolment", got, utc(second))
	wantErr(t, "old recovery code", s.UseRecoveryCode(ctx, "alice", h("a1"), at(time.Hour), nil), store.ErrNotFound)
	if n, err := s.CountRecoveryCodes(ctx, "alice"); err != nil || n != 1 {
		t.Errorf("CountRecoveryCodes = %d, %v; want 1", n, err)
	}

	rm := store.AuditEvent{Event: store.EventMFARemoved, Success: true, Username: "alice", CreatedAt: at(2 * time.Hour)}
	must(t, "DeleteTOTP", s.DeleteTOTP(ctx, "alice", at(2*time.Hour), &rm))
	_, err = s.GetTOTP(ctx, "alice")
	wantErr(t, "GetTOTP after delete", err, store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 0 {
		t.Errorf("recovery codes left after DeleteTOTP: %d", n)
	}
	before = auditCount(t, s)
	wantErr(t, "DeleteTOTP again", s.DeleteTOTP(ctx, "alice", at(2*time.Hour), &rm), store.ErrNotFound)
	if auditCount(t, s) != before {
		t.Errorf("failed DeleteTOTP wrote an audit row")
	}
}

func testTOTPStepConcurrent(t *testing.T, s store.Store) {
	enrolled(t, s, "alice")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.UseTOTPStep(t.Context(), "alice", 7, base) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("UseTOTPStep: %v, want nil or ErrConflict", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent uses of one step succeeded, want 1", ok, n)
	}
}

func testRecoveryCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolled(t, s, "alice", "c1", "c2", "c3")
	enrolled(t, s, "bob", "b1")
	if n, err := s.CountRecoveryCodes(ctx, "alice"); err != nil || n != 3 {
		t.Fatalf("CountRecoveryCodes = %d, %v; want 3", n, err)
	}
	// Someone else's code is no code.
	wantErr(t, "bob's code for alice", s.UseRecoveryCode(ctx, "alice", h("b1"), base, nil), store.ErrNotFound)
	ev := store.AuditEvent{Event: store.EventRecoveryCodeUsed, Success: true, Username: "alice", CreatedAt: base}
	must(t, "UseRecoveryCode", s.UseRecoveryCode(ctx, "alice", h("c2"), base, &ev))
	before := auditCount(t, s)
	wantErr(t, "UseRecoveryCode again", s.UseRecoveryCode(ctx, "alice", h("c2"), at(time.Second), &ev), store.ErrNotFound)
	if auditCount(t, s) != before {
		t.Errorf("refused UseRecoveryCode wrote an audit row")
	}
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 2 {
		t.Errorf("CountRecoveryCodes after one use = %d, want 2", n)
	}
	must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(ctx, "alice", []string{h("d1"), h("d2"), h("d3"), h("d4")}, at(time.Hour), nil))
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 4 {
		t.Errorf("CountRecoveryCodes after replace = %d, want 4", n)
	}
	for _, old := range []string{"c1", "c3"} {
		wantErr(t, "replaced code "+old, s.UseRecoveryCode(ctx, "alice", h(old), at(time.Hour), nil), store.ErrNotFound)
	}
	must(t, "UseRecoveryCode new", s.UseRecoveryCode(ctx, "alice", h("d4"), at(time.Hour), nil))
	wantErr(t, "ReplaceRecoveryCodes without TOTP", s.ReplaceRecoveryCodes(ctx, "carol", []string{h("x")}, base, nil), store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "bob"); n != 1 {
		t.Errorf("bob's codes changed: %d", n)
	}
}

func testRecoveryCodeConcurrent(t *testing.T, s store.Store) {
	enrolled(t, s, "alice", "only")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.UseRecoveryCode(t.Context(), "alice", h("only"), base, nil) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("UseRecoveryCode: %v, want nil or ErrNotFound", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent uses of one recovery code succeeded, want 1", ok, n)
	}
}

func testResetSecondFactors(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	enrolled(t, s, "alice", "a1")
	enrolled(t, s, "bob", "b1")
	for _, u := range []string{"alice", "bob"} {
		must(t, "CreateSession", s.CreateSession(ctx, store.Session{IDHash: h("s " + u), Username: u, CSRFToken: "c", CreatedAt: base, ExpiresAt: at(time.Hour)}))
	}
	ga := issue(t, s, "alice", "c1", "alice")
	gb := issue(t, s, "bob", "c1", "bob")
	pending := newCode("alice pending", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, pending, nil))
	sub := Subscribe(t, s)
	now := at(time.Minute)
	ev := store.AuditEvent{Event: store.EventMFAReset, Success: true, IP: "cli", Username: "alice", CreatedAt: now}
	hashes, err := s.ResetSecondFactors(ctx, "alice", now, &ev)
	must(t, "ResetSecondFactors", err)
	want := []string{ga.Access.Hash, ga.Refresh.Hash}
	diff(t, "revoked hashes", sorted(hashes), sorted(want))
	if !sub.WaitHashes(time.Second, want...) {
		t.Errorf("revocations not notified within 1s")
	}
	_, err = s.GetTOTP(ctx, "alice")
	wantErr(t, "alice's TOTP", err, store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 0 {
		t.Errorf("alice's recovery codes left: %d", n)
	}
	_, err = s.GetSession(ctx, h("s alice"), now)
	wantErr(t, "alice's session", err, store.ErrNotFound)
	_, err = s.GetAuthCode(ctx, pending.CodeHash, now)
	wantErr(t, "alice's unredeemed code", err, store.ErrNotFound)
	rows, err := s.ListAudit(ctx, store.AuditFilter{Event: store.EventMFAReset})
	must(t, "ListAudit", err)
	if len(rows) != 1 || rows[0].Username != "alice" {
		t.Errorf("mfa_reset rows: %+v", rows)
	}
	// Bob is untouched.
	if _, err := s.GetTOTP(ctx, "bob"); err != nil {
		t.Errorf("bob's TOTP: %v", err)
	}
	if _, err := s.GetSession(ctx, h("s bob"), now); err != nil {
		t.Errorf("bob's session: %v", err)
	}
	if tok, err := s.GetToken(ctx, gb.Access.Hash, now); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("bob's token: %v, revoked %v", err, tok.RevokedAt)
	}
	_, err = s.ResetSecondFactors(ctx, "ghost", now, &ev)
	wantErr(t, "ResetSecondFactors unknown user", err, store.ErrNotFound)
	if rows, _ := s.ListAudit(ctx, store.AuditFilter{Event: store.EventMFAReset}); len(rows) != 1 {
		t.Errorf("failed reset wrote an audit row")
	}
}

func testDeleteUserRemovesSecondFactors(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolled(t, s, "alice", "a1")
	must(t, "DeleteUser", s.DeleteUser(ctx, "alice", base))
	// A new account of the same name must not inherit the old factors.
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "y", CreatedAt: base}))
	_, err := s.GetTOTP(ctx, "alice")
	wantErr(t, "GetTOTP after DeleteUser", err, store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 0 {
		t.Errorf("recovery codes survived DeleteUser: %d", n)
	}
}
