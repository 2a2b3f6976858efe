package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/extauthz"
	"github.com/passgate/passgate/internal/audit"
	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/resource"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

var apikeyUsage = `apikey add NAME --resource URL [--resource URL…] [--scope SCOPE…] | apikey list | apikey revoke NAME

A named API key is a long-lived bearer credential for scripts. The checks
accept it only for its resources, hold it to the scope rules with its
scopes, and send the user identity apikey:NAME upstream. The key is printed
once; only its hash is stored. Resources and scopes must be among those
passgate serves: $PASSGATE_RESOURCES and $PASSGATE_SCOPES, as for serve
(defaults ` + strings.Join(defaultResources, ",") + ` and ` + strings.Join(defaultScopes, " ") + `).`

func cmdAPIKey(ctx context.Context, args []string, std stdio) error {
	sub, err := subcommand("apikey", apikeyUsage, args, std)
	if err != nil {
		return err
	}
	var (
		c                 Config
		resources, scopes []string
	)
	fs := newFlagSet("apikey "+sub, apikeyUsage, std)
	fs.Func("resource", "a configured resource URL the key is accepted for (repeatable; at least one)", func(v string) error {
		resources = append(resources, v)
		return nil
	})
	fs.Func("scope", "a scope the key carries (repeatable, or space-separated; default none)", func(v string) error {
		scopes = append(scopes, splitList(v)...)
		return nil
	})
	switch sub {
	case "add", "list", "revoke":
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(std.out, "Usage: passgate "+apikeyUsage)
		return nil
	default:
		return usagef("apikey: unknown subcommand %q", sub)
	}
	st, pos, err := storeCommand(ctx, fs, &c, args[1:], std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	// The CLI's own recorder: the row and this process's count, like every
	// audited change (nobody scrapes a CLI process's metrics).
	rec, err := audit.New(st, prometheus.NewRegistry(), time.Now)
	if err != nil {
		return err
	}
	needName := func() (string, error) {
		if len(pos) != 1 {
			return "", usagef("apikey %s: exactly one NAME is required", sub)
		}
		return pos[0], nil
	}
	switch sub {
	case "add":
		name, err := needName()
		if err != nil {
			return err
		}
		k, err := newAPIKey(name, resources, scopes, std.getenv)
		if err != nil {
			return usageError{"apikey add: " + err.Error()}
		}
		secret := token.New(token.PrefixAPIKey)
		k.Hash, k.CreatedAt = token.Hash(secret), time.Now()
		ev := rec.Stamp(store.AuditEvent{Event: store.EventAPIKeyCreated, Success: true, IP: adminIP, Username: extauthz.APIKeyUserPrefix + name})
		if err := st.CreateAPIKey(ctx, k, &ev); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return fmt.Errorf("api key %q already exists (names of revoked keys are not reused)", name)
			}
			return fmt.Errorf("add api key: %w", err)
		}
		rec.Committed(ev)
		fmt.Fprintf(std.out, "api_key:   %s\n(shown once; only its hash is stored)\n", secret)
		fmt.Fprintf(std.out, "name:      %s (user header apikey:%s)\nresources: %s\nscope:     %s\n", name, name, strings.Join(k.Resources, " "), k.Scope)
		return nil
	case "list":
		if len(pos) != 0 {
			return usagef("apikey list: no arguments expected")
		}
		keys, err := st.ListAPIKeys(ctx)
		if err != nil {
			return fmt.Errorf("list api keys: %w", err)
		}
		tw := newTable(std.out, "NAME", "CREATED", "REVOKED", "SCOPE", "RESOURCES")
		for _, k := range keys {
			revoked, scope := "-", k.Scope
			if !k.RevokedAt.IsZero() {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			if scope == "" {
				scope = "-"
			}
			tw.row(k.Name, k.CreatedAt.Format(time.RFC3339), revoked, scope, strings.Join(k.Resources, " "))
		}
		return tw.flush()
	default: // revoke
		name, err := needName()
		if err != nil {
			return err
		}
		if strings.EqualFold(name, extauthz.LegacyAPIKeyName) {
			return usagef("apikey revoke: %q is the static key; remove API_KEY or --api-key-file and restart passgate", name)
		}
		ev := rec.Stamp(store.AuditEvent{Event: store.EventAPIKeyRevoked, Success: true, IP: adminIP, Username: extauthz.APIKeyUserPrefix + name})
		switch err := st.RevokeAPIKey(ctx, name, ev.CreatedAt, &ev); {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("no api key %q", name)
		case errors.Is(err, store.ErrConflict):
			return fmt.Errorf("api key %q is already revoked", name)
		case err != nil:
			return fmt.Errorf("revoke api key: %w", err)
		}
		rec.Committed(ev)
		fmt.Fprintf(std.out, "revoked api key %s\n", name)
		return nil
	}
}

// newAPIKey checks a key's name, resources and scopes against what
// passgate serves ($PASSGATE_RESOURCES, $PASSGATE_SCOPES) and returns the
// key without its hash.
func newAPIKey(name string, resources, scopes []string, getenv func(string) string) (store.APIKey, error) {
	var errs []error
	if err := extauthz.ValidateAPIKeyName(name); err != nil {
		errs = append(errs, err)
	}
	configured := defaultResources
	if v := getenv("PASSGATE_RESOURCES"); v != "" {
		configured = splitList(v)
	}
	served, err := resource.ParseAll(configured)
	if err != nil {
		errs = append(errs, fmt.Errorf("$PASSGATE_RESOURCES: %w", err))
	}
	if len(resources) == 0 {
		errs = append(errs, errors.New("at least one --resource is required"))
	}
	var bound []string
	for _, raw := range resources {
		r, err := resource.Lookup(served, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("--resource: %w", err))
			continue
		}
		if !slices.Contains(bound, r.URL) {
			bound = append(bound, r.URL)
		}
	}
	granted := defaultScopes
	if v := getenv("PASSGATE_SCOPES"); v != "" {
		granted = splitList(v)
	}
	var scope []string
	for _, s := range scopes {
		switch {
		case !oauth.ValidScopeToken(s):
			errs = append(errs, fmt.Errorf("--scope: %q is not a valid scope token", s))
		case !slices.Contains(granted, s):
			errs = append(errs, fmt.Errorf("--scope: %q is not a scope passgate grants (%s)", s, strings.Join(granted, " ")))
		case !slices.Contains(scope, s):
			scope = append(scope, s)
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, err := range errs {
			msgs[i] = err.Error()
		}
		return store.APIKey{}, errors.New(strings.Join(msgs, "; "))
	}
	return store.APIKey{Name: name, Resources: bound, Scope: strings.Join(scope, " ")}, nil
}
