package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/store/postgres"
	"github.com/passgate/passgate/store/sqlite"
)

const configUsage = "config check [serve flags]"

// checkError is a failed `config check`: exit 1, its lines printed as
// they are.
type checkError struct{ msg string }

func (e checkError) Error() string { return e.msg }

// cmdConfig is `passgate config check`: it loads the configuration as
// serve would (flags, environment, configuration file), validates it,
// opens the store read-only to see that it answers and which schema it
// carries, prints serve's startup warnings, and exits 0 when serve would
// start, 1 with one line per problem when it would not. It changes
// nothing: no data directory, database file or migration is created.
func cmdConfig(ctx context.Context, args []string, std stdio) error {
	sub, err := subcommand("config", configUsage, args, std)
	if err != nil {
		return err
	}
	if sub != "check" {
		return usagef("config: unknown subcommand %q (want check)", sub)
	}
	c, err := loadConfig("config check", configUsage, args[1:], std)
	if err != nil {
		// Exit 1 for every problem, a bad flag included: the check failed.
		var ue usageError
		if errors.As(err, &ue) {
			return checkError(ue)
		}
		return err
	}
	for _, w := range c.exposureWarnings() {
		fmt.Fprintln(std.err, "warning: "+w)
	}
	msg, err := checkStore(ctx, c)
	if err != nil {
		// One line: driver errors (pgconn's list of addresses tried) may
		// span several.
		return checkError{"cannot use the store: " + strings.Join(strings.Fields(err.Error()), " ")}
	}
	fmt.Fprintln(std.out, "configuration OK; "+msg)
	return nil
}

// checkStore opens the configured store read-only and describes it, or
// says why serve could not use it.
func checkStore(ctx context.Context, c *Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var (
		what       string
		have, want int
		err        error
	)
	if c.DatabaseURL != "" {
		what = "PostgreSQL"
		if u, perr := url.Parse(c.DatabaseURL); perr == nil {
			what += " at " + u.Host
		}
		have, want, err = postgres.SchemaVersion(ctx, c.DatabaseURL)
	} else {
		path := filepath.Join(c.DataDir, "passgate.db")
		what = "SQLite " + path
		if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
			return fmt.Sprintf("%s does not exist yet: serve will create it", path), nil
		}
		have, want, err = sqlite.SchemaVersion(ctx, path)
	}
	switch {
	case err != nil:
		return "", err
	case have > want:
		return "", fmt.Errorf("%s has schema version %d, newer than this binary's %d: run the newer passgate", what, have, want)
	case have < want:
		return fmt.Sprintf("%s answers; serve will migrate its schema from version %d to %d", what, have, want), nil
	}
	return fmt.Sprintf("%s answers, schema version %d is current", what, have), nil
}

// exposureWarnings are serve's startup warnings about an issuer or
// resource left at a loopback URL (the defaults) while the HTTP listener
// accepts connections from elsewhere: clients there would be sent to
// their own localhost.
func (c *Config) exposureWarnings() []string {
	host, _, err := net.SplitHostPort(c.HTTPListen)
	if err != nil || isLoopbackHost(host) {
		return nil
	}
	var w []string
	if u, err := url.Parse(c.Issuer); err == nil && isLoopbackHost(u.Hostname()) {
		w = append(w, fmt.Sprintf("--issuer is %s, a loopback URL, but --http-listen %s accepts connections from other hosts: set --issuer to the URL clients reach passgate at", c.Issuer, c.HTTPListen))
	}
	for _, r := range c.Resources {
		if u, err := url.Parse(r); err == nil && isLoopbackHost(u.Hostname()) {
			w = append(w, fmt.Sprintf("--resource %s is a loopback URL, but --http-listen %s accepts connections from other hosts: set --resource to the MCP server's public URL", r, c.HTTPListen))
		}
	}
	return w
}

// isLoopbackHost reports whether host (a name or address, without port)
// reaches only this machine: a loopback host by the protocol rule
// (resource.IsLoopbackHost), or a name under .localhost, which resolvers
// also send to loopback (RFC 6761 §6.3). The empty host, 0.0.0.0 and ::
// are every interface, not loopback.
func isLoopbackHost(host string) bool {
	return resource.IsLoopbackHost(host) || strings.HasSuffix(strings.ToLower(host), ".localhost")
}

// healthURL is the /healthz URL on the configured HTTP listener: its host,
// or loopback when it listens on every interface.
func healthURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--http-listen %q is not host:port", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
