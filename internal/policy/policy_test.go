package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/testing/validtest"
)

const issueExample = `
resources:
  - url: https://mcp.example.com/mcp
    allow: [group:eng, user:bob]
    scopes: {admin: [mcp]}
    rules:
      - {method: tools/call, name: "deploy_*", scope: admin}
      - {method: tools/call, name: "shell", allow: [group:ops]}
      - {method: "resources/read", name: "secret://*", allow: []}
  - url: https://ops.example.com/mcp
    allow: [group:ops]
    require_mcp_headers: true
    scopes: {admin: [write], write: [read]}
    rules:
      - {method: tools/call, name: "read_*"}
      - {method: tools/call, scope: write}
`

// mustCompile parses and compiles a policy file with no configured
// resources or scope rules.
func mustCompile(t testing.TB, yaml string) *Policy {
	t.Helper()
	f, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(f, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseIssueExample(t *testing.T) {
	f, err := Parse([]byte(issueExample))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(f.Resources) != 2 || len(f.Resources[0].Rules) != 3 || f.Resources[0].Rules[2].Allow == nil || len(*f.Resources[0].Rules[2].Allow) != 0 {
		t.Fatalf("parsed %+v", f)
	}
	if f.Resources[1].Rules[0].Allow != nil {
		t.Errorf("an omitted allow parsed as a list")
	}
}

// TestValidateListsEveryError: every problem is reported, in file order,
// the same way every time.
func TestValidateListsEveryError(t *testing.T) {
	const bad = `
resources:
  - url: http://mcp.example.com/mcp
    allow: [eng, group:Eng, user:, role:x]
    scopes: {"a b": ["c\"d"], ok: [fine]}
    rules:
      - {name: x}
      - {method: "tools call", scope: "s s", allow: [group:]}
      - {method: tools/call, name: "a,b"}
  - url: https://mcp.example.com/mcp
  - url: https://mcp.example.com/mcp
  - {}
`
	want := []string{
		`resources[0]: resource "http://mcp.example.com/mcp": invalid resource identifier: http is allowed only for loopback hosts`,
		`resources[0].allow: "eng": write user:NAME, group:NAME or *`,
		`resources[0].allow: "group:Eng": not a valid group name (lowercase letters, digits, - _ .)`,
		`resources[0].allow: "user:": not a valid username`,
		`resources[0].allow: "role:x": unknown kind "role" (user or group)`,
		`resources[0].scopes: "a b" is not a valid scope token`,
		`resources[0].scopes.a b: "c\"d" is not a valid scope token`,
		`resources[0].rules[0]: method is required (use "*" for any)`,
		`resources[0].rules[1]: method "tools call": only letters, digits and / _ - . are allowed, or "*"`,
		`resources[0].rules[1]: scope "s s" is not a valid scope token`,
		`resources[0].rules[1].allow: "group:": not a valid group name (lowercase letters, digits, - _ .)`,
		`resources[0].rules[2]: name "a,b": control characters and commas are not allowed`,
		`resources[2]: "https://mcp.example.com/mcp" is listed twice`,
		`resources[3]: url is required`,
	}
	for range 3 {
		_, err := Parse([]byte(bad))
		if err == nil {
			t.Fatal("Parse accepted a bad file")
		}
		got := strings.Split(strings.TrimPrefix(err.Error(), "policy: "), "\n")
		if d := cmp.Diff(got, want); d != "" {
			t.Fatalf("errors (-got +want):\n%s", d)
		}
	}
	f, err := Parse([]byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Validate(resource.MustParseAll("https://mcp.example.com/mcp"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `"https://ops.example.com/mcp" is not a configured resource`) {
		t.Errorf("Validate against the configured resources = %v", errs)
	}
}

func TestParseRefusesUnknownFields(t *testing.T) {
	for _, in := range []string{
		"resources:\n  - url: https://mcp.example.com/mcp\n    alow: [user:bob]\n",
		"resources:\n  - url: https://mcp.example.com/mcp\n    rules: [{method: tools/call, scopes: admin}]\n",
		"resource: []\n",
		"resources: 3\n",
		"- a\n- b\n",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
	if f, err := Parse(nil); err != nil || len(f.Resources) != 0 {
		t.Errorf("Parse(empty) = %v, %v", f, err)
	}
	if _, err := Parse(make([]byte, MaxFileSize+1)); err == nil {
		t.Errorf("Parse accepted an oversized file")
	}
}

func TestMatch(t *testing.T) {
	match := func(patternName [2]string) bool { return Match(patternName[0], patternName[1]) }
	validtest.Check(t, "Match", validtest.Bool(match), validtest.Cases[[2]string]{
		Accept: [][2]string{
			{"deploy_*", "deploy_prod"},
			{"deploy_*", "deploy_"},
			{"shell", "shell"},
			{"*", ""},
			{"", ""},
			{"secret://*", "secret://a/b"},
			{"a*b*c", "aXbYc"},
			{"*x", "xxxx"},
			{"**", "abc"},
		},
		Refuse: [][2]string{
			{"deploy_*", "undeploy_x"},
			{"shell", "shell2"},
			{"", "x"},
			{"a*b*c", "aXbY"},
			{"a*a*a*a*b", strings.Repeat("a", 40)},
		},
	})
}

func compileExample(t testing.TB, rules ...ScopeRule) *Policy {
	t.Helper()
	f, err := Parse([]byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(f, resource.MustParseAll("https://mcp.example.com/mcp", "https://ops.example.com/mcp", "https://open.example.com/mcp"), rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// DecideCases is shared with the explain == check test in extauthz's
// package through the same inputs; here it pins the engine itself.
func TestDecide(t *testing.T) {
	p := compileExample(t, ScopeRule{Match: "/admin", Scopes: []string{"root"}})
	const mcp, ops, open = "https://mcp.example.com/mcp", "https://ops.example.com/mcp", "https://open.example.com/mcp"
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"group member, no method", Input{Resource: mcp, User: "alice", Groups: "eng", Scope: "mcp", Post: true}, Decision{Result: Allow, Rule: "resource"}},
		{"named user", Input{Resource: mcp, User: "bob", Scope: "mcp"}, Decision{Result: Allow, Rule: "resource"}},
		{"not on the list", Input{Resource: mcp, User: "carol", Groups: "sales", Scope: "mcp"}, Decision{Result: DenyUser, Rule: "resource"}},
		{"group prefix is not membership", Input{Resource: mcp, User: "carol", Groups: "engineering,en", Scope: "mcp"}, Decision{Result: DenyUser, Rule: "resource"}},
		{"not on the list at authorize", Input{Resource: mcp, User: "carol", ResourceOnly: true}, Decision{Result: DenyUser, Rule: "resource"}},
		{"on the list at authorize", Input{Resource: mcp, User: "bob", ResourceOnly: true}, Decision{Result: Allow, Rule: "resource"}},
		{"step-up tool without admin", Input{Resource: mcp, User: "bob", Scope: "mcp", Method: "tools/call", Name: "deploy_prod"}, Decision{Result: InsufficientScope, Rule: "rules[0]", Scope: "admin"}},
		{"step-up tool with admin", Input{Resource: mcp, User: "bob", Scope: "admin mcp", Method: "tools/call", Name: "deploy_prod"}, Decision{Result: Allow, Rule: "rules[0]"}},
		{"forbidden tool", Input{Resource: mcp, User: "alice", Groups: "eng", Scope: "mcp", Method: "tools/call", Name: "shell"}, Decision{Result: DenyRule, Rule: "rules[1]"}},
		{"forbidden tool for ops member", Input{Resource: mcp, User: "dan", Groups: "eng,ops", Scope: "mcp", Method: "tools/call", Name: "shell"}, Decision{Result: Allow, Rule: "rules[1]"}},
		{"nobody reads secrets", Input{Resource: mcp, User: "bob", Scope: "mcp admin", Method: "resources/read", Name: "secret://db"}, Decision{Result: DenyRule, Rule: "rules[2]"}},
		{"other resources readable", Input{Resource: mcp, User: "bob", Scope: "mcp", Method: "resources/read", Name: "file://x"}, Decision{Result: Allow, Rule: "resource"}},
		{"unmatched tool", Input{Resource: mcp, User: "bob", Scope: "mcp", Method: "tools/call", Name: "echo"}, Decision{Result: Allow, Rule: "resource"}},
		{"tools/call without Mcp-Name", Input{Resource: mcp, User: "bob", Scope: "mcp", Method: "tools/call"}, Decision{Result: MissingHeader, Rule: "resource", Header: "Mcp-Name"}},
		{"tools/list needs no name", Input{Resource: mcp, User: "bob", Scope: "mcp", Method: "tools/list"}, Decision{Result: Allow, Rule: "resource"}},
		{"required headers missing", Input{Resource: ops, User: "dan", Groups: "ops", Scope: "read", Post: true}, Decision{Result: MissingHeader, Rule: "resource", Header: "Mcp-Method"}},
		{"required headers: a GET is fine", Input{Resource: ops, User: "dan", Groups: "ops", Scope: "read"}, Decision{Result: Allow, Rule: "resource"}},
		{"read tool for everyone on the list", Input{Resource: ops, User: "dan", Groups: "ops", Method: "tools/call", Name: "read_logs", Post: true, ProtocolVersion: "2026-07-28"}, Decision{Result: Allow, Rule: "rules[0]"}},
		{"other tools need write", Input{Resource: ops, User: "dan", Groups: "ops", Scope: "read", Method: "tools/call", Name: "restart", Post: true, ProtocolVersion: "2026-07-28"}, Decision{Result: InsufficientScope, Rule: "rules[1]", Scope: "write"}},
		{"write implied by admin, transitively", Input{Resource: ops, User: "dan", Groups: "ops", Scope: "admin", Method: "tools/call", Name: "restart", Post: true, ProtocolVersion: "2026-07-28"}, Decision{Result: Allow, Rule: "rules[1]"}},
		{"required headers on an older protocol", Input{Resource: ops, User: "dan", Groups: "ops", Method: "tools/call", Name: "read_logs", Post: true, ProtocolVersion: "2025-11-25"}, Decision{Result: MissingHeader, Rule: "resource", Header: "MCP-Protocol-Version"}},
		{"required headers: the body is enough", Input{Resource: ops, User: "dan", Groups: "ops", Method: "tools/call", Name: "read_logs", Post: true, FromBody: true}, Decision{Result: Allow, Rule: "rules[0]"}},
		{"resource without policy", Input{Resource: open, User: "carol", Method: "tools/call", Name: "shell"}, Decision{Result: Allow, Rule: "none"}},
		{"not on the list comes before a scope rule", Input{Resource: mcp, Scheme: "https", Host: "mcp.example.com", Path: "/admin", User: "carol", Scope: "mcp"}, Decision{Result: DenyUser, Rule: "resource"}},
		{"require-scopes path rule", Input{Resource: open, Scheme: "https", Host: "open.example.com", Path: "/admin/x", User: "carol", Scope: "mcp"}, Decision{Result: InsufficientScope, Rule: "scopes", Scope: "root"}},
		{"require-scopes path rule, folded", Input{Resource: open, Scheme: "https", Host: "open.example.com", Path: "/ADMIN", Scope: "root"}, Decision{Result: Allow, Rule: "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(p.Decide(tt.in), tt.want); d != "" {
				t.Errorf("Decide (-got +want):\n%s", d)
			}
		})
	}
	var nilPolicy *Policy
	if !nilPolicy.Decide(Input{Resource: mcp}).Allowed() {
		t.Errorf("a nil policy denied")
	}
}

// TestImpliedScopes: admin implies write, write implies read; a token with
// admin passes a rule that needs read.
func TestImpliedScopes(t *testing.T) {
	p := mustCompile(t, `
resources:
  - url: https://mcp.example.com/mcp
    scopes: {admin: [write], write: [read], read: [admin]}
    rules: [{method: "*", scope: read}]
`)
	for _, scope := range []string{"read", "write", "admin", "x admin"} {
		if d := p.Decide(Input{Resource: "https://mcp.example.com/mcp", Scope: scope, Method: "tools/list"}); !d.Allowed() {
			t.Errorf("scope %q: %+v", scope, d)
		}
	}
	if d := p.Decide(Input{Resource: "https://mcp.example.com/mcp", Scope: "mcp", Method: "tools/list"}); d.Result != InsufficientScope || d.Scope != "read" {
		t.Errorf("scope mcp: %+v", d)
	}
}

func TestCompileScopeRuleErrors(t *testing.T) {
	_, err := Compile(nil, nil, []ScopeRule{{Match: "/a/../b", Scopes: []string{"x"}}, {Match: "ftp://x", Scopes: nil}})
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("Compile = %v, want three errors", err)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := compileExample(t)
	in := Input{Resource: "https://mcp.example.com/mcp", User: "dan", Groups: "eng,ops", Scope: "admin mcp", Method: "tools/call", Name: "deploy_prod"}
	if n := testing.AllocsPerRun(100, func() { p.Decide(in) }); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte("resources: [{url: 'https://a.example/mcp', allow: ['*'], rules: [{method: '*', name: '**'}]}]"))
	f.Add([]byte("{\"resources\":[{\"url\":\"x\",\"scopes\":{\"a\":[\"a\"]}}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			if file != nil {
				t.Fatalf("Parse returned a file with an error")
			}
			return
		}
		// A file that parses compiles, and deciding never panics; a
		// user on no list is never admitted by a non-empty list
		// without "*".
		p, err := Compile(file, nil, nil)
		if err != nil {
			t.Fatalf("Compile of a valid file: %v", err)
		}
		for _, r := range file.Resources {
			d := p.Decide(Input{Resource: r.URL, User: "\x00nobody", Method: "tools/call", Name: "x"})
			if r.Allow != nil && !slices.Contains(*r.Allow, "*") && d.Result == Allow {
				t.Fatalf("a stranger was admitted to %q: %+v", r.URL, d)
			}
			_ = p.Describe(r.URL, d.Rule)
		}
	})
}

func TestImpliedAndDescriptions(t *testing.T) {
	p := mustCompile(t, `
resources:
  - url: https://mcp.example.com/mcp
    scopes: {admin: [write], write: [read]}
    scope_descriptions: {admin: "Run deploy tools on production"}
`)
	if d := cmp.Diff(p.Implied("https://mcp.example.com/mcp", []string{"admin", "mcp"}), []string{"admin", "mcp", "read", "write"}); d != "" {
		t.Errorf("Implied (-got +want):\n%s", d)
	}
	if d := cmp.Diff(p.Implied("https://other.example.com/mcp", []string{"admin"}), []string{"admin"}); d != "" {
		t.Errorf("Implied elsewhere (-got +want):\n%s", d)
	}
	if got := p.ScopeDescription("https://mcp.example.com/mcp", "admin"); got != "Run deploy tools on production" {
		t.Errorf("ScopeDescription = %q", got)
	}
	if _, err := Parse([]byte("resources: [{url: 'https://a.example/mcp', scope_descriptions: {admin: \"a\\nb\"}}]")); err == nil {
		t.Errorf("a description with a newline was accepted")
	}
}
