package store

import "time"

// ReserveLoginAttempt is the decision behind Store.ReserveLoginAttempt,
// shared by the backends: an account locked at now gets no verification
// and its state stays as it is (ok false); otherwise the attempt is
// counted as a failure before the hash runs (NextLoginFailures) and ok is
// true. The attempt that reaches threshold still verifies: threshold
// verifications per lock window, not threshold-1.
func ReserveLoginAttempt(cur LoginFailures, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) (next LoginFailures, ok bool) {
	if cur.LockedUntil.After(now) {
		return cur, false
	}
	return NextLoginFailures(cur, username, now, window, threshold, lockFor), true
}

// NextLoginFailures is the lockout state machine, shared by the backends: it returns the state
// after one more failure for username at now. cur is the stored state (the
// zero value if none). A window that has passed restarts counting; reaching
// threshold (when positive) locks until now+lockFor, never shortening a
// running lock. Times are UTC truncated to microseconds, the precision both
// backends store, so the result reads back unchanged.
func NextLoginFailures(cur LoginFailures, username string, now time.Time, window time.Duration, threshold int, lockFor time.Duration) LoginFailures {
	next := LoginFailures{Username: username, LockedUntil: cur.LockedUntil}
	if cur.Count == 0 || !now.Before(cur.FirstAt.Add(window)) {
		next.Count, next.FirstAt = 1, now
	} else {
		next.Count, next.FirstAt = cur.Count+1, cur.FirstAt
	}
	if !next.LockedUntil.After(now) {
		next.LockedUntil = time.Time{}
	}
	if threshold > 0 && next.Count >= threshold {
		if until := now.Add(lockFor); until.After(next.LockedUntil) {
			next.LockedUntil = until
		}
	}
	next.FirstAt = next.FirstAt.UTC().Truncate(time.Microsecond)
	if !next.LockedUntil.IsZero() {
		next.LockedUntil = next.LockedUntil.UTC().Truncate(time.Microsecond)
	}
	return next
}

// ExpiresAt is when the state f stops mattering for a counting window of
// the given length: the later of the window's end and the lock's end.
// DeleteExpired may remove the state from then on.
func (f LoginFailures) ExpiresAt(window time.Duration) time.Time {
	expires := f.FirstAt.Add(window)
	if f.LockedUntil.After(expires) {
		return f.LockedUntil
	}
	return expires
}
