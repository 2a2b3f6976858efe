package store

import (
	"strings"
	"testing"
	"testing/fstest"
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

func TestLoadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []Migration
		wantErr string // substring; empty: success
	}{
		{
			name: "ordered by version, not by name",
			fsys: fstest.MapFS{
				"m/10_ten.sql":  file("S10"),
				"m/1_one.sql":   file("S1"),
				"m/2_two.sql":   file("S2"),
				"m/3_three.sql": file("S3"),
				"m/4_four.sql":  file("S4"),
				"m/5_five.sql":  file("S5"),
				"m/6_six.sql":   file("S6"),
				"m/7_seven.sql": file("S7"),
				"m/8_eight.sql": file("S8"),
				"m/9_nine.sql":  file("S9"),
				"other/1_x.sql": file("not read"),
			},
			want: []Migration{
				{1, "1_one.sql", "S1"}, {2, "2_two.sql", "S2"}, {3, "3_three.sql", "S3"}, {4, "4_four.sql", "S4"},
				{5, "5_five.sql", "S5"}, {6, "6_six.sql", "S6"}, {7, "7_seven.sql", "S7"}, {8, "8_eight.sql", "S8"},
				{9, "9_nine.sql", "S9"}, {10, "10_ten.sql", "S10"},
			},
		},
		{
			name: "leading zeros",
			fsys: fstest.MapFS{"m/0001_init.sql": file("CREATE"), "m/0002_more.sql": file("ALTER")},
			want: []Migration{{1, "0001_init.sql", "CREATE"}, {2, "0002_more.sql", "ALTER"}},
		},
		{name: "gap", fsys: fstest.MapFS{"m/1_a.sql": file(""), "m/3_c.sql": file("")}, wantErr: "want version 2, found 3_c.sql"},
		{name: "repeat", fsys: fstest.MapFS{"m/1_a.sql": file(""), "m/01_b.sql": file("")}, wantErr: "want version 2"},
		{name: "no version", fsys: fstest.MapFS{"m/init.sql": file("")}, wantErr: "migration init.sql: name must start"},
		{name: "version zero", fsys: fstest.MapFS{"m/0_init.sql": file("")}, wantErr: "migration 0_init.sql: name must start"},
		{name: "negative version", fsys: fstest.MapFS{"m/-1_init.sql": file("")}, wantErr: "name must start"},
		{name: "missing directory", fsys: fstest.MapFS{}, wantErr: "read migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadMigrations(tt.fsys, "m")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadMigrations error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadMigrations: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadMigrations (-want +got):\n%s", diff)
			}
		})
	}
}
