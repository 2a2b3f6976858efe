package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/ratelimit"
)

// readmeRow is one row of the README's configuration table.
type readmeRow struct {
	env []string
	def string
}

// readmeConfigTable parses the rows "| `--flag` | `ENV`, … | `default` | … |"
// of README.md's configuration table.
func readmeConfigTable(t *testing.T) map[string]readmeRow {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]*)`")
	rows := map[string]readmeRow{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("README row %q: want | flag | environment | default | meaning |", line)
			continue
		}
		name := strings.TrimPrefix(strings.Trim(strings.TrimSpace(cells[1]), "`"), "--")
		var r readmeRow
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			r.env = append(r.env, m[1])
		}
		def := strings.TrimSpace(cells[3])
		if m := code.FindStringSubmatch(def); m != nil && m[0] == def {
			def = m[1]
		} else if def != "" {
			t.Errorf("README row --%s: default %q is not one `value`", name, def)
		}
		r.def = def
		if _, dup := rows[name]; dup {
			t.Errorf("README lists --%s twice", name)
		}
		rows[name] = r
	}
	return rows
}

// sameDefault compares a flag's default with the README's, reading
// durations and rate limits as values ("720h" is "720h0m0s").
func sameDefault(flagDef, readme string) bool {
	if flagDef == readme {
		return true
	}
	if a, err := time.ParseDuration(flagDef); err == nil {
		b, err := time.ParseDuration(readme)
		return err == nil && a == b
	}
	if a, err := ratelimit.ParseLimit(flagDef); err == nil {
		b, err := ratelimit.ParseLimit(readme)
		return err == nil && a == b
	}
	return false
}

// TestREADMEConfigTableMatchesFlags: the README's configuration table has
// exactly one row per serve flag, with the flag's environment variables and
// default, so the documentation cannot drift from the code.
func TestREADMEConfigTableMatchesFlags(t *testing.T) {
	rows := readmeConfigTable(t)
	var c Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	settings := c.bindFlags(fs)
	seen := map[string]bool{}
	for _, s := range settings {
		seen[s.flag] = true
		r, ok := rows[s.flag]
		if !ok {
			t.Errorf("--%s is not in the README's configuration table", s.flag)
			continue
		}
		if diff := cmp.Diff(r.env, s.env); diff != "" {
			t.Errorf("--%s environment variables (-README +flag):\n%s", s.flag, diff)
		}
		f := fs.Lookup(s.flag)
		if !sameDefault(f.DefValue, r.def) {
			t.Errorf("--%s: README default %q, flag default %q", s.flag, r.def, f.DefValue)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("--%s is registered without an environment setting", f.Name)
		}
	})
	for name := range rows {
		if !seen[name] {
			t.Errorf("README lists --%s, which serve does not have", name)
		}
	}
}

// TestREADMEConfigFileExample: the README's example configuration file is
// valid, and every key in it takes effect.
func TestREADMEConfigFileExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "### Configuration file\n")
	_, after, ok2 := strings.Cut(after, "```yaml\n")
	example, _, ok3 := strings.Cut(after, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no yaml example under ### Configuration file")
	}
	path := writeFile(t, "passgate.yaml", example)
	c, err := parseConfig(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("the README's example is invalid: %v", err)
	}
	if c.Issuer != "https://auth.example.com" || c.MetricsListen != ":9464" || len(c.RequireScopes) != 1 {
		t.Errorf("the example did not take effect: issuer %q metrics %q rules %v", c.Issuer, c.MetricsListen, c.RequireScopes)
	}
}
