package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// it comes from the module build info.
var version = ""

// errHelp reports that help was printed; the exit code is 0 when it was
// asked for and 2 after a usage error.
var errHelp = errors.New("help requested")

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// stdio is the process's standard streams and environment, passed in so the
// CLI can be tested without touching the real ones.
type stdio struct {
	in     io.Reader
	out    io.Writer
	err    io.Writer
	getenv func(string) string
	// hashCost is the bcrypt cost of the password and secret hashes
	// passgate makes; passwd.DefaultCost when 0. Tests lower it.
	hashCost int
}

func (s stdio) cost() int {
	if s.hashCost == 0 {
		return passwd.DefaultCost
	}
	return s.hashCost
}

// cliCommand is one of passgate's commands: its line in the usage text
// and the function that runs it.
type cliCommand struct {
	name, args, desc string
	run              func(context.Context, []string, stdio) error
}

// commands lists passgate's commands in the order of the usage text.
func commands() []cliCommand {
	return []cliCommand{
		{"serve", "[flags]", "run the authorization server and the checks", cmdServe},
		{"user", "add|list|remove|passwd|unlock|mfa [NAME]", "", cmdUser},
		{"client", "add|list|remove [ID]", "pre-registered OAuth clients", cmdClient},
		{"token", "revoke --user NAME", "revoke every token of a user", cmdToken},
		{"apikey", "add|list|revoke [NAME]", "named API keys bound to resources and scopes", cmdAPIKey},
		{"session", "list|revoke", "browser sessions", cmdSession},
		{"audit", "[flags]", "query the audit log", cmdAudit},
		{"hash-password", "", "read a password on stdin, print a bcrypt hash", cmdHashPassword},
		{"migrate", "", "apply database migrations and exit", cmdMigrate},
		{"healthcheck", "[URL]", "exit 0 if /healthz answers (for containers)", cmdHealthcheck},
		{"version", "", "", cmdVersion},
	}
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString("passgate: password-based OAuth 2.1 for MCP servers, enforced at the proxy.\n\nUsage:\n")
	for _, c := range commands() {
		line := strings.TrimSpace(c.name + " " + c.args)
		fmt.Fprintf(&b, "%s\n", strings.TrimRight(fmt.Sprintf("  passgate %-29s %s", line, c.desc), " "))
	}
	b.WriteString("\nRun \"passgate COMMAND --help\" for a command's flags.\n")
	return b.String()
}

// run runs the command in args and returns the process's exit code: 0, 1
// when the command failed, 2 after a usage error. It prints the error to
// std.err.
func run(ctx context.Context, args []string, std stdio) int {
	err := dispatch(ctx, args, std)
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintf(std.err, "passgate: %v\n", err)
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		fmt.Fprint(std.err, mainUsage())
		return usagef("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-version":
		name = "version"
	case "help", "-h", "-help", "--help":
		fmt.Fprint(std.out, mainUsage())
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, rest, std)
		}
	}
	fmt.Fprint(std.err, mainUsage())
	return usagef("unknown command %q", name)
}

func cmdVersion(_ context.Context, _ []string, std stdio) error {
	fmt.Fprintln(std.out, "passgate", buildVersion())
	return nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// newFlagSet returns a FlagSet that prints usage to std.err and reports
// errors instead of exiting.
func newFlagSet(name, usage string, std stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() {
		fmt.Fprintf(std.err, "Usage: passgate %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may appear before or after positional
// arguments ("user add alice --password-stdin") and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// storeConfig binds only the flags a command needs to reach the store.
func bindStoreFlags(fs *flag.FlagSet, c *Config) []setting {
	fs.StringVar(&c.DatabaseURL, "database", "", "PostgreSQL URL; SQLite in --data-dir when empty"+envHelp([]string{"DATABASE_URL"}))
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir, "directory of the SQLite database"+envHelp([]string{"PASSGATE_DATA_DIR"}))
	return []setting{{"database", []string{"DATABASE_URL"}}, {"data-dir", []string{"PASSGATE_DATA_DIR"}}}
}

// openStore opens and migrates the configured backend.
func openStore(ctx context.Context, c *Config, logger *slog.Logger) (store.Store, error) {
	var (
		st  store.Store
		err error
	)
	if c.DatabaseURL != "" {
		// PostgreSQL may start after passgate (docker compose, a reboot):
		// wait for it a while rather than exit at once.
		deadline := time.Now().Add(c.StartupWait)
		for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			st, err = postgres.Open(ctx, c.DatabaseURL, logger)
			if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().Add(backoff).After(deadline) {
				break
			}
			logger.Warn("waiting for PostgreSQL", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("open postgres: %w", ctx.Err())
			case <-time.After(backoff):
			}
		}
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
	} else {
		if c.DataDir == "" {
			return nil, errors.New("--data-dir is empty and --database is not set")
		}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		st, err = sqlite.Open(ctx, filepath.Join(c.DataDir, "passgate.db"), logger)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
	}
	// Migrate logs what it applied itself.
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

// storeCommand parses a store-using subcommand's flags (with env
// fallbacks), opens the store and returns it with the positionals.
func storeCommand(ctx context.Context, fs *flag.FlagSet, c *Config, args []string, std stdio, extra []setting) (store.Store, []string, error) {
	settings := append(bindStoreFlags(fs, c), extra...)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if err := c.applyEnv(fs, settings, std.getenv); err != nil {
		return nil, nil, usageError{err.Error()}
	}
	logger := slog.New(slog.NewTextHandler(std.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openStore(ctx, c, logger)
	if err != nil {
		return nil, nil, err
	}
	return st, pos, nil
}

// readPassword reads a password from stdin (--password-stdin: the first
// line) or prompts twice on the terminal without echo.
func readPassword(std stdio, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(std.in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("empty password on stdin")
		}
		return pw, nil
	}
	f, ok := std.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("stdin is not a terminal: use --password-stdin")
	}
	fmt.Fprint(std.err, "Password: ")
	a, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(std.err)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(std.err, "Again: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(std.err)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(a) != string(b) {
		return "", errors.New("passwords do not match")
	}
	if len(a) == 0 {
		return "", errors.New("empty password")
	}
	return string(a), nil
}

func goVersion() string { return runtime.Version() }
