package main

import (
	"log/slog"
	"os"
	"runtime"
	"testing"
)

// TestReserveSchedulerSlot: GOMAXPROCS is raised above the hashes that may
// run at once (each holds a P for its whole run), unless the operator set
// GOMAXPROCS, and never lowered.
func TestReserveSchedulerSlot(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	env, had := os.LookupEnv("GOMAXPROCS")
	t.Cleanup(func() {
		if had {
			os.Setenv("GOMAXPROCS", env)
		} else {
			os.Unsetenv("GOMAXPROCS")
		}
	})
	a := &app{logger: slog.New(slog.DiscardHandler)}
	for _, tt := range []struct {
		name           string
		env            bool
		before, hashes int
		want           int
	}{
		{"one CPU, one hash", false, 1, 1, 2},
		{"two CPUs, one hash", false, 2, 1, 2},
		{"two CPUs, two hashes", false, 2, 2, 3},
		{"never lowered", false, 8, 1, 8},
		{"explicit GOMAXPROCS kept", true, 1, 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env {
				os.Setenv("GOMAXPROCS", "1")
			} else {
				os.Unsetenv("GOMAXPROCS")
			}
			runtime.GOMAXPROCS(tt.before)
			a.reserveSchedulerSlot(tt.hashes)
			if got := runtime.GOMAXPROCS(0); got != tt.want {
				t.Errorf("GOMAXPROCS = %d, want %d", got, tt.want)
			}
		})
	}
}
