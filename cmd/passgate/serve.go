package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

func cmdServe(ctx context.Context, args []string, std stdio) error {
	c, err := loadServeConfig(args, std)
	if err != nil {
		return err
	}
	logger := newLogger(c, std.err)
	for _, w := range c.exposureWarnings() {
		logger.Warn(w)
	}
	return serve(ctx, c, logger, std)
}

// loadServeConfig parses flags, applies the environment and the
// configuration file and validates, reporting every problem at once, one
// line each.
func loadServeConfig(args []string, std stdio) (*Config, error) {
	return loadConfig("serve", "serve [flags]", args, std)
}

// loadConfig is loadServeConfig for the command name (serve, config
// check), whose usage line is usage.
func loadConfig(name, usage string, args []string, std stdio) (*Config, error) {
	c := Config{CreateDataDir: true}
	fs := newFlagSet(name, usage, std)
	settings := c.bindFlags(fs)
	if err := parseFlagsOnly(fs, args); err != nil {
		return nil, err
	}
	failed, err := loadLayers(fs, &c, settings, std)
	msgs := problems(err)
	// A refused value leaves the flag's zero value behind (the flag
	// package stores what it parsed before failing), and an unreadable
	// secret file an empty secret; Validate's complaint about those would
	// be a second, misleading error for the same mistake.
	for _, m := range problems(c.Validate()) {
		if !aboutFailed(m, failed) {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) > 0 {
		return nil, usageError{"invalid configuration:\n  " + strings.Join(msgs, "\n  ")}
	}
	return &c, nil
}

// aboutFailed reports whether Validate's message m is about a flag
// ("--name: …") or seed variable ("$NAME") in failed.
func aboutFailed(m string, failed map[string]bool) bool {
	for k := range failed {
		if strings.HasPrefix(k, "$") && strings.Contains(m, k) ||
			strings.HasPrefix(m, "--"+k+":") || strings.HasPrefix(m, "--"+k+" ") || strings.HasPrefix(m, "--"+k+"=") {
			return true
		}
	}
	return false
}

// newLogger logs JSON unless the output is a terminal (or the format is
// forced).
func newLogger(c *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := c.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs passgate until ctx ends (SIGTERM), then shuts down gracefully.
func serve(ctx context.Context, c *Config, logger *slog.Logger, std stdio) error {
	a, err := newApp(ctx, c, logger, std)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx)
}

// withTimeout bounds each request's context: every store call of the
// authorization server then has a deadline, which the handlers answer with
// 503 temporarily_unavailable instead of hanging on a stuck database.
func withTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		r2 := r.WithContext(ctx)
		h.ServeHTTP(w, r2)
		// The authorization server's own mux set the pattern that served
		// the request on r2; hand it back so the request log names the
		// route ("POST /oauth/token") rather than the outer mux's "/".
		if r2.Pattern != "" {
			r.Pattern = r2.Pattern
		}
	})
}
