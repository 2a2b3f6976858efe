package extauthz

import (
	"strings"

	"github.com/passgate/passgate/internal/resource"
)

// ScopeRule requires Scopes for the requests Match selects.
type ScopeRule struct {
	// Match is either an absolute URL (a resource URL, or a URL below one:
	// https://mcp.example.com/mcp/admin), matched on host and path prefix
	// like a resource, or a path prefix starting with "/" (any host).
	// Prefixes match on segment boundaries.
	Match string
	// Scopes are all required.
	Scopes []string
}

type scopeRule struct {
	match  string            // ScopeRule.Match, for the denial log
	res    resource.Resource // absolute form
	prefix string            // path form
	abs    bool
	scopes []string
}

// requiredScopes returns the scopes the rules require for a request to
// host and canonical path p, or nil. Rules match without regard to letter
// case: an upstream that routes /mcp/ADMIN as /mcp/admin must not see it
// with fewer scopes.
func (c *Checker) requiredScopes(scheme, host, p string) []string {
	if len(c.rules) == 0 {
		return nil
	}
	var need []string
	matched := 0
	for i := range c.rules {
		rule := &c.rules[i]
		var m bool
		if rule.abs {
			m = rule.res.MatchesFold(scheme, host, p)
		} else {
			m = resource.HasPathPrefix(p, rule.prefix, true)
		}
		if !m {
			continue
		}
		matched++
		if matched == 1 {
			need = rule.scopes
			continue
		}
		if matched == 2 {
			need = append([]string(nil), need...)
		}
		for _, s := range rule.scopes {
			if !contains(need, s) {
				need = append(need, s)
			}
		}
	}
	return need
}

// scopeDenial is the 403 for a credential with the space-separated scopes
// have, when a scope rule for r at canonical path p requires one it lacks.
// Tokens and API keys answer to the same rules.
func (c *Checker) scopeDenial(r Request, p string, res resource.Resource, have string) (Decision, bool) {
	need := c.requiredScopes(r.Scheme, r.Host, p)
	for _, s := range need {
		if !hasScope(have, s) {
			d := c.deny(r, p, res, ReasonInsufficientScope, strings.Join(need, " "))
			d.rule = c.ruleRequiring(r.Scheme, r.Host, p, s)
			return d, true
		}
	}
	return Decision{}, false
}

// ruleRequiring returns the Match of the first scope rule for a request to
// host and canonical path p that requires scope s: the rule a denial names
// in the log.
func (c *Checker) ruleRequiring(scheme, host, p, s string) string {
	for i := range c.rules {
		rule := &c.rules[i]
		m := rule.abs && rule.res.MatchesFold(scheme, host, p) || !rule.abs && resource.HasPathPrefix(p, rule.prefix, true)
		if m && contains(rule.scopes, s) {
			return rule.match
		}
	}
	return ""
}

// challengeScope is the scope parameter of a 401 for r at canonical path p.
func (c *Checker) challengeScope(r Request, p string) string {
	if need := c.requiredScopes(r.Scheme, r.Host, p); need != nil {
		return strings.Join(need, " ")
	}
	return c.scopes
}

// hasScope reports whether the space-separated list has s, without
// allocating.
func hasScope(list, s string) bool { return hasField(list, " ", s) }

// hasField reports whether list, fields separated by sep, has s, without
// allocating.
func hasField(list, sep, s string) bool {
	for list != "" {
		var f string
		f, list, _ = strings.Cut(list, sep)
		if f == s {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
