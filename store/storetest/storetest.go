// Package storetest is the conformance suite for store.Store: every backend
// runs Run against a real database, so the contract written in the store
// package's doc comments is proven the same way for SQLite and PostgreSQL.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/e2etest/proc"
	"github.com/passgate/passgate/store"
)

// Run runs the conformance suite. newStore must return an open store on a
// fresh, empty, NOT yet migrated database and close it at t.Cleanup; the
// suite migrates it. Sub-tests call newStore once each.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		n, err := s.Migrate(t.Context())
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if n == 0 {
			t.Fatalf("Migrate on a fresh database applied 0 migrations")
		}
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"UserGroups", testUserGroups},
		{"Clients", testClients},
		{"StaleClients", testStaleClients},
		{"Sessions", testSessions},
		{"AuthCodes", testAuthCodes},
		{"RedeemCodeFailureWritesNothing", testRedeemFailureWritesNothing},
		{"RedeemCodeConcurrent", testRedeemConcurrent},
		{"Tokens", testTokens},
		{"LookupToken", testLookupToken},
		{"LookupTokens", testLookupTokens},
		{"RotateRefresh", testRotateRefresh},
		{"RotateRefreshConflicts", testRotateConflicts},
		{"RotateRefreshConcurrent", testRotateConcurrent},
		{"Revoke", testRevoke},
		{"RevokeFamilyRacesRotation", testRevokeRacesRotation},
		{"RevokeUserTokens", testRevokeUserTokens},
		{"Subscribe", testSubscribe},
		{"SubscribeEndsOnClose", testSubscribeEndsOnClose},
		{"Consents", testConsents},
		{"ConsentsPerResource", testConsentsPerResource},
		{"LoginFailures", testLoginFailures},
		{"LoginFailuresConcurrent", testLoginFailuresConcurrent},
		{"LockoutHoldsUnderConcurrentGuesses", testLockoutHoldsUnderConcurrentGuesses},
		{"LoginReservationRacesReset", testLoginReservationRacesReset},
		{"PasswordChangeRevokesTokens", testPasswordChangeRevokesTokens},
		{"Settings", testSettings},
		{"Audit", testAudit},
		{"DeleteExpired", testDeleteExpired},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"DeleteUser", testDeleteUser},
		{"DeleteClient", testDeleteClient},
		{"APIKeys", testAPIKeys},
		{"RevokeAPIKeyConcurrent", testRevokeAPIKeyConcurrent},
		{"RevokeAPIKeySubscribe", testRevokeAPIKeySubscribe},
		{"TOTP", testTOTP},
		{"TOTPStepConcurrent", testTOTPStepConcurrent},
		{"RecoveryCodes", testRecoveryCodes},
		{"RecoveryCodeConcurrent", testRecoveryCodeConcurrent},
		{"ResetSecondFactors", testResetSecondFactors},
		{"DeleteUserRemovesSecondFactors", testDeleteUserRemovesSecondFactors},
		{"Passkeys", testPasskeys},
		{"PasskeyUseConcurrent", testPasskeyUseConcurrent},
		{"SpendNonce", testSpendNonce},
	}
	t.Run("Migrate", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.Ping(ctx); err == nil {
			t.Errorf("Ping before Migrate = nil, want an error (not migrated)")
		}
		n, err := s.Migrate(ctx)
		if err != nil || n == 0 {
			t.Fatalf("first Migrate = %d, %v; want > 0, nil", n, err)
		}
		n, err = s.Migrate(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second Migrate = %d, %v; want 0, nil", n, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("Ping after Migrate: %v", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// loc is deliberately not UTC: the store must return UTC times that are
// Equal to these.
var loc = time.FixedZone("UTC+05:30", 5*3600+30*60)

// base has microseconds but no nanoseconds, so it must round-trip exactly.
var base = time.Date(2031, 3, 4, 5, 6, 7, 891011000, loc)

func at(d time.Duration) time.Time { return base.Add(d) }

// h returns a realistic token hash for a label.
func h(label string) string {
	sum := sha256.Sum256([]byte(label))
	return hex.EncodeToString(sum[:])
}

// exactTime compares times as instants and requires the same location, so
// a want built with utc() only matches a store result in UTC.
var exactTime = cmp.Comparer(func(a, b time.Time) bool {
	return a.Equal(b) && a.Location().String() == b.Location().String()
})

// utc returns v with every time.Time field (recursively, in structs and
// slices) converted to UTC, to build wants from inputs.
func utc[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	utcValue(rv)
	return v
}

var timeType = reflect.TypeFor[time.Time]()

func utcValue(v reflect.Value) {
	switch {
	case v.Type() == timeType:
		if v.CanSet() {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				utcValue(v.Field(i))
			}
		}
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			utcValue(v.Index(i))
		}
	case v.Kind() == reflect.Pointer && !v.IsNil():
		utcValue(v.Elem())
	}
}

func diff(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := cmp.Diff(got, want, exactTime); d != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", what, d)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// ---- fixtures ----

func newClient(id string, created time.Time) store.Client {
	return store.Client{
		ID:                      id,
		SecretHash:              "$2a$10$" + id,
		Name:                    "Client " + id,
		RedirectURIs:            []string{"https://app.example.com/cb", "http://127.0.0.1/callback"},
		TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scope:                   "mcp",
		Source:                  store.ClientStatic,
		ClientURI:               "https://app.example.com",
		LogoURI:                 "https://app.example.com/logo.png",
		CreatedAt:               created,
	}
}

func newCode(label, client, user string) store.AuthCode {
	return store.AuthCode{
		CodeHash:            h("code " + label),
		ClientID:            client,
		Username:            user,
		RedirectURI:         "https://app.example.com/cb",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		Scope:               "mcp",
		Resource:            "https://mcp.example.com/mcp",
		FamilyID:            "fam-" + label,
		CreatedAt:           base,
		ExpiresAt:           at(10 * time.Minute),
	}
}

func newToken(label, kind, family, client, user string) store.Token {
	exp := at(6 * time.Hour)
	if kind == store.KindRefresh {
		exp = at(30 * 24 * time.Hour)
	}
	return store.Token{
		Hash:            h(label),
		Kind:            kind,
		FamilyID:        family,
		ClientID:        client,
		Username:        user,
		Scope:           "mcp",
		Resource:        "https://mcp.example.com/mcp",
		FamilyExpiresAt: at(30 * 24 * time.Hour),
		CreatedAt:       base,
		ExpiresAt:       exp,
	}
}

func newGrant(label, family, client, user string) store.CodeGrant {
	return store.CodeGrant{
		Access:  newToken("access "+label, store.KindAccess, family, client, user),
		Refresh: newToken("refresh "+label, store.KindRefresh, family, client, user),
		Audit: store.AuditEvent{Event: store.EventTokenExchange, Success: true, IP: "203.0.113.7",
			UserAgent: "test", ClientID: client, Username: user, CreatedAt: base},
	}
}

// issue stores a family (access+refresh) for user and client through a
// code redemption.
func issue(t *testing.T, s store.Store, label, client, user string) store.CodeGrant {
	t.Helper()
	ctx := t.Context()
	c := newCode(label, client, user)
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c, nil))
	g := newGrant(label, c.FamilyID, client, user)
	must(t, "RedeemCode", s.RedeemCode(ctx, c.CodeHash, at(time.Second), g))
	return g
}

// wantAuditRows fails the test unless s holds want audit rows; when says
// after what.
func wantAuditRows(t *testing.T, s store.Store, when string, want int) {
	t.Helper()
	if n := auditCount(t, s); n != want {
		t.Errorf("audit rows %s = %d, want %d", when, n, want)
	}
}

func auditCount(t *testing.T, s store.Store) int {
	t.Helper()
	rows, err := s.ListAudit(t.Context(), store.AuditFilter{})
	must(t, "ListAudit", err)
	return len(rows)
}

// ---- users ----

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := store.User{Username: "alice", PasswordHash: "$2a$10$alice", CreatedAt: base, UpdatedAt: base}
	bob := store.User{Username: "bob", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", CreatedAt: at(time.Minute), UpdatedAt: at(time.Minute)}
	must(t, "CreateUser bob", s.CreateUser(ctx, bob))
	must(t, "CreateUser alice", s.CreateUser(ctx, alice))
	wantErr(t, "CreateUser duplicate", s.CreateUser(ctx, alice), store.ErrAlreadyExists)

	got, err := s.GetUser(ctx, "alice")
	must(t, "GetUser", err)
	diff(t, "GetUser", got, utc(alice))
	_, err = s.GetUser(ctx, "carol")
	wantErr(t, "GetUser unknown", err, store.ErrNotFound)

	list, err := s.ListUsers(ctx)
	must(t, "ListUsers", err)
	diff(t, "ListUsers", list, utc([]store.User{alice, bob}))

	_, err = s.SetPassword(ctx, "alice", "$2a$10$new", at(time.Hour), nil)
	must(t, "SetPassword", err)
	got, err = s.GetUser(ctx, "alice")
	must(t, "GetUser", err)
	want := alice
	want.PasswordHash, want.UpdatedAt = "$2a$10$new", at(time.Hour)
	diff(t, "GetUser after SetPassword", got, utc(want))
	_, err = s.SetPassword(ctx, "carol", "x", base, nil)
	wantErr(t, "SetPassword unknown", err, store.ErrNotFound)
	wantErr(t, "DeleteUser unknown", s.DeleteUser(ctx, "carol", base), store.ErrNotFound)
}

// ---- clients ----

func testClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		name   string
		client store.Client
	}{
		{"confidential", newClient("c1", base)},
		{"public dynamic", store.Client{ID: "dyn-1", Name: "Claude", RedirectURIs: []string{"https://claude.ai/api/mcp/auth_callback"},
			TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code"}, Source: store.ClientDynamic, CreatedAt: at(time.Minute)}},
		{"no lists", store.Client{ID: "bare", Source: store.ClientStatic, CreatedAt: at(time.Minute)}},
		{"many redirect URIs", store.Client{ID: "many", Source: store.ClientStatic, CreatedAt: at(2 * time.Minute),
			RedirectURIs: []string{"https://a.example/cb?x=1&y=\"2\"", "http://localhost:33418/", "vscode://cb", "https://ünïcode.example/ça"},
			LastUsedAt:   at(3 * time.Minute)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(t, "CreateClient", s.CreateClient(ctx, tt.client))
			got, err := s.GetClient(ctx, tt.client.ID)
			must(t, "GetClient", err)
			diff(t, "GetClient", got, utc(tt.client))
			wantErr(t, "CreateClient duplicate", s.CreateClient(ctx, tt.client), store.ErrAlreadyExists)
		})
	}
	_, err := s.GetClient(ctx, "nope")
	wantErr(t, "GetClient unknown", err, store.ErrNotFound)

	list, err := s.ListClients(ctx)
	must(t, "ListClients", err)
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	diff(t, "ListClients order (created, then ID)", ids, []string{"c1", "bare", "dyn-1", "many"})

	wantErr(t, "DeleteClient unknown", s.DeleteClient(ctx, "nope", base), store.ErrNotFound)
	must(t, "DeleteClient", s.DeleteClient(ctx, "bare", base))
	_, err = s.GetClient(ctx, "bare")
	wantErr(t, "GetClient deleted", err, store.ErrNotFound)
}

func testStaleClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	dyn := func(id string, created time.Time, used bool) store.Client {
		c := newClient(id, created)
		c.Source = store.ClientDynamic
		if used {
			c.LastUsedAt = created.Add(time.Minute)
		}
		return c
	}
	old, young := at(-48*time.Hour), at(-time.Hour)
	for _, c := range []store.Client{
		dyn("dyn-old-unused", old, false),
		dyn("dyn-old-used", old, true),
		dyn("dyn-young-unused", young, false),
		newClient("static-old", old),
		dyn("dyn-old-redeemed", old, false),
	} {
		must(t, "CreateClient", s.CreateClient(ctx, c))
	}
	// A client becomes used by completing a grant.
	issue(t, s, "r", "dyn-old-redeemed", "alice")
	// Codes and consents of a stale client go with it.
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, newCode("stale", "dyn-old-unused", "alice"), nil))
	must(t, "PutConsent", s.PutConsent(ctx, store.Consent{Username: "alice", ClientID: "dyn-old-unused", Resource: resA, Scope: "mcp", CreatedAt: old, UpdatedAt: old}, nil))

	ids, err := s.DeleteStaleClients(ctx, at(-24*time.Hour))
	must(t, "DeleteStaleClients", err)
	diff(t, "deleted IDs", sorted(ids), []string{"dyn-old-unused"})
	list, err := s.ListClients(ctx)
	must(t, "ListClients", err)
	var left []string
	for _, c := range list {
		left = append(left, c.ID)
	}
	diff(t, "remaining", sorted(left), []string{"dyn-old-redeemed", "dyn-old-used", "dyn-young-unused", "static-old"})
	_, err = s.GetAuthCode(ctx, h("code stale"), base)
	wantErr(t, "code of stale client", err, store.ErrNotFound)
	_, err = s.GetConsent(ctx, "alice", "dyn-old-unused", resA)
	wantErr(t, "consent of stale client", err, store.ErrNotFound)

	ids, err = s.DeleteStaleClients(ctx, at(-24*time.Hour))
	must(t, "DeleteStaleClients again", err)
	if len(ids) != 0 {
		t.Errorf("second DeleteStaleClients = %v, want none", ids)
	}
}

// ---- sessions ----

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(id, user string, created, expires time.Time) store.Session {
		return store.Session{IDHash: h(id), Username: user, CSRFToken: "csrf-" + id, IP: "198.51.100.1",
			UserAgent: "Mozilla/5.0", CreatedAt: created, ExpiresAt: expires, LastSeenAt: created}
	}
	s1 := mk("s1", "alice", base, at(time.Hour))
	s2 := mk("s2", "alice", at(time.Minute), at(time.Hour))
	s3 := mk("s3", "bob", at(2*time.Minute), at(time.Hour))
	s3.Pending = true // a pending session round-trips as pending
	gone := mk("expired", "alice", at(-2*time.Hour), at(-time.Hour))
	for _, x := range []store.Session{s1, s2, s3, gone} {
		must(t, "CreateSession", s.CreateSession(ctx, x))
	}
	wantErr(t, "CreateSession duplicate", s.CreateSession(ctx, s1), store.ErrAlreadyExists)

	got, err := s.GetSession(ctx, s1.IDHash, base)
	must(t, "GetSession", err)
	diff(t, "GetSession", got, utc(s1))
	for _, tt := range []struct {
		name string
		id   string
		now  time.Time
	}{
		{"unknown", h("nope"), base},
		{"expired", gone.IDHash, base},
		{"expires exactly now", s1.IDHash, s1.ExpiresAt},
	} {
		_, err := s.GetSession(ctx, tt.id, tt.now)
		wantErr(t, "GetSession "+tt.name, err, store.ErrNotFound)
	}

	must(t, "TouchSession", s.TouchSession(ctx, s1.IDHash, at(5*time.Minute)))
	got, err = s.GetSession(ctx, s1.IDHash, base)
	must(t, "GetSession", err)
	if !got.LastSeenAt.Equal(at(5 * time.Minute)) {
		t.Errorf("LastSeenAt = %v, want %v", got.LastSeenAt, at(5*time.Minute))
	}
	s1.LastSeenAt = at(5 * time.Minute)
	wantErr(t, "TouchSession unknown", s.TouchSession(ctx, h("nope"), base), store.ErrNotFound)

	all, err := s.ListSessions(ctx, "", base)
	must(t, "ListSessions all", err)
	diff(t, "ListSessions all (newest first, no expired)", all, utc([]store.Session{s3, s2, s1}))
	mine, err := s.ListSessions(ctx, "alice", base)
	must(t, "ListSessions alice", err)
	diff(t, "ListSessions alice", mine, utc([]store.Session{s2, s1}))

	must(t, "DeleteSession", s.DeleteSession(ctx, s2.IDHash))
	must(t, "DeleteSession unknown", s.DeleteSession(ctx, h("nope")))
	_, err = s.GetSession(ctx, s2.IDHash, base)
	wantErr(t, "GetSession deleted", err, store.ErrNotFound)

	n, err := s.DeleteUserSessions(ctx, "alice")
	must(t, "DeleteUserSessions", err)
	if n != 2 { // s1 and the expired one
		t.Errorf("DeleteUserSessions = %d, want 2", n)
	}
	mine, err = s.ListSessions(ctx, "alice", base)
	must(t, "ListSessions", err)
	if len(mine) != 0 {
		t.Errorf("sessions left after DeleteUserSessions: %v", mine)
	}
	if _, err := s.GetSession(ctx, s3.IDHash, base); err != nil {
		t.Errorf("other user's session gone: %v", err)
	}
}

// ---- codes ----

func testAuthCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	c := newCode("a", "c1", "alice")
	ev := store.AuditEvent{Event: store.EventAuthorizeRequest, Success: true, ClientID: "c1", Username: "alice", CreatedAt: base}
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c, &ev))
	wantErr(t, "CreateAuthCode duplicate", s.CreateAuthCode(ctx, c, nil), store.ErrAlreadyExists)
	wantAuditRows(t, s, "after CreateAuthCode (the failed duplicate writes none)", 1)
	got, err := s.GetAuthCode(ctx, c.CodeHash, base)
	must(t, "GetAuthCode", err)
	diff(t, "GetAuthCode", got, utc(c))

	expired := newCode("expired", "c1", "alice")
	expired.ExpiresAt = at(-time.Second)
	must(t, "CreateAuthCode expired", s.CreateAuthCode(ctx, expired, nil))
	_, err = s.GetAuthCode(ctx, expired.CodeHash, base)
	wantErr(t, "GetAuthCode expired", err, store.ErrNotFound)
	_, err = s.GetAuthCode(ctx, h("nope"), base)
	wantErr(t, "GetAuthCode unknown", err, store.ErrNotFound)
	wantErr(t, "RedeemCode expired", s.RedeemCode(ctx, expired.CodeHash, base, newGrant("x", expired.FamilyID, "c1", "alice")), store.ErrNotFound)
	wantErr(t, "RedeemCode unknown", s.RedeemCode(ctx, h("nope"), base, newGrant("y", "f", "c1", "alice")), store.ErrNotFound)
	wantErr(t, "RedeemCode at expiry", s.RedeemCode(ctx, c.CodeHash, c.ExpiresAt, newGrant("z", c.FamilyID, "c1", "alice")), store.ErrNotFound)

	now := at(time.Minute)
	g := newGrant("a", c.FamilyID, "c1", "alice")
	must(t, "RedeemCode", s.RedeemCode(ctx, c.CodeHash, now, g))
	got, err = s.GetAuthCode(ctx, c.CodeHash, now)
	must(t, "GetAuthCode used", err)
	if !got.UsedAt.Equal(now) || got.UsedAt.Location() != time.UTC {
		t.Errorf("UsedAt = %v, want %v in UTC", got.UsedAt, now)
	}
	for _, tok := range []store.Token{g.Access, g.Refresh} {
		gt, err := s.GetToken(ctx, tok.Hash, now)
		must(t, "GetToken "+tok.Kind, err)
		diff(t, "token "+tok.Kind, gt, utc(tok))
	}
	rows, err := s.ListAudit(ctx, store.AuditFilter{Event: store.EventTokenExchange})
	must(t, "ListAudit", err)
	if len(rows) != 1 {
		t.Fatalf("token_exchange rows = %d, want 1", len(rows))
	}
	wantRow := g.Audit
	wantRow.ID = rows[0].ID
	diff(t, "audit row", rows[0], utc(wantRow))
	cl, err := s.GetClient(ctx, "c1")
	must(t, "GetClient", err)
	if !cl.LastUsedAt.Equal(now) {
		t.Errorf("client LastUsedAt = %v, want %v", cl.LastUsedAt, now)
	}

	g2 := newGrant("a2", c.FamilyID, "c1", "alice")
	wantErr(t, "RedeemCode again", s.RedeemCode(ctx, c.CodeHash, now, g2), store.ErrConflict)
	_, err = s.GetToken(ctx, g2.Access.Hash, now)
	wantErr(t, "token of failed redeem", err, store.ErrNotFound)
	wantAuditRows(t, s, "after a refused second redemption", 2)
}

func testRedeemFailureWritesNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	first := issue(t, s, "first", "c1", "bob")

	c := newCode("b", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c, nil))
	before := auditCount(t, s)
	// The refresh token's hash clashes with an existing token: the insert
	// fails, and the whole redemption must roll back.
	g := newGrant("b", c.FamilyID, "c1", "alice")
	g.Refresh.Hash = first.Refresh.Hash
	if err := s.RedeemCode(ctx, c.CodeHash, at(time.Minute), g); err == nil {
		t.Fatal("RedeemCode with a clashing token hash succeeded")
	}
	got, err := s.GetAuthCode(ctx, c.CodeHash, at(time.Minute))
	must(t, "GetAuthCode", err)
	if !got.UsedAt.IsZero() {
		t.Errorf("code marked used by a failed redemption (UsedAt %v)", got.UsedAt)
	}
	_, err = s.GetToken(ctx, g.Access.Hash, at(time.Minute))
	wantErr(t, "access token of failed redemption", err, store.ErrNotFound)
	wantAuditRows(t, s, "after failed redemption", before)
	// The code still works.
	must(t, "RedeemCode retry", s.RedeemCode(ctx, c.CodeHash, at(time.Minute), newGrant("b", c.FamilyID, "c1", "alice")))
}

const parallel = 50

// race calls fn(0) … fn(n-1) concurrently, released together so they
// contend, and returns each call's error at its index.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks that exactly one of errs is nil and every other is
// lose (store.ErrConflict for most races), and returns the winner's index;
// it stops the test if none won.
func oneWinner(t *testing.T, what string, errs []error, lose error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("%s: %d and %d both succeeded", what, winner, i)
			}
			winner = i
		case !errors.Is(err, lose):
			t.Errorf("%s %d: %v, want %v", what, i, err, lose)
		}
	}
	if winner < 0 {
		t.Fatalf("no %s succeeded", what)
	}
	return winner
}

func testRedeemConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	c := newCode("race", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, c, nil))
	errs := race(parallel, func(i int) error {
		return s.RedeemCode(ctx, c.CodeHash, at(time.Minute), newGrant(fmt.Sprintf("race %d", i), c.FamilyID, "c1", "alice"))
	})
	winner := oneWinner(t, "redemption", errs, store.ErrConflict)
	// Exactly the winner's tokens exist, and exactly one audit row.
	for i := range parallel {
		g := newGrant(fmt.Sprintf("race %d", i), c.FamilyID, "c1", "alice")
		_, err := s.GetToken(ctx, g.Access.Hash, at(time.Minute))
		if (err == nil) != (i == winner) {
			t.Errorf("token of redemption %d: err %v (winner %d)", i, err, winner)
		}
	}
	wantAuditRows(t, s, "after concurrent redemptions", 1)
}

// ---- tokens ----

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	g := issue(t, s, "t", "c1", "alice")
	now := at(time.Minute)

	got, err := s.GetToken(ctx, g.Access.Hash, now)
	must(t, "GetToken", err)
	diff(t, "GetToken", got, utc(g.Access))
	_, err = s.GetToken(ctx, h("nope"), now)
	wantErr(t, "GetToken unknown", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, g.Access.Hash, g.Access.ExpiresAt)
	wantErr(t, "GetToken at expiry", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, g.Access.Hash, g.Access.ExpiresAt.Add(time.Hour))
	wantErr(t, "GetToken expired", err, store.ErrNotFound)

	must(t, "TouchToken", s.TouchToken(ctx, g.Access.Hash, at(2*time.Minute)))
	got, err = s.GetToken(ctx, g.Access.Hash, now)
	must(t, "GetToken", err)
	if !got.LastUsedAt.Equal(at(2 * time.Minute)) {
		t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, at(2*time.Minute))
	}

	revoked, err := s.RevokeToken(ctx, g.Access.Hash, at(3*time.Minute), nil)
	must(t, "RevokeToken", err)
	diff(t, "revoked", revoked, []string{g.Access.Hash})
	got, err = s.GetToken(ctx, g.Access.Hash, now)
	must(t, "GetToken revoked is still returned", err)
	if !got.RevokedAt.Equal(at(3 * time.Minute)) {
		t.Errorf("RevokedAt = %v, want %v", got.RevokedAt, at(3*time.Minute))
	}
}

// lookupView is what LookupToken returns for a token GetToken returns as t.
func lookupView(t store.Token) store.Token {
	return store.Token{Hash: t.Hash, Kind: t.Kind, ClientID: t.ClientID, Username: t.Username,
		Scope: t.Scope, Resource: t.Resource, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}

// testLookupToken runs GetToken's cases through LookupToken: the same
// tokens and errors, narrowed to the fields the proxy checks need.
func testLookupToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	g := issue(t, s, "t", "c1", "alice")
	rot := issue(t, s, "rot", "c1", "bob")
	a, _ := rotate(t, s, "rot2", rot.Refresh, at(time.Hour), []byte("sealed grace"))
	revoked := issue(t, s, "revoked", "c1", "carol")
	_, err := s.RevokeToken(ctx, revoked.Access.Hash, at(3*time.Minute), nil)
	must(t, "RevokeToken", err)
	must(t, "TouchToken", s.TouchToken(ctx, g.Access.Hash, at(2*time.Minute)))
	now := at(time.Hour + time.Minute)

	tests := []struct {
		name string
		hash string
		now  time.Time
		want store.Token // zero: ErrNotFound
	}{
		{"access", g.Access.Hash, now, lookupView(utc(g.Access))},
		{"refresh", g.Refresh.Hash, now, lookupView(utc(g.Refresh))},
		{"rotated refresh without its grace response", rot.Refresh.Hash, now, lookupView(utc(rot.Refresh))},
		{"successor", a.Hash, now, lookupView(utc(a))},
		{"revoked is still returned", revoked.Access.Hash, now, func() store.Token {
			v := lookupView(utc(revoked.Access))
			v.RevokedAt = at(3 * time.Minute).UTC()
			return v
		}()},
		{"unknown", h("nope"), now, store.Token{}},
		{"at expiry", g.Access.Hash, g.Access.ExpiresAt, store.Token{}},
		{"expired", g.Access.Hash, g.Access.ExpiresAt.Add(time.Hour), store.Token{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.LookupToken(ctx, tt.hash, tt.now)
			full, ferr := s.GetToken(ctx, tt.hash, tt.now)
			if tt.want.Hash == "" {
				wantErr(t, "LookupToken", err, store.ErrNotFound)
				wantErr(t, "GetToken", ferr, store.ErrNotFound)
				return
			}
			must(t, "LookupToken", err)
			must(t, "GetToken", ferr)
			diff(t, "LookupToken", got, tt.want)
			diff(t, "LookupToken against GetToken", got, lookupView(full))
		})
	}
}

// testLookupTokens: one read of many hashes answers what LookupToken
// answers for each (unknown, expired and duplicate hashes included), in
// any order, each token once.
func testLookupTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	g := issue(t, s, "t", "c1", "alice")
	short := issue(t, s, "short", "c1", "bob")
	revoked := issue(t, s, "revoked", "c1", "carol")
	_, err := s.RevokeToken(ctx, revoked.Access.Hash, at(3*time.Minute), nil)
	must(t, "RevokeToken", err)
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x", Groups: []string{"ops", "eng"}, CreatedAt: base, UpdatedAt: base}))
	all := []string{g.Access.Hash, g.Refresh.Hash, short.Access.Hash, short.Refresh.Hash, revoked.Access.Hash, h("unknown"), g.Access.Hash}

	byHash := func(toks []store.Token) map[string]store.Token {
		m := make(map[string]store.Token, len(toks))
		for _, tok := range toks {
			if _, dup := m[tok.Hash]; dup {
				t.Errorf("token %s returned twice", tok.Hash)
			}
			m[tok.Hash] = tok
		}
		return m
	}
	for _, now := range []time.Time{at(time.Minute), g.Access.ExpiresAt, g.Refresh.ExpiresAt.Add(time.Hour)} {
		t.Run(now.Sub(base).String(), func(t *testing.T) {
			got, err := s.LookupTokens(ctx, all, now)
			must(t, "LookupTokens", err)
			want := map[string]store.Token{}
			for _, hash := range all {
				tok, err := s.LookupToken(ctx, hash, now)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				must(t, "LookupToken", err)
				want[hash] = tok
			}
			diff(t, "LookupTokens against LookupToken", byHash(got), want)
		})
	}
	if got, err := s.LookupTokens(ctx, nil, at(time.Minute)); err != nil || len(got) != 0 {
		t.Errorf("LookupTokens(nil) = %v, %v; want nothing", got, err)
	}
	if got, err := s.LookupTokens(ctx, []string{h("unknown")}, at(time.Minute)); err != nil || len(got) != 0 {
		t.Errorf("LookupTokens(unknown) = %v, %v; want nothing", got, err)
	}
}

func rotation(label string, old store.Token) (access, refresh store.Token, ev store.AuditEvent) {
	access = newToken("access "+label, store.KindAccess, old.FamilyID, old.ClientID, old.Username)
	refresh = newToken("refresh "+label, store.KindRefresh, old.FamilyID, old.ClientID, old.Username)
	access.CreatedAt, refresh.CreatedAt = at(time.Hour), at(time.Hour)
	ev = store.AuditEvent{Event: store.EventTokenRefresh, Success: true, ClientID: old.ClientID, Username: old.Username, CreatedAt: at(time.Hour)}
	return access, refresh, ev
}

// rotate rotates old into the next access and refresh token named label
// (rotation) at now, keeping grace for the old token, and fails the test
// if the store refuses.
func rotate(t *testing.T, s store.Store, label string, old store.Token, now time.Time, grace []byte) (access, refresh store.Token) {
	t.Helper()
	access, refresh, ev := rotation(label, old)
	must(t, "RotateRefresh "+label, s.RotateRefresh(t.Context(), old.Hash, now, grace, access, refresh, ev))
	return access, refresh
}

func testRotateRefresh(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	g := issue(t, s, "rot", "c1", "alice")
	now := at(time.Hour)
	grace := []byte("sealed \x00 response")
	before := auditCount(t, s)
	a, r := rotate(t, s, "rot2", g.Refresh, now, grace)

	old, err := s.GetToken(ctx, g.Refresh.Hash, now)
	must(t, "GetToken old", err)
	if !old.RotatedAt.Equal(now) || !old.RevokedAt.IsZero() {
		t.Errorf("old refresh: RotatedAt %v RevokedAt %v, want rotated at %v and not revoked", old.RotatedAt, old.RevokedAt, now)
	}
	diff(t, "grace response", old.GraceResponse, grace)
	for _, tok := range []store.Token{a, r} {
		got, err := s.GetToken(ctx, tok.Hash, now)
		must(t, "GetToken new "+tok.Kind, err)
		diff(t, "new "+tok.Kind, got, utc(tok))
	}
	wantAuditRows(t, s, "after RotateRefresh", before+1)
	cl, err := s.GetClient(ctx, "c1")
	must(t, "GetClient", err)
	if !cl.LastUsedAt.Equal(now) {
		t.Errorf("client LastUsedAt = %v, want %v", cl.LastUsedAt, now)
	}
	// The successor rotates in turn.
	rotate(t, s, "rot3", r, at(2*time.Hour), nil)
}

func testRotateConflicts(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	now := at(time.Hour)

	rotated := issue(t, s, "rotated", "c1", "alice")
	rotate(t, s, "rotated-next", rotated.Refresh, now, nil)

	revoked := issue(t, s, "revoked", "c1", "alice")
	_, err := s.RevokeFamily(ctx, revoked.Refresh.FamilyID, now, nil)
	must(t, "RevokeFamily", err)

	expiredCode := newCode("expired", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, expiredCode, nil))
	expired := newGrant("expired", expiredCode.FamilyID, "c1", "alice")
	expired.Refresh.ExpiresAt = at(30 * time.Minute)
	must(t, "RedeemCode", s.RedeemCode(ctx, expiredCode.CodeHash, at(time.Second), expired))

	tests := []struct {
		name string
		hash string
	}{
		{"already rotated", rotated.Refresh.Hash},
		{"revoked", revoked.Refresh.Hash},
		{"expired", expired.Refresh.Hash},
		{"access token", rotated.Access.Hash},
		{"unknown", h("nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := auditCount(t, s)
			a, r, ev := rotation("x "+tt.name, store.Token{FamilyID: "f", ClientID: "c1", Username: "alice"})
			wantErr(t, "RotateRefresh", s.RotateRefresh(ctx, tt.hash, now, []byte("g"), a, r, ev), store.ErrConflict)
			_, err := s.GetToken(ctx, r.Hash, now)
			wantErr(t, "new refresh of failed rotation", err, store.ErrNotFound)
			wantAuditRows(t, s, "after a refused rotation", before)
		})
	}
}

func testRotateConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	g := issue(t, s, "race", "c1", "alice")
	errs := race(parallel, func(i int) error {
		a, r, ev := rotation(fmt.Sprintf("race %d", i), g.Refresh)
		return s.RotateRefresh(ctx, g.Refresh.Hash, at(time.Hour), []byte(fmt.Sprint(i)), a, r, ev)
	})
	winner := oneWinner(t, "rotation", errs, store.ErrConflict)
	old, err := s.GetToken(ctx, g.Refresh.Hash, at(time.Hour))
	must(t, "GetToken", err)
	diff(t, "grace response is the winner's", old.GraceResponse, []byte(fmt.Sprint(winner)))
	for i := range parallel {
		_, r, _ := rotation(fmt.Sprintf("race %d", i), g.Refresh)
		_, err := s.GetToken(ctx, r.Hash, at(time.Hour))
		if (err == nil) != (i == winner) {
			t.Errorf("refresh token of rotation %d: err %v (winner %d)", i, err, winner)
		}
	}
}

// ---- revocation ----

func testRevoke(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	now := at(time.Hour)

	// Family f1: access, refresh, then a rotation adds access2, refresh2.
	f1 := issue(t, s, "f1", "c1", "alice")
	a2, r2 := rotate(t, s, "f1 second", f1.Refresh, now, nil)
	f2 := issue(t, s, "f2", "c1", "alice")
	f3 := issue(t, s, "f3", "c1", "alice")

	tests := []struct {
		name   string
		revoke func() ([]string, error)
		want   []string
	}{
		{"unknown token", func() ([]string, error) { return s.RevokeToken(ctx, h("nope"), now, nil) }, nil},
		{"access token revokes only itself", func() ([]string, error) { return s.RevokeToken(ctx, f2.Access.Hash, now, nil) },
			[]string{f2.Access.Hash}},
		{"access token again", func() ([]string, error) { return s.RevokeToken(ctx, f2.Access.Hash, now, nil) }, nil},
		{"rotated refresh token revokes the family", func() ([]string, error) { return s.RevokeToken(ctx, f1.Refresh.Hash, now, nil) },
			[]string{f1.Access.Hash, f1.Refresh.Hash, a2.Hash, r2.Hash}},
		{"family again", func() ([]string, error) { return s.RevokeToken(ctx, r2.Hash, now, nil) }, nil},
		{"refresh token after its access token", func() ([]string, error) { return s.RevokeToken(ctx, f2.Refresh.Hash, now, nil) },
			[]string{f2.Refresh.Hash}},
		{"RevokeFamily", func() ([]string, error) { return s.RevokeFamily(ctx, f3.Access.FamilyID, now, nil) },
			[]string{f3.Access.Hash, f3.Refresh.Hash}},
		{"RevokeFamily again", func() ([]string, error) { return s.RevokeFamily(ctx, f3.Access.FamilyID, now, nil) }, nil},
		{"RevokeFamily unknown", func() ([]string, error) { return s.RevokeFamily(ctx, "nope", now, nil) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.revoke()
			must(t, "revoke", err)
			diff(t, "newly revoked", sorted(got), sorted(tt.want))
			for _, hash := range tt.want {
				tok, err := s.GetToken(ctx, hash, now)
				must(t, "GetToken", err)
				if !tok.RevokedAt.Equal(now) {
					t.Errorf("token %s RevokedAt %v, want %v", hash[:8], tok.RevokedAt, now)
				}
			}
		})
	}
	// f2's refresh token survived the revocation of f2's access token
	// until revoked itself: check the audit variant writes its row.
	before := auditCount(t, s)
	ev2 := store.AuditEvent{Event: store.EventTokenRevoked, Success: true, ClientID: "c1", Username: "alice", CreatedAt: now}
	_, err := s.RevokeToken(ctx, h("nope"), now, &ev2)
	must(t, "RevokeToken with audit", err)
	_, err = s.RevokeFamily(ctx, "nope", now, &ev2)
	must(t, "RevokeFamily with audit", err)
	wantAuditRows(t, s, "after two audited revocations", before+2)
}

// testRevokeRacesRotation revokes families while a client keeps rotating
// their refresh tokens: once both are done, no token of a revoked family
// may be left unrevoked, whichever committed first. (On PostgreSQL at READ
// COMMITTED, one UPDATE does not see tokens a concurrent rotation inserts.)
func testRevokeRacesRotation(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	const rounds = 20
	for round := range rounds {
		g := issue(t, s, fmt.Sprintf("round %d", round), "c1", "alice")
		issued := []string{g.Access.Hash, g.Refresh.Hash}
		var mu sync.Mutex
		var revoked atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			cur := g.Refresh
			// After the revocation returned, one more attempt must fail; a
			// backend that lets it succeed would otherwise rotate forever.
			for i, after := 0, 0; i < 1000 && after < 2; i++ {
				if revoked.Load() {
					after++
				}
				a, r, ev := rotation(fmt.Sprintf("round %d rot %d", round, i), cur)
				if err := s.RotateRefresh(ctx, cur.Hash, at(time.Hour), nil, a, r, ev); err != nil {
					if !errors.Is(err, store.ErrConflict) {
						t.Errorf("RotateRefresh: %v", err)
					}
					return
				}
				mu.Lock()
				issued = append(issued, a.Hash, r.Hash)
				mu.Unlock()
				cur = r
			}
		}()
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		_, err := s.RevokeFamily(ctx, g.Access.FamilyID, at(time.Hour), nil)
		revoked.Store(true)
		<-done
		if err != nil {
			t.Fatalf("RevokeFamily: %v", err)
		}
		mu.Lock()
		for _, hash := range issued {
			tok, err := s.GetToken(ctx, hash, at(time.Hour))
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			if tok.RevokedAt.IsZero() {
				t.Errorf("round %d: %s token of a revoked family survived (%d tokens issued)", round, tok.Kind, len(issued))
			}
		}
		mu.Unlock()
	}
}

func testRevokeUserTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		must(t, "CreateClient", s.CreateClient(ctx, newClient(id, base)))
	}
	now := at(time.Hour)
	a1 := issue(t, s, "a1", "c1", "alice")
	a2 := issue(t, s, "a2", "c2", "alice")
	a3 := issue(t, s, "a3", "c2", "alice")
	b1 := issue(t, s, "b1", "c1", "bob")

	got, err := s.RevokeUserTokens(ctx, "alice", "c2", now, nil)
	must(t, "RevokeUserTokens alice c2", err)
	diff(t, "alice@c2", sorted(got), sorted([]string{a2.Access.Hash, a2.Refresh.Hash, a3.Access.Hash, a3.Refresh.Hash}))
	got, err = s.RevokeUserTokens(ctx, "alice", "", now, nil)
	must(t, "RevokeUserTokens alice", err)
	diff(t, "alice (rest)", sorted(got), sorted([]string{a1.Access.Hash, a1.Refresh.Hash}))
	got, err = s.RevokeUserTokens(ctx, "alice", "", now, nil)
	must(t, "RevokeUserTokens alice again", err)
	diff(t, "alice again", sorted(got), []string{})
	tok, err := s.GetToken(ctx, b1.Access.Hash, now)
	must(t, "GetToken bob", err)
	if !tok.RevokedAt.IsZero() {
		t.Errorf("bob's token revoked with alice's")
	}
}

// collector gathers invalidations delivered by Subscribe.
type collector struct {
	mu     sync.Mutex
	all    int
	hashes map[string]bool
}

func (c *collector) fn(inv store.Invalidation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inv.All {
		c.all++
	}
	for _, h := range inv.TokenHashes {
		c.hashes[h] = true
	}
}

// Subscribe starts s.Subscribe in the background, waits for its first All,
// and stops it at cleanup. Backends use it for cross-instance tests.
func Subscribe(t *testing.T, s store.Store) *Collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{c: collector{hashes: map[string]bool{}}}
	wait := goSubscribe(ctx, s, c.c.fn)
	t.Cleanup(func() {
		cancel()
		wait(t, "cancel")
	})
	if !proc.WaitFor(5*time.Second, 5*time.Millisecond, func() bool { return c.AllCount() > 0 }) {
		t.Fatalf("Subscribe did not deliver All at start")
	}
	return c
}

// goSubscribe runs s.Subscribe(ctx, fn) in the background. The wait it
// returns fails the test unless that call returns nil within 5s; after
// names what should have ended it.
func goSubscribe(ctx context.Context, s store.Store, fn func(store.Invalidation)) (wait func(t *testing.T, after string)) {
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, fn) }()
	return func(t *testing.T, after string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe returned %v after %s, want nil", err, after)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Subscribe did not return within 5s of %s", after)
		}
	}
}

// Collector records what a Subscribe call delivered.
type Collector struct{ c collector }

// AllCount is how many invalidations with All were delivered.
func (c *Collector) AllCount() int {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	return c.c.all
}

// WaitHashes reports whether every hash was delivered within d.
func (c *Collector) WaitHashes(d time.Duration, hashes ...string) bool {
	return proc.WaitFor(d, 5*time.Millisecond, func() bool {
		c.c.mu.Lock()
		defer c.c.mu.Unlock()
		for _, h := range hashes {
			if !c.c.hashes[h] {
				return false
			}
		}
		return true
	})
}

// Has reports whether hash was delivered.
func (c *Collector) Has(hash string) bool {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	return c.c.hashes[hash]
}

// testSubscribeEndsOnClose: Close ends Subscribe, so a forgotten listener
// cannot outlive the store.
func testSubscribeEndsOnClose(t *testing.T, s store.Store) {
	wait := goSubscribe(context.Background(), s, func(store.Invalidation) {})
	time.Sleep(50 * time.Millisecond)
	must(t, "Close", s.Close())
	wait(t, "Close")
}

func testSubscribe(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "bob", PasswordHash: "x", CreatedAt: base}))
	c1 := Subscribe(t, s)
	c2 := Subscribe(t, s)
	now := at(time.Hour)

	fam := issue(t, s, "fam", "c1", "alice")
	acc := issue(t, s, "acc", "c1", "alice")
	usr := issue(t, s, "usr", "c1", "carol")
	con := issue(t, s, "con", "c1", "dave")
	must(t, "PutConsent", s.PutConsent(ctx, store.Consent{Username: "dave", ClientID: "c1", Resource: resA, Scope: "mcp", CreatedAt: base, UpdatedAt: base}, nil))
	del := issue(t, s, "del", "c1", "bob")
	untouched := issue(t, s, "untouched", "c1", "erin")

	steps := []struct {
		name   string
		do     func() error
		hashes []string
	}{
		{"RevokeToken refresh", func() error { _, err := s.RevokeToken(ctx, fam.Refresh.Hash, now, nil); return err },
			[]string{fam.Access.Hash, fam.Refresh.Hash}},
		{"RevokeFamily", func() error { _, err := s.RevokeFamily(ctx, acc.Access.FamilyID, now, nil); return err },
			[]string{acc.Access.Hash, acc.Refresh.Hash}},
		{"RevokeUserTokens", func() error { _, err := s.RevokeUserTokens(ctx, "carol", "", now, nil); return err },
			[]string{usr.Access.Hash, usr.Refresh.Hash}},
		{"DeleteConsent", func() error { _, err := s.DeleteConsent(ctx, "dave", "c1", now, nil); return err },
			[]string{con.Access.Hash, con.Refresh.Hash}},
		{"DeleteUser", func() error { return s.DeleteUser(ctx, "bob", now) },
			[]string{del.Access.Hash, del.Refresh.Hash}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			must(t, st.name, st.do())
			for i, c := range []*Collector{c1, c2} {
				if !c.WaitHashes(time.Second, st.hashes...) {
					t.Errorf("subscriber %d did not receive the revoked hashes within 1s", i+1)
				}
			}
		})
	}
	if c1.Has(untouched.Access.Hash) {
		t.Errorf("a token that was never revoked was notified")
	}
	// DeleteClient revokes the remaining tokens of the client.
	must(t, "DeleteClient", s.DeleteClient(ctx, "c1", now))
	if !c1.WaitHashes(time.Second, untouched.Access.Hash, untouched.Refresh.Hash) {
		t.Errorf("DeleteClient's revocations not received within 1s")
	}
}

// ---- consents ----

// resA and resB are two protected resources: consent is per resource.
const (
	resA = "https://mcp.example.com/mcp"
	resB = "https://other.example.com/mcp"
)

func testConsents(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		must(t, "CreateClient", s.CreateClient(ctx, newClient(id, base)))
	}
	c1 := store.Consent{Username: "alice", ClientID: "c1", Resource: resA, Scope: "mcp", CreatedAt: base, UpdatedAt: base}
	c2 := store.Consent{Username: "alice", ClientID: "c2", Resource: resA, Scope: "mcp read", CreatedAt: at(time.Minute), UpdatedAt: at(time.Minute)}
	ev := store.AuditEvent{Event: store.EventConsentGranted, Success: true, ClientID: "c1", Username: "alice", CreatedAt: base}
	must(t, "PutConsent", s.PutConsent(ctx, c1, &ev))
	must(t, "PutConsent", s.PutConsent(ctx, c2, nil))
	wantAuditRows(t, s, "after two consents (one audited)", 1)
	got, err := s.GetConsent(ctx, "alice", "c1", resA)
	must(t, "GetConsent", err)
	diff(t, "GetConsent", got, utc(c1))
	_, err = s.GetConsent(ctx, "bob", "c1", resA)
	wantErr(t, "GetConsent unknown", err, store.ErrNotFound)

	list, err := s.ListConsents(ctx, "alice")
	must(t, "ListConsents", err)
	diff(t, "ListConsents newest first", list, utc([]store.Consent{c2, c1}))

	// Replacing keeps CreatedAt and takes the new scope and UpdatedAt.
	repl := store.Consent{Username: "alice", ClientID: "c1", Resource: resA, Scope: "mcp write", CreatedAt: at(time.Hour), UpdatedAt: at(time.Hour)}
	must(t, "PutConsent replace", s.PutConsent(ctx, repl, nil))
	got, err = s.GetConsent(ctx, "alice", "c1", resA)
	must(t, "GetConsent", err)
	want := repl
	want.CreatedAt = base
	diff(t, "replaced consent", got, utc(want))

	a1 := issue(t, s, "a1", "c1", "alice")
	a2 := issue(t, s, "a2", "c2", "alice")
	b1 := issue(t, s, "b1", "c1", "bob")
	now := at(2 * time.Hour)
	pending := newCode("pending", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, pending, nil))
	other := newCode("other", "c2", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, other, nil))
	revoked, err := s.DeleteConsent(ctx, "alice", "c1", now, &store.AuditEvent{Event: store.EventTokenRevoked, Success: true, CreatedAt: now})
	must(t, "DeleteConsent", err)
	diff(t, "revoked by DeleteConsent", sorted(revoked), sorted([]string{a1.Access.Hash, a1.Refresh.Hash}))
	for _, tok := range []store.Token{a2.Access, b1.Access} {
		got, err := s.GetToken(ctx, tok.Hash, now)
		must(t, "GetToken", err)
		if !got.RevokedAt.IsZero() {
			t.Errorf("token of %s@%s revoked by alice@c1's consent removal", tok.Username, tok.ClientID)
		}
	}
	_, err = s.GetConsent(ctx, "alice", "c1", resA)
	wantErr(t, "GetConsent deleted", err, store.ErrNotFound)
	wantErr(t, "RedeemCode of a pending code after DeleteConsent",
		s.RedeemCode(ctx, pending.CodeHash, at(time.Minute), newGrant("pending", pending.FamilyID, "c1", "alice")), store.ErrNotFound)
	if _, err := s.GetAuthCode(ctx, other.CodeHash, at(time.Minute)); err != nil {
		t.Errorf("pending code for another client: %v", err)
	}
	before := auditCount(t, s)
	_, err = s.DeleteConsent(ctx, "alice", "c1", now, &store.AuditEvent{Event: store.EventTokenRevoked, CreatedAt: now})
	wantErr(t, "DeleteConsent again", err, store.ErrNotFound)
	wantAuditRows(t, s, "after a failed DeleteConsent", before)
}

// testConsentsPerResource: an approval for one resource is not one for
// another; each resource has its own row, scope and times; revoking the
// client removes them all.
func testConsentsPerResource(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		must(t, "CreateClient", s.CreateClient(ctx, newClient(id, base)))
	}
	onA := store.Consent{Username: "alice", ClientID: "c1", Resource: resA, Scope: "mcp", CreatedAt: base, UpdatedAt: base}
	must(t, "PutConsent A", s.PutConsent(ctx, onA, nil))
	_, err := s.GetConsent(ctx, "alice", "c1", resB)
	wantErr(t, "GetConsent for a resource never approved", err, store.ErrNotFound)
	_, err = s.GetConsent(ctx, "alice", "c1", "")
	wantErr(t, "GetConsent for the empty resource", err, store.ErrNotFound)

	onB := store.Consent{Username: "alice", ClientID: "c1", Resource: resB, Scope: "mcp read", CreatedAt: at(time.Minute), UpdatedAt: at(time.Minute)}
	must(t, "PutConsent B", s.PutConsent(ctx, onB, nil))
	// Replacing B leaves A as it was.
	onB2 := onB
	onB2.Scope, onB2.CreatedAt, onB2.UpdatedAt = "mcp write", at(time.Hour), at(time.Hour)
	must(t, "PutConsent B again", s.PutConsent(ctx, onB2, nil))
	got, err := s.GetConsent(ctx, "alice", "c1", resA)
	must(t, "GetConsent A", err)
	diff(t, "consent A after B was replaced", got, utc(onA))
	wantB := onB2
	wantB.CreatedAt = onB.CreatedAt
	got, err = s.GetConsent(ctx, "alice", "c1", resB)
	must(t, "GetConsent B", err)
	diff(t, "consent B", got, utc(wantB))

	// A row without a resource (recorded before consents were per
	// resource) is listed and revoked like the others.
	legacy := store.Consent{Username: "alice", ClientID: "c1", Scope: "mcp", CreatedAt: at(-time.Hour), UpdatedAt: at(-time.Hour)}
	must(t, "PutConsent legacy", s.PutConsent(ctx, legacy, nil))
	otherClient := store.Consent{Username: "alice", ClientID: "c2", Resource: resB, Scope: "mcp", CreatedAt: at(time.Hour), UpdatedAt: at(time.Hour)}
	must(t, "PutConsent c2", s.PutConsent(ctx, otherClient, nil))
	list, err := s.ListConsents(ctx, "alice")
	must(t, "ListConsents", err)
	diff(t, "ListConsents: one row per client and resource", list, utc([]store.Consent{otherClient, wantB, onA, legacy}))

	revoked, err := s.DeleteConsent(ctx, "alice", "c1", at(2*time.Hour), nil)
	must(t, "DeleteConsent", err)
	if len(revoked) != 0 {
		t.Errorf("DeleteConsent revoked %d tokens, want none (there were none)", len(revoked))
	}
	for _, r := range []string{resA, resB, ""} {
		_, err := s.GetConsent(ctx, "alice", "c1", r)
		wantErr(t, "GetConsent after DeleteConsent, resource "+r, err, store.ErrNotFound)
	}
	list, err = s.ListConsents(ctx, "alice")
	must(t, "ListConsents", err)
	diff(t, "ListConsents after DeleteConsent", list, utc([]store.Consent{otherClient}))
}

// ---- login failures ----

func testLoginFailures(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		window    = 15 * time.Minute
		threshold = 3
		lockFor   = time.Hour
	)
	type step struct {
		at   time.Duration // attempt at base+at
		want store.LoginFailures
		ok   bool // the attempt may verify
	}
	lf := func(count int, first time.Duration, locked time.Duration) store.LoginFailures {
		f := store.LoginFailures{Username: "u", Count: count, FirstAt: at(first)}
		if locked != 0 {
			f.LockedUntil = at(locked)
		}
		return f
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"counts within the window", []step{
			{0, lf(1, 0, 0), true},
			{time.Minute, lf(2, 0, 0), true},
		}},
		{"window passed restarts", []step{
			{0, lf(1, 0, 0), true},
			{time.Minute, lf(2, 0, 0), true},
			{window, lf(1, window, 0), true},
		}},
		{"threshold locks, the attempt that locks still verifies", []step{
			{0, lf(1, 0, 0), true},
			{time.Minute, lf(2, 0, 0), true},
			{2 * time.Minute, lf(3, 0, 2*time.Minute+lockFor), true},
		}},
		{"a locked account gets no attempt and its state stays", []step{
			{0, lf(1, 0, 0), true},
			{time.Minute, lf(2, 0, 0), true},
			{2 * time.Minute, lf(3, 0, 2*time.Minute+lockFor), true},
			{3 * time.Minute, lf(3, 0, 2*time.Minute+lockFor), false},
			{2*time.Minute + lockFor - time.Microsecond, lf(3, 0, 2*time.Minute+lockFor), false},
		}},
		{"the lock ends", []step{
			{0, lf(1, 0, 0), true},
			{time.Second, lf(2, 0, 0), true},
			{2 * time.Second, lf(3, 0, 2*time.Second+lockFor), true},
			{20 * time.Minute, lf(3, 0, 2*time.Second+lockFor), false},
			{2 * time.Hour, lf(1, 2*time.Hour, 0), true},
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := fmt.Sprintf("unknown-user-%d", i) // never created: no enumeration
			for j, st := range tt.steps {
				got, ok, err := s.ReserveLoginAttempt(ctx, user, at(st.at), window, threshold, lockFor)
				must(t, "ReserveLoginAttempt", err)
				if ok != st.ok {
					t.Errorf("step %d: ok = %v, want %v", j, ok, st.ok)
				}
				want := st.want
				want.Username = user
				diff(t, fmt.Sprintf("step %d result", j), got, utc(want))
				stored, err := s.GetLoginFailures(ctx, user)
				must(t, "GetLoginFailures", err)
				diff(t, fmt.Sprintf("step %d stored", j), stored, utc(want))
			}
			must(t, "ResetLoginFailures", s.ResetLoginFailures(ctx, user))
			got, err := s.GetLoginFailures(ctx, user)
			must(t, "GetLoginFailures", err)
			diff(t, "after reset", got, store.LoginFailures{})
		})
	}
	got, err := s.GetLoginFailures(ctx, "never-failed")
	must(t, "GetLoginFailures never", err)
	diff(t, "never failed", got, store.LoginFailures{})
	must(t, "ResetLoginFailures unknown", s.ResetLoginFailures(ctx, "never-failed"))
}

func testLoginFailuresConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 20
	var wg sync.WaitGroup
	var failed atomic.Int32
	counts := make([]int, n)
	for i := range n {
		wg.Go(func() {
			// A threshold above n: every reservation counts.
			f, _, err := s.ReserveLoginAttempt(ctx, "target", at(time.Duration(i)*time.Millisecond), time.Hour, 10*n, time.Hour)
			if err != nil {
				failed.Add(1)
				t.Errorf("ReserveLoginAttempt: %v", err)
				return
			}
			counts[i] = f.Count
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	got, err := s.GetLoginFailures(ctx, "target")
	must(t, "GetLoginFailures", err)
	if got.Count != n {
		t.Errorf("Count = %d after %d concurrent failures", got.Count, n)
	}
	slices.Sort(counts)
	for i, c := range counts {
		if c != i+1 {
			t.Errorf("concurrent failures returned counts %v, want 1..%d each once", counts, n)
			break
		}
	}
}

// testLockoutHoldsUnderConcurrentGuesses: a burst of 50 concurrent
// attempts on one account gets at most threshold reservations (so at most
// threshold password verifications) per lock window, and once locked no
// attempt gets through, whatever its password.
func testLockoutHoldsUnderConcurrentGuesses(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		burst     = 50
		threshold = 10
	)
	var allowed, failed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range burst {
		wg.Go(func() {
			<-start
			_, ok, err := s.ReserveLoginAttempt(ctx, "victim", base, 15*time.Minute, threshold, time.Hour)
			if err != nil {
				failed.Add(1)
				t.Errorf("ReserveLoginAttempt: %v", err)
				return
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	if got := allowed.Load(); got != threshold {
		t.Errorf("%d of %d concurrent attempts reserved a verification, want exactly %d", got, burst, threshold)
	}
	f, ok, err := s.ReserveLoginAttempt(ctx, "victim", at(time.Minute), 15*time.Minute, threshold, time.Hour)
	must(t, "ReserveLoginAttempt after the burst", err)
	if ok || !f.LockedUntil.Equal(at(time.Hour)) || f.Count != threshold {
		t.Errorf("after the burst: ok %v, state %+v; want locked until base+1h at count %d", ok, f, threshold)
	}
}

// testLoginReservationRacesReset: reservations racing successful logins'
// resets (which delete the state) never fail, whatever the interleaving.
func testLoginReservationRacesReset(t *testing.T, s store.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			for range 10 {
				var err error
				if i%2 == 0 {
					_, _, err = s.ReserveLoginAttempt(ctx, "busy", base, time.Hour, 1000, time.Hour)
				} else {
					err = s.ResetLoginFailures(ctx, "busy")
				}
				if err != nil {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// testPasswordChangeRevokesTokens: SetPassword ends the user's sessions
// and revokes their tokens in the same transaction, notifying the hashes;
// other users keep theirs.
func testPasswordChangeRevokesTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := signIn(t, s)
	now := at(time.Minute)
	ev := store.AuditEvent{Event: store.EventPasswordChanged, Success: true, IP: "cli", Username: "alice", CreatedAt: now}
	hashes, err := s.SetPassword(ctx, "alice", "$2a$10$new", now, &ev)
	must(t, "SetPassword", err)
	diff(t, "revoked hashes", sorted(hashes), sorted([]string{f.alice.Access.Hash, f.alice.Refresh.Hash}))
	for _, tok := range []store.Token{f.alice.Access, f.alice.Refresh} {
		got, err := s.GetToken(ctx, tok.Hash, now)
		must(t, "GetToken", err)
		if !got.RevokedAt.Equal(now) {
			t.Errorf("%s token of alice: RevokedAt %v, want %v", tok.Kind, got.RevokedAt, now)
		}
	}
	f.wantAliceSignedOut(t, s, now)
	// The code issued under the old password must not become a new token
	// family afterwards.
	wantErr(t, "redeeming alice's old code", s.RedeemCode(ctx, f.alicePending.CodeHash, now, newGrant("alice pending", f.alicePending.FamilyID, "c1", "alice")), store.ErrNotFound)
	rows, err := s.ListAudit(ctx, store.AuditFilter{Event: store.EventPasswordChanged})
	must(t, "ListAudit", err)
	if len(rows) != 1 || rows[0].Username != "alice" {
		t.Errorf("password_changed audit rows: %+v", rows)
	}
	// Again: nothing left to revoke, and still no error.
	hashes, err = s.SetPassword(ctx, "alice", "$2a$10$newer", at(2*time.Minute), nil)
	must(t, "SetPassword again", err)
	if len(hashes) != 0 {
		t.Errorf("second SetPassword revoked %v again", hashes)
	}
}

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetSetting(ctx, "k")
	wantErr(t, "GetSetting unset", err, store.ErrNotFound)
	must(t, "PutSetting", s.PutSetting(ctx, "k", "v1", base))
	must(t, "PutSetting replace", s.PutSetting(ctx, "k", "v2", at(time.Minute)))
	got, err := s.GetSetting(ctx, "k")
	must(t, "GetSetting", err)
	diff(t, "GetSetting", got, "v2")
}

// ---- audit ----

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	evs := []store.AuditEvent{
		{Event: store.EventLoginSuccess, Success: true, IP: "192.0.2.1", UserAgent: "ua1", Username: "alice", CreatedAt: base},
		{Event: store.EventLoginFailure, Success: false, IP: "192.0.2.2", UserAgent: "ua2", Username: "alice", Error: "bad_password", CreatedAt: at(time.Minute)},
		{Event: store.EventTokenExchange, Success: true, IP: "2001:db8::1", ClientID: "c1", Username: "alice", CreatedAt: at(2 * time.Minute)},
		{Event: store.EventTokenFailure, Success: false, ClientID: "c1", Error: "invalid_grant", CreatedAt: at(3 * time.Minute)},
		{Event: store.EventLoginFailure, Success: false, Username: "bob", Error: "bad_password", CreatedAt: at(4 * time.Minute)},
		// Same instant as the previous row: the ID breaks the tie.
		{Event: store.EventAccountLocked, Success: false, Username: "bob", CreatedAt: at(4 * time.Minute)},
	}
	for i := range evs {
		must(t, "RecordAudit", s.RecordAudit(ctx, evs[i]))
	}
	all, err := s.ListAudit(ctx, store.AuditFilter{})
	must(t, "ListAudit", err)
	if len(all) != len(evs) {
		t.Fatalf("ListAudit returned %d rows, want %d", len(all), len(evs))
	}
	// Newest first; IDs are assigned, increasing.
	for i := range evs {
		got := all[len(all)-1-i]
		if got.ID <= 0 || (i > 0 && got.ID <= all[len(all)-i].ID) {
			t.Errorf("row %d ID %d not positive and increasing", i, got.ID)
		}
		want := evs[i]
		want.ID = got.ID
		diff(t, fmt.Sprintf("row %d", i), got, utc(want))
	}
	idx := func(rows []store.AuditEvent) []string {
		out := []string{}
		for _, r := range rows {
			out = append(out, r.Event+"/"+r.Username+"/"+r.ClientID)
		}
		return out
	}
	tests := []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"since", store.AuditFilter{Since: at(3 * time.Minute)}, []string{"account_locked/bob/", "login_failure/bob/", "token_failure//c1"}},
		{"event", store.AuditFilter{Event: store.EventLoginFailure}, []string{"login_failure/bob/", "login_failure/alice/"}},
		{"username", store.AuditFilter{Username: "alice"}, []string{"token_exchange/alice/c1", "login_failure/alice/", "login_success/alice/"}},
		{"client", store.AuditFilter{ClientID: "c1"}, []string{"token_failure//c1", "token_exchange/alice/c1"}},
		{"failed only", store.AuditFilter{FailedOnly: true}, []string{"account_locked/bob/", "login_failure/bob/", "token_failure//c1", "login_failure/alice/"}},
		{"limit", store.AuditFilter{Limit: 2}, []string{"account_locked/bob/", "login_failure/bob/"}},
		{"combined", store.AuditFilter{Username: "alice", FailedOnly: true, Since: base}, []string{"login_failure/alice/"}},
		{"nothing", store.AuditFilter{Event: store.EventLogout}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(ctx, tt.f)
			must(t, "ListAudit", err)
			diff(t, "rows", idx(got), tt.want)
		})
	}
}

// ---- cleanup ----

func testDeleteExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	now := at(7 * time.Hour)

	live := store.Session{IDHash: h("live"), Username: "alice", CSRFToken: "x", CreatedAt: base, ExpiresAt: at(8 * time.Hour)}
	dead := store.Session{IDHash: h("dead"), Username: "alice", CSRFToken: "x", CreatedAt: base, ExpiresAt: now}
	must(t, "CreateSession", s.CreateSession(ctx, live))
	must(t, "CreateSession", s.CreateSession(ctx, dead))

	// Code expires at base+10m; its tokens: access at +6h (expired),
	// refresh at +30d (live). A revoked but unexpired token stays.
	g := issue(t, s, "g", "c1", "alice")
	_, err := s.RevokeToken(ctx, g.Refresh.Hash, at(time.Minute), nil)
	must(t, "RevokeToken", err)
	liveCode := newCode("live", "c1", "alice")
	liveCode.ExpiresAt = at(8 * time.Hour)
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, liveCode, nil))

	_, _, err = s.ReserveLoginAttempt(ctx, "lapsed", base, 15*time.Minute, 10, time.Hour)
	must(t, "ReserveLoginAttempt", err)
	_, _, err = s.ReserveLoginAttempt(ctx, "locked", at(6*time.Hour+30*time.Minute), time.Minute, 1, time.Hour)
	must(t, "ReserveLoginAttempt", err)

	for _, e := range []store.AuditEvent{
		{Event: store.EventLoginSuccess, Success: true, CreatedAt: at(-100 * 24 * time.Hour)},
		{Event: store.EventLoginSuccess, Success: true, CreatedAt: at(-89 * 24 * time.Hour)},
	} {
		must(t, "RecordAudit", s.RecordAudit(ctx, e))
	}
	// Plus the token_exchange row written by issue, at base.

	n, err := s.DeleteExpired(ctx, now, time.Time{})
	must(t, "DeleteExpired", err)
	// dead session, code "g", access token, lapsed failures.
	if n != 4 {
		t.Errorf("DeleteExpired removed %d rows, want 4", n)
	}
	n, err = s.DeleteExpired(ctx, now, at(-90*24*time.Hour))
	must(t, "DeleteExpired audit", err)
	if n != 1 {
		t.Errorf("DeleteExpired with audit cutoff removed %d rows, want 1", n)
	}
	n, err = s.DeleteExpired(ctx, now, at(-90*24*time.Hour))
	must(t, "DeleteExpired again", err)
	if n != 0 {
		t.Errorf("DeleteExpired again removed %d rows, want 0", n)
	}

	// What must remain, seen through a clock where nothing has expired
	// yet (so only deletion can explain a miss).
	early := at(time.Second)
	if _, err := s.GetSession(ctx, live.IDHash, early); err != nil {
		t.Errorf("live session: %v", err)
	}
	if _, err := s.GetSession(ctx, dead.IDHash, early); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session still there: %v", err)
	}
	if _, err := s.GetAuthCode(ctx, liveCode.CodeHash, early); err != nil {
		t.Errorf("live code: %v", err)
	}
	if _, err := s.GetAuthCode(ctx, h("code g"), early); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired code still there: %v", err)
	}
	if tok, err := s.GetToken(ctx, g.Refresh.Hash, early); err != nil || tok.RevokedAt.IsZero() {
		t.Errorf("revoked unexpired refresh token: %v (revoked %v)", err, tok.RevokedAt)
	}
	if _, err := s.GetToken(ctx, g.Access.Hash, early); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired access token still there: %v", err)
	}
	if f, _ := s.GetLoginFailures(ctx, "lapsed"); f.Count != 0 {
		t.Errorf("lapsed login failures kept: %+v", f)
	}
	if f, _ := s.GetLoginFailures(ctx, "locked"); f.Count != 1 {
		t.Errorf("locked account's failures removed: %+v", f)
	}
	if n := auditCount(t, s); n != 2 {
		t.Errorf("audit rows left = %d, want 2", n)
	}
}

// ---- times ----

func testTimeRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	zones := []*time.Location{
		time.UTC,
		loc,
		time.FixedZone("UTC-09:30", -(9*3600 + 30*60)),
		time.FixedZone("UTC+14", 14*3600),
	}
	for i, z := range zones {
		t.Run(z.String(), func(t *testing.T) {
			when := time.Date(2030, 12, 31, 23, 59, 59, 999999000, z) // crosses a year in UTC for some zones
			u := store.User{Username: fmt.Sprintf("tz%d", i), PasswordHash: "x", CreatedAt: when, UpdatedAt: when.Add(time.Microsecond)}
			must(t, "CreateUser", s.CreateUser(ctx, u))
			got, err := s.GetUser(ctx, u.Username)
			must(t, "GetUser", err)
			diff(t, "user times", got, utc(u))
			if got.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt location %v, want UTC", got.CreatedAt.Location())
			}
			if !got.CreatedAt.Equal(when) || got.CreatedAt.Nanosecond() != 999999000 {
				t.Errorf("CreatedAt %v, want %v exactly", got.CreatedAt, when)
			}
			// Expiry compares instants, not wall clocks.
			sess := store.Session{IDHash: h(u.Username), Username: u.Username, CSRFToken: "c", CreatedAt: when, ExpiresAt: when.Add(time.Microsecond)}
			must(t, "CreateSession", s.CreateSession(ctx, sess))
			if _, err := s.GetSession(ctx, sess.IDHash, when.In(time.UTC)); err != nil {
				t.Errorf("session live a microsecond before expiry: %v", err)
			}
			if _, err := s.GetSession(ctx, sess.IDHash, when.Add(time.Microsecond).In(zones[(i+1)%len(zones)])); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("session at expiry (other zone): %v, want ErrNotFound", err)
			}
		})
	}
	ev := store.AuditEvent{Event: store.EventLogout, Success: true, CreatedAt: time.Date(2029, 1, 1, 0, 0, 0, 1000, loc)}
	must(t, "RecordAudit", s.RecordAudit(ctx, ev))
	rows, err := s.ListAudit(ctx, store.AuditFilter{Event: store.EventLogout})
	must(t, "ListAudit", err)
	if len(rows) != 1 {
		t.Fatalf("rows = %d", len(rows))
	}
	ev.ID = rows[0].ID
	diff(t, "audit time", rows[0], utc(ev))
}

// testUserGroups: groups round-trip normalised, LookupToken carries the
// user's current groups, and SetUserGroups notifies exactly the user's live
// access tokens (not revoking them) in one step, with its audit row.
func testUserGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "x", Groups: []string{"ops", "eng", "ops"}, CreatedAt: base, UpdatedAt: base}))
	must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: "bob", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	u, err := s.GetUser(ctx, "alice")
	must(t, "GetUser", err)
	diff(t, "groups after CreateUser", u.Groups, []string{"eng", "ops"})
	u, err = s.GetUser(ctx, "bob")
	must(t, "GetUser", err)
	diff(t, "groups of a user without any", u.Groups, []string(nil))

	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	ga := issue(t, s, "a", "c1", "alice")
	gb := issue(t, s, "b", "c1", "bob")
	revoked := issue(t, s, "ra", "c1", "alice")
	_, err = s.RevokeToken(ctx, revoked.Access.Hash, at(time.Minute), nil)
	must(t, "RevokeToken", err)
	tok, err := s.LookupToken(ctx, ga.Access.Hash, at(2*time.Minute))
	must(t, "LookupToken", err)
	diff(t, "LookupToken groups", tok.Groups, []string{"eng", "ops"})
	if full, err := s.GetToken(ctx, ga.Access.Hash, at(2*time.Minute)); err != nil || full.Groups != nil {
		t.Errorf("GetToken = %v, groups %v; want no groups", err, full.Groups)
	}

	sub := Subscribe(t, s)
	audits := auditCount(t, s)
	now := at(3 * time.Minute)
	hashes, err := s.SetUserGroups(ctx, "alice", []string{"eng"}, now, &store.AuditEvent{Event: store.EventGroupsChanged, Success: true, Username: "alice", CreatedAt: now})
	must(t, "SetUserGroups", err)
	diff(t, "SetUserGroups hashes", hashes, []string{ga.Access.Hash})
	if !sub.WaitHashes(time.Second, ga.Access.Hash) {
		t.Errorf("alice's access token not notified within 1s")
	}
	if sub.Has(gb.Access.Hash) || sub.Has(ga.Refresh.Hash) {
		t.Errorf("another user's token, or a refresh token, was notified")
	}
	if got := auditCount(t, s); got != audits+1 {
		t.Errorf("audit rows = %d, want %d", got, audits+1)
	}
	tok, err = s.LookupToken(ctx, ga.Access.Hash, now)
	must(t, "LookupToken after SetUserGroups", err)
	if !tok.RevokedAt.IsZero() {
		t.Errorf("SetUserGroups revoked the token")
	}
	diff(t, "LookupToken groups after SetUserGroups", tok.Groups, []string{"eng"})
	u, err = s.GetUser(ctx, "alice")
	must(t, "GetUser", err)
	if !u.UpdatedAt.Equal(now) {
		t.Errorf("UpdatedAt = %v, want %v", u.UpdatedAt, now)
	}
	_, err = s.SetUserGroups(ctx, "alice", nil, now, nil)
	must(t, "SetUserGroups clear", err)
	u, _ = s.GetUser(ctx, "alice")
	diff(t, "groups after clearing", u.Groups, []string(nil))

	_, err = s.SetUserGroups(ctx, "carol", []string{"eng"}, now, &store.AuditEvent{Event: store.EventGroupsChanged, CreatedAt: now})
	wantErr(t, "SetUserGroups unknown", err, store.ErrNotFound)
	if got := auditCount(t, s); got != audits+1 {
		t.Errorf("audit row written for an unknown user")
	}
}

// ---- cascades ----

// signIns is what alice's and bob's sign-ins leave in a store: a session,
// a token grant and an unredeemed code each, all from client c1, watched
// by a subscription. The changes that end one user's sign-ins
// (SetPassword, ResetSecondFactors, DeleteUser) start from it.
type signIns struct {
	alice, bob               store.CodeGrant
	alicePending, bobPending store.AuthCode
	sub                      *Collector
}

// signIn creates client c1, the users alice and bob unless they exist,
// and their sign-ins.
func signIn(t *testing.T, s store.Store) signIns {
	t.Helper()
	ctx := t.Context()
	must(t, "CreateClient", s.CreateClient(ctx, newClient("c1", base)))
	for _, u := range []string{"alice", "bob"} {
		if _, err := s.GetUser(ctx, u); errors.Is(err, store.ErrNotFound) {
			must(t, "CreateUser", s.CreateUser(ctx, store.User{Username: u, PasswordHash: "x", CreatedAt: base}))
		}
		must(t, "CreateSession", s.CreateSession(ctx, store.Session{IDHash: h("s " + u), Username: u, CSRFToken: "c", CreatedAt: base, ExpiresAt: at(time.Hour)}))
	}
	f := signIns{
		alice:        issue(t, s, "alice", "c1", "alice"),
		bob:          issue(t, s, "bob", "c1", "bob"),
		alicePending: newCode("alice pending", "c1", "alice"),
		bobPending:   newCode("bob pending", "c1", "bob"),
	}
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, f.alicePending, nil))
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, f.bobPending, nil))
	f.sub = Subscribe(t, s)
	return f
}

// wantAliceSignedOut checks that alice's sign-ins ended by now and bob's
// did not: her tokens were notified, her session and unredeemed code are
// gone; bob's session, code and token are there, his token neither
// revoked nor notified.
func (f signIns) wantAliceSignedOut(t *testing.T, s store.Store, now time.Time) {
	t.Helper()
	ctx := t.Context()
	if !f.sub.WaitHashes(time.Second, f.alice.Access.Hash, f.alice.Refresh.Hash) {
		t.Errorf("alice's revoked tokens not notified within 1s")
	}
	_, err := s.GetSession(ctx, h("s alice"), now)
	wantErr(t, "alice's session", err, store.ErrNotFound)
	_, err = s.GetAuthCode(ctx, f.alicePending.CodeHash, now)
	wantErr(t, "alice's unredeemed code", err, store.ErrNotFound)
	if _, err := s.GetSession(ctx, h("s bob"), now); err != nil {
		t.Errorf("bob's session: %v", err)
	}
	if _, err := s.GetAuthCode(ctx, f.bobPending.CodeHash, now); err != nil {
		t.Errorf("bob's unredeemed code: %v", err)
	}
	if tok, err := s.GetToken(ctx, f.bob.Access.Hash, now); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("bob's token: %v, revoked %v", err, tok.RevokedAt)
	}
	if f.sub.Has(f.bob.Access.Hash) {
		t.Errorf("bob's token notified")
	}
}

func testDeleteUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := signIn(t, s)
	for _, u := range []string{"alice", "bob"} {
		must(t, "PutConsent", s.PutConsent(ctx, store.Consent{Username: u, ClientID: "c1", Resource: resA, Scope: "mcp", CreatedAt: base, UpdatedAt: base}, nil))
		_, _, err := s.ReserveLoginAttempt(ctx, u, base, time.Hour, 5, time.Hour)
		must(t, "ReserveLoginAttempt", err)
	}

	now := at(time.Minute)
	must(t, "DeleteUser", s.DeleteUser(ctx, "alice", now))
	_, err := s.GetUser(ctx, "alice")
	wantErr(t, "GetUser", err, store.ErrNotFound)
	_, err = s.GetConsent(ctx, "alice", "c1", resA)
	wantErr(t, "GetConsent", err, store.ErrNotFound)
	if lf, _ := s.GetLoginFailures(ctx, "alice"); lf.Count != 0 {
		t.Errorf("login failures kept: %+v", lf)
	}
	for _, tok := range []store.Token{f.alice.Access, f.alice.Refresh} {
		got, err := s.GetToken(ctx, tok.Hash, now)
		if err == nil && got.RevokedAt.IsZero() {
			t.Errorf("%s token of deleted user still valid", tok.Kind)
		}
	}
	f.wantAliceSignedOut(t, s, now)
	if _, err := s.GetUser(ctx, "bob"); err != nil {
		t.Errorf("bob: %v", err)
	}
	if _, err := s.GetConsent(ctx, "bob", "c1", resA); err != nil {
		t.Errorf("bob's consent: %v", err)
	}
	// The name can be taken again.
	must(t, "CreateUser again", s.CreateUser(ctx, store.User{Username: "alice", PasswordHash: "y", CreatedAt: now}))
}

func testDeleteClient(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		must(t, "CreateClient", s.CreateClient(ctx, newClient(id, base)))
		must(t, "PutConsent", s.PutConsent(ctx, store.Consent{Username: "alice", ClientID: id, Resource: resA, Scope: "mcp", CreatedAt: base, UpdatedAt: base}, nil))
	}
	g1 := issue(t, s, "one", "c1", "alice")
	g2 := issue(t, s, "two", "c2", "alice")
	pending := newCode("pending", "c1", "alice")
	must(t, "CreateAuthCode", s.CreateAuthCode(ctx, pending, nil))
	sub := Subscribe(t, s)

	now := at(time.Minute)
	must(t, "DeleteClient", s.DeleteClient(ctx, "c1", now))
	_, err := s.GetClient(ctx, "c1")
	wantErr(t, "GetClient", err, store.ErrNotFound)
	_, err = s.GetConsent(ctx, "alice", "c1", resA)
	wantErr(t, "GetConsent", err, store.ErrNotFound)
	_, err = s.GetAuthCode(ctx, pending.CodeHash, now)
	wantErr(t, "GetAuthCode", err, store.ErrNotFound)
	for _, tok := range []store.Token{g1.Access, g1.Refresh} {
		got, err := s.GetToken(ctx, tok.Hash, now)
		if err == nil && got.RevokedAt.IsZero() {
			t.Errorf("%s token of deleted client still valid", tok.Kind)
		}
	}
	if !sub.WaitHashes(time.Second, g1.Access.Hash, g1.Refresh.Hash) {
		t.Errorf("deleted client's tokens not notified within 1s")
	}
	if tok, err := s.GetToken(ctx, g2.Access.Hash, now); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("other client's token: %v, revoked %v", err, tok.RevokedAt)
	}
	if _, err := s.GetConsent(ctx, "alice", "c2", resA); err != nil {
		t.Errorf("other client's consent: %v", err)
	}
	wantErr(t, "DeleteClient again", s.DeleteClient(ctx, "c1", now), store.ErrNotFound)
}

// ---- API keys ----

func newAPIKey(name string) store.APIKey {
	return store.APIKey{
		Name:      name,
		Hash:      h("api key " + name),
		Resources: []string{"https://mcp.example.com/mcp", "https://other.example.com/mcp"},
		Scope:     "mcp admin",
		CreatedAt: base,
	}
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys, err := s.ListAPIKeys(ctx)
	must(t, "ListAPIKeys empty", err)
	diff(t, "ListAPIKeys empty", len(keys), 0)

	ci, ops := newAPIKey("ci"), newAPIKey("ops")
	ops.Resources, ops.Scope = []string{"https://mcp.example.com/mcp"}, ""
	ev := store.AuditEvent{Event: store.EventAPIKeyCreated, Success: true, IP: "cli", Username: "apikey:ci", CreatedAt: base}
	must(t, "CreateAPIKey ci", s.CreateAPIKey(ctx, ci, &ev))
	must(t, "CreateAPIKey ops", s.CreateAPIKey(ctx, ops, nil))
	wantAuditRows(t, s, "after two creations (one audited)", 1)

	// A taken name, even with another hash, and a taken hash, even under
	// another name, are refused; nothing is written, not even the audit row.
	dupName := newAPIKey("ci")
	dupName.Hash = h("another key")
	wantErr(t, "CreateAPIKey duplicate name", s.CreateAPIKey(ctx, dupName, &ev), store.ErrAlreadyExists)
	dupHash := newAPIKey("other")
	dupHash.Hash = ci.Hash
	wantErr(t, "CreateAPIKey duplicate hash", s.CreateAPIKey(ctx, dupHash, &ev), store.ErrAlreadyExists)
	wantAuditRows(t, s, "after refused creations", 1)

	got, err := s.LookupAPIKey(ctx, ci.Hash)
	must(t, "LookupAPIKey", err)
	diff(t, "LookupAPIKey", got, utc(ci))
	_, err = s.LookupAPIKey(ctx, h("nope"))
	wantErr(t, "LookupAPIKey unknown", err, store.ErrNotFound)
	_, err = s.LookupAPIKey(ctx, "")
	wantErr(t, "LookupAPIKey empty hash", err, store.ErrNotFound)

	keys, err = s.ListAPIKeys(ctx)
	must(t, "ListAPIKeys", err)
	diff(t, "ListAPIKeys", keys, utc([]store.APIKey{ci, ops}))

	rev := store.AuditEvent{Event: store.EventAPIKeyRevoked, Success: true, IP: "cli", Username: "apikey:ci", CreatedAt: at(time.Hour)}
	must(t, "RevokeAPIKey", s.RevokeAPIKey(ctx, "ci", at(time.Hour), &rev))
	wantErr(t, "RevokeAPIKey again", s.RevokeAPIKey(ctx, "ci", at(2*time.Hour), &rev), store.ErrConflict)
	wantErr(t, "RevokeAPIKey unknown", s.RevokeAPIKey(ctx, "nobody", at(time.Hour), &rev), store.ErrNotFound)
	wantAuditRows(t, s, "after one revocation and two refused ones", 2)

	// A revoked key is still found, marked, and keeps its name.
	got, err = s.LookupAPIKey(ctx, ci.Hash)
	must(t, "LookupAPIKey revoked", err)
	wantCI := utc(ci)
	wantCI.RevokedAt = at(time.Hour).UTC()
	diff(t, "LookupAPIKey revoked", got, wantCI)
	wantErr(t, "CreateAPIKey reusing a revoked name", s.CreateAPIKey(ctx, dupName, nil), store.ErrAlreadyExists)
	got, err = s.LookupAPIKey(ctx, ops.Hash)
	must(t, "LookupAPIKey ops", err)
	if !got.RevokedAt.IsZero() {
		t.Errorf("ops revoked along with ci")
	}
	keys, err = s.ListAPIKeys(ctx)
	must(t, "ListAPIKeys after revoke", err)
	diff(t, "ListAPIKeys after revoke", keys, []store.APIKey{wantCI, utc(ops)})

	// Keys do not expire: the cleanup leaves them, revoked or not.
	_, err = s.DeleteExpired(ctx, at(100*365*24*time.Hour), time.Time{})
	must(t, "DeleteExpired", err)
	keys, err = s.ListAPIKeys(ctx)
	must(t, "ListAPIKeys after cleanup", err)
	if len(keys) != 2 {
		t.Errorf("DeleteExpired removed API keys: %d left, want 2", len(keys))
	}
}

// testRevokeAPIKeyConcurrent: of concurrent revocations of one key exactly
// one succeeds and writes its audit row; the others get ErrConflict.
func testRevokeAPIKeyConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateAPIKey", s.CreateAPIKey(ctx, newAPIKey("ci"), nil))
	errs := race(8, func(int) error {
		ev := store.AuditEvent{Event: store.EventAPIKeyRevoked, Success: true, IP: "cli", Username: "apikey:ci", CreatedAt: base}
		return s.RevokeAPIKey(ctx, "ci", at(time.Hour), &ev)
	})
	oneWinner(t, "revocation", errs, store.ErrConflict)
	if c := auditCount(t, s); c != 1 {
		t.Errorf("audit rows = %d, want 1", c)
	}
}

// testRevokeAPIKeySubscribe: a key's revocation reaches every subscriber
// as its hash, like a token's; a refused revocation notifies nothing.
func testRevokeAPIKeySubscribe(t *testing.T, s store.Store) {
	ctx := t.Context()
	ci, ops := newAPIKey("ci"), newAPIKey("ops")
	must(t, "CreateAPIKey ci", s.CreateAPIKey(ctx, ci, nil))
	must(t, "CreateAPIKey ops", s.CreateAPIKey(ctx, ops, nil))
	c1, c2 := Subscribe(t, s), Subscribe(t, s)
	must(t, "RevokeAPIKey", s.RevokeAPIKey(ctx, "ci", at(time.Hour), nil))
	for i, c := range []*Collector{c1, c2} {
		if !c.WaitHashes(time.Second, ci.Hash) {
			t.Errorf("subscriber %d did not receive the revoked key's hash within 1s", i+1)
		}
	}
	if c1.Has(ops.Hash) {
		t.Errorf("a key that was never revoked was notified")
	}
}
