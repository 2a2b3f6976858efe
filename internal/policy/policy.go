package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
)

// ScopeRule requires Scopes for the requests Match selects
// (--require-scopes). Unlike the file's rules, every matching ScopeRule
// applies (their scopes add up), and they apply to every request,
// whatever its MCP method.
type ScopeRule struct {
	// Match is either an absolute URL (a resource URL, or a URL below one:
	// https://mcp.example.com/mcp/admin), matched on host and path prefix
	// like a resource, or a path prefix starting with "/" (any host).
	// Prefixes match on segment boundaries, without regard to letter case:
	// an upstream that routes /mcp/ADMIN as /mcp/admin must not see it
	// with fewer scopes.
	Match string
	// Scopes are all required.
	Scopes []string
}

// The MCP Streamable HTTP headers (protocol 2026-07-28) that mirror the
// JSON-RPC body, so that a proxy can judge a request without reading it.
const (
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
	HeaderProtocolVersion = "MCP-Protocol-Version"
	// MinHeaderVersion is the first protocol version whose servers must
	// reject Mcp-Method and Mcp-Name headers that disagree with the body.
	MinHeaderVersion = "2026-07-28"
)

// Result is what a Decision says, from a small fixed set (a metric label).
type Result uint8

// Results.
const (
	Allow             Result = iota
	DenyUser                 // the user is not on the resource's allow list
	DenyRule                 // a rule's allow list leaves the user out
	InsufficientScope        // a scope is missing; Decision.Scope names it
	MissingHeader            // the MCP method or name is unknown; Decision.Header names the header
)

func (r Result) String() string {
	switch r {
	case Allow:
		return "allow"
	case DenyUser:
		return "user_not_allowed"
	case DenyRule:
		return "rule_denied"
	case InsufficientScope:
		return "insufficient_scope"
	case MissingHeader:
		return "missing_header"
	}
	return "unknown"
}

// Input is what a decision is about.
type Input struct {
	// Resource is the URL of the configured resource the request is for.
	Resource string
	// Scheme, Host and Path (canonical, resource.CanonicalPath) are the
	// request's, for ScopeRules. Optional when there are none.
	Scheme, Host, Path string
	// User is the username; Groups the user's groups, comma-separated.
	User, Groups string
	// Scope is the credential's scopes, space-separated.
	Scope string
	// Method and Name are the request's MCP method and name (tool or
	// prompt name, resource URI), "" when unknown.
	Method, Name string
	// Post says the HTTP request is a POST (the only kind that carries a
	// JSON-RPC request), for RequireMCPHeaders.
	Post bool
	// FromBody says Method and Name were read from the request body, not
	// only from headers. ProtocolVersion is the MCP-Protocol-Version
	// header. With RequireMCPHeaders, headers alone are trusted only on
	// MinHeaderVersion or later, where the server checks them.
	FromBody        bool
	ProtocolVersion string
	// ResourceOnly judges only who may use the resource, as
	// /oauth/authorize does before any request exists.
	ResourceOnly bool
}

// ExplainInput is the Input `passgate policy explain` judges: a request
// to the resource itself (its scheme, host and path) by user with groups,
// a credential with scopes, and an MCP method and name as a check would
// have read them (from headers or the body, so the protocol version does
// not matter). post says whether it is a POST.
func ExplainInput(res resource.Resource, user string, groups, scopes []string, method, name string, post bool) Input {
	return Input{Resource: res.URL, Scheme: res.Scheme, Host: res.Host, Path: res.Path,
		User: user, Groups: strings.Join(groups, ","), Scope: strings.Join(scopes, " "),
		Method: method, Name: name, Post: post, FromBody: method != ""}
}

// Decision is Decide's answer.
type Decision struct {
	Result Result
	// Rule names what decided, for logs, metrics and explain: "scopes"
	// (a --require-scopes rule), "resource" (the resource's allow list, or
	// no rule matched), "rules[N]" (the file's rule N of the resource), or
	// "none" (the policy says nothing about the resource). A fixed string:
	// it never allocates.
	Rule string
	// Scope is, for InsufficientScope, the scopes needed, space-separated.
	Scope string
	// Header is, for MissingHeader, the header to send.
	Header string
}

// Allowed reports whether d lets the request through.
func (d Decision) Allowed() bool { return d.Result == Allow }

// Policy is a compiled, immutable policy. Its methods are safe for
// concurrent use; a nil *Policy allows everything.
type Policy struct {
	scopeRules []scopeRule
	byURL      map[string]*compiled
}

type scopeRule struct {
	res    resource.Resource // absolute form
	prefix string            // path form
	abs    bool
	scopes []string
	joined string
}

type compiled struct {
	spec           ResourceSpec
	allow          *subjects
	requireHeaders bool
	rules          []rule
	// satisfiers maps a needed scope to every scope that grants it (itself
	// and those that imply it, transitively).
	satisfiers map[string][]string
	// named lists the methods some rule restricts by name.
	named []string
	// byMethod lists, per method some rule names, the rules that can
	// match it (its own and the "*" ones), in file order; anyMethod the
	// "*" rules alone, for other methods. The check walks only these.
	byMethod  map[string][]*rule
	anyMethod []*rule
}

type rule struct {
	label  string
	method string // "*": any
	name   string // "": any
	scope  string
	allow  *subjects
}

// subjects is a compiled allow list.
type subjects struct {
	all    bool
	users  []string
	groups []string
}

func compileSubjects(list *[]string) *subjects {
	if list == nil {
		return nil
	}
	s := &subjects{}
	for _, x := range *list {
		kind, name, _ := strings.Cut(x, ":")
		switch {
		case x == "*":
			s.all = true
		case kind == "user":
			s.users = append(s.users, name)
		case kind == "group":
			s.groups = append(s.groups, name)
		}
	}
	return s
}

// admits reports whether user (with comma-separated groups) is on the list,
// without allocating. A nil list admits everyone.
func (s *subjects) admits(user, groups string) bool {
	if s == nil || s.all {
		return true
	}
	if user == "" {
		return false
	}
	for _, u := range s.users {
		if u == user {
			return true
		}
	}
	for _, g := range s.groups {
		if HasField(groups, ",", g) {
			return true
		}
	}
	return false
}

// Compile builds a Policy from f (nil: no file) and the --require-scopes
// rules, for the configured resources. It reports every problem at once.
func Compile(f *File, configured []resource.Resource, rules []ScopeRule) (*Policy, error) {
	var errs []error
	p := &Policy{byURL: map[string]*compiled{}}
	for _, rule := range rules {
		sr := scopeRule{scopes: rule.Scopes, joined: strings.Join(rule.Scopes, " ")}
		if len(rule.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("scope rule %q: no scopes", rule.Match))
		}
		for _, s := range rule.Scopes {
			if !oauth.ValidScopeToken(s) {
				errs = append(errs, fmt.Errorf("scope rule %q: scope %q is not a valid scope token", rule.Match, s))
			}
		}
		if strings.HasPrefix(rule.Match, "/") {
			// Matched against canonical request paths, so it must be
			// canonical itself.
			if cp, err := resource.CanonicalPath(rule.Match); err != nil || cp != rule.Match {
				errs = append(errs, fmt.Errorf("scope rule %q: path is not canonical (%q, %v)", rule.Match, cp, err))
			}
			sr.prefix = rule.Match
		} else {
			r, err := resource.Parse(rule.Match)
			if err != nil {
				errs = append(errs, fmt.Errorf("scope rule: %w", err))
			}
			sr.res, sr.abs = r, true
		}
		p.scopeRules = append(p.scopeRules, sr)
	}
	if f != nil {
		for _, err := range f.Validate(configured) {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
		for _, spec := range f.Resources {
			c := &compiled{spec: spec, allow: compileSubjects(spec.Allow), requireHeaders: spec.RequireMCPHeaders,
				satisfiers: satisfiers(spec.Scopes)}
			for j, rs := range spec.Rules {
				c.rules = append(c.rules, rule{label: "rules[" + strconv.Itoa(j) + "]", method: rs.Method, name: rs.Name,
					scope: rs.Scope, allow: compileSubjects(rs.Allow)})
				if rs.Name != "" && !slices.Contains(c.named, rs.Method) {
					c.named = append(c.named, rs.Method)
				}
			}
			c.byMethod = map[string][]*rule{}
			for i := range c.rules {
				if m := c.rules[i].method; m != "*" {
					c.byMethod[m] = nil
				}
			}
			for i := range c.rules {
				r := &c.rules[i]
				if r.method == "*" {
					c.anyMethod = append(c.anyMethod, r)
				}
				for m := range c.byMethod {
					if r.method == "*" || r.method == m {
						c.byMethod[m] = append(c.byMethod[m], r)
					}
				}
			}
			p.byURL[spec.URL] = c
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// satisfiers inverts the implication map into need -> granting scopes,
// following chains (admin -> write -> read) and surviving cycles.
func satisfiers(implies map[string][]string) map[string][]string {
	if len(implies) == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, s := range slices.Sorted(maps.Keys(implies)) {
		seen := map[string]bool{s: true}
		stack := slices.Clone(implies[s])
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[x] {
				continue
			}
			seen[x] = true
			out[x] = append(out[x], s)
			stack = append(stack, implies[x]...)
		}
	}
	return out
}

// ScopeDescription returns the policy's words for what scope allows on
// the resource, or "".
func (p *Policy) ScopeDescription(resourceURL, scope string) string {
	if p == nil || p.byURL[resourceURL] == nil {
		return ""
	}
	return p.byURL[resourceURL].spec.ScopeDescriptions[scope]
}

// Implied returns scopes with every scope they imply on the resource
// added (transitively), sorted; scopes itself when nothing is implied.
func (p *Policy) Implied(resourceURL string, scopes []string) []string {
	if p == nil || p.byURL[resourceURL] == nil || len(p.byURL[resourceURL].spec.Scopes) == 0 {
		return scopes
	}
	implies := p.byURL[resourceURL].spec.Scopes
	out := slices.Clone(scopes)
	for i := 0; i < len(out); i++ {
		for _, x := range implies[out[i]] {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	slices.Sort(out)
	return out
}

// HasRules reports whether the policy has per-method rules, or requires
// MCP headers, for the resource: only then does the MCP request matter.
func (p *Policy) HasRules(resourceURL string) bool {
	if p == nil {
		return false
	}
	c := p.byURL[resourceURL]
	return c != nil && (len(c.rules) > 0 || c.requireHeaders)
}

// HasFile reports whether the policy restricts any resource beyond the
// --require-scopes rules.
func (p *Policy) HasFile() bool { return p != nil && len(p.byURL) > 0 }

// Decide judges in against p: first the resource's allow list, then the
// --require-scopes rules, then (for a known MCP method) the resource's
// rules, first match wins. It allocates only to name the scopes of a
// refusal that several --require-scopes rules share.
func (p *Policy) Decide(in Input) Decision {
	if p == nil {
		return Decision{Result: Allow, Rule: "none"}
	}
	c := p.byURL[in.Resource]
	// Who may use the resource comes first: a user who may not gets
	// access_denied, never an insufficient_scope they could not step up
	// from.
	if c != nil && !c.allow.admits(in.User, in.Groups) {
		return Decision{Result: DenyUser, Rule: "resource"}
	}
	if !in.ResourceOnly {
		if need, joined := p.requiredScopes(in.Scheme, in.Host, in.Path); need != nil {
			for _, s := range need {
				if !c.granted(in.Scope, s) {
					return Decision{Result: InsufficientScope, Rule: "scopes", Scope: joined}
				}
			}
		}
	}
	if c == nil {
		return Decision{Result: Allow, Rule: "none"}
	}
	if in.ResourceOnly || len(c.rules) == 0 {
		return Decision{Result: Allow, Rule: "resource"}
	}
	if c.requireHeaders && in.Post && !in.FromBody {
		switch {
		case in.Method == "":
			return Decision{Result: MissingHeader, Rule: "resource", Header: HeaderMethod}
		case in.ProtocolVersion < MinHeaderVersion:
			// An older server does not compare the headers with the body,
			// so they prove nothing.
			return Decision{Result: MissingHeader, Rule: "resource", Header: HeaderProtocolVersion}
		}
	}
	if in.Method == "" {
		return Decision{Result: Allow, Rule: "resource"}
	}
	if in.Name == "" && (slices.Contains(c.named, in.Method) || slices.Contains(c.named, "*")) && NameBearing(in.Method) {
		return Decision{Result: MissingHeader, Rule: "resource", Header: HeaderName}
	}
	rules, ok := c.byMethod[in.Method]
	if !ok {
		rules = c.anyMethod
	}
	for _, r := range rules {
		if r.name != "" && (in.Name == "" || !Match(r.name, in.Name)) {
			continue
		}
		if !r.allow.admits(in.User, in.Groups) {
			return Decision{Result: DenyRule, Rule: r.label}
		}
		if r.scope != "" && !c.granted(in.Scope, r.scope) {
			return Decision{Result: InsufficientScope, Rule: r.label, Scope: r.scope}
		}
		return Decision{Result: Allow, Rule: r.label}
	}
	return Decision{Result: Allow, Rule: "resource"}
}

// NameBearing reports whether an MCP method names its target (params.name
// or params.uri), and so is sent with an Mcp-Name header.
func NameBearing(method string) bool {
	return method == "tools/call" || method == "resources/read" || method == "prompts/get"
}

// granted reports whether the space-separated scopes have need, directly
// or through a scope that implies it.
func (c *compiled) granted(scopes, need string) bool {
	if HasField(scopes, " ", need) {
		return true
	}
	if c == nil {
		return false
	}
	for _, s := range c.satisfiers[need] {
		if HasField(scopes, " ", s) {
			return true
		}
	}
	return false
}

// requiredScopes returns the scopes the --require-scopes rules need for a
// request, and them joined, or nil.
func (p *Policy) requiredScopes(scheme, host, path string) ([]string, string) {
	var need []string
	joined := ""
	matched := 0
	for i := range p.scopeRules {
		rule := &p.scopeRules[i]
		var m bool
		if rule.abs {
			m = rule.res.MatchesFold(scheme, host, path)
		} else {
			m = resource.HasPathPrefix(path, rule.prefix, true)
		}
		if !m {
			continue
		}
		matched++
		if matched == 1 {
			need, joined = rule.scopes, rule.joined
			continue
		}
		if matched == 2 {
			need = slices.Clone(need)
		}
		for _, s := range rule.scopes {
			if !slices.Contains(need, s) {
				need = append(need, s)
			}
		}
		joined = strings.Join(need, " ")
	}
	return need, joined
}

// ChallengeScope returns the scopes the --require-scopes rules need at the
// request's URL (for a 401's scope parameter), or "".
func (p *Policy) ChallengeScope(scheme, host, path string) string {
	if p == nil {
		return ""
	}
	_, joined := p.requiredScopes(scheme, host, path)
	return joined
}

// Describe returns the text of the rule a Decision names for a resource,
// for explain and logs.
func (p *Policy) Describe(resourceURL, rule string) string {
	if p == nil {
		return "no policy"
	}
	c := p.byURL[resourceURL]
	switch {
	case rule == "none":
		return "the policy names no rule for this resource"
	case rule == "scopes":
		return "a --require-scopes rule"
	case c == nil:
		return rule
	case rule == "resource":
		if c.spec.Allow == nil {
			return "resource " + resourceURL + " (allow: every user; no rule matched)"
		}
		return fmt.Sprintf("resource %s allow: [%s]", resourceURL, strings.Join(*c.spec.Allow, ", "))
	}
	for j, rs := range c.spec.Rules {
		if "rules["+strconv.Itoa(j)+"]" != rule {
			continue
		}
		s := "rules[" + strconv.Itoa(j) + "] {method: " + rs.Method
		if rs.Name != "" {
			s += ", name: " + strconv.Quote(rs.Name)
		}
		if rs.Scope != "" {
			s += ", scope: " + rs.Scope
		}
		if rs.Allow != nil {
			s += ", allow: [" + strings.Join(*rs.Allow, ", ") + "]"
		}
		return s + "}"
	}
	return rule
}

// Match reports whether name matches pattern, where "*" matches any run of
// characters (including none) and everything else matches itself. It does
// not allocate and runs in O(len(pattern)*len(name)) at worst.
func Match(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// HasField reports whether list, fields separated by sep, has s, without
// allocating: the check path's membership test for the lists it caches as
// one string (scopes, groups, an API key's resources).
func HasField(list, sep, s string) bool {
	for list != "" {
		var f string
		f, list, _ = strings.Cut(list, sep)
		if f == s {
			return true
		}
	}
	return false
}

// Holder holds the current Policy for readers on the check path while a
// reload replaces it. The zero Holder holds nil (allow everything).
type Holder struct{ p atomic.Pointer[Policy] }

// NewHolder returns a Holder holding p.
func NewHolder(p *Policy) *Holder {
	h := &Holder{}
	h.p.Store(p)
	return h
}

// Load returns the current Policy; nil (allow everything) on a nil
// Holder.
func (h *Holder) Load() *Policy {
	if h == nil {
		return nil
	}
	return h.p.Load()
}

// Store replaces the current Policy.
func (h *Holder) Store(p *Policy) { h.p.Store(p) }
