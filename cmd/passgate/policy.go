package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/store"
)

// errPolicyInvalid is `policy check`'s exit status 1 for a file that does
// not validate (its problems are printed first).
var errPolicyInvalid = errors.New("the policy is invalid")

func cmdPolicy(ctx context.Context, args []string, std stdio) error {
	const usage = "policy check [FILE] [serve flags] | policy explain --user NAME --resource URL [--method M --name N] [--scope S…]"
	sub, err := subcommand("policy", usage, args, std)
	if err != nil {
		return err
	}
	switch sub {
	case "check":
		return policyCheck(args[1:], std)
	case "explain":
		return policyExplain(ctx, args[1:], std)
	default:
		return usagef("policy: unknown subcommand %q", sub)
	}
}

// policyCheck validates a policy file as serve would: against the
// configured resources and scopes (serve's flags and environment).
func policyCheck(args []string, std stdio) error {
	c, pos, err := serveConfigCommand("policy check", "policy check [FILE] [serve flags]", args, std)
	if err != nil {
		return err
	}
	switch len(pos) {
	case 0:
	case 1:
		c.PolicyFile = pos[0]
	default:
		return usagef("policy check: at most one FILE")
	}
	if c.PolicyFile == "" {
		return usagef("policy check: name a FILE (or set --policy / PASSGATE_POLICY)")
	}
	if _, err := c.loadPolicy(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(std.err, textsafe.Escape(strings.TrimPrefix(line, "policy: ")))
		}
		return errPolicyInvalid
	}
	fmt.Fprintf(std.out, "%s: valid\n", textsafe.Escape(c.PolicyFile))
	return nil
}

// policyExplain prints what the checks would decide for a user, resource,
// MCP method and name and scopes, with the rule that decides: the same
// policy.Decide on the same inputs (the user's groups from the store).
func policyExplain(ctx context.Context, args []string, std stdio) error {
	var c Config
	fs := newFlagSet("policy explain", "policy explain --user NAME --resource URL [--method M --name N] [--scope S…]", std)
	user := fs.String("user", "", "username (required)")
	res := fs.String("resource", "", "resource URL, as in the policy (required)")
	method := fs.String("method", "", "MCP method (Mcp-Method), e.g. tools/call")
	name := fs.String("name", "", "tool or prompt name, or resource URI (Mcp-Name)")
	var scopes []string
	fs.Func("scope", "a scope the token carries (repeatable, or space-separated)", func(v string) error {
		scopes = append(scopes, strings.Fields(v)...)
		return nil
	})
	get := fs.Bool("get", false, "judge a GET (no JSON-RPC request) instead of a POST")
	fs.StringVar(&c.PolicyFile, "policy", "", "access policy file"+envHelp([]string{"PASSGATE_POLICY"}))
	fs.Func("require-scopes", "as serve's --require-scopes"+envHelp([]string{"PASSGATE_REQUIRE_SCOPES"}), func(v string) error {
		rules, err := parseScopeRules(v)
		c.RequireScopes = append(c.RequireScopes, rules...)
		return err
	})
	st, pos, err := storeCommand(ctx, fs, &c, args, std, []setting{{"policy", []string{"PASSGATE_POLICY"}}, {"require-scopes", []string{"PASSGATE_REQUIRE_SCOPES"}}})
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 0 || *user == "" || *res == "" {
		return usagef("policy explain: --user and --resource are required, and nothing else")
	}
	r, err := resource.Parse(*res)
	if err != nil {
		return usagef("policy explain: --resource: %v", err)
	}
	var f *policy.File
	if c.PolicyFile != "" {
		if f, err = policy.Load(c.PolicyFile); err != nil {
			return err
		}
	}
	p, err := policy.Compile(f, nil, c.RequireScopes)
	if err != nil {
		return err
	}
	var groups []string
	switch u, err := st.GetUser(ctx, *user); {
	case err == nil:
		groups = u.Groups
	case errors.Is(err, store.ErrNotFound):
		fmt.Fprintf(std.out, "note: no user %s in the store (judged without groups; the checks refuse a deleted user's tokens anyway)\n", textsafe.Escape(*user))
	default:
		return fmt.Errorf("get user: %w", err)
	}
	in := policy.ExplainInput(r, *user, groups, scopes, *method, *name, !*get)
	printExplain(std, p, in, p.Decide(in))
	return nil
}

func printExplain(std stdio, p *policy.Policy, in policy.Input, d policy.Decision) {
	verdict := "allow"
	switch d.Result {
	case policy.Allow:
	case policy.InsufficientScope:
		verdict = "deny: 403 insufficient_scope, scope=\"" + d.Scope + "\" (the client may step up)"
	case policy.MissingHeader:
		verdict = "deny: 400, the " + d.Header + " header is required"
	default:
		verdict = "deny: 403 " + d.Result.String()
	}
	groups := in.Groups
	if groups == "" {
		groups = "none"
	}
	fmt.Fprintf(std.out, "decision: %s\nrule:     %s\nuser:     %s (groups: %s)\n", verdict,
		textsafe.Escape(p.Describe(in.Resource, d.Rule)), textsafe.Escape(in.User), textsafe.Escape(groups))
}
