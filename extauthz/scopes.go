package extauthz

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/internal/policy"
	"github.com/passgate/passgate/internal/resource"
)

// ScopeRule requires Scopes for the requests Match selects
// (--require-scopes). The rules are part of the access policy: see
// policy.ScopeRule.
type ScopeRule = policy.ScopeRule

// credential is what the policy judges about a verified credential.
type credential struct {
	user, groups, scope string
}

// policyDenial judges the request against the current access policy (the
// --require-scopes rules, the resource's allow list and its per-method
// rules), for a credential that is otherwise valid for res. It is the one
// decision path of tokens and API keys alike; explain calls the same
// policy.Decide.
func (c *Checker) policyDenial(ctx context.Context, r Request, p string, res resource.Resource, cred credential) (Decision, bool) {
	pol := c.policy.Load()
	in := policy.Input{Resource: res.URL, Scheme: r.Scheme, Host: r.Host, Path: p,
		User: cred.user, Groups: cred.groups, Scope: cred.scope, Post: r.Method == "POST"}
	if pol.HasRules(res.URL) {
		var reason Reason
		in.Method, in.Name, in.FromBody, reason = mcpCall(r)
		in.ProtocolVersion = r.Headers["mcp-protocol-version"]
		if reason != ReasonToken {
			c.countPolicy(res.URL, "request", reason.String())
			c.logPolicyDenial(ctx, res.URL, "request", reason.String(), cred.user, "", "")
			dec := c.refuse(reason)
			dec.rule = "request"
			return dec, true
		}
	}
	d := pol.Decide(in)
	if d.Rule != "none" {
		c.countPolicy(res.URL, d.Rule, d.Result.String())
	}
	if d.Allowed() {
		return Decision{}, false
	}
	c.logPolicyDenial(ctx, res.URL, d.Rule, d.Result.String(), cred.user, in.Method, in.Name)
	var dec Decision
	switch d.Result {
	case policy.InsufficientScope:
		dec = c.deny(r, p, res, ReasonInsufficientScope, d.Scope)
	case policy.DenyUser:
		dec = c.refuse(ReasonUserNotAllowed)
	case policy.DenyRule:
		dec = c.refuse(ReasonRuleDenied)
	default: // policy.MissingHeader
		dec = c.refuse(ReasonMissingHeader)
		switch d.Header {
		case policy.HeaderMethod:
			dec.Body = bodyNoMethodHeader
		case policy.HeaderProtocolVersion:
			dec.Body = bodyOldProtocol
		default:
			dec.Body = bodyNoNameHeader
		}
	}
	// The front end's denial log (Checker.record) names the rule too.
	dec.rule = d.Rule
	return dec, true
}

// logPolicyDenial logs a policy denial at debug level: the reason and the rule,
// the user and the MCP method and name, never a credential.
func (c *Checker) logPolicyDenial(ctx context.Context, res, rule, result, user, method, name string) {
	if !c.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	c.logger.DebugContext(ctx, "access policy denied a request", "resource", res, "rule", rule, "result", result,
		"user", user, "mcp_method", method, "mcp_name", name)
}

// challengeScope is the scope parameter of a 401 for r at canonical path p.
func (c *Checker) challengeScope(r Request, p string) string {
	if s := c.policy.Load().ChallengeScope(r.Scheme, r.Host, p); s != "" {
		return s
	}
	return c.scopes
}

// policyCounters holds passgate_policy_decisions_total's children, so
// the check path finds one with a map read instead of WithLabelValues'
// allocations. Labels are bounded: configured resources, the policy's rule
// labels and a fixed set of results; never a user.
type policyCounters struct {
	vec *prometheus.CounterVec
	mu  sync.RWMutex
	m   map[policyKey]prometheus.Counter
}

type policyKey struct{ resource, rule, result string }

func newPolicyCounters(reg prometheus.Registerer) (*policyCounters, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passgate_policy_decisions_total",
		Help: "Access-policy decisions of the checks by resource, rule (resource, rules[N], scopes, request) and result.",
	}, []string{"resource", "rule", "result"})
	if err := reg.Register(vec); err != nil {
		return nil, err
	}
	return &policyCounters{vec: vec, m: map[policyKey]prometheus.Counter{}}, nil
}

func (c *Checker) countPolicy(res, rule, result string) {
	pc := c.policyCounters
	k := policyKey{res, rule, result}
	pc.mu.RLock()
	ctr := pc.m[k]
	pc.mu.RUnlock()
	if ctr == nil {
		pc.mu.Lock()
		if ctr = pc.m[k]; ctr == nil {
			ctr = pc.vec.WithLabelValues(strings.Clone(res), strings.Clone(rule), strings.Clone(result))
			pc.m[k] = ctr
		}
		pc.mu.Unlock()
	}
	ctr.Inc()
}
