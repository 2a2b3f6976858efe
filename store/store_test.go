package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNextLoginFailures(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	const window, threshold, lockFor = 15 * time.Minute, 3, time.Hour
	tests := []struct {
		name      string
		cur       LoginFailures
		now       time.Time
		threshold int
		want      LoginFailures
	}{
		{
			name:      "first failure starts a window",
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 1, FirstAt: now},
		},
		{
			name:      "failure inside the window counts on",
			cur:       LoginFailures{Username: "alice", Count: 1, FirstAt: now.Add(-time.Minute)},
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 2, FirstAt: now.Add(-time.Minute)},
		},
		{
			name:      "failure at the window's end restarts counting",
			cur:       LoginFailures{Username: "alice", Count: 2, FirstAt: now.Add(-window)},
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 1, FirstAt: now},
		},
		{
			name:      "reaching the threshold locks",
			cur:       LoginFailures{Username: "alice", Count: 2, FirstAt: now.Add(-time.Minute)},
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 3, FirstAt: now.Add(-time.Minute), LockedUntil: now.Add(lockFor)},
		},
		{
			name:      "zero threshold never locks",
			cur:       LoginFailures{Username: "alice", Count: 99, FirstAt: now.Add(-time.Minute)},
			now:       now,
			threshold: 0,
			want:      LoginFailures{Username: "alice", Count: 100, FirstAt: now.Add(-time.Minute)},
		},
		{
			name:      "a longer running lock is not shortened",
			cur:       LoginFailures{Username: "alice", Count: 5, FirstAt: now.Add(-time.Minute), LockedUntil: now.Add(3 * time.Hour)},
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 6, FirstAt: now.Add(-time.Minute), LockedUntil: now.Add(3 * time.Hour)},
		},
		{
			name:      "a lapsed lock is cleared below the threshold",
			cur:       LoginFailures{Username: "alice", Count: 4, FirstAt: now.Add(-2 * time.Hour), LockedUntil: now.Add(-time.Second)},
			now:       now,
			threshold: threshold,
			want:      LoginFailures{Username: "alice", Count: 1, FirstAt: now},
		},
		{
			name:      "times come back UTC at microsecond precision",
			now:       now.Add(1234 * time.Nanosecond).In(time.FixedZone("x", 3600)),
			threshold: 1,
			want:      LoginFailures{Username: "alice", Count: 1, FirstAt: now.Add(time.Microsecond), LockedUntil: now.Add(lockFor + time.Microsecond)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NextLoginFailures(tt.cur, "alice", tt.now, window, tt.threshold, lockFor)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NextLoginFailures (-want +got):\n%s", diff)
			}
			if got.FirstAt.Location() != time.UTC {
				t.Errorf("FirstAt location = %v, want UTC", got.FirstAt.Location())
			}
		})
	}
}

func TestLoginFailuresExpiresAt(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	const window = 15 * time.Minute
	tests := []struct {
		name string
		f    LoginFailures
		want time.Time
	}{
		{"unlocked: end of window", LoginFailures{Count: 1, FirstAt: now}, now.Add(window)},
		{"lock ends inside the window", LoginFailures{Count: 3, FirstAt: now, LockedUntil: now.Add(time.Minute)}, now.Add(window)},
		{"lock outlasts the window", LoginFailures{Count: 3, FirstAt: now, LockedUntil: now.Add(time.Hour)}, now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.ExpiresAt(window); !got.Equal(tt.want) {
				t.Errorf("ExpiresAt(%v) = %v, want %v", window, got, tt.want)
			}
		})
	}
}
