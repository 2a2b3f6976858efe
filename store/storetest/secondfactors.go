package storetest

import (
	"errors"
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
	errs := race(8, func(int) error { return s.UseTOTPStep(t.Context(), "alice", 7, base) })
	oneWinner(t, "use of one TOTP step", errs, store.ErrConflict)
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
	errs := race(8, func(int) error { return s.UseRecoveryCode(t.Context(), "alice", h("only"), base, nil) })
	oneWinner(t, "use of one recovery code", errs, store.ErrNotFound)
}

func testResetSecondFactors(t *testing.T, s store.Store) {
	ctx := t.Context()
	enrolled(t, s, "alice", "a1")
	enrolled(t, s, "bob", "b1")
	f := signIn(t, s)
	now := at(time.Minute)
	ev := store.AuditEvent{Event: store.EventMFAReset, Success: true, IP: "cli", Username: "alice", CreatedAt: now}
	hashes, err := s.ResetSecondFactors(ctx, "alice", now, &ev)
	must(t, "ResetSecondFactors", err)
	diff(t, "revoked hashes", sorted(hashes), sorted([]string{f.alice.Access.Hash, f.alice.Refresh.Hash}))
	f.wantAliceSignedOut(t, s, now)
	_, err = s.GetTOTP(ctx, "alice")
	wantErr(t, "alice's TOTP", err, store.ErrNotFound)
	if n, _ := s.CountRecoveryCodes(ctx, "alice"); n != 0 {
		t.Errorf("alice's recovery codes left: %d", n)
	}
	rows, err := s.ListAudit(ctx, store.AuditFilter{Event: store.EventMFAReset})
	must(t, "ListAudit", err)
	if len(rows) != 1 || rows[0].Username != "alice" {
		t.Errorf("mfa_reset rows: %+v", rows)
	}
	if _, err := s.GetTOTP(ctx, "bob"); err != nil {
		t.Errorf("bob's TOTP: %v", err)
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

func newPasskey(id, user string, created time.Time) store.Passkey {
	return store.Passkey{ID: []byte("cred\x00\xff" + id), Username: user, Name: "Key " + id, Record: []byte(`{"id":"` + id + `"}`),
		SignCount: 3, BackupEligible: true, BackupState: false, CreatedAt: created}
}

func testPasskeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, u := range []string{"alice", "bob"} {
		must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: u, PasswordHash: "x", CreatedAt: base}))
	}
	p1 := newPasskey("p1", "alice", base)
	p2 := newPasskey("p2", "alice", at(time.Minute))
	p2.SignCount, p2.BackupEligible = 0, false
	pb := newPasskey("pb", "bob", base)
	ev := store.AuditEvent{Event: store.EventPasskeyAdded, Success: true, Username: "alice", CreatedAt: base}
	for _, p := range []store.Passkey{p2, p1, pb} {
		must(t, "CreatePasskey", s.CreatePasskey(ctx, p, &ev))
	}
	before := auditCount(t, s)
	dup := newPasskey("p1", "bob", base)
	wantErr(t, "CreatePasskey duplicate ID", s.CreatePasskey(ctx, dup, &ev), store.ErrAlreadyExists)
	wantErr(t, "CreatePasskey unknown user", s.CreatePasskey(ctx, newPasskey("g", "ghost", base), &ev), store.ErrNotFound)
	if auditCount(t, s) != before {
		t.Errorf("failed CreatePasskey wrote an audit row")
	}
	got, err := s.ListPasskeys(ctx, "alice")
	must(t, "ListPasskeys", err)
	diff(t, "ListPasskeys (oldest first)", got, utc([]store.Passkey{p1, p2}))
	one, err := s.GetPasskey(ctx, pb.ID)
	must(t, "GetPasskey", err)
	diff(t, "GetPasskey", one, utc(pb))
	_, err = s.GetPasskey(ctx, []byte("nope"))
	wantErr(t, "GetPasskey unknown", err, store.ErrNotFound)

	// Counters must advance; both zero is an authenticator without one.
	must(t, "UsePasskey 4", s.UsePasskey(ctx, p1.ID, 4, true, []byte("r2"), at(time.Hour)))
	for _, n := range []uint32{4, 3, 0} {
		wantErr(t, "UsePasskey stale counter", s.UsePasskey(ctx, p1.ID, n, true, []byte("bad"), at(time.Hour)), store.ErrConflict)
	}
	must(t, "UsePasskey zero counter", s.UsePasskey(ctx, p2.ID, 0, false, []byte("z"), at(time.Hour)))
	must(t, "UsePasskey zero counter again", s.UsePasskey(ctx, p2.ID, 0, false, []byte("z"), at(2*time.Hour)))
	wantErr(t, "UsePasskey unknown", s.UsePasskey(ctx, []byte("nope"), 1, false, nil, base), store.ErrNotFound)
	one, err = s.GetPasskey(ctx, p1.ID)
	must(t, "GetPasskey", err)
	if one.SignCount != 4 || !one.BackupState || string(one.Record) != "r2" || !one.LastUsedAt.Equal(at(time.Hour)) {
		t.Errorf("after use: %+v", one)
	}

	// Rename and delete only the user's own.
	wantErr(t, "RenamePasskey of another user", s.RenamePasskey(ctx, "bob", p1.ID, "mine"), store.ErrNotFound)
	must(t, "RenamePasskey", s.RenamePasskey(ctx, "alice", p1.ID, "Phone"))
	if one, _ := s.GetPasskey(ctx, p1.ID); one.Name != "Phone" {
		t.Errorf("name after rename = %q", one.Name)
	}
	rm := store.AuditEvent{Event: store.EventPasskeyRemoved, Success: true, Username: "bob", CreatedAt: base}
	before = auditCount(t, s)
	wantErr(t, "DeletePasskey of another user", s.DeletePasskey(ctx, "bob", p1.ID, &rm), store.ErrNotFound)
	if auditCount(t, s) != before {
		t.Errorf("failed DeletePasskey wrote an audit row")
	}
	must(t, "DeletePasskey", s.DeletePasskey(ctx, "alice", p1.ID, &rm))
	_, err = s.GetPasskey(ctx, p1.ID)
	wantErr(t, "GetPasskey deleted", err, store.ErrNotFound)

	// Resetting second factors and deleting a user remove passkeys.
	_, err = s.ResetSecondFactors(ctx, "alice", at(3*time.Hour), nil)
	must(t, "ResetSecondFactors", err)
	if left, _ := s.ListPasskeys(ctx, "alice"); len(left) != 0 {
		t.Errorf("passkeys after ResetSecondFactors: %d", len(left))
	}
	must(t, "DeleteUser", s.DeleteUser(ctx, "bob", at(3*time.Hour)))
	if _, err := s.GetPasskey(ctx, pb.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's passkey after DeleteUser: %v", err)
	}
}

func testPasskeyUseConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x", CreatedAt: base}))
	p := newPasskey("p", "alice", base)
	must(t, "CreatePasskey", s.CreatePasskey(ctx, p, nil))
	errs := race(8, func(int) error { return s.UsePasskey(ctx, p.ID, 9, false, []byte("r"), base) })
	oneWinner(t, "use with one counter", errs, store.ErrConflict)
}

func testSpendNonce(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "SpendNonce", s.SpendNonce(ctx, h("n1"), base, at(time.Minute)))
	wantErr(t, "SpendNonce again", s.SpendNonce(ctx, h("n1"), at(30*time.Second), at(time.Minute)), store.ErrAlreadyExists)
	must(t, "SpendNonce other", s.SpendNonce(ctx, h("n2"), base, at(time.Minute)))
	// After expiry the record is gone (DeleteExpired, or on reuse).
	must(t, "SpendNonce after expiry", s.SpendNonce(ctx, h("n1"), at(2*time.Minute), at(3*time.Minute)))
	n, err := s.DeleteExpired(ctx, at(10*time.Minute), time.Time{})
	must(t, "DeleteExpired", err)
	if n != 2 {
		t.Errorf("DeleteExpired removed %d rows, want the 2 spent nonces", n)
	}
	errs := race(8, func(int) error { return s.SpendNonce(ctx, h("race"), base, at(time.Minute)) })
	oneWinner(t, "spend", errs, store.ErrAlreadyExists)
}
