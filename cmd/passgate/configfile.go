package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// loadLayers fills fs, whose command-line flags are parsed already, from
// the lower layers, in order of precedence: flag > environment >
// configuration file (--config or $PASSGATE_CONFIG) > default. It also
// reports every PASSGATE_* variable of the environment that passgate does
// not know, so a misspelt one is not silently ignored. It returns the flags
// whose value was refused (see applyEnv) and every problem at once.
//
// The layering is a few dozen lines over the stdlib FlagSet rather than a
// library: peterbourgon/ff derives one environment name from each flag
// name, while passgate's flags keep the seed's names (SERVER_URL,
// DATABASE_URL, PASSGATE_RESOURCES for --resource) and the _FILE secrets.
func loadLayers(fs *flag.FlagSet, c *Config, settings []setting, std stdio) (map[string]bool, error) {
	failed, err := c.applyEnv(fs, settings, std.getenv)
	errs := []error{err}
	if std.environ != nil {
		errs = append(errs, unknownEnv(std.environ())...)
	}
	if c.ConfigFile != "" {
		ff, err := applyConfigFile(fs, c.ConfigFile)
		for k := range ff {
			failed[k] = true
		}
		errs = append(errs, err)
	}
	return failed, errors.Join(errs...)
}

// serveSettings are every setting of serve, for the names the
// environment and the configuration file may use.
func serveSettings() (*flag.FlagSet, []setting) {
	var c Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, c.bindFlags(fs)
}

// otherEnv are the PASSGATE_* variables passgate reads that are not a
// flag's, and those the shipped proxy configuration and the repository's
// scripts read, which may share passgate's environment.
var otherEnv = []string{
	"PASSGATE_CLIENT_REDIRECT_URIS",
	// deploy/caddy/Caddyfile
	"PASSGATE_SITE", "PASSGATE_ADDR", "PASSGATE_UPSTREAM", "PASSGATE_PORT",
	// scripts/screenshots.sh and interop/ts-sdk/run.sh, which run passgate
	"PASSGATE_SCREENSHOTS", "PASSGATE_ROOT",
}

// knownEnv is every environment variable name passgate reads.
func knownEnv() []string {
	_, settings := serveSettings()
	known := slices.Clone(otherEnv)
	for _, s := range settings {
		known = append(known, s.env...)
	}
	for _, s := range secretEnv {
		known = append(known, s+"_FILE")
	}
	return known
}

// unknownEnv reports each PASSGATE_* variable in environ (KEY=value) that
// passgate does not read, with the nearest known name.
func unknownEnv(environ []string) []error {
	known := knownEnv()
	var errs []error
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "PASSGATE_") || slices.Contains(known, k) {
			continue
		}
		msg := fmt.Sprintf("$%s: unknown variable", k)
		if s := nearest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean $%s?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// applyConfigFile sets, from the YAML mapping in the file at path, every
// flag of fs not set yet (by the command line or the environment). Keys are
// serve's flag names without dashes in front; a key that is not one is an
// error, and so is a value the flag refuses. Keys of serve's flags that fs
// lacks (a store command has only the store's flags) are skipped. A list
// may be a YAML sequence. It returns the flags whose value was refused.
func applyConfigFile(fs *flag.FlagSet, path string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return map[string]bool{}, fmt.Errorf("--config: %w", err)
	}
	return applyConfigYAML(fs, filepath.Base(path), b)
}

// applyConfigYAML is applyConfigFile for the contents b of the file name.
func applyConfigYAML(fs *flag.FlagSet, name string, b []byte) (map[string]bool, error) {
	failed := map[string]bool{}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return failed, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return failed, nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return failed, fmt.Errorf("%s:%d: want a mapping of setting: value, one per line", name, m.Line)
	}
	serveFS, settings := serveSettings()
	var keys []string
	for _, s := range settings {
		keys = append(keys, s.flag)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	seen := map[string]bool{}
	var errs []error
	add := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			add(k.Line, "a key must be a setting name")
			continue
		case key == "config":
			add(k.Line, "config: a configuration file cannot name another")
			continue
		case serveFS.Lookup(key) == nil:
			msg := fmt.Sprintf("unknown key %q", key)
			if s := nearest(key, keys); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			add(k.Line, "%s", msg)
			continue
		case seen[key]:
			add(k.Line, "%s: set twice", key)
			continue
		}
		seen[key] = true
		value, err := yamlValue(key, v)
		if err != nil {
			add(v.Line, "%s: %v", key, err)
			continue
		}
		f := fs.Lookup(key)
		if f == nil || given[key] {
			continue
		}
		if err := fs.Set(key, value); err != nil {
			failed[key] = true
			add(v.Line, "%s: %s", key, explainValue(f, value, err))
		}
	}
	return failed, errors.Join(errs...)
}

// yamlValue is the flag value of a YAML node: a scalar as written (so
// `off` stays "off" and `1h` "1h"), null as empty, and a sequence of
// scalars joined as the flag's list syntax.
func yamlValue(key string, v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", nil
		}
		return v.Value, nil
	case yaml.SequenceNode:
		sep := ","
		if key == "require-scopes" {
			sep = ";"
		}
		var items []string
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return "", errors.New("a list may hold only plain values")
			}
			items = append(items, it.Value)
		}
		return strings.Join(items, sep), nil
	default:
		return "", errors.New("want a value or a list of values")
	}
}

// nearest returns the candidate closest to s if it is a plausible typo
// (at most a third of s's letters differ), else "".
func nearest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// problems flattens joined errors into one message per problem.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// oneLinePerProblem formats err as one line, or as "invalid
// configuration:" and one indented line per problem.
func oneLinePerProblem(err error) string {
	p := problems(err)
	if len(p) == 1 {
		return p[0]
	}
	return "invalid configuration:\n  " + strings.Join(p, "\n  ")
}
