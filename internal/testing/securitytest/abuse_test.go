package securitytest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/passgate/passgate/internal/testing/e2etest"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres/pgtest"
)

// TestLoginRateLimit: with the default limits, the sixth login attempt
// within 15 minutes from one IP gets 429 with Retry-After, on the login
// page (the browser form's own format), and is audited as rate_limited;
// the account's failure counter is not advanced by refused attempts.
func TestLoginRateLimit(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{})
	st := srv.OpenStore(t)
	e2etest.AddUser(t, st, "alice", "alice-password-123")
	for i := 1; i <= 5; i++ {
		if resp, _ := loginAttempt(t, srv, e2etest.NewBrowser(), "alice", "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i, resp.StatusCode)
		}
	}
	resp, body := loginAttempt(t, srv, e2etest.NewBrowser(), "alice", "alice-password-123")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sixth attempt: %d, want 429", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 15*60 {
		t.Errorf("Retry-After %q, want 1..900 seconds", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, `name="password"`) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Error("the refusal is not the login page")
	}
	rows := auditOf(t, st, store.EventRateLimited)
	if len(rows) != 1 || rows[0].IP != "127.0.0.1" || rows[0].Error != "login" || rows[0].Success {
		t.Errorf("rate_limited rows %+v", rows)
	}
	if n := len(auditOf(t, st, store.EventLoginFailure)); n != 5 {
		t.Errorf("%d login_failure rows, want 5 (the refused attempt is not a login)", n)
	}
	if n := len(auditOf(t, st, store.EventLoginSuccess)); n != 0 {
		t.Error("the rate-limited attempt logged in")
	}
}

// TestSpoofedForwardedFor: with --trusted-proxies=127.0.0.2, a client at
// 127.0.0.1 that sends X-Forwarded-For and X-Real-IP changes nothing: its
// attempts share one rate-limit key (the sixth is refused) and the audit
// log records 127.0.0.1. The same header from the trusted proxy is
// believed: the right-most hop becomes the client IP, for the audit log
// and for the limit.
func TestSpoofedForwardedFor(t *testing.T) {
	srv := e2etest.Start(t, e2etest.Options{Args: []string{"--trusted-proxies=127.0.0.2/32"}})
	st := srv.OpenStore(t)
	e2etest.AddUser(t, st, "alice", "alice-password-123")
	for i := 1; i <= 6; i++ {
		h := http.Header{
			"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i)},
			"X-Real-Ip":       {fmt.Sprintf("198.51.100.%d", i)},
		}
		resp, _ := loginAttempt(t, srv, newBrowser("127.0.0.1", h), "alice", "wrong")
		want := http.StatusUnauthorized
		if i == 6 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("spoofed attempt %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	for _, ev := range []string{store.EventLoginFailure, store.EventRateLimited} {
		for _, r := range auditOf(t, st, ev) {
			if r.IP != "127.0.0.1" {
				t.Errorf("%s row with ip %q: the spoofed header was believed", ev, r.IP)
			}
		}
	}
	// Through the trusted proxy: "spoofed, real" — the proxy appended the
	// address it saw; the left part is the client's claim and is ignored.
	for i := 1; i <= 2; i++ {
		resp, _ := loginAttempt(t, srv, newBrowser("127.0.0.2", xff("10.9.9.9, 192.0.2.77")), "alice", "wrong")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("via the trusted proxy, attempt %d: %d, want 401 (a separate limit)", i, resp.StatusCode)
		}
	}
	rows := auditOf(t, st, store.EventLoginFailure)
	if rows[0].IP != "192.0.2.77" || rows[1].IP != "192.0.2.77" {
		t.Errorf("via the trusted proxy the audit ip is %q, want 192.0.2.77", rows[0].IP)
	}
	// The request log agrees with the audit log.
	if !strings.Contains(srv.Logs(), `"client_ip":"192.0.2.77"`) || strings.Contains(srv.Logs(), `"client_ip":"203.0.113.`) {
		t.Error("the request log's client_ip does not follow the trusted-proxy rule")
	}
}

// TestLockoutAcrossReplicasPostgres: two passgate processes share one
// PostgreSQL database behind a proxy on loopback (trusted by default).
// Ten failed logins for one account, alternating between the replicas and
// each from a different client IP (so no rate limit applies), lock it:
// the eleventh attempt fails even with the right password, with the same
// page as a wrong password, and exactly one account_locked row is written.
// `passgate user unlock` lifts the lock.
func TestLockoutAcrossReplicasPostgres(t *testing.T) {
	db := pgtest.NewDatabase(t)
	a := e2etest.Start(t, e2etest.Options{Name: "a", DatabaseURL: db})
	b := e2etest.Start(t, e2etest.Options{Name: "b", DatabaseURL: db})
	st := a.OpenStore(t)
	const pw = "alice-password-123"
	e2etest.AddUser(t, st, "alice", pw)

	var wg sync.WaitGroup
	errs := make(chan string, 10)
	for i := 1; i <= 10; i++ {
		srv := a
		if i%2 == 0 {
			srv = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := loginAttempt(t, srv, newBrowser("", xff(fmt.Sprintf("203.0.113.%d", i))), "alice", fmt.Sprintf("wrong-%d", i))
			if resp.StatusCode != http.StatusUnauthorized {
				errs <- fmt.Sprintf("failure %d on %s: %d", i, srv.Opts.Name, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i, srv := range []*e2etest.Server{a, b} {
		_, wrongPage := loginAttempt(t, srv, newBrowser("", xff(fmt.Sprintf("203.0.113.%d", 200+i))), "alice", "wrong-again")
		resp, body := loginAttempt(t, srv, newBrowser("", xff("203.0.113.99")), "alice", pw)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the right password on locked account via %s: %d, want 401", srv.Opts.Name, resp.StatusCode)
		}
		if stripCSRF(body) != stripCSRF(wrongPage) {
			t.Errorf("the locked-account page on %s differs from the wrong-password page (account enumeration)", srv.Opts.Name)
		}
	}
	locked := auditOf(t, st, store.EventAccountLocked)
	if len(locked) != 1 || locked[0].Username != "alice" {
		t.Errorf("account_locked rows: %+v, want exactly one for alice", locked)
	}
	ips := map[string]bool{}
	for _, r := range auditOf(t, st, store.EventLoginFailure) {
		ips[r.IP] = true
	}
	if len(ips) != 13 { // ten, two extra wrong ones, and the locked attempts' IP
		t.Errorf("login_failure rows came from %d IPs, want 13: %v", len(ips), ips)
	}
	if n := len(auditOf(t, st, store.EventRateLimited)); n != 0 {
		t.Errorf("%d rate_limited rows: the lock must come from the account counter, not the IP limit", n)
	}
	// The lock is visible to the metric too.
	if m := eventMetrics(t, a)[eventKey{store.EventAccountLocked, "failure"}] + eventMetrics(t, b)[eventKey{store.EventAccountLocked, "failure"}]; m != 1 {
		t.Errorf("account_locked metric across replicas: %v, want 1", m)
	}

	a.CLI(t, "", "user", "unlock", "alice")
	if resp, _ := loginAttempt(t, b, newBrowser("", xff("203.0.113.150")), "alice", pw); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after unlock: %d, want 303", resp.StatusCode)
	}
}

func stripCSRF(page string) string {
	for _, name := range []string{`name="csrf" value="`} {
		for {
			i := strings.Index(page, name)
			if i < 0 {
				break
			}
			j := strings.IndexByte(page[i+len(name):], '"')
			page = page[:i] + page[i+len(name)+j+1:]
		}
	}
	return page
}
