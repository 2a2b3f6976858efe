// Package policy is passgate's access policy: who may use which protected
// resource, and which MCP methods and names (tools, resources, prompts)
// need which scope or which users. It parses and validates the policy
// file, compiles it together with the --require-scopes rules into one
// immutable Policy, and decides. The checks (extauthz), /oauth/authorize
// (oauthweb) and `passgate policy explain` all call Policy.Decide, so they
// cannot disagree.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/store"
)

// MaxFileSize bounds a policy file.
const MaxFileSize = 1 << 20

// File is the policy file, as written. Its field comments are the
// reference (README "Access policy").
type File struct {
	// Resources lists the protected resources the policy restricts; a
	// configured resource the file does not name is open to every user
	// for every method, as without a policy.
	Resources []ResourceSpec `json:"resources"`
}

// ResourceSpec is one protected resource's entry.
type ResourceSpec struct {
	// URL is the resource's URL exactly as configured (--resource).
	URL string `json:"url"`
	// Allow lists who may use the resource at all: "user:NAME",
	// "group:NAME", or "*" for every user. Omitted: every user. Empty
	// ([]): nobody.
	Allow *[]string `json:"allow,omitempty"`
	// Scopes maps a scope to the scopes it implies: {admin: [mcp]} means a
	// token with admin satisfies a rule that needs mcp. Optional.
	Scopes map[string][]string `json:"scopes,omitempty"`
	// ScopeDescriptions say in words what each scope allows on this
	// resource; the consent page shows them. Optional.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`
	// RequireMCPHeaders refuses a POST whose MCP method is unknown (no
	// Mcp-Method header and no body to read it from) with 400, so that
	// through nginx auth_request a client cannot escape the rules by
	// leaving the header out. Default false: such a request is judged by
	// Allow alone (clients that negotiate protocol 2025-11-25 or older send
	// no Mcp-Method).
	RequireMCPHeaders bool `json:"require_mcp_headers,omitempty"`
	// Rules are tried in order for requests whose MCP method is known; the
	// first that matches decides. No match: allowed.
	Rules []RuleSpec `json:"rules,omitempty"`
}

// RuleSpec is one per-request rule.
type RuleSpec struct {
	// Method is the JSON-RPC method ("tools/call", "resources/read",
	// "prompts/get", …) or "*" for any.
	Method string `json:"method"`
	// Name is a pattern for the tool or prompt name (params.name) or the
	// resource URI (params.uri), where "*" matches any run of characters.
	// Optional: any name, and requests without one.
	Name string `json:"name,omitempty"`
	// Scope, when set, must be granted to the token (directly or implied);
	// otherwise 403 insufficient_scope naming it, so that the client can
	// step up.
	Scope string `json:"scope,omitempty"`
	// Allow, when set, lists who may make the request (as ResourceSpec.Allow);
	// others get 403.
	Allow *[]string `json:"allow,omitempty"`
}

// Load reads and parses the file at path and validates it (see Parse).
func Load(path string) (*File, error) {
	b, err := Read(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Read reads the file at path, bounded by MaxFileSize.
func Read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return b, nil
}

// Parse parses a policy file (YAML, or JSON) and validates it. The error
// joins every problem found, in file order.
func Parse(b []byte) (*File, error) {
	f, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if errs := f.Validate(nil); len(errs) > 0 {
		return nil, fmt.Errorf("policy: %w", errors.Join(errs...))
	}
	return f, nil
}

// Decode parses a policy file without validating its values (Compile
// validates them, with the configured resources). Unknown fields are
// errors, not ignored: a misspelt "alow" must not open a server.
func Decode(b []byte) (*File, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("policy: file larger than %d bytes", MaxFileSize)
	}
	var f File
	if len(bytes.TrimSpace(b)) > 0 {
		if err := yaml.UnmarshalStrict(b, &f); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	return &f, nil
}

// Validate returns every problem in f, in file order. When configured is
// not nil, each resource URL must be one of them (resource.Parse'd).
func (f *File) Validate(configured []resource.Resource) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	for i, r := range f.Resources {
		where := fmt.Sprintf("resources[%d]", i)
		switch {
		case r.URL == "":
			add("%s: url is required", where)
		default:
			if _, err := resource.Parse(r.URL); err != nil {
				add("%s: %v", where, err)
			} else if configured != nil && !isConfigured(configured, r.URL) {
				add("%s: %q is not a configured resource (--resource)", where, r.URL)
			}
			if seen[r.URL] {
				add("%s: %q is listed twice", where, r.URL)
			}
			seen[r.URL] = true
		}
		if r.Allow != nil {
			for _, e := range validateSubjects(*r.Allow) {
				add("%s.allow: %v", where, e)
			}
		}
		for _, s := range sortedKeys(r.Scopes) {
			if !oauth.ValidScopeToken(s) {
				add("%s.scopes: %q is not a valid scope token", where, s)
			}
			for _, im := range r.Scopes[s] {
				if !oauth.ValidScopeToken(im) {
					add("%s.scopes.%s: %q is not a valid scope token", where, s, im)
				}
			}
		}
		for _, sc := range slices.Sorted(maps.Keys(r.ScopeDescriptions)) {
			if !oauth.ValidScopeToken(sc) {
				add("%s.scope_descriptions: %q is not a valid scope token", where, sc)
			}
			if text := r.ScopeDescriptions[sc]; text == "" || len(text) > 200 || !validName(strings.ReplaceAll(text, ",", "")) {
				add("%s.scope_descriptions.%s: 1 to 200 characters without control characters", where, sc)
			}
		}
		for j, rule := range r.Rules {
			rw := fmt.Sprintf("%s.rules[%d]", where, j)
			switch {
			case rule.Method == "":
				add("%s: method is required (use \"*\" for any)", rw)
			case !validMethod(rule.Method):
				add("%s: method %q: only letters, digits and / _ - . are allowed, or \"*\"", rw, rule.Method)
			}
			if !validName(rule.Name) {
				add("%s: name %q: control characters and commas are not allowed", rw, rule.Name)
			}
			if rule.Scope != "" && !oauth.ValidScopeToken(rule.Scope) {
				add("%s: scope %q is not a valid scope token", rw, rule.Scope)
			}
			if rule.Allow != nil {
				for _, e := range validateSubjects(*rule.Allow) {
					add("%s.allow: %v", rw, e)
				}
			}
		}
	}
	return errs
}

func isConfigured(rs []resource.Resource, url string) bool {
	for _, r := range rs {
		if r.URL == url {
			return true
		}
	}
	return false
}

// validateSubjects checks an allow list: "*", "user:NAME" or
// "group:NAME" (store.ValidGroup).
func validateSubjects(list []string) []error {
	var errs []error
	for _, s := range list {
		kind, name, ok := strings.Cut(s, ":")
		switch {
		case s == "*":
		case !ok:
			errs = append(errs, fmt.Errorf("%q: write user:NAME, group:NAME or *", s))
		case kind == "user":
			if name == "" || strings.ContainsAny(name, " ,\t\r\n") {
				errs = append(errs, fmt.Errorf("%q: not a valid username", s))
			}
		case kind == "group":
			if !store.ValidGroup(name) {
				errs = append(errs, fmt.Errorf("%q: not a valid group name (lowercase letters, digits, - _ .)", s))
			}
		default:
			errs = append(errs, fmt.Errorf("%q: unknown kind %q (user or group)", s, kind))
		}
	}
	return errs
}

func validMethod(m string) bool {
	if m == "*" {
		return true
	}
	for i := 0; i < len(m); i++ {
		b := m[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '/' || b == '_' || b == '-' || b == '.') {
			return false
		}
	}
	return m != ""
}

func validName(n string) bool {
	for i := 0; i < len(n); i++ {
		if n[i] < 0x20 || n[i] == 0x7f || n[i] == ',' {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string][]string) []string {
	return slices.Sorted(maps.Keys(m))
}
