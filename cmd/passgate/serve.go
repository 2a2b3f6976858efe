package main

import (
	"context"
	"errors"
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
	return serve(ctx, c, newLogger(c, std.err), std)
}

// loadServeConfig parses flags, applies the environment and validates,
// reporting every problem at once.
func loadServeConfig(args []string, std stdio) (*Config, error) {
	var c Config
	fs := newFlagSet("serve", "serve [flags]", std)
	settings := c.bindFlags(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	var errs []error
	if err := c.applyEnv(fs, settings, std.getenv); err != nil {
		errs = append(errs, err)
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{"invalid configuration:\n  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")}
	}
	return &c, nil
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
