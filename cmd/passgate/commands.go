package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// adminAudit is the audit identity of changes made from the command line.
const adminIP = "cli"

func cmdUser(ctx context.Context, args []string, std stdio) error {
	const usage = "user add|list|remove|passwd|unlock|set-groups|mfa [NAME] [GROUP,…] [--password-stdin] [--groups GROUP,…]"
	sub, err := subcommand("user", usage, args, std)
	if err != nil {
		return err
	}
	if sub == "mfa" {
		return cmdUserMFA(ctx, args[1:], std)
	}
	var c Config
	fs := newFlagSet("user "+sub, usage, std)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	groupList := fs.String("groups", "", "user add: comma-separated access-policy groups")
	st, pos, err := storeCommand(ctx, fs, &c, args[1:], std, []setting{bindPasswordPolicy(fs, &c)})
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	needName := func() (string, error) {
		if len(pos) != 1 && !(sub == "set-groups" && len(pos) == 2) {
			return "", usagef("user %s: exactly one NAME is required", sub)
		}
		if !validUsername(pos[0]) {
			return "", usagef("user %s: %q is not a valid username (1-64 letters, digits, . _ - @)", sub, pos[0])
		}
		return pos[0], nil
	}
	switch sub {
	case "add", "passwd":
		name, err := needName()
		if err != nil {
			return err
		}
		policy := c.passwordPolicy()
		if err := policy.Validate(); err != nil {
			return usagef("user %s: --min-password-length: %v", sub, err)
		}
		pw, err := readPassword(std, *fromStdin)
		if err != nil {
			return err
		}
		if err := policy.Check(name, pw); err != nil {
			return fmt.Errorf("user %s: %w", sub, err)
		}
		groups, err := parseGroups(*groupList)
		if err != nil {
			return usagef("user %s: --groups: %v", sub, err)
		}
		if groups != nil && sub != "add" {
			return usagef("user passwd: --groups belongs to user add (use user set-groups)")
		}
		hash, err := passwd.Hash(pw, std.cost())
		if err != nil {
			return err
		}
		if sub == "add" {
			if err := st.CreateUser(ctx, store.User{Username: name, PasswordHash: hash, Groups: groups, CreatedAt: now, UpdatedAt: now}); err != nil {
				if errors.Is(err, store.ErrAlreadyExists) {
					return fmt.Errorf("user %q already exists", name)
				}
				return fmt.Errorf("add user: %w", err)
			}
			fmt.Fprintf(std.out, "added user %s\n", name)
			return nil
		}
		// A new password ends every session and revokes every token, in
		// the store's one transaction and through its invalidations to
		// every replica's cache: whoever knew the old one is out.
		ev := store.AuditEvent{Event: store.EventPasswordChanged, Success: true, IP: adminIP, Username: name, CreatedAt: now}
		revoked, err := st.SetPassword(ctx, name, hash, now, &ev)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no user %q", name)
			}
			return fmt.Errorf("set password: %w", err)
		}
		fmt.Fprintf(std.out, "changed the password of %s, ended their sessions and revoked %d tokens\n", name, len(revoked))
		return nil
	case "list":
		users, err := st.ListUsers(ctx)
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		tw := newTable(std.out, "USERNAME", "GROUPS", "CREATED", "LOCKED UNTIL")
		for _, u := range users {
			lf, err := st.GetLoginFailures(ctx, u.Username)
			if err != nil {
				return fmt.Errorf("lockout state: %w", err)
			}
			locked := "-"
			if lf.LockedUntil.After(now) {
				locked = lf.LockedUntil.Format(time.RFC3339)
			}
			groups := strings.Join(u.Groups, ",")
			if groups == "" {
				groups = "-"
			}
			tw.row(u.Username, groups, u.CreatedAt.Format(time.RFC3339), locked)
		}
		return tw.flush()
	case "remove":
		name, err := needName()
		if err != nil {
			return err
		}
		if err := st.DeleteUser(ctx, name, now); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no user %q", name)
			}
			return fmt.Errorf("remove user: %w", err)
		}
		fmt.Fprintf(std.out, "removed user %s, their sessions and tokens\n", name)
		return nil
	case "set-groups":
		name, err := needName()
		if err != nil {
			return err
		}
		list := ""
		if len(pos) == 2 {
			list = pos[1]
		}
		groups, err := parseGroups(list)
		if err != nil {
			return usagef("user set-groups: %v", err)
		}
		// The store notifies the user's live tokens in the same
		// transaction, so every replica's check reads the new groups
		// within a second (the revocation path, without revoking).
		ev := store.AuditEvent{Event: store.EventGroupsChanged, Success: true, IP: adminIP, Username: name, CreatedAt: now}
		hashes, err := st.SetUserGroups(ctx, name, groups, now, &ev)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no user %q", name)
			}
			return fmt.Errorf("set groups: %w", err)
		}
		shown := strings.Join(store.NormalizeGroups(groups), ",")
		if shown == "" {
			shown = "none"
		}
		fmt.Fprintf(std.out, "set the groups of %s to %s; %d cached tokens re-checked\n", name, shown, len(hashes))
		return nil
	case "unlock":
		name, err := needName()
		if err != nil {
			return err
		}
		if err := st.ResetLoginFailures(ctx, name); err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		fmt.Fprintf(std.out, "unlocked %s\n", name)
		return nil
	default:
		return usagef("user: unknown subcommand %q", sub)
	}
}

// parseGroups parses a comma-separated group list ("" is none), each name
// passing store.ValidGroup.
func parseGroups(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []string
	for _, g := range strings.Split(list, ",") {
		g = strings.TrimSpace(g)
		if !store.ValidGroup(g) {
			return nil, fmt.Errorf("%q is not a valid group name (1-%d lowercase letters, digits, - _ ., starting with a letter or digit)", g, store.MaxGroupLen)
		}
		out = append(out, g)
	}
	return out, nil
}

// cmdUserMFA lists a user's second factors, or removes them all (for a
// lost phone without recovery codes): the reset ends the user's sessions
// and revokes their tokens, since whoever held the factor may be signed
// in.
func cmdUserMFA(ctx context.Context, args []string, std stdio) error {
	const usage = "user mfa list|reset NAME"
	sub, err := subcommand("user mfa", usage, args, std)
	if err != nil {
		return err
	}
	var c Config
	fs := newFlagSet("user mfa "+sub, usage, std)
	st, pos, err := storeCommand(ctx, fs, &c, args[1:], std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 || !validUsername(pos[0]) {
		return usagef("user mfa %s: exactly one valid NAME is required", sub)
	}
	name := pos[0]
	if _, err := st.GetUser(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no user %q", name)
		}
		return fmt.Errorf("get user: %w", err)
	}
	now := time.Now()
	switch sub {
	case "list":
		tw := newTable(std.out, "FACTOR", "CREATED", "LAST USED", "DETAIL")
		t, err := st.GetTOTP(ctx, name)
		switch {
		case err == nil:
			n, err := st.CountRecoveryCodes(ctx, name)
			if err != nil {
				return fmt.Errorf("count recovery codes: %w", err)
			}
			last := "-"
			if !t.LastUsedAt.IsZero() {
				last = t.LastUsedAt.Format(time.RFC3339)
			}
			tw.row("totp", t.CreatedAt.Format(time.RFC3339), last, fmt.Sprintf("%d recovery codes left", n))
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("get totp: %w", err)
		}
		keys, err := st.ListPasskeys(ctx, name)
		if err != nil {
			return fmt.Errorf("list passkeys: %w", err)
		}
		for _, k := range keys {
			last := "-"
			if !k.LastUsedAt.IsZero() {
				last = k.LastUsedAt.Format(time.RFC3339)
			}
			detail := "passkey " + k.Name
			if k.BackupState {
				detail += " (synced)"
			}
			tw.row("passkey", k.CreatedAt.Format(time.RFC3339), last, detail)
		}
		return tw.flush()
	case "reset":
		ev := store.AuditEvent{Event: store.EventMFAReset, Success: true, IP: adminIP, Username: name, CreatedAt: now}
		revoked, err := st.ResetSecondFactors(ctx, name, now, &ev)
		if err != nil {
			return fmt.Errorf("reset second factors: %w", err)
		}
		fmt.Fprintf(std.out, "removed the second factors of %s, ended their sessions and revoked %d tokens\n", name, len(revoked))
		return nil
	default:
		return usagef("user mfa: unknown subcommand %q", sub)
	}
}

// subcommand returns the subcommand, args[0]; without one it prints the
// command's usage and returns a usage error. "help", -h and --help print
// the usage to std.out and return errHelp (exit 0).
func subcommand(name, usage string, args []string, std stdio) (string, error) {
	if len(args) == 0 {
		fmt.Fprintln(std.err, "Usage: passgate "+usage)
		return "", usagef("%s: missing subcommand", name)
	}
	if isHelp(args[0]) {
		fmt.Fprintf(std.out, "Usage: passgate %s\n\nRun \"passgate %s SUBCOMMAND --help\" for its flags.\n", usage, name)
		return "", errHelp
	}
	return args[0], nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// validUsername is the rule for new usernames: 1-64 ASCII letters,
// digits and . _ - @ (so never a control character; the login form
// refuses those with textsafe.Printable, for names made before).
func validUsername(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return false
		}
	}
	return true
}

// table writes the commands' aligned text output. Every cell goes through
// textsafe.Escape: stored values (usernames, client IDs and names, user
// agents, audit reasons) were chosen by whoever sent a request, and a CR,
// LF or tab must not forge a row or column, nor an escape sequence reach
// the operator's terminal. (--json output is escaped by encoding/json.)
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, textsafe.Escape(c))
	}
	io.WriteString(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

func cmdClient(ctx context.Context, args []string, std stdio) error {
	const usage = "client add --name NAME --redirect-uri URI [--redirect-uri URI…] [--public] | client list | client remove ID"
	sub, err := subcommand("client", usage, args, std)
	if err != nil {
		return err
	}
	var (
		c         Config
		redirects []string
	)
	fs := newFlagSet("client "+sub, usage, std)
	name := fs.String("name", "", "client name shown on the consent page")
	id := fs.String("id", "", "client ID (default: random)")
	public := fs.Bool("public", false, "public client (PKCE only, no secret)")
	method := fs.String("auth-method", "client_secret_basic", "token endpoint auth method a confidential client registers: client_secret_basic or client_secret_post (it may send its secret either way)")
	fs.Func("redirect-uri", "exact redirect URI (repeatable)", func(v string) error {
		redirects = append(redirects, v)
		return nil
	})
	st, pos, err := storeCommand(ctx, fs, &c, args[1:], std, []setting{bindPrivateSchemes(fs, &c)})
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	switch sub {
	case "add":
		if *name == "" || len(redirects) == 0 {
			return usagef("client add: --name and at least one --redirect-uri are required")
		}
		// The rule dynamic registration applies, from its one home.
		for _, r := range redirects {
			if err := oauth.ValidateRedirectURI(r, c.PrivateSchemes); err != nil {
				return usagef("client add: --redirect-uri %q: %v", r, err)
			}
		}
		if !textsafe.Printable(*id) || !textsafe.Printable(*name) {
			return usagef("client add: --id and --name must not contain control or invisible characters")
		}
		cl := store.Client{
			ID: *id, Name: *name, RedirectURIs: redirects, Source: store.ClientStatic,
			GrantTypes: []string{"authorization_code", "refresh_token"}, CreatedAt: now,
		}
		if cl.ID == "" {
			cl.ID = token.New("pgcl_")[:len("pgcl_")+22]
		}
		var secret string
		if *public {
			cl.TokenEndpointAuthMethod = "none"
		} else {
			if *method != "client_secret_basic" && *method != "client_secret_post" {
				return usagef("client add: --auth-method must be client_secret_basic or client_secret_post")
			}
			cl.TokenEndpointAuthMethod = *method
			secret = token.New(token.PrefixClientSecret)
			h, err := passwd.Hash(secret, std.cost())
			if err != nil {
				return err
			}
			cl.SecretHash = h
		}
		if err := st.CreateClient(ctx, cl); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return fmt.Errorf("client %q already exists", cl.ID)
			}
			return fmt.Errorf("add client: %w", err)
		}
		fmt.Fprintf(std.out, "client_id:     %s\n", cl.ID)
		if secret != "" {
			fmt.Fprintf(std.out, "client_secret: %s\n(shown once; only its hash is stored)\n", secret)
		}
		return nil
	case "list":
		clients, err := st.ListClients(ctx)
		if err != nil {
			return fmt.Errorf("list clients: %w", err)
		}
		tw := newTable(std.out, "CLIENT ID", "NAME", "SOURCE", "AUTH", "LAST USED", "REDIRECT URIS")
		for _, cl := range clients {
			last := "never"
			if !cl.LastUsedAt.IsZero() {
				last = cl.LastUsedAt.Format(time.RFC3339)
			}
			tw.row(cl.ID, cl.Name, cl.Source, cl.TokenEndpointAuthMethod, last, strings.Join(cl.RedirectURIs, " "))
		}
		return tw.flush()
	case "remove":
		if len(pos) != 1 {
			return usagef("client remove: exactly one client ID is required")
		}
		if err := st.DeleteClient(ctx, pos[0], now); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no client %q", pos[0])
			}
			return fmt.Errorf("remove client: %w", err)
		}
		if err := st.RecordAudit(ctx, store.AuditEvent{Event: store.EventClientDeleted, Success: true, IP: adminIP, ClientID: pos[0], CreatedAt: now}); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		fmt.Fprintf(std.out, "removed client %s and revoked its tokens\n", pos[0])
		return nil
	default:
		return usagef("client: unknown subcommand %q", sub)
	}
}

func cmdToken(ctx context.Context, args []string, std stdio) error {
	const usage = "token revoke --user NAME [--client ID]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(std.out, "Usage: passgate "+usage)
		return errHelp
	}
	if len(args) == 0 || args[0] != "revoke" {
		fmt.Fprintln(std.err, "Usage: passgate "+usage)
		return usagef("token: expected 'revoke'")
	}
	var c Config
	fs := newFlagSet("token revoke", usage, std)
	user := fs.String("user", "", "revoke every token of this user")
	client := fs.String("client", "", "only the tokens of this client")
	st, _, err := storeCommand(ctx, fs, &c, args[1:], std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if *user == "" {
		return usagef("token revoke: --user is required")
	}
	now := time.Now()
	ev := store.AuditEvent{Event: store.EventTokenRevoked, Success: true, IP: adminIP, Username: *user, ClientID: *client, CreatedAt: now}
	hashes, err := st.RevokeUserTokens(ctx, *user, *client, now, &ev)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	fmt.Fprintf(std.out, "revoked %d tokens of %s\n", len(hashes), textsafe.Escape(*user))
	return nil
}

func cmdSession(ctx context.Context, args []string, std stdio) error {
	const usage = "session list [--user NAME] | session revoke --user NAME"
	sub, err := subcommand("session", usage, args, std)
	if err != nil {
		return err
	}
	var c Config
	fs := newFlagSet("session "+sub, usage, std)
	user := fs.String("user", "", "username")
	st, _, err := storeCommand(ctx, fs, &c, args[1:], std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		ss, err := st.ListSessions(ctx, *user, time.Now())
		if err != nil {
			return fmt.Errorf("list sessions: %w", err)
		}
		tw := newTable(std.out, "USER", "CREATED", "LAST SEEN", "EXPIRES", "IP", "USER AGENT")
		for _, s := range ss {
			tw.row(s.Username, s.CreatedAt.Format(time.RFC3339), s.LastSeenAt.Format(time.RFC3339), s.ExpiresAt.Format(time.RFC3339), s.IP, s.UserAgent)
		}
		return tw.flush()
	case "revoke":
		if *user == "" {
			return usagef("session revoke: --user is required")
		}
		n, err := st.DeleteUserSessions(ctx, *user)
		if err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
		fmt.Fprintf(std.out, "ended %d sessions of %s\n", n, textsafe.Escape(*user))
		return nil
	default:
		return usagef("session: unknown subcommand %q", sub)
	}
}

func cmdAudit(ctx context.Context, args []string, std stdio) error {
	const usage = "audit [--since DURATION|RFC3339] [--event NAME] [--user NAME] [--client ID] [--failed] [--limit N] [--json]"
	var c Config
	fs := newFlagSet("audit", usage, std)
	since := fs.String("since", "24h", "how far back: a duration (24h) or an RFC 3339 time")
	event := fs.String("event", "", "only this event")
	user := fs.String("user", "", "only this username")
	client := fs.String("client", "", "only this client ID")
	failed := fs.Bool("failed", false, "only failures")
	limit := fs.Int("limit", 1000, "at most this many rows (0: all)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	st, _, err := storeCommand(ctx, fs, &c, args, std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	f := store.AuditFilter{Event: *event, Username: *user, ClientID: *client, FailedOnly: *failed, Limit: *limit}
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			f.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			f.Since = t
		} else {
			return usagef("audit: --since %q is neither a duration nor an RFC 3339 time", *since)
		}
	}
	rows, err := st.ListAudit(ctx, f)
	if err != nil {
		return fmt.Errorf("query audit log: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(std.out)
		for _, r := range rows {
			if err := enc.Encode(auditJSON{
				ID: r.ID, Event: r.Event, Success: r.Success, IP: r.IP, UserAgent: r.UserAgent,
				ClientID: r.ClientID, Username: r.Username, Error: r.Error, CreatedAt: r.CreatedAt,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := newTable(std.out, "TIME", "EVENT", "RESULT", "USER", "CLIENT", "IP", "ERROR")
	for _, r := range rows {
		res := "ok"
		if !r.Success {
			res = "FAILED"
		}
		tw.row(r.CreatedAt.Format(time.RFC3339), r.Event, res, r.Username, r.ClientID, r.IP, r.Error)
	}
	return tw.flush()
}

type auditJSON struct {
	ID        int64     `json:"id"`
	Event     string    `json:"event"`
	Success   bool      `json:"success"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	ClientID  string    `json:"client_id"`
	Username  string    `json:"username"`
	Error     string    `json:"error"`
	CreatedAt time.Time `json:"created_at"`
}

func cmdHashPassword(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("hash-password", "hash-password < password.txt", std)
	cost := fs.Int("cost", passwd.DefaultCost, "bcrypt cost")
	var c Config
	fs.IntVar(&c.MinPasswordLength, "min-password-length", passwd.MinLength, "shortest password accepted (at least 8)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	policy := c.passwordPolicy()
	if err := policy.Validate(); err != nil {
		return usagef("hash-password: --min-password-length: %v", err)
	}
	pw, err := readPassword(std, true)
	if err != nil {
		return err
	}
	// The hash is meant for $OAUTH_PASSWORD_HASH, user admin's password,
	// where passgate can no longer check the policy: check it here.
	if err := policy.Check("admin", pw); err != nil {
		return fmt.Errorf("hash-password: %w", err)
	}
	h, err := passwd.Hash(pw, *cost)
	if err != nil {
		return err
	}
	fmt.Fprintln(std.out, h)
	return nil
}

func cmdMigrate(ctx context.Context, args []string, std stdio) error {
	var c Config
	fs := newFlagSet("migrate", "migrate [--database URL | --data-dir DIR]", std)
	st, _, err := storeCommand(ctx, fs, &c, args, std, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintln(std.out, "database is up to date")
	return nil
}

// cmdHealthcheck serves containers without curl (distroless): it exits 0
// when the health endpoint answers 200. Without a URL it asks /healthz on
// the HTTP listener serve was configured with (--http-listen, its
// environment variable or the configuration file, as for serve).
func cmdHealthcheck(ctx context.Context, args []string, std stdio) error {
	c, pos, err := serveConfigCommand("healthcheck", "healthcheck [URL] [serve flags]", args, std)
	if err != nil {
		return err
	}
	target, err := healthURL(c.HTTPListen)
	if len(pos) > 0 {
		target, err = pos[0], nil
	}
	if err != nil {
		return usagef("healthcheck: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return usagef("healthcheck: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", target, resp.StatusCode)
	}
	return nil
}
