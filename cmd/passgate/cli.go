package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/store"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=…" (the
// release build does); otherwise buildVersion takes the module version from
// the build info, or says "devel". It is the one variable the linker sets.
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
	// environ lists the environment as KEY=value, to find PASSGATE_*
	// variables passgate does not know. Optional: nil skips that check.
	environ func() []string
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
		{"user", "add|list|remove|passwd|unlock|set-groups|mfa [NAME]", "", cmdUser},
		{"client", "add|list|remove [ID]", "pre-registered OAuth clients", cmdClient},
		{"token", "revoke --user NAME", "revoke every token of a user", cmdToken},
		{"apikey", "add|list|revoke [NAME]", "named API keys bound to resources and scopes", cmdAPIKey},
		{"session", "list|revoke", "browser sessions", cmdSession},
		{"policy", "check|explain", "validate the access policy, or explain a decision", cmdPolicy},
		{"audit", "[flags]", "query the audit log", cmdAudit},
		{"hash-password", "", "read a password on stdin, print a bcrypt hash", cmdHashPassword},
		{"migrate", "", "apply database migrations and exit", cmdMigrate},
		{"healthcheck", "[URL]", "exit 0 if /healthz answers (for containers)", cmdHealthcheck},
		{"config", "check [serve flags]", "load and validate the configuration, check the store, exit", cmdConfig},
		{"version", "", "print the version", cmdVersion},
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
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	if s := nearest(name, names); s != "" {
		return usagef("unknown command %q (did you mean %s? see passgate --help)", name, s)
	}
	return usagef("unknown command %q (see passgate --help)", name)
}

// cmdVersion prints "passgate VERSION" and, on a second line, the Go
// version, platform and VCS revision the binary was built with.
func cmdVersion(_ context.Context, args []string, std stdio) error {
	fs := newFlagSet("version", "version", std)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(std.out, "passgate", buildVersion())
	fmt.Fprintln(std.out, buildDetails())
	return nil
}

// buildVersion is the version stamped with -ldflags -X main.version, else
// the main module's version from the build info (`go install
// …@v1.2.3`), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// buildDetails is "go1.x linux/amd64" and, when the build recorded it,
// "commit abc123def456" (+ "dirty").
func buildDetails() string {
	s := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	var rev, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = " (dirty)"
			}
		}
	}
	if rev != "" {
		s += " commit " + rev[:min(12, len(rev))] + dirty
	}
	return s
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// whose Usage prints the command's usage and flags to std.out (help that
// was asked for is output, and exits 0).
func newFlagSet(name, usage string, std stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(std.out, "Usage: passgate %s\n\nFlags:\n", usage)
		fs.SetOutput(std.out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseArgs parses flags that may appear before or after positional
// arguments ("user add alice --password-stdin") and returns the positionals.
// -h or --help prints the usage and returns errHelp (exit 0); a bad flag
// is one line naming it and pointing at --help, not the whole usage.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, errHelp
			}
			return nil, usageError{flagError(fs, err)}
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

// parseFlagsOnly is parseArgs for commands that take no positional
// arguments: a stray word is an error rather than ignored, so a value meant
// for a flag that takes none ("--tracing off") cannot silently become the
// flag's opposite.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q (flags take their value as --flag=value; see passgate %s --help)", fs.Name(), textsafe.Escape(pos[0]), fs.Name())
	}
	return nil
}

// bindStoreFlags binds only the flags a command needs to reach the store,
// the configuration file that may set them, and --create.
func bindStoreFlags(fs *flag.FlagSet, c *Config) []setting {
	fs.StringVar(&c.DatabaseURL, "database", "", "PostgreSQL URL; SQLite in --data-dir when empty"+envHelp([]string{"DATABASE_URL", "DATABASE_URL_FILE"}))
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir, "directory of the SQLite database"+envHelp([]string{"PASSGATE_DATA_DIR"}))
	fs.StringVar(&c.ConfigFile, "config", "", "YAML file of settings named like serve's flags"+envHelp([]string{"PASSGATE_CONFIG"}))
	fs.BoolVar(&c.CreateDataDir, "create", false, "create --data-dir if it does not exist (otherwise a missing directory is an error)")
	return []setting{{"database", []string{"DATABASE_URL"}}, {"data-dir", []string{"PASSGATE_DATA_DIR"}}, {"config", []string{"PASSGATE_CONFIG"}}}
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
		if err := checkDataDir(c); err != nil {
			return nil, err
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
	if _, err := loadLayers(fs, c, settings, std); err != nil {
		return nil, nil, usageError{oneLinePerProblem(err)}
	}
	logger := slog.New(slog.NewTextHandler(std.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openStore(ctx, c, logger)
	if err != nil {
		return nil, nil, err
	}
	return st, pos, nil
}

// serveConfigCommand parses the flags of a command that reads serve's
// configuration (serve's flags, environment and configuration file)
// without serving, and returns it, unvalidated, with the positionals.
func serveConfigCommand(name, usage string, args []string, std stdio) (*Config, []string, error) {
	var c Config
	fs := newFlagSet(name, usage, std)
	settings := c.bindFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if _, err := loadLayers(fs, &c, settings, std); err != nil {
		return nil, nil, usageError{oneLinePerProblem(err)}
	}
	return &c, pos, nil
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

// checkDataDir refuses a --data-dir that does not exist unless
// c.CreateDataDir: a mistyped directory must not silently become a new,
// empty database.
func checkDataDir(c *Config) error {
	st, err := os.Stat(c.DataDir)
	switch {
	case err == nil && !st.IsDir():
		return fmt.Errorf("--data-dir %s is not a directory", c.DataDir)
	case err == nil, c.CreateDataDir:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return usagef("--data-dir %s does not exist: check the path, or pass --create to start a new database there (serve creates it)", c.DataDir)
	default:
		return fmt.Errorf("--data-dir: %w", err)
	}
}
