package main

import (
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// secretFlags are the flags whose values are secrets: errors about them
// never quote the value.
var secretFlags = map[string]bool{"database": true}

// explainValue says why value is not valid for f, and what is: `"1d" is
// not a duration: use 24h (…)`. The flag package's own errors for its
// types are a bare "parse error"; passgate's own flag values (limits,
// lists, CIDRs) already explain themselves, and their error is kept.
func explainValue(f *flag.Flag, value string, err error) string {
	shown := strconv.Quote(value)
	if f != nil && secretFlags[f.Name] {
		shown = "the value"
	}
	var g flag.Getter
	if f != nil {
		g, _ = f.Value.(flag.Getter)
	}
	if g == nil {
		return fmt.Sprintf("%s: %v", shown, err)
	}
	switch g.Get().(type) {
	case time.Duration:
		return fmt.Sprintf("%s is not a duration: %s", shown, durationHint(value))
	case bool:
		return fmt.Sprintf("%s is not a boolean: use true or false", shown)
	case int, int64, uint, uint64:
		return fmt.Sprintf("%s is not a whole number", shown)
	}
	return fmt.Sprintf("%s: %v", shown, err)
}

var (
	daysRe   = regexp.MustCompile(`^(\d+)\s*(d|day|days)$`)
	weeksRe  = regexp.MustCompile(`^(\d+)\s*(w|week|weeks)$`)
	digitsRe = regexp.MustCompile(`^\d+$`)
)

// durationHint says what to write instead of a value time.ParseDuration
// refused: Go durations have no days or weeks, and need a unit.
func durationHint(v string) string {
	v = strings.TrimSpace(strings.ToLower(v))
	const units = "(units h, m, s, ms; no days or weeks)"
	if m := daysRe.FindStringSubmatch(v); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("use %dh %s", n*24, units)
	}
	if m := weeksRe.FindStringSubmatch(v); m != nil {
		n, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("use %dh %s", n*24*7, units)
	}
	if digitsRe.MatchString(v) {
		return fmt.Sprintf("add a unit, such as %ss or %sm %s", v, v, units)
	}
	return "use a Go duration such as 90s, 15m or 720h " + units
}

var (
	invalidValueRe = regexp.MustCompile(`^invalid (?:boolean )?value "((?:[^"\\]|\\.)*)" for (?:flag )?-([^:]+): (.*)$`)
	undefinedRe    = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsArgRe     = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

// flagError turns an error of fs.Parse into one line naming the flag, what
// is wrong and where help is.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	hint := fmt.Sprintf(" (see passgate %s --help)", fs.Name())
	if m := invalidValueRe.FindStringSubmatch(msg); m != nil {
		v, uerr := strconv.Unquote(`"` + m[1] + `"`)
		if uerr != nil {
			v = m[1]
		}
		return fmt.Sprintf("--%s: %s%s", m[2], explainValue(fs.Lookup(m[2]), v, fmt.Errorf("%s", m[3])), hint)
	}
	if m := undefinedRe.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s: unknown flag --%s%s", fs.Name(), m[1], hint)
	}
	if m := needsArgRe.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s needs a value%s", m[1], hint)
	}
	return fmt.Sprintf("%s: %s%s", fs.Name(), msg, hint)
}
